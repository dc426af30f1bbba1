// Package tlssession is a device connection's TLS session: crypto/tls runs
// the handshake on the connection's socket; then, for TLS 1.3 (unless told
// not to), the session's own record layer takes over from the tls.Conn
// with the session's traffic secrets, and an idle connection keeps two AEAD
// states and two counters; TLS 1.2 stays with crypto/tls. Either way the
// session seals what the connection's writer writes, so that no TLS write
// ever goes to the socket around it (see docs/security.md).
package tlssession

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// RecordHandshake is the first byte of a TLS client's first record.
const RecordHandshake = 0x16

// maxHandshakeBytes bounds what a client may send in its TLS handshake
// (a ClientHello, with post-quantum key shares and a ticket, is 2-3 KB).
const maxHandshakeBytes = 16 << 10

var errHandshakeTooLarge = errors.New("TLS handshake over 16 KiB")

// Session is a connection's TLS session once its handshake is done:
// records (TLS 1.3), or a cryptoSession where crypto/tls keeps it. It is
// the connection's input, and seals what the connection's writer writes.
type Session interface {
	io.Reader
	io.Writer // the handshakes' writes (a WebSocket upgrade's answer), before SealWrites

	// Readable reports whether input waits inside the session, where the
	// poller cannot see it.
	Readable() bool
	// SealWrites ends the handshakes' writes: the connection's writer
	// writes from now on.
	SealWrites()
	// Seal encrypts a batch of frames, and returns the records to put on the
	// socket, after any the session wrote meanwhile by itself (an answer to
	// a key update). A closing connection's last batch ends with a
	// close_notify alert.
	Seal(batch [][]byte, closing bool) (net.Buffers, error)
	// Pending reports whether the session wrote records by itself that
	// wait for the writer.
	Pending() bool
}

// cryptoSession is a TLS session that crypto/tls keeps (TLS 1.2). Its tls.Conn
// reads from the socket as usual but writes into the socket's buffer:
// the connection's writer takes the sealed records from there and puts them
// on the socket with the same non-blocking writev as plaintext frames. So no
// write ever goes around the tls.Conn, and no TLS write can block a
// writer-pool worker or time out halfway through a record (which would leave
// the session corrupt).
type cryptoSession struct {
	*tls.Conn
	sock *socket

	// Owned by the reader: the next input byte, read by Readable.
	peeked bool
	peek   [1]byte
}

// socket is the socket as a device connection's tls.Conn sees it.
type socket struct {
	net.Conn        // reads, read deadlines, addresses, close
	prefix   []byte // what the sniffer read, given back first

	// While the handshake runs, reads stop at the end of each record, so
	// that the tls.Conn reads nothing past the client's Finished, and the
	// flight it writes is kept (see takeOver).
	handshaking bool
	taken       int // bytes read while handshaking (maxHandshakeBytes)
	at, end     int // how far into the record being read, and its length
	hdr         [recordHeaderLen]byte
	flight      []byte
	keys        keyLog

	mu     sync.Mutex
	direct bool   // while the handshakes run: writes go to the socket at once
	sealed []byte // records written since the writer last took them
}

func (s *socket) Read(p []byte) (int, error) {
	if s.handshaking {
		if s.at < recordHeaderLen {
			p = p[:min(len(p), recordHeaderLen-s.at)]
		} else {
			p = p[:min(len(p), s.end-s.at)]
		}
	}
	n, err := s.read(p)
	if s.handshaking {
		if s.taken += n; s.taken > maxHandshakeBytes {
			return n, errHandshakeTooLarge
		}
		if s.at < recordHeaderLen {
			copy(s.hdr[s.at:], p[:n])
		}
		if s.at += n; s.at == recordHeaderLen {
			s.end = recordHeaderLen + int(binary.BigEndian.Uint16(s.hdr[3:]))
		}
		if s.at == s.end {
			s.at = 0
		}
	}
	return n, err
}

func (s *socket) read(p []byte) (int, error) {
	if len(s.prefix) > 0 {
		n := copy(p, s.prefix)
		if s.prefix = s.prefix[n:]; len(s.prefix) == 0 {
			s.prefix = nil // not kept for the connection's life
		}
		return n, nil
	}
	return s.Conn.Read(p)
}

func (s *socket) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handshaking {
		s.flight = append(s.flight, p...)
	}
	if s.direct {
		return s.Conn.Write(p)
	}
	s.sealed = append(s.sealed, p...)
	return len(p), nil
}

// SetWriteDeadline does nothing: the connection's writer sets the socket's
// own. (tls.Conn sets one to close, which would cut the final frames.)
func (s *socket) SetWriteDeadline(time.Time) error { return nil }

func (s *socket) SetDeadline(t time.Time) error { return s.Conn.SetReadDeadline(t) }

// ServerConfig returns the configuration to serve for base: base itself
// where crypto/tls keeps every session (own false), else base giving each
// TLS 1.3 session's key log to the session's own socket (see takeOver). The per-session configuration is a clone that keeps base's
// session ticket keys (crypto/tls takes them from the configuration the
// server started with), so sessions resume across connections.
func ServerConfig(base *tls.Config, own bool) *tls.Config {
	if base == nil || !own {
		return base
	}
	g := base.Clone()
	g.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		sock, ok := hello.Conn.(*socket)
		if !ok || !slices.Contains(hello.SupportedVersions, tls.VersionTLS13) {
			return nil, nil // TLS 1.2 stays with crypto/tls: no key log to keep
		}
		c := base.Clone()
		c.KeyLogWriter = &sock.keys
		return c, nil
	}
	return g
}

// Start runs the TLS handshake on nc, whose first bytes (prefix) a
// sniffer read already, with cfg (from ServerConfig), and returns the
// session: its own records where the session is TLS 1.3 and own is set,
// else crypto/tls's. Writes go straight to nc until SealWrites (after the
// WebSocket upgrade, if any). A client that sends more than 16 KiB of
// handshake fails it.
func Start(nc net.Conn, prefix []byte, cfg *tls.Config, own bool) (Session, error) {
	sock := &socket{Conn: nc, prefix: bytes.Clone(prefix), direct: true, handshaking: true}
	tc := tls.Server(sock, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	if own {
		if r, ok := takeOver(tc, &sock.keys, sock.flight, nc); ok {
			return r, nil
		}
	}
	sock.handshaking, sock.flight = false, nil
	return &cryptoSession{Conn: tc, sock: sock}, nil
}

func (t *cryptoSession) SealWrites() {
	t.sock.mu.Lock()
	t.sock.direct = false
	t.sock.mu.Unlock()
	t.sock.Conn.SetWriteDeadline(time.Time{})
}

// Read gives the byte Readable peeked at first.
func (t *cryptoSession) Read(p []byte) (int, error) {
	if t.peeked && len(p) > 0 {
		p[0], t.peeked = t.peek[0], false
		return 1, nil
	}
	return t.Conn.Read(p)
}

// Readable reports whether input waits inside the TLS session (decrypted, or
// whole records read ahead), or the session failed. It never waits: the read
// runs under a deadline already past, which the session survives (a timeout
// is not fatal to a tls.Conn).
func (t *cryptoSession) Readable() bool {
	if t.peeked {
		return true
	}
	t.sock.Conn.SetReadDeadline(time.Unix(1, 0))
	n, err := t.Conn.Read(t.peek[:])
	t.sock.Conn.SetReadDeadline(time.Time{})
	t.peeked = n == 1
	return t.peeked || err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// Seal encrypts a batch of frames as one write, so that small frames share
// records.
func (t *cryptoSession) Seal(batch [][]byte, closing bool) (net.Buffers, error) {
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

func (t *cryptoSession) Pending() bool {
	t.sock.mu.Lock()
	defer t.sock.mu.Unlock()
	return len(t.sock.sealed) > 0
}
