package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// recordHandshake is the first byte of a TLS client's first record.
const recordHandshake = 0x16

// tlsConn is a device connection's TLS session. Its tls.Conn reads from the
// socket as usual but writes into the tlsSocket's buffer: the connection's
// writer takes the sealed records from there and puts them on the socket with
// the same non-blocking writev as plaintext frames. So no write ever goes
// around the tls.Conn, and no TLS write can block a writer-pool worker or
// time out halfway through a record (which would leave the session corrupt).
type tlsConn struct {
	*tls.Conn
	sock *tlsSocket

	// Owned by the reader: the next input byte, read by readable.
	peeked bool
	peek   [1]byte
}

// tlsSocket is the socket as a device connection's tls.Conn sees it.
type tlsSocket struct {
	net.Conn        // reads, read deadlines, addresses, close
	prefix   []byte // what the sniffer read, given back first
	mu       sync.Mutex
	direct   bool   // while the handshakes run: writes go to the socket at once
	sealed   []byte // records written since the writer last took them
}

func (s *tlsSocket) Read(p []byte) (int, error) {
	if len(s.prefix) > 0 {
		n := copy(p, s.prefix)
		if s.prefix = s.prefix[n:]; len(s.prefix) == 0 {
			s.prefix = nil // not kept for the connection's life
		}
		return n, nil
	}
	return s.Conn.Read(p)
}

func (s *tlsSocket) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.direct {
		return s.Conn.Write(p)
	}
	s.sealed = append(s.sealed, p...)
	return len(p), nil
}

// SetWriteDeadline does nothing: the connection's writer sets the socket's
// own. (tls.Conn sets one to close, which would cut the final frames.)
func (s *tlsSocket) SetWriteDeadline(time.Time) error { return nil }

func (s *tlsSocket) SetDeadline(t time.Time) error { return s.Conn.SetReadDeadline(t) }

// startTLS runs the TLS handshake on c's socket, whose first 4 bytes the
// sniffer read into c.hdr, and makes the session c's input. Writes go
// straight to the socket until sealing is turned on (after the WebSocket
// upgrade, if any).
func (c *conn) startTLS() error {
	sock := &tlsSocket{Conn: c.nc, prefix: bytes.Clone(c.hdr[:4]), direct: true}
	t := &tlsConn{Conn: tls.Server(sock, c.gw.tlsConfig), sock: sock}
	c.nc.SetWriteDeadline(time.Now().Add(c.gw.cfg.LoginTimeout))
	if err := t.Handshake(); err != nil {
		return handshakeError{err}
	}
	c.tls = t
	return nil
}

// sealWrites ends the handshakes' direct writes: from now on, what the
// tls.Conn writes waits for the connection's writer.
func (t *tlsConn) sealWrites() {
	t.sock.mu.Lock()
	t.sock.direct = false
	t.sock.mu.Unlock()
	t.sock.Conn.SetWriteDeadline(time.Time{})
}

// Read gives the byte readable peeked at first.
func (t *tlsConn) Read(p []byte) (int, error) {
	if t.peeked && len(p) > 0 {
		p[0], t.peeked = t.peek[0], false
		return 1, nil
	}
	return t.Conn.Read(p)
}

// readable reports whether input waits inside the TLS session (decrypted, or
// whole records read ahead) that the poller cannot see on the socket, or the
// session failed. It never waits: the read runs under a deadline already
// past, which the session survives (a timeout is not fatal to a tls.Conn).
func (t *tlsConn) readable() bool {
	if t.peeked {
		return true
	}
	t.sock.Conn.SetReadDeadline(time.Unix(1, 0))
	n, err := t.Conn.Read(t.peek[:])
	t.sock.Conn.SetReadDeadline(time.Time{})
	t.peeked = n == 1
	return t.peeked || err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// seal encrypts a batch of frames, as one write so that small frames share
// records, and returns the records to put on the socket, after any the
// session wrote meanwhile by itself (an answer to a key update). A closing
// connection's last batch ends with a close_notify alert.
func (t *tlsConn) seal(batch [][]byte, closing bool) (net.Buffers, error) {
	var err error
	switch len(batch) {
	case 0:
	case 1:
		_, err = t.Write(batch[0])
	default:
		_, err = t.Write(bytes.Join(batch, nil))
	}
	if err != nil {
		return nil, err
	}
	if closing {
		t.CloseWrite()
	}
	t.sock.mu.Lock()
	out := t.sock.sealed
	t.sock.sealed = nil
	t.sock.mu.Unlock()
	if out == nil {
		return nil, nil
	}
	return net.Buffers{out}, nil
}

// pending reports whether the session wrote records by itself that wait
// for the writer.
func (t *tlsConn) pending() bool {
	t.sock.mu.Lock()
	defer t.sock.mu.Unlock()
	return len(t.sock.sealed) > 0
}
