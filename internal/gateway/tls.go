package gateway

import (
	"time"

	"github.com/longlink/longlink/internal/tlssession"
)

// startTLS runs the TLS handshake on c's socket, whose first 4 bytes the
// sniffer read into c.hdr, within gateway.login_timeout, and makes the
// session c's input (internal/tlssession): its own records where the
// session is TLS 1.3 (unless tls.record_layer is crypto/tls), else
// crypto/tls's.
func (c *conn) startTLS() error {
	c.nc.SetWriteDeadline(time.Now().Add(c.gw.cfg.LoginTimeout))
	s, err := tlssession.Start(c.nc, c.hdr[:4], c.gw.tlsConfig, c.gw.ownRecords)
	if err != nil {
		return handshakeError{err}
	}
	c.tls = s
	return nil
}
