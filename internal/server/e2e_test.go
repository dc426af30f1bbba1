package server_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

var transports = []client.Transport{client.TCP, client.WebSocket, client.WebSocketJSON}

// eachTransport runs body once per transport, each against its own server.
func eachTransport(t *testing.T, body func(t *testing.T, ts *testserver.TS, tr client.Transport),
	edit ...func(*config.Config)) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			body(t, testserver.Start(t, edit...), tr)
		})
	}
}

// device is an SDK client that collects what it receives.
type device struct {
	*client.Client
	pushes chan client.Push
}

// connect dials ts as a device with token; edit changes the client config.
func connect(t *testing.T, ts *testserver.TS, tr client.Transport, token string, edit ...func(*client.Config)) *device {
	t.Helper()
	cfg := client.Config{Addr: ts.Addr(tr), Transport: tr, Token: token}
	for _, e := range edit {
		e(&cfg)
	}
	return dialDevice(t, cfg)
}

// dialDevice connects a device with cfg (its pushes recorded, unless cfg
// takes them) until the test ends.
func dialDevice(t testing.TB, cfg client.Config) *device {
	t.Helper()
	d := &device{pushes: make(chan client.Push, 64)}
	if cfg.OnPush == nil {
		cfg.OnPush = func(p client.Push) { d.pushes <- p }
	}
	c, err := client.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("dial %s %s: %v", cfg.Transport, cfg.Addr, err)
	}
	d.Client = c
	t.Cleanup(func() { c.Close() })
	return d
}

// expect waits for the next push, which must carry data.
func (d *device) expect(t *testing.T, data string) client.Push {
	t.Helper()
	p := d.next(t)
	if string(p.Data) != data {
		t.Fatalf("got push %q, want %q", p.Data, data)
	}
	return p
}

// next waits for the next push, at most 5s.
func (d *device) next(t *testing.T) client.Push {
	t.Helper()
	select {
	case p := <-d.pushes:
		return p
	case <-time.After(5 * time.Second):
		t.Fatalf("no push within 5s")
	}
	return client.Push{}
}

// expectEnded waits for the client to stop for good with code.
func (d *device) expectEnded(t *testing.T, code protocol.Code) {
	t.Helper()
	select {
	case <-d.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("the client still runs; want it ended with %d", code)
	}
	if upCode(d.Err()) != code {
		t.Fatalf("the client ended with %v, want %d", d.Err(), code)
	}
}

// expectNone checks that nothing arrived: call it after a later push to
// someone else has been received, so that an unwanted push would be here.
func (d *device) expectNone(t *testing.T) {
	t.Helper()
	select {
	case p := <-d.pushes:
		t.Fatalf("unexpected push %q", p.Data)
	default:
	}
}

func TestLoginAndPushToDevice(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		d1 := connect(t, ts, tr, ts.Token("d1", ""))
		w := d1.Welcome()
		if w.Device != "d1" || len(w.Apps) != 1 || w.Apps[0] != "demo" || w.Heartbeat != 30*time.Second {
			t.Fatalf("welcome %+v", w)
		}
		out := ts.Push(map[string]any{"devices": []string{"d1", "ghost"}, "data": "hello"})
		if out["online"] != 1.0 || out["offline"] != 0.0 {
			t.Fatalf("push answer %v", out)
		}
		p := d1.expect(t, "hello")
		if p.ID != out["id"] || p.App != "demo" || p.Seq != 0 {
			t.Fatalf("push %+v, answer %v", p, out)
		}
		binary := []byte{0, 0xff, 0xfe, 'x'}
		ts.Push(map[string]any{"devices": []string{"d1"}, "data_base64": base64.StdEncoding.EncodeToString(binary)})
		d1.expect(t, string(binary))
	})
}

func TestPushToUserWithTwoDevices(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		phone := connect(t, ts, tr, ts.Token("phone", "alice"))
		laptop := connect(t, ts, tr, ts.Token("laptop", "alice"))
		bob := connect(t, ts, tr, ts.Token("bobphone", "bob"))
		out := ts.Push(map[string]any{"users": []string{"alice"}, "data": "for alice"})
		if out["online"] != 2.0 {
			t.Fatalf("push answer %v", out)
		}
		phone.expect(t, "for alice")
		laptop.expect(t, "for alice")
		ts.Push(map[string]any{"users": []string{"bob"}, "data": "for bob"})
		bob.expect(t, "for bob")
		phone.expectNone(t)
		laptop.expectNone(t)
	})
}

func TestBroadcast(t *testing.T) {
	const n = 200
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		devices := make([]*device, n)
		for i := range devices {
			devices[i] = connect(t, ts, tr, ts.Token(fmt.Sprintf("d%d", i), ""))
		}
		outsider := connect(t, ts, tr, testserver.MintToken(t, testserver.Other, "outsider", ""))
		out := ts.Push(map[string]any{"broadcast": true, "data": "to all"})
		if out["online"] != float64(n) {
			t.Fatalf("broadcast answer %v", out)
		}
		for _, d := range devices {
			d.expect(t, "to all")
		}
		status, _ := ts.Call(http.MethodPost, "/v1/push", testserver.Other.APIKey,
			map[string]any{"app": "other", "devices": []string{"outsider"}, "data": "own app"})
		if status != http.StatusOK {
			t.Fatalf("push to other app: %d", status)
		}
		outsider.expect(t, "own app") // the demo broadcast did not reach it
	})
}

func TestPresence(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		d1 := connect(t, ts, tr, ts.Token("d1", ""))
		presence := func() map[string]any {
			status, out := ts.Call(http.MethodGet, "/v1/presence?app=demo&device=d1&device=d2", testserver.Demo.APIKey, nil)
			if status != http.StatusOK {
				t.Fatalf("presence: %d %v", status, out)
			}
			return out["devices"].(map[string]any)
		}
		got := presence()
		if got["d1"].(map[string]any)["online"] != true || got["d2"].(map[string]any)["online"] != false {
			t.Fatalf("presence %v", got)
		}
		d1.Close()
		testwait.Eventually(t, "d1 offline", func() bool {
			return presence()["d1"].(map[string]any)["online"] == false
		})
	})
}

func TestReplacement(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		older := connect(t, ts, tr, ts.Token("d1", ""))
		newer := connect(t, ts, tr, ts.Token("d1", ""))
		older.expectEnded(t, protocol.CodeReplaced)
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "to the newer"})
		newer.expect(t, "to the newer")
		older.expectNone(t)
	})
}

func TestHeartbeatTimeout(t *testing.T) {
	testengine.Long(t, "waits out 3 heartbeats")
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		// A client that keeps its 1s heartbeat stays; a silent one is closed
		// after 3 heartbeats with 4007.
		connect(t, ts, tr, ts.Token("alive", ""), func(c *client.Config) { c.Heartbeat = time.Second })

		silent := rawLogin(t, ts, tr, ts.Token("silent", ""), 1, 0)
		expectHeartbeatTimeout(t, silent, time.Now())
		status, out := ts.Call(http.MethodGet, "/v1/presence?app=demo&device=alive", testserver.Demo.APIKey, nil)
		if status != 200 || out["devices"].(map[string]any)["alive"].(map[string]any)["online"] != true {
			t.Fatalf("pinging client dropped: %v", out)
		}
	}, func(c *config.Config) { c.Gateway.HeartbeatMin = time.Second })
}

// TestStalledFrame: on a logged-in connection, a frame that stops half way
// is closed with 4007 after 3 heartbeats, while a connection that keeps
// pinging outlives the login deadline.
func TestStalledFrame(t *testing.T) {
	testengine.Long(t, "waits out 3 heartbeats")
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		alive := rawLogin(t, ts, tr, ts.Token("alive", ""), 1, 0)
		stalled := rawLogin(t, ts, tr, ts.Token("stalled", ""), 1, 0)
		half := []byte{0, 0} // half a length prefix
		if tr != client.TCP {
			half = []byte{0x82} // half a WebSocket frame header
		}
		stalled.NetConn().SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := stalled.NetConn().Write(half); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for range 3 { // 1.5s: well past the 300ms login deadline
			time.Sleep(500 * time.Millisecond)
			if err := alive.WriteFrame(&protocol.Frame{Op: protocol.OpPing, Ref: []byte("p")}, time.Second); err != nil {
				t.Fatal(err)
			}
			readUntil(t, alive, protocol.OpPong)
		}
		expectHeartbeatTimeout(t, stalled, start)
	}, func(c *config.Config) {
		c.Gateway.HeartbeatMin = time.Second
		c.Gateway.LoginTimeout = 300 * time.Millisecond
	})
}

// expectHeartbeatTimeout checks that c, with a 1s heartbeat and silent
// since start, is closed with 4007, and not before 3 heartbeats.
func expectHeartbeatTimeout(t *testing.T, c *rawConn, start time.Time) {
	t.Helper()
	f := readUntilError(t, c)
	if f.Code != protocol.CodeHeartbeatTimeout {
		t.Fatalf("silent connection got code %d (%s), want 4007", f.Code, f.Reason)
	}
	if waited := time.Since(start); waited < 2500*time.Millisecond {
		t.Fatalf("closed after %v, before 3 heartbeats", waited)
	}
	expectClosed(t, c)
}

func TestHeartbeatClamped(t *testing.T) {
	ts := testserver.Start(t)
	for proposed, want := range map[uint32]uint32{1: 5, 60: 60, 100000: 300} {
		conn := rawLogin(t, ts, client.TCP, ts.Token(fmt.Sprintf("d%d", proposed), ""), proposed, 0)
		if got := conn.welcome.Heartbeat; got != want {
			t.Errorf("proposed %d: granted %d, want %d", proposed, got, want)
		}
	}
}

func TestDispatch(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		d := connect(t, ts, tr, ts.Token("d1", ""), func(c *client.Config) { c.Addr, c.DispatchURL = "", ts.APIURL() })
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "via dispatch"})
		d.expect(t, "via dispatch")
	})
	ts := testserver.Start(t)
	status, out := ts.Call(http.MethodGet, "/v1/dispatch?app=demo&device=d1", "", nil)
	eps, _ := out["endpoints"].([]any)
	if status != 200 || len(eps) != 2 || out["heartbeat"] != 30.0 ||
		!strings.HasSuffix(eps[1].(map[string]any)["url"].(string), "/ws") {
		t.Fatalf("dispatch: %d %v", status, out)
	}
	if status, _ := ts.Call(http.MethodGet, "/v1/dispatch?app=nope&device=d1", "", nil); status != 404 {
		t.Errorf("unknown app: %d, want 404", status)
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	eachTransport(t, func(t *testing.T, first *testserver.TS, tr client.Transport) {
		connects := make(chan client.Welcome, 4)
		d := connect(t, first, tr, first.Token("d1", ""), func(c *client.Config) {
			c.MinBackoff, c.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
			c.OnConnect = func(w client.Welcome) { connects <- w }
		})
		<-connects
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := first.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		second := testserver.Start(t, func(c *config.Config) { c.Gateway.Listen = first.GatewayAddr() })
		select {
		case <-connects:
		case <-time.After(5 * time.Second):
			t.Fatal("client did not reconnect to the restarted server")
		}
		second.Push(map[string]any{"devices": []string{"d1"}, "data": "after restart"})
		d.expect(t, "after restart")
	})
}

func TestMetrics(t *testing.T) {
	ts := testserver.Start(t)
	connect(t, ts, client.TCP, ts.Token("d1", ""))
	connect(t, ts, client.WebSocket, ts.Token("d2", ""))
	d1 := connect(t, ts, client.WebSocketJSON, ts.Token("d1", "")) // replaces the TCP one
	ts.Push(map[string]any{"devices": []string{"d1", "d2"}, "data": "m"})
	d1.expect(t, "m")
	ts.Push(map[string]any{"broadcast": true, "data": "b"})
	d1.expect(t, "b")
	testwait.Eventually(t, "the replaced connection to be counted", func() bool {
		return strings.Contains(ts.Metrics(), `longlink_disconnects_total{reason="replaced"} 1`)
	})
	page := ts.Metrics()
	for _, want := range []string{
		`longlink_connections{app="demo",transport="ws"} 1`,
		`longlink_connections{app="demo",transport="ws_json"} 1`,
		`longlink_connections{app="demo",transport="tcp"} 0`,
		`longlink_connects_total{transport="tcp"} 1`,
		`longlink_connects_total{transport="ws"} 1`,
		`longlink_connects_total{transport="ws_json"} 1`,
		`longlink_messages_pushed_total{app="demo",target="devices"} 1`,
		`longlink_messages_pushed_total{app="demo",target="broadcast"} 1`,
		`longlink_messages_delivered_total{app="demo"} 4`,
		`go_goroutines`,
		`go_sched_pauses_stopping_gc_seconds_count`,
		`go_sched_pauses_total_gc_seconds_count`,
		`longlink_build_info{goversion="go`,
		`longlink_send_queue_bytes`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestWebSocketPingsKeepAlive: WebSocket ping control frames count as
// input for the heartbeat, and are answered with pongs.
func TestWebSocketPingsKeepAlive(t *testing.T) {
	testengine.Long(t, "waits out 3 heartbeats")
	ts := testserver.Start(t, func(c *config.Config) { c.Gateway.HeartbeatMin = time.Second })
	c := rawLogin(t, ts, client.WebSocket, ts.Token("pinger", ""), 1, 0)
	for i := 0; i < 8; i++ { // 4s: past 3 heartbeats of 1s
		c.NetConn().SetWriteDeadline(time.Now().Add(time.Second))
		if err := wsutil.WriteClientMessage(c.NetConn(), ws.OpPing, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !online(t, ts, "pinger") {
		t.Fatal("a connection sending WebSocket pings was closed")
	}
	ts.Push(map[string]any{"devices": []string{"pinger"}, "data": "still here"})
	if f := readUntil(t, c, protocol.OpPush); string(f.Data) != "still here" {
		t.Fatalf("got %+v", f)
	}
}

// TestRapidRelogin: a device logging in again right after each welcome
// always ends with its newest connection live and every older one told 4003.
func TestRapidRelogin(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		const n = 30
		conns := make([]*rawConn, n)
		for i := range conns {
			conns[i] = rawLogin(t, ts, tr, ts.Token("d1", ""), 0, 0)
		}
		for i, c := range conns[:n-1] {
			if f := readUntilError(t, c); f.Code != protocol.CodeReplaced {
				t.Fatalf("connection %d ended with %d %s, want 4003", i, f.Code, f.Reason)
			}
		}
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "to the newest"})
		if f := readUntil(t, conns[n-1], protocol.OpPush); string(f.Data) != "to the newest" {
			t.Fatalf("newest got %+v", f)
		}
	})
}
