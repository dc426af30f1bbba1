package server_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/hooks"
	"github.com/longlink/longlink/internal/server"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// backend is an app backend on a real HTTP server: it answers upstream calls
// ("echo: <data>", after delay), and records status events unless down.
type backend struct {
	*httptest.Server
	delay  atomic.Int64 // of upstream answers, in ns
	down   atomic.Bool  // status calls answer 503
	secret atomic.Value // string: the webhook secret calls are checked with
	forged atomic.Int64 // calls whose signature did not check out (answered 401)

	mu     sync.Mutex
	ups    []map[string]any
	events []hooks.Event
	tries  map[string]int // event id -> the status calls that carried it, failed ones too
}

func newBackend(t *testing.T) *backend {
	b := &backend{tries: map[string]int{}}
	b.secret.Store(testserver.Demo.Secret)
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		if !verifyWebhook(b.secret.Load().(string), r.Header, raw) {
			b.forged.Add(1)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/up":
			time.Sleep(time.Duration(b.delay.Load()))
			var call map[string]any
			json.Unmarshal(raw, &call)
			b.mu.Lock()
			b.ups = append(b.ups, call)
			b.mu.Unlock()
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, "echo: %v", call["data"])
		case "/status":
			var batch struct{ Events []hooks.Event }
			json.Unmarshal(raw, &batch)
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, e := range batch.Events {
				b.tries[e.ID]++
			}
			if b.down.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			b.events = append(b.events, batch.Events...)
		}
	}))
	t.Cleanup(b.Close)
	return b
}

// verifyWebhook checks a call as docs/security.md tells a backend to: the
// HMAC of "timestamp.body" with the webhook secret, and a timestamp within
// 5 minutes.
func verifyWebhook(secret string, h http.Header, body []byte) bool {
	ts := h.Get("X-Longlink-Timestamp")
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	sec, err := strconv.ParseInt(ts, 10, 64)
	return err == nil && time.Since(time.Unix(sec, 0)).Abs() < 5*time.Minute &&
		hmac.Equal([]byte(h.Get("X-Longlink-Signature")), []byte("v1="+hex.EncodeToString(mac.Sum(nil))))
}

// sessionsOf returns the events recorded for device as "type:reason" and
// their session numbers, in the order they came.
func (b *backend) sessionsOf(device string) (events []string, sessions []uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.events {
		if e.Device == device {
			events, sessions = append(events, e.Type+":"+e.Reason), append(sessions, e.Session)
		}
	}
	return events, sessions
}

// eventsOf returns "type:reason" of the events recorded for device.
func (b *backend) eventsOf(device string) []string {
	events, _ := b.sessionsOf(device)
	return events
}

// withWebhooks points the demo app's webhooks at b: biz "chat" upstream,
// and status events.
func withWebhooks(b *backend) func(*config.Config) {
	return func(c *config.Config) {
		c.Apps[0].Webhooks = config.Webhooks{Upstream: map[string]string{"chat": b.URL + "/up"}, Status: b.URL + "/status"}
		c.Hooks.StatusLinger = 10 * time.Millisecond
	}
}

// eachTransportBackend is eachTransport with a backend of its own per
// transport, which the demo app's webhooks point at.
func eachTransportBackend(t *testing.T, body func(t *testing.T, ts *testserver.TS, tr client.Transport, b *backend),
	edit ...func(*config.Config)) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			b := newBackend(t)
			body(t, testserver.Start(t, append([]func(*config.Config){withWebhooks(b)}, edit...)...), tr, b)
		})
	}
}

func upCode(err error) protocol.Code {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return 0
}

func TestUpstreamRoundTrip(t *testing.T) {
	eachTransportBackend(t, func(t *testing.T, ts *testserver.TS, tr client.Transport, b *backend) {
		d := connect(t, ts, tr, ts.Token("d1", "alice"))
		status, body, err := d.Up(context.Background(), "demo", "chat", []byte("hi there"))
		if err != nil || status != http.StatusCreated || string(body) != "echo: hi there" {
			t.Fatalf("up: %d %q %v", status, body, err)
		}
		b.mu.Lock()
		call := b.ups[len(b.ups)-1]
		b.mu.Unlock()
		if call["app"] != "demo" || call["device"] != "d1" || call["user"] != "alice" || call["biz"] != "chat" ||
			call["node"] != "n1" || call["at"] == nil || !strings.HasPrefix(fmt.Sprint(call["id"]), "n1-") {
			t.Fatalf("the backend got %v", call)
		}
		// The raw protocol: the reply carries the request's ref.
		c := rawLogin(t, ts, tr, ts.Token("raw", ""), 0, 0)
		c.WriteFrame(&protocol.Frame{Op: protocol.OpUp, Ref: []byte("r-77"), App: []byte("demo"), Biz: []byte("chat"), Data: []byte("x")}, time.Second)
		if f := readUntil(t, c, protocol.OpUpReply); string(f.Ref) != "r-77" || f.Status != 201 || string(f.Data) != "echo: x" {
			t.Fatalf("up_reply %+v", f)
		}
	})
}

func TestUpstreamUnknownBiz(t *testing.T) {
	eachTransportBackend(t, func(t *testing.T, ts *testserver.TS, tr client.Transport, b *backend) {
		d := connect(t, ts, tr, ts.Token("d1", ""))
		_, _, err := d.Up(context.Background(), "demo", "payments", []byte("x"))
		if upCode(err) != protocol.CodeBadFrame || !strings.Contains(err.Error(), "unknown biz") {
			t.Fatalf("unknown biz: %v", err)
		}
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "still connected"})
		d.expect(t, "still connected")
	})
}

func TestUpstreamBackendDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + ln.Addr().String() + "/up"
	ln.Close() // nothing listens there now
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		d := connect(t, ts, tr, ts.Token("d1", ""))
		other := connect(t, ts, tr, ts.Token("d2", ""))
		for i := 0; i < 3; i++ {
			_, _, err := d.Up(context.Background(), "demo", "chat", []byte("x"))
			if upCode(err) != protocol.CodeUpstreamUnavailable {
				t.Fatalf("backend down: %v, want 4010", err)
			}
			// The device learns that, not where the backend is.
			if msg := err.Error(); strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, "could not be reached") {
				t.Fatalf("4010 reason %q: want a short reason without the backend's address", msg)
			}
		}
		ts.Push(map[string]any{"devices": []string{"d1", "d2"}, "data": "gateway fine"})
		d.expect(t, "gateway fine")
		other.expect(t, "gateway fine")
	}, func(c *config.Config) { c.Apps[0].Webhooks.Upstream = map[string]string{"chat": deadURL} })
}

// A backend's redirect is never followed: the signed call does not go to
// another host, nor what it answers to the device. An upstream call gets
// 4010; a status batch is retried.
func TestWebhooksDoNotFollowRedirects(t *testing.T) {
	var followed, statusCalls atomic.Int32
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/up":
			http.Redirect(w, r, "/internal", http.StatusTemporaryRedirect)
		case "/status":
			statusCalls.Add(1)
			http.Redirect(w, r, "/internal", http.StatusSeeOther)
		default:
			followed.Add(1)
			io.WriteString(w, "internal secrets")
		}
	}))
	defer backend.Close()
	ts := testserver.Start(t, func(c *config.Config) {
		c.Apps[0].Webhooks = config.Webhooks{Upstream: map[string]string{"chat": backend.URL + "/up"}, Status: backend.URL + "/status"}
		c.Hooks.StatusLinger = 10 * time.Millisecond
	})
	d := connect(t, ts, client.TCP, ts.Token("d1", ""))
	if _, body, err := d.Up(context.Background(), "demo", "chat", []byte("x")); upCode(err) != protocol.CodeUpstreamUnavailable {
		t.Fatalf("up to a backend that redirects: %q %v, want 4010", body, err)
	}
	testwait.Eventually(t, "the status batch retried", func() bool { return statusCalls.Load() >= 2 })
	if n := followed.Load(); n != 0 {
		t.Fatalf("a redirect was followed %d times", n)
	}
	if metricValue(ts, `longlink_upstream_calls_total\{app="demo",result="redirect"\}`) != 1 {
		t.Error("the redirect was not counted")
	}
}

func TestUpstreamSlowBackendDoesNotStallPushes(t *testing.T) {
	testengine.Long(t, "waits on a slow backend")
	eachTransportBackend(t, func(t *testing.T, ts *testserver.TS, tr client.Transport, b *backend) {
		b.delay.Store(int64(3 * time.Second))
		d := connect(t, ts, tr, ts.Token("d1", ""))
		upErr := make(chan error, 1)
		go func() {
			_, _, err := d.Up(context.Background(), "demo", "chat", []byte("slow"))
			upErr <- err
		}()
		time.Sleep(50 * time.Millisecond) // let the call reach the backend
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "not held up"})
		d.expect(t, "not held up")
		select {
		case err := <-upErr:
			t.Fatalf("the up call finished before the push: %v", err)
		default:
		}
		if err := <-upErr; upCode(err) != protocol.CodeUpstreamUnavailable {
			t.Fatalf("slow backend: %v, want 4010 after the timeout", err)
		}
	}, func(c *config.Config) { c.Hooks.UpstreamTimeout = 500 * time.Millisecond })
}

func TestUpstreamRateLimit(t *testing.T) {
	b := newBackend(t)
	ts := testserver.Start(t, withWebhooks(b), func(c *config.Config) { c.Hooks.UpstreamRate, c.Hooks.UpstreamBurst = 0.1, 2 })
	d := connect(t, ts, client.TCP, ts.Token("d1", ""))
	for i := 0; i < 2; i++ {
		if _, _, err := d.Up(context.Background(), "demo", "chat", []byte("x")); err != nil {
			t.Fatalf("within the burst: %v", err)
		}
	}
	if _, _, err := d.Up(context.Background(), "demo", "chat", []byte("x")); upCode(err) != protocol.CodeRateLimited {
		t.Fatalf("over the limit: %v, want 4005", err)
	}
	ts.Push(map[string]any{"devices": []string{"d1"}, "data": "still connected"})
	d.expect(t, "still connected")
}

func TestStatusEvents(t *testing.T) {
	testengine.Long(t, "waits for status webhooks to linger")
	eachTransportBackend(t, func(t *testing.T, ts *testserver.TS, tr client.Transport, b *backend) {
		prefix := string(tr) + "-" // the backend is shared by the transports
		want := map[string][]string{}
		waitFor := func() {
			for dev, w := range want {
				testwait.Eventually(t, "events of "+dev, func() bool { return slices.Equal(b.eventsOf(dev), w) })
			}
		}
		// Login and close.
		visit(t, ts, tr, prefix+"closer", "")
		want[prefix+"closer"] = []string{"online:login", "offline:closed"}
		// Replacement: the older connection's offline comes before the newer's online.
		connect(t, ts, tr, ts.Token(prefix+"twice", ""))
		connect(t, ts, tr, ts.Token(prefix+"twice", ""))
		want[prefix+"twice"] = []string{"online:login", "offline:replaced", "online:login"}
		// Kick.
		connect(t, ts, tr, ts.Token(prefix+"kicked", ""))
		ts.Call(http.MethodPost, "/v1/kick", testserver.Demo.APIKey, map[string]any{"app": "demo", "devices": []string{prefix + "kicked"}})
		want[prefix+"kicked"] = []string{"online:login", "offline:kicked"}
		// Heartbeat timeout.
		rawLogin(t, ts, tr, ts.Token(prefix+"silent", ""), 1, 0)
		want[prefix+"silent"] = []string{"online:login", "offline:timeout"}
		waitFor()
		// Each event names its session; a newer login has a greater number.
		if _, s := b.sessionsOf(prefix + "twice"); s[0] == 0 || s[1] != s[0] || s[2] <= s[0] {
			t.Fatalf("sessions of online, offline:replaced, online: %v", s)
		}
		if _, s := b.sessionsOf(prefix + "closer"); s[0] == 0 || s[1] != s[0] {
			t.Fatalf("sessions of online, offline: %v", s)
		}

		// An outage: events wait, are retried, and arrive in order after it.
		b.down.Store(true)
		visit(t, ts, tr, prefix+"during", "")
		visit(t, ts, tr, prefix+"during", "")
		time.Sleep(300 * time.Millisecond) // some attempts fail meanwhile
		if len(b.eventsOf(prefix+"during")) != 0 {
			t.Fatal("events recorded while the backend was down")
		}
		b.down.Store(false)
		want[prefix+"during"] = []string{"online:login", "offline:closed", "online:login", "offline:closed"}
		waitFor()
		if !strings.Contains(ts.Metrics(), `longlink_status_events_total{app="demo",result="retried"}`) {
			t.Error("retries not counted")
		}
		// Every event has an id of its own, and a retried one keeps it:
		// every id a failed call carried is delivered in the end.
		b.mu.Lock()
		defer b.mu.Unlock()
		ids, retried := map[string]bool{}, 0
		for _, e := range b.events {
			if e.ID == "" || ids[e.ID] {
				t.Fatalf("event %+v: its id is empty or repeated", e)
			}
			ids[e.ID] = true
			if b.tries[e.ID] > 1 {
				retried++
			}
		}
		for id := range b.tries {
			if !ids[id] {
				t.Errorf("event %s was sent during the outage, then retried under another id", id)
			}
		}
		if retried == 0 {
			t.Error("no event was retried")
		}
	}, func(c *config.Config) { c.Gateway.HeartbeatMin = time.Second })
}

func TestGroups(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		a := connect(t, ts, tr, ts.Token("a", ""))
		b := connect(t, ts, tr, ts.Token("b", ""))
		c := connect(t, ts, tr, ts.Token("c", ""))
		if err := a.Join(context.Background(), "demo", "room"); err != nil {
			t.Fatal(err)
		}
		status, out := ts.Call(http.MethodPost, "/v1/groups/join", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "group": "room", "devices": []string{"b", "offline-device"}})
		if status != 200 || out["online"] != 1.0 {
			t.Fatalf("API join: %d %v", status, out)
		}
		push := func(data string) float64 {
			return ts.Push(map[string]any{"group": "room", "data": data, "ttl": 60})["online"].(float64)
		}
		if n := push("to the room"); n != 2 {
			t.Fatalf("group push reached %v connections, want 2", n)
		}
		a.expect(t, "to the room")
		b.expect(t, "to the room")

		if err := a.Leave(context.Background(), "demo", "room"); err != nil {
			t.Fatal(err)
		}
		b.Close() // closing leaves every group
		testwait.Eventually(t, "b gone", func() bool { return !online(t, ts, "b") })
		c.Join(context.Background(), "demo", "room")
		if n := push("second"); n != 1 {
			t.Fatalf("after leave and close: %v connections, want 1", n)
		}
		c.expect(t, "second")
		ts.Push(map[string]any{"devices": []string{"a"}, "data": "marker"})
		a.expect(t, "marker") // "second" did not reach a
		// A group of another app is another group.
		o := connect(t, ts, tr, testserver.MintToken(t, testserver.Other, "o", ""))
		o.Join(context.Background(), "other", "room")
		if n := push("demo only"); n != 1 {
			t.Fatalf("other app's member counted: %v", n)
		}
	})
}

func TestGroupBadInput(t *testing.T) {
	ts := testserver.Start(t, func(c *config.Config) { c.Gateway.MaxGroups = 2 })
	d := connect(t, ts, client.TCP, ts.Token("d1", ""))
	for _, g := range []string{"g1", "g2"} {
		if err := d.Join(context.Background(), "demo", g); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Join(context.Background(), "demo", "g3"); upCode(err) != protocol.CodeBadFrame {
		t.Fatalf("a third group: %v", err)
	}
	if err := d.Join(context.Background(), "other", "g"); upCode(err) != protocol.CodeBadFrame {
		t.Fatalf("a group of an app not logged into: %v", err)
	}
	if err := d.Join(context.Background(), "demo", "bad group"); upCode(err) != protocol.CodeBadFrame {
		t.Fatalf("a bad group name: %v", err)
	}
	for _, body := range []map[string]any{
		{"app": "demo", "group": "", "devices": []string{"d1"}},
		{"app": "demo", "group": "g", "devices": []string{}},
		{"app": "demo", "group": "g", "devices": []string{"d1"}, "extra": 1},
	} {
		if status, _ := ts.Call(http.MethodPost, "/v1/groups/join", testserver.Demo.APIKey, body); status != 400 {
			t.Errorf("%v: %d, want 400", body, status)
		}
	}
	if status, _ := ts.Call(http.MethodPost, "/v1/groups/join", testserver.Other.APIKey,
		map[string]any{"app": "demo", "group": "g", "devices": []string{"d1"}}); status != 403 {
		t.Errorf("another app's key: %d, want 403", status)
	}
	ts.Push(map[string]any{"devices": []string{"d1"}, "data": "fine"})
	d.expect(t, "fine")
}

func TestMultiAppLogin(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		demoPushes, otherPushes := make(chan client.Push, 4), make(chan client.Push, 4)
		c, err := client.Dial(context.Background(), client.Config{Addr: ts.Addr(tr), Transport: tr,
			Tokens: []string{ts.Token("d1", ""), testserver.MintToken(t, testserver.Other, "d1", "")},
			Handlers: map[string]func(client.Push){
				"demo":  func(p client.Push) { demoPushes <- p },
				"other": func(p client.Push) { otherPushes <- p },
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if apps := c.Welcome().Apps; !slices.Equal(apps, []string{"demo", "other"}) {
			t.Fatalf("welcome apps %v", apps)
		}
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "from demo"})
		testserver.CallAPI(t, ts.APIURL(), http.MethodPost, "/v1/push", testserver.Other.APIKey,
			map[string]any{"app": "other", "devices": []string{"d1"}, "data": "from other", "ttl": 60})
		if p := <-demoPushes; p.App != "demo" || string(p.Data) != "from demo" {
			t.Fatalf("demo handler got %+v", p)
		}
		if p := <-otherPushes; p.App != "other" || string(p.Data) != "from other" {
			t.Fatalf("other handler got %+v", p)
		}
		// Presence is per app: a device of demo is not a device of a third app.
		_, out := testserver.CallAPI(t, ts.APIURL(), http.MethodGet, "/v1/presence?app=other&device=d1", testserver.Other.APIKey, nil)
		if out["devices"].(map[string]any)["d1"].(map[string]any)["online"] != true {
			t.Fatalf("presence in other: %v", out)
		}

		// A token of another device in tokens is refused.
		bad := rawDial(t, ts, tr)
		bad.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Tokens: [][]byte{
			[]byte(ts.Token("d2", "")), []byte(testserver.MintToken(t, testserver.Other, "d3", ""))}}, time.Second)
		if f := readUntilError(t, bad); f.Code != protocol.CodeAuthFailed {
			t.Fatalf("mixed devices: %d %s", f.Code, f.Reason)
		}
	})
}

func TestKick(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		d := connect(t, ts, tr, ts.Token("d1", ""))
		if status, out := ts.Call(http.MethodPost, "/v1/kick", testserver.Other.APIKey,
			map[string]any{"app": "demo", "devices": []string{"d1"}}); status != 403 {
			t.Fatalf("kick with another app's key: %d %v", status, out)
		}
		status, out := ts.Call(http.MethodPost, "/v1/kick", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "devices": []string{"d1", "ghost"}})
		if status != 200 || out["kicked"] != 1.0 {
			t.Fatalf("kick: %d %v", status, out)
		}
		d.expectEnded(t, protocol.CodeKicked)
		if online(t, ts, "d1") {
			t.Fatal("kicked device still online")
		}
	})
}

// TestSIGHUPAddsApp: `longlink serve` reloads its apps on SIGHUP while
// devices stay connected.
func TestSIGHUPAddsApp(t *testing.T) {
	srv := startChild(t, t.TempDir())
	got := make(chan client.Push, 4)
	d, err := client.Dial(context.Background(), client.Config{Addr: srv.gateway,
		Token: testserver.MintToken(t, testserver.Demo, "d1", ""), OnPush: func(p client.Push) { got <- p },
		OnDisconnect: func(err error) { t.Errorf("disconnected by the reload: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	third := config.App{ID: "third", Secret: "third-secret-0123456789", APIKey: "third-key-0123456789"}
	api := "http://" + srv.api
	if status, _ := testserver.CallAPI(t, api, http.MethodPost, "/v1/push", third.APIKey,
		map[string]any{"app": "third", "broadcast": true, "data": "x"}); status != 401 {
		t.Fatalf("third app before the reload: %d", status)
	}
	dataDir := strings.TrimPrefix(strings.SplitN(mustRead(t, srv.config), "\n", 2)[0], "data_dir: ")
	if err := os.WriteFile(srv.config, []byte(childConfig(dataDir, testserver.Demo, testserver.Other, third)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Signal(syscall.SIGHUP)
	testwait.Eventually(t, "the third app", func() bool {
		status, _ := testserver.CallAPI(t, api, http.MethodPost, "/v1/push", third.APIKey,
			map[string]any{"app": "third", "broadcast": true, "data": "x"})
		return status == 200
	})
	thirdDev, err := client.Dial(context.Background(), client.Config{Addr: srv.gateway,
		Token: testserver.MintToken(t, third, "t1", "")})
	if err != nil {
		t.Fatalf("device of the new app: %v", err)
	}
	thirdDev.Close()
	testserver.CallAPI(t, api, http.MethodPost, "/v1/push", testserver.Demo.APIKey,
		map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "still here"})
	if p := <-got; string(p.Data) != "still here" {
		t.Fatalf("got %q", p.Data)
	}
}

func mustRead(t *testing.T, path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// An app with webhooks but no webhook_secret of its own is named in a
// warning at start: one key would sign its tokens and its webhooks.
func TestWebhookSecretWarning(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir, cfg.Gateway.Listen, cfg.API.Listen = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	demo, other := testserver.Demo, testserver.Other
	demo.Webhooks.Status = "http://127.0.0.1:9/status"
	other.Webhooks.Status, other.WebhookSecret = "http://127.0.0.1:9/status", "other-webhook-secret-0123"
	cfg.Apps = []config.App{demo, other}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err := server.Start(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown(context.Background())
	if out := logs.String(); !strings.Contains(out, "no webhook_secret") || !strings.Contains(out, "app=demo") ||
		strings.Contains(out, "app=other") {
		t.Fatalf("the warnings at start:\n%s", out)
	}
}
