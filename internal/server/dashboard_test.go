package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// sample finds a sample of a node's stats by name and labels (nil if none).
func sample(node map[string]any, name string, labels map[string]string) map[string]any {
	samples, _ := node["samples"].([]any)
next:
	for _, s := range samples {
		s := s.(map[string]any)
		if s["name"] != name {
			continue
		}
		have, _ := s["labels"].(map[string]any)
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		return s
	}
	return nil
}

// /v1/admin/stats gives the node's figures as the dashboard reads them:
// connections by app and transport, counters, the process and the runtime.
func TestAdminStats(t *testing.T) {
	ts := testserver.Start(t, withOpsToken)
	connect(t, ts, client.WebSocketJSON, ts.Token("d1", ""))
	connect(t, ts, client.TCP, ts.Token("d2", ""))
	ts.Push(map[string]any{"devices": []string{"d1", "d2", "away"}, "data": "m", "ttl": 60})
	if status, _ := ts.Call(http.MethodGet, "/v1/admin/stats", "", nil); status != http.StatusUnauthorized {
		t.Errorf("without the token: %d", status)
	}
	var node map[string]any
	testwait.Eventually(t, "both acks counted", func() bool {
		status, out := admin(t, ts, "/v1/admin/stats")
		nodes, _ := out["nodes"].([]any)
		if status != http.StatusOK || len(nodes) != 1 {
			t.Fatalf("stats: %d %v", status, out)
		}
		node = nodes[0].(map[string]any)
		acks := sample(node, "longlink_acks_total", map[string]string{"app": "demo"})
		return acks != nil && acks["value"] == 2.0
	})
	if node["node"] != "n1" || node["state"] != "serving" || node["at"] == nil {
		t.Errorf("node: %v", node)
	}
	for _, want := range []struct {
		name   string
		labels map[string]string
		value  float64 // -1: any
	}{
		{"longlink_connections", map[string]string{"app": "demo", "transport": "ws_json"}, 1},
		{"longlink_connections", map[string]string{"app": "demo", "transport": "tcp"}, 1},
		{"longlink_stored_total", map[string]string{"app": "demo"}, 3},
		{"longlink_messages_pushed_total", map[string]string{"app": "demo", "target": "devices"}, 1},
		{"longlink_connects_total", map[string]string{"transport": "tcp"}, 1},
		{"longlink_upstream_backlog", nil, 0},
		{"longlink_status_backlog", nil, 0},
		{"process_resident_memory_bytes", nil, -1},
		{"process_cpu_seconds_total", nil, -1},
		{"go_goroutines", nil, -1},
		{"go_sched_pauses_total_gc_seconds_count", nil, -1},
	} {
		s := sample(node, want.name, want.labels)
		if s == nil || (want.value >= 0 && s["value"] != want.value) {
			t.Errorf("%s%v: %v", want.name, want.labels, s)
		}
	}
	if s := sample(node, "go_memstats_mallocs_total", nil); s != nil {
		t.Errorf("a runtime series the dashboard does not read is in: %v", s)
	}
}

// In a cluster, any node's /v1/admin/stats has every node's figures, this
// node's first, each as that node counts them.
func TestClusterAdminStats(t *testing.T) {
	nodes := testserver.StartCluster(t, 3, withOpsToken)
	connect(t, nodes[2], client.TCP, nodes[2].Token("d1", ""))
	status, out := admin(t, nodes[1], "/v1/admin/stats")
	list, _ := out["nodes"].([]any)
	if status != http.StatusOK || len(list) != 3 {
		t.Fatalf("stats through n2: %d %v", status, out)
	}
	for i, want := range []struct {
		node  string
		conns float64
	}{{"n2", 0}, {"n1", 0}, {"n3", 1}} {
		n := list[i].(map[string]any)
		s := sample(n, "longlink_connections", map[string]string{"app": "demo", "transport": "tcp"})
		got := 0.0
		if s != nil {
			got = s["value"].(float64)
		}
		if n["node"] != want.node || got != want.conns || sample(n, "process_resident_memory_bytes", nil) == nil {
			t.Errorf("node %d: want %s with %v connections, got %v with %v", i, want.node, want.conns, n["node"], got)
		}
	}
}

// The admin push and kick act for any app with the ops token, as the
// app's own /v1/push and /v1/kick would.
func TestAdminPushAndKick(t *testing.T) {
	ts := testserver.Start(t, withOpsToken)
	d1 := connect(t, ts, client.TCP, ts.Token("d1", ""))
	body := map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "from ops"}
	if status, _ := ts.Call(http.MethodPost, "/v1/admin/push", testserver.Demo.APIKey, body); status != http.StatusUnauthorized {
		t.Errorf("admin push with an app's API key: %d", status)
	}
	if status, out := ts.Call(http.MethodPost, "/v1/admin/push", opsToken, body); status != http.StatusOK || out["online"] != 1.0 {
		t.Fatalf("admin push: %d %v", status, out)
	}
	d1.expect(t, "from ops")
	if status, _ := ts.Call(http.MethodPost, "/v1/admin/push", opsToken, map[string]any{"app": "nope", "devices": []string{"d1"}, "data": "x"}); status != http.StatusNotFound {
		t.Errorf("admin push to an unknown app: %d", status)
	}
	if status, out := ts.Call(http.MethodPost, "/v1/admin/kick", opsToken, map[string]any{"app": "demo", "devices": []string{"d1"}}); status != http.StatusOK || out["kicked"] != 1.0 {
		t.Fatalf("admin kick: %d %v", status, out)
	}
	d1.expectEnded(t, protocol.CodeKicked)
}

// noRedirect is an HTTP client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// The dashboard's session: the login form sets a cookie that stands for
// the ops token; a change made with it must come from the same origin; a
// forged or expired cookie, or a wrong token, gets nothing.
func TestDashboardSession(t *testing.T) {
	ts := testserver.Start(t, withOpsToken)
	base := ts.APIURL()
	get := func(path string, cookie *http.Cookie) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get("/dashboard", nil); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("dashboard without a session: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	login := func(token string) *http.Response {
		resp, err := noRedirect.PostForm(base+"/dashboard/login", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := login("wrong"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard?failed=1" || len(resp.Cookies()) != 0 {
		t.Fatalf("a wrong token: %d %s %v", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	resp := login(opsToken)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d %v", resp.StatusCode, resp.Cookies())
	}
	session := resp.Cookies()[0]
	if session.Name != "longlink_ops" || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || strings.Contains(session.Value, opsToken) {
		t.Errorf("session cookie: %+v", session)
	}
	for _, path := range []string{"/dashboard", "/dashboard/dashboard.js", "/dashboard/pause.js", "/v1/admin/stats", "/debug/pprof/"} {
		if resp := get(path, session); resp.StatusCode != http.StatusOK {
			t.Errorf("%s with the session: %d", path, resp.StatusCode)
		}
	}

	// A change with the session: only from the same origin.
	kick := func(origin string, cookie *http.Cookie) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/admin/kick", strings.NewReader(`{"app":"demo","devices":["d1"]}`))
		req.AddCookie(cookie)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := kick(base, session); status != http.StatusOK {
		t.Errorf("kick from the dashboard's origin: %d", status)
	}
	for _, origin := range []string{"", "http://evil.example", "null"} {
		if status := kick(origin, session); status != http.StatusUnauthorized {
			t.Errorf("kick with the session from origin %q: %d", origin, status)
		}
	}

	// Forged: ids this node never gave.
	for _, v := range []string{strings.Repeat("A", len(session.Value)), session.Value + "x", "", "x.y"} {
		if resp := get("/v1/admin/stats", &http.Cookie{Name: "longlink_ops", Value: v}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("forged session %q: %d", v, resp.StatusCode)
		}
	}

	// Logout clears the cookie and ends the session: the cookie, kept, is void.
	req, _ := http.NewRequest(http.MethodPost, base+"/dashboard/logout", nil)
	req.AddCookie(session)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
		t.Errorf("logout: %v", c)
	}
	if resp := get("/v1/admin/stats", session); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the session's cookie after logout: %d", resp.StatusCode)
	}
}

// A session is of the node that made it (void on another, whatever its
// token), and lasts at most 12 h. (Its expiry is checked in internal/api's
// TestSessions.)
func TestDashboardSessionOfAnotherNode(t *testing.T) {
	other := testserver.Start(t, withOpsToken)
	ts := testserver.Start(t, withOpsToken)
	resp, err := noRedirect.PostForm(ts.APIURL()+"/dashboard/login", url.Values{"token": {opsToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	session := resp.Cookies()[0]
	req, _ := http.NewRequest(http.MethodGet, other.APIURL()+"/v1/admin/stats", nil)
	req.AddCookie(session)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session of another node: %v %v", resp.StatusCode, err)
	}
	if time.Until(session.Expires) > 12*time.Hour+time.Minute {
		t.Errorf("session lasts past 12 h: %v", session.Expires)
	}
}

// Wrong ops tokens from one address are throttled: past 10 at once it gets
// 429, even with the right token, until its pace is back under one a
// second; a node with no ops token says so.
func TestOpsTokenGuessingThrottled(t *testing.T) {
	testengine.Long(t, "waits for the throttle to refill")
	ts := testserver.Start(t, withOpsToken)
	for i := range 10 {
		if code := get(t, ts.APIURL()+"/v1/admin/nodes", fmt.Sprint("wrong-token-", i)); code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i, code)
		}
	}
	if code := get(t, ts.APIURL()+"/v1/admin/nodes", "wrong-token-10"); code != http.StatusTooManyRequests {
		t.Fatalf("an 11th wrong token at once: %d, want 429", code)
	}
	if code := get(t, ts.APIURL()+"/v1/admin/nodes", opsToken); code != http.StatusTooManyRequests {
		t.Fatalf("the right token from a throttled address: %d, want 429", code)
	}
	testwait.Eventually(t, "the right token let through again", func() bool {
		return get(t, ts.APIURL()+"/v1/admin/nodes", opsToken) == http.StatusOK
	})
	none := testserver.Start(t)
	status, out := none.Call(http.MethodGet, "/v1/admin/nodes", "some-token-0123456789", nil)
	if msg, _ := out["error"].(string); status != http.StatusUnauthorized || !strings.Contains(msg, "no ops token") {
		t.Fatalf("a node without an ops token: %d %q", status, msg)
	}
}

// The demo page is served in demo mode only; the dashboard always (behind
// the ops token).
func TestDemoPageOnlyInDemoMode(t *testing.T) {
	ts := testserver.Start(t, withOpsToken)
	if status, _ := ts.Call(http.MethodGet, "/demo", "", nil); status != http.StatusNotFound {
		t.Errorf("/demo with a config file: %d", status)
	}
	demo := testserver.Start(t, withOpsToken, func(c *config.Config) { c.Demo = true })
	resp, err := http.Get(demo.APIURL() + "/demo/device?device=web-1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"device":"web-1"`) || !strings.Contains(string(body), `"url":"ws://`+demo.GatewayAddr()+`/ws"`) {
		t.Fatalf("/demo/device: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{"/demo", "/demo/longlink.js", "/demo/demo.js"} {
		resp, err := http.Get(demo.APIURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	// The credentials go to a loopback Host only: not to a page of another
	// site whose name was rebound to 127.0.0.1.
	for host, want := range map[string]int{"evil.example:8080": 403, "10.0.0.1": 403, "localhost:8080": 200, "[::1]:8080": 200} {
		req, _ := http.NewRequest(http.MethodGet, demo.APIURL()+"/demo/device", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || want == 403 && strings.Contains(string(body), "token") {
			t.Errorf("/demo/device for Host %s: %d %s, want %d", host, resp.StatusCode, body, want)
		}
	}
}
