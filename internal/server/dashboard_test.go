package server_test

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testserver"
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
	testserver.Eventually(t, "both acks counted", func() bool {
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
	for _, path := range []string{"/dashboard", "/dashboard/dashboard.js", "/v1/admin/stats", "/debug/pprof/"} {
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

	// Forged: another expiry with the same MAC, or a MAC of another key.
	exp, mac, _ := strings.Cut(session.Value, ".")
	later, _ := strconv.ParseInt(exp, 10, 64)
	for _, v := range []string{strconv.FormatInt(later+3600, 10) + "." + mac, exp + "." + strings.Repeat("0", len(mac)), "", "x.y"} {
		if resp := get("/v1/admin/stats", &http.Cookie{Name: "longlink_ops", Value: v}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("forged session %q: %d", v, resp.StatusCode)
		}
	}

	// Logout clears the cookie.
	resp, err := noRedirect.Post(base+"/dashboard/logout", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
		t.Errorf("logout: %v", c)
	}
}

// A session made with one ops token is void on a node with another one
// (or once the token changes), and lasts at most 12 h. (Its expiry is
// checked in internal/api's TestSessionExpires.)
func TestDashboardSessionOfAnotherToken(t *testing.T) {
	other := testserver.Start(t, func(c *config.Config) { c.Ops.Token = "another-ops-token-0123456789" })
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
		t.Errorf("a session of another token: %v %v", resp.StatusCode, err)
	}
	if exp, _ := strconv.ParseInt(strings.Split(session.Value, ".")[0], 10, 64); time.Until(time.Unix(exp, 0)) > 12*time.Hour+time.Minute {
		t.Errorf("session lasts past 12 h: %v", session.Value)
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
}
