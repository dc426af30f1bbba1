package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

const opsToken = "ops-token-0123456789"

func withOpsToken(c *config.Config) { c.Ops.Token = opsToken }

// admin calls an admin endpoint with the ops token.
func admin(t *testing.T, ts *testserver.TS, path string) (int, map[string]any) {
	t.Helper()
	return ts.Call(http.MethodGet, path, opsToken, nil)
}

// /v1/admin/nodes describes the node; /v1/admin/devices tells where a
// device is connected (transport, since, address, groups) and how many
// stored messages wait for it. Both need the ops token.
func TestAdminEndpoints(t *testing.T) {
	ts := testserver.Start(t, withOpsToken, testserver.WithTLS(t, false))
	before := time.Now().Add(-time.Second)
	connect(t, ts, client.WebSocket, ts.Token("d1", "alice"), func(c *client.Config) { c.Addr, c.TLS = ts.TLSAddr(client.WebSocket), ts.TLS })
	ts.Call(http.MethodPost, "/v1/groups/join", testserver.Demo.APIKey, map[string]any{"app": "demo", "group": "g2", "devices": []string{"d1"}})
	ts.Call(http.MethodPost, "/v1/groups/join", testserver.Demo.APIKey, map[string]any{"app": "demo", "group": "g1", "devices": []string{"d1"}})
	for range 3 {
		ts.Push(map[string]any{"devices": []string{"away"}, "data": "kept", "ttl": 60})
	}

	for _, path := range []string{"/v1/admin/nodes", "/v1/admin/devices/demo/d1"} {
		if status, _ := ts.Call(http.MethodGet, path, "", nil); status != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d", path, status)
		}
	}
	status, out := admin(t, ts, "/v1/admin/nodes")
	nodes, _ := out["nodes"].([]any)
	if status != http.StatusOK || len(nodes) != 1 {
		t.Fatalf("nodes: %d %v", status, out)
	}
	n := nodes[0].(map[string]any)
	if n["node"] != "n1" || n["state"] != "serving" || n["connections"] != 1.0 || n["gateway"] != ts.GatewayAddr() ||
		n["api"] != ts.APIURL() || n["tls"] != true {
		t.Errorf("node: %v", n)
	}
	if started, err := time.Parse(time.RFC3339, n["started_at"].(string)); err != nil || time.Since(started) > time.Minute {
		t.Errorf("started_at %v: %v", n["started_at"], err)
	}

	status, out = admin(t, ts, "/v1/admin/devices/demo/d1")
	since, err := time.Parse(time.RFC3339Nano, out["since"].(string))
	if status != http.StatusOK || out["online"] != true || out["node"] != "n1" || out["transport"] != "wss" ||
		out["user"] != "alice" || !strings.HasPrefix(out["remote"].(string), "127.0.0.1:") || out["stored_waiting"] != 0.0 ||
		err != nil || since.Before(before) || since.After(time.Now()) {
		t.Fatalf("d1: %d %v", status, out)
	}
	if groups := out["groups"].([]any); len(groups) != 2 || groups[0] != "g1" || groups[1] != "g2" {
		t.Errorf("d1's groups: %v", groups)
	}
	status, out = admin(t, ts, "/v1/admin/devices/demo/away")
	if status != http.StatusOK || out["online"] != false || out["stored_waiting"] != 3.0 {
		t.Fatalf("away: %d %v", status, out)
	}
	// The same device id in another app is another device.
	if _, out = admin(t, ts, "/v1/admin/devices/other/d1"); out["online"] != false {
		t.Fatalf("d1 of app other: %v", out)
	}
	if status, _ = admin(t, ts, "/v1/admin/devices/nope/d1"); status != http.StatusNotFound {
		t.Errorf("unknown app: %d", status)
	}
}

// In a cluster, any node's admin endpoints see every node and every
// device, wherever it is connected.
func TestClusterAdmin(t *testing.T) {
	nodes := testserver.StartCluster(t, 2, withOpsToken)
	connect(t, nodes[1], client.TCP, nodes[1].Token("d1", ""))
	testwait.Eventually(t, "d1 routed", func() bool { return presentIn(t, nodes[0], "d1") })
	testwait.Eventually(t, "n2's lease to count d1", func() bool {
		_, out := admin(t, nodes[0], "/v1/admin/nodes")
		list, _ := out["nodes"].([]any)
		for _, n := range list {
			if n := n.(map[string]any); n["node"] == "n2" && n["connections"] == 1.0 && n["gateway"] == nodes[1].GatewayAddr() {
				return len(list) == 2
			}
		}
		return false
	})
	status, out := admin(t, nodes[0], "/v1/admin/devices/demo/d1")
	if status != http.StatusOK || out["online"] != true || out["node"] != "n2" || out["transport"] != "tcp" {
		t.Fatalf("d1 through n1: %d %v", status, out)
	}
}
