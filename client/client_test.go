package client_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
)

// TestCloseWhileReconnecting: Close returns promptly while the client waits
// to reconnect to a server that is gone, and nothing runs after it.
func TestCloseWhileReconnecting(t *testing.T) {
	ts := testserver.Start(t)
	disconnected := make(chan error, 1)
	c, err := client.Dial(context.Background(), client.Config{Addr: ts.GatewayAddr(), Token: ts.Token("d1", ""),
		MinBackoff: time.Hour, MaxBackoff: time.Hour,
		OnDisconnect: func(err error) { disconnected <- err }})
	if err != nil {
		t.Fatal(err)
	}
	ts.Shutdown(context.Background())
	<-disconnected
	start := time.Now()
	c.Close()
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("Close took %v", waited)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if c.Err() != nil {
		t.Fatalf("Err after Close: %v", c.Err())
	}
}

func TestDialErrors(t *testing.T) {
	if _, err := client.Dial(context.Background(), client.Config{Addr: "127.0.0.1:1"}); err == nil {
		t.Fatal("dial without a token succeeded")
	}
	ts := testserver.Start(t)
	if _, err := client.Dial(context.Background(), client.Config{Addr: ts.GatewayAddr(), Token: "x.y.z"}); err == nil {
		t.Fatal("dial with a bad token succeeded")
	}
	if _, err := client.Dial(context.Background(), client.Config{DispatchURL: ts.APIURL(), Token: "not-a-jwt"}); err == nil {
		t.Fatal("dispatch with an unreadable token succeeded")
	}
}

// TestDialer: the connection is opened by Config.Dialer (and DialConn's
// dialer) over every transport, so a source address chosen there is used.
func TestDialer(t *testing.T) {
	ts := testserver.Start(t)
	for _, tr := range []client.Transport{client.TCP, client.WebSocket, client.WebSocketJSON} {
		t.Run(string(tr), func(t *testing.T) {
			source := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
			cn, err := client.DialConn(context.Background(), tr, ts.Addr(tr), &net.Dialer{LocalAddr: source}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cn.Close()
			if got := cn.NetConn().LocalAddr().(*net.TCPAddr).IP; !got.Equal(source.IP) {
				t.Fatalf("DialConn's connection is from %v, want %v", got, source.IP)
			}

			var dials atomic.Int32
			d := &net.Dialer{LocalAddr: source, Control: func(string, string, syscall.RawConn) error {
				dials.Add(1)
				return nil
			}}
			c, err := client.Dial(context.Background(), client.Config{Addr: ts.Addr(tr), Transport: tr,
				Token: ts.Token("d-"+string(tr), ""), Dialer: d})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if dials.Load() != 1 {
				t.Fatalf("Config.Dialer used %d times for one login, want 1", dials.Load())
			}
		})
	}
}

// Several dispatch URLs are asked in turn: one of a dead node first keeps
// no device offline; when every one fails, the error says why for each.
func TestDispatchURLs(t *testing.T) {
	ts := testserver.Start(t)
	dead := "http://127.0.0.1:" + strconv.Itoa(testengine.FreePort(t))
	c, err := client.Dial(context.Background(), client.Config{DispatchURL: dead, DispatchURLs: []string{ts.APIURL()},
		Token: ts.Token("d1", "")})
	if err != nil {
		t.Fatalf("a dead dispatch URL, then a live one: %v", err)
	}
	c.Close()
	deadToo := "http://127.0.0.1:" + strconv.Itoa(testengine.FreePort(t))
	_, err = client.Dial(context.Background(), client.Config{DispatchURLs: []string{dead, deadToo}, Token: ts.Token("d1", "")})
	if err == nil || !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), deadToo) {
		t.Fatalf("every dispatch URL dead: %v", err)
	}
}
