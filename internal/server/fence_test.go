package server_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// A node cut off from Redis fences itself: once it has not renewed its
// lease for half a lease, its devices are told to go to the other nodes
// (redirect, then 4009) and new logins are refused (4013), where before it
// kept them and they received nothing; once it reaches Redis again it
// takes logins again.
func TestClusterNodeFencesItself(t *testing.T) {
	r, nats := testengine.Redis(t), testengine.NATS(t)
	link := newLink(t, r.Addr)
	n2 := testserver.StartClusterOn(t, r, nats, 1, func(c *config.Config) { c.Node = "n2" })[0]
	n1 := testserver.StartClusterOn(t, r, nats, 1, func(c *config.Config) { c.Cluster.Redis = "redis://" + link.addr + "/0" })[0]
	testwait.Eventually(t, "n1 to know n2", func() bool {
		_, out := n1.Call("GET", "/v1/dispatch?app=demo&device=x", "", nil)
		for _, e := range out["endpoints"].([]any) {
			if e.(map[string]any)["address"] == n2.GatewayAddr() {
				return true
			}
		}
		return false
	})
	d := rawLogin(t, n1, client.TCP, n1.Token("d1", ""), 0, 0)
	login := func(device string) *rawConn { // without waiting for a welcome
		c := rawDial(t, n1, client.TCP)
		if err := c.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(n1.Token(device, ""))}, time.Second); err != nil {
			t.Fatal(err)
		}
		return c
	}

	n1.Push(stored([]string{"d1"}, "before")) // and so the login's replay is over
	readUntil(t, d, protocol.OpPush)

	link.cut()
	if f := readUntil(t, d, protocol.OpRedirect); len(f.Endpoints) == 0 || f.Endpoints[0].Address != n2.GatewayAddr() {
		t.Fatalf("the fenced node sent its device to %+v, want n2 (%s)", f.Endpoints, n2.GatewayAddr())
	}
	if f := readUntilError(t, d); f.Code != protocol.CodeGoingAway {
		t.Fatalf("then %d %q, want 4009", f.Code, f.Reason)
	}
	if f := readUntilError(t, login("d2")); f.Code != protocol.CodeDraining {
		t.Fatalf("a login on the fenced node: %d %q, want 4013", f.Code, f.Reason)
	}

	link.heal()
	var back *rawConn
	testwait.Eventually(t, "n1 to take logins again", func() bool {
		c := login("d3")
		c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
		var f protocol.Frame
		if c.ReadFrame(&f) == nil && f.Op == protocol.OpWelcome {
			back = c
			return true
		}
		c.Close()
		return false
	})
	n1.Push(stored([]string{"d3"}, "served again")) // not sent away: the fence is over
	if f := readUntil(t, back, protocol.OpPush); string(f.Data) != "served again" {
		t.Fatalf("after the fence: %q", f.Data)
	}
}

// link is a TCP link to target that a test can cut (every connection
// closed, new ones refused) and heal: a network partition of one node.
type link struct {
	addr string
	mu   sync.Mutex
	down bool
	open map[net.Conn]bool
}

func newLink(t *testing.T, target string) *link {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	l := &link{addr: ln.Addr().String(), open: map[net.Conn]bool{}}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if !l.track(in, out, err) {
				continue
			}
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return l
}

// track keeps a connection pair, unless the link is down (or the dial
// failed): then it closes them and reports false.
func (l *link) track(in, out net.Conn, err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down || err != nil {
		in.Close()
		if out != nil {
			out.Close()
		}
		return false
	}
	l.open[in], l.open[out] = true, true
	return true
}

func (l *link) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = true
	for c := range l.open {
		c.Close()
	}
	clear(l.open)
}

func (l *link) heal() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = false
}
