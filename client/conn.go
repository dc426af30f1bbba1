package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/longlink/longlink/protocol"
)

// Transport is how the client talks to a gateway.
type Transport string

// The transports. WebSocket uses binary frames (subprotocol longlink.v1);
// WebSocketJSON uses JSON text messages (longlink.json).
const (
	TCP           Transport = "tcp"
	WebSocket     Transport = "ws"
	WebSocketJSON Transport = "ws-json"
)

// readBufferSize is the client's read buffer: a server under load sends many
// frames in one write, and they are read in one call.
const readBufferSize = 4096

// controlWriteTimeout bounds the answer to a WebSocket control frame.
const controlWriteTimeout = 10 * time.Second

// maxFrame bounds what the client accepts from a server.
const maxFrame = protocol.MaxFrameLimit

// Conn is one bare protocol connection to a gateway: frames in and out, and
// nothing else (no login, heartbeat or reconnect). Client is built on it;
// tools and protocol tests use it directly. Reads must happen on one
// goroutine at a time; writes are safe for concurrent use.
type Conn struct {
	transport Transport
	nc        net.Conn
	rd        io.Reader // buffered data from the handshake, then nc

	wmu  sync.Mutex
	wbuf []byte // guarded by wmu
}

// DialConn opens a Conn: addr is host:port for TCP, a ws:// or wss:// URL
// otherwise. d opens the TCP connection under either (nil: a zero
// net.Dialer); give one to choose the local address, for instance. With
// tlsConf, TCP runs TLS (the native protocol over TLS); wss:// uses it (nil
// there: the system's roots).
func DialConn(ctx context.Context, t Transport, addr string, d *net.Dialer, tlsConf *tls.Config) (*Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	switch t {
	case TCP:
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if tlsConf != nil {
			if nc, err = startTLS(ctx, nc, addr, tlsConf); err != nil {
				return nil, err
			}
		}
		return &Conn{transport: t, nc: nc, rd: bufio.NewReaderSize(nc, readBufferSize)}, nil
	case WebSocket, WebSocketJSON:
		proto := "longlink.v1"
		if t == WebSocketJSON {
			proto = "longlink.json"
		}
		wd := ws.Dialer{Protocols: []string{proto}, NetDial: d.DialContext, TLSConfig: tlsConf}
		nc, br, hs, err := wd.Dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		if hs.Protocol != proto {
			nc.Close()
			return nil, fmt.Errorf("server chose subprotocol %q, not %q", hs.Protocol, proto)
		}
		cn := &Conn{transport: t, nc: nc, rd: bufio.NewReaderSize(nc, readBufferSize)}
		if br != nil { // what the handshake read past the response
			cn.rd = bufio.NewReaderSize(io.MultiReader(io.LimitReader(br, int64(br.Buffered())), nc), readBufferSize)
		}
		return cn, nil
	}
	return nil, fmt.Errorf("unknown transport %q", t)
}

// startTLS runs a TLS handshake on nc, checking the certificate against
// addr's host unless conf names another.
func startTLS(ctx context.Context, nc net.Conn, addr string, conf *tls.Config) (net.Conn, error) {
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			nc.Close()
			return nil, err
		}
		conf = conf.Clone()
		conf.ServerName = host
	}
	tc := tls.Client(nc, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls: %w", err)
	}
	return tc, nil
}

// WriteFrame sends f, giving up after timeout.
func (cn *Conn) WriteFrame(f *protocol.Frame, timeout time.Duration) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	cn.nc.SetWriteDeadline(time.Now().Add(timeout))
	switch cn.transport {
	case TCP:
		cn.wbuf = protocol.AppendBinary(cn.wbuf[:0], f)
		_, err := cn.nc.Write(cn.wbuf)
		return err
	case WebSocket:
		cn.wbuf = protocol.AppendBinary(cn.wbuf[:0], f)
		return wsutil.WriteClientMessage(cn.nc, ws.OpBinary, cn.wbuf)
	default:
		cn.wbuf = protocol.AppendJSON(cn.wbuf[:0], f)
		return wsutil.WriteClientMessage(cn.nc, ws.OpText, cn.wbuf)
	}
}

// ReadFrame reads the next frame into f; f's slices point into fresh memory
// the caller may keep.
func (cn *Conn) ReadFrame(f *protocol.Frame) error {
	if cn.transport == TCP {
		var prefix [protocol.LengthSize]byte
		if _, err := io.ReadFull(cn.rd, prefix[:]); err != nil {
			return err
		}
		n, err := protocol.BodyLength(prefix, maxFrame)
		if err != nil {
			return err
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(cn.rd, body); err != nil {
			return err
		}
		return protocol.DecodeBinary(body, f)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{cn.rd, lockedWriter{cn}}
	msg, _, err := wsutil.ReadServerData(rw)
	if err != nil {
		return err
	}
	if cn.transport == WebSocketJSON {
		return protocol.DecodeJSON(msg, f)
	}
	if len(msg) < protocol.LengthSize || int(binary.BigEndian.Uint32(msg)) != len(msg)-protocol.LengthSize {
		return protocol.Errorf(protocol.CodeBadFrame, "length prefix does not match the message")
	}
	return protocol.DecodeBinary(msg[protocol.LengthSize:], f)
}

// NetConn returns the underlying connection (for deadlines, or raw bytes).
func (cn *Conn) NetConn() net.Conn { return cn.nc }

// Close closes the connection.
func (cn *Conn) Close() error { return cn.nc.Close() }

// lockedWriter lets the WebSocket reader answer control frames without
// interleaving with other writes.
type lockedWriter struct{ cn *Conn }

func (l lockedWriter) Write(p []byte) (int, error) {
	l.cn.wmu.Lock()
	defer l.cn.wmu.Unlock()
	l.cn.nc.SetWriteDeadline(time.Now().Add(controlWriteTimeout))
	return l.cn.nc.Write(p)
}
