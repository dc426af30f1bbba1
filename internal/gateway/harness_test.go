package gateway_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/internal/hooks"
	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/store/memstore"
	"github.com/longlink/longlink/protocol"
)

// The app of the gateway tests, and its token secret.
const (
	app    = "bench"
	secret = "bench-secret-0123456789"
)

// pipeListener hands in-process connections (net.Pipe) to a gateway.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// dial opens an in-process connection to the gateway.
func (l *pipeListener) dial() net.Conn {
	server, client := net.Pipe()
	l.conns <- server
	return client
}

// harness is a gateway serving in-process connections, its state in a
// store in memory: the gateway's behaviour without sockets, engines or a
// server around it.
type harness struct {
	t  testing.TB
	g  *gateway.Gateway
	ln *pipeListener
	st store.Store
	m  *metrics.Metrics
	// patience is how long a device waits for a frame (5 s; a test in a
	// synctest bubble, where waiting costs nothing, may wait hours).
	patience time.Duration
}

// newHarness starts a gateway with the default config, edited by edits,
// until the test ends.
func newHarness(t testing.TB, edits ...func(*gateway.Options)) *harness {
	cfg := config.Default()
	m := metrics.New()
	st := memstore.New(store.Options{Metrics: m})
	apps := config.NewLiveApps([]config.App{{ID: app, Secret: secret, APIKey: "bench-key-0123456789"}})
	hookOpts := hooks.Options{Config: cfg.Hooks, Apps: apps, Node: "n1", MaxReplySize: 1024, Metrics: m}
	upstream, status := hooks.NewUpstream(hookOpts), hooks.NewStatus(hookOpts)
	t.Cleanup(func() { upstream.Close(); status.Close() })
	o := gateway.Options{Config: cfg.Gateway, Limits: cfg.Limits, Secrets: apps.Secret, Mailboxes: st,
		Upstream: upstream, Events: status, UpRate: cfg.Hooks.UpstreamRate, UpBurst: cfg.Hooks.UpstreamBurst, Metrics: m}
	for _, edit := range edits {
		edit(&o)
	}
	h := &harness{t: t, g: gateway.New(o), ln: newPipeListener(), st: st, m: m, patience: 5 * time.Second}
	go h.g.Serve(h.ln)
	t.Cleanup(func() { h.g.Shutdown(context.Background()) })
	return h
}

// token mints device's token in the app, valid for ttl.
func (h *harness) token(device string, ttl time.Duration) string {
	tok, err := auth.Mint(app, secret, device, "", ttl)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// device is one in-process device speaking the native protocol.
type device struct {
	t        testing.TB
	nc       net.Conn
	patience time.Duration
}

// connect opens a connection and sends login, without waiting.
func (h *harness) connect(login *protocol.Frame) *device {
	d := &device{t: h.t, nc: h.ln.dial(), patience: h.patience}
	h.t.Cleanup(func() { d.nc.Close() })
	d.send(login)
	return d
}

// login logs device in (its token good for an hour) and waits for the
// welcome.
func (h *harness) login(dev string) *device {
	d := h.connect(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(h.token(dev, time.Hour))})
	d.expect(protocol.OpWelcome)
	return d
}

func (d *device) send(f *protocol.Frame) {
	d.t.Helper()
	d.nc.SetWriteDeadline(time.Now().Add(d.patience))
	if _, err := d.nc.Write(protocol.AppendBinary(nil, f)); err != nil {
		d.t.Fatal(err)
	}
}

// read returns the next frame, or an error when the connection ends (or
// says nothing for the harness's patience).
func (d *device) read() (protocol.Frame, error) {
	d.nc.SetReadDeadline(time.Now().Add(d.patience))
	var hdr [protocol.LengthSize]byte
	if _, err := io.ReadFull(d.nc, hdr[:]); err != nil {
		return protocol.Frame{}, err
	}
	buf := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(d.nc, buf); err != nil {
		return protocol.Frame{}, err
	}
	var f protocol.Frame
	return f, protocol.DecodeBinary(buf, &f)
}

// expect reads the next frame and fails unless it is op.
func (d *device) expect(op protocol.Op) protocol.Frame {
	d.t.Helper()
	f, err := d.read()
	if err != nil || f.Op != op {
		d.t.Fatalf("got %v (%s %q), want %v", f.Op, f.Reason, err, op)
	}
	return f
}

// closedWith reads until the connection ends and fails unless the last
// frame before was an error with code.
func (d *device) closedWith(code protocol.Code) {
	d.t.Helper()
	var last protocol.Frame
	for {
		f, err := d.read()
		if err != nil {
			if last.Op != protocol.OpError || last.Code != code {
				d.t.Fatalf("closed (%v) after %v %d %q, want error %d", err, last.Op, last.Code, last.Reason, code)
			}
			return
		}
		last = f
	}
}
