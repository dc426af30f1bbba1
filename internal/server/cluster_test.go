package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/protocol"
)

// eachClusterTransport runs body over TCP and WebSocket, each against its
// own 3-node cluster on a real redis-server and nats-server.
func eachClusterTransport(t *testing.T, body func(t *testing.T, nodes []*testserver.TS, tr client.Transport)) {
	for _, tr := range []client.Transport{client.TCP, client.WebSocket} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			body(t, testserver.StartCluster(t, 3), tr)
		})
	}
}

// presentIn asks node's API whether device is online in demo.
func presentIn(t *testing.T, node *testserver.TS, device string) bool {
	t.Helper()
	status, out := node.Call(http.MethodGet, "/v1/presence?app=demo&device="+device, testserver.Demo.APIKey, nil)
	if status != http.StatusOK {
		t.Fatalf("presence: %d %v", status, out)
	}
	return out["devices"].(map[string]any)[device].(map[string]any)["online"] == true
}

// Any node's API reaches a device on any node, with the count a single
// node would give.
func TestClusterPushAcrossNodes(t *testing.T) {
	eachClusterTransport(t, func(t *testing.T, nodes []*testserver.TS, tr client.Transport) {
		d := connect(t, nodes[1], tr, nodes[1].Token("d1", ""))
		testserver.Eventually(t, "d1 routed", func() bool { return presentIn(t, nodes[0], "d1") })
		out := nodes[0].Push(map[string]any{"devices": []string{"d1", "nobody"}, "data": "from n1"})
		if out["online"] != 1.0 {
			t.Fatalf("push through n1: %v", out)
		}
		d.expect(t, "from n1")
	})
}

// A stored push while the device is away is replayed by whichever node it
// logs into next; once acked, it is not delivered again anywhere.
func TestClusterStoredReplayOnAnotherNode(t *testing.T) {
	eachClusterTransport(t, func(t *testing.T, nodes []*testserver.TS, tr client.Transport) {
		if out := nodes[0].Push(stored([]string{"d1"}, "kept")); out["offline"] != 1.0 {
			t.Fatalf("stored push: %v", out)
		}
		acked := make(chan uint64, 1)
		d := connect(t, nodes[2], tr, nodes[2].Token("d1", ""), func(c *client.Config) {
			c.OnAck = func(_ string, seq uint64) { acked <- seq }
		})
		if p := d.expect(t, "kept"); p.Seq != 1 {
			t.Fatalf("replayed seq %d", p.Seq)
		}
		<-acked
		d.Close()
		testserver.Eventually(t, "d1 offline", func() bool { return !presentIn(t, nodes[0], "d1") })
		again := connect(t, nodes[1], tr, nodes[1].Token("d1", ""), func(c *client.Config) { c.LastSeq = 1 })
		nodes[0].Push(map[string]any{"devices": []string{"d1"}, "data": "after"})
		again.expect(t, "after") // and not "kept" again
	})
}

// A user's devices on two nodes both get a users push; a broadcast and a
// group push reach members on all three nodes.
func TestClusterUsersBroadcastGroups(t *testing.T) {
	eachClusterTransport(t, func(t *testing.T, nodes []*testserver.TS, tr client.Transport) {
		var devices []*device
		for i, node := range nodes {
			name := []string{"a", "b", "c"}[i]
			d := connect(t, node, tr, node.Token(name, "alice"))
			if err := d.Join(context.Background(), "demo", "room"); err != nil {
				t.Fatal(err)
			}
			devices = append(devices, d)
		}
		testserver.Eventually(t, "all routed", func() bool {
			return presentIn(t, nodes[0], "a") && presentIn(t, nodes[0], "b") && presentIn(t, nodes[0], "c")
		})
		for _, tc := range []struct {
			body map[string]any
			data string
		}{
			{map[string]any{"users": []string{"alice"}, "data": "to alice"}, "to alice"},
			{map[string]any{"broadcast": true, "data": "to all"}, "to all"},
			{map[string]any{"group": "room", "data": "to the room"}, "to the room"},
		} {
			if out := nodes[1].Push(tc.body); out["online"] != 3.0 {
				t.Fatalf("%v: %v", tc.body, out)
			}
			for _, d := range devices {
				d.expect(t, tc.data)
			}
		}
		// A stored broadcast too: every node's connections copy it.
		if out := nodes[2].Push(map[string]any{"broadcast": true, "data": "kept for all", "ttl": 60}); out["online"] != 3.0 {
			t.Fatalf("stored broadcast: %v", out)
		}
		for _, d := range devices {
			d.expect(t, "kept for all")
		}
	})
}

// Presence, kick and replacement work across nodes: a login on n2 ends
// the older session on n1 with 4003.
func TestClusterPresenceKickReplace(t *testing.T) {
	eachClusterTransport(t, func(t *testing.T, nodes []*testserver.TS, tr client.Transport) {
		older := connect(t, nodes[0], tr, nodes[0].Token("d1", ""))
		testserver.Eventually(t, "d1 routed", func() bool { return presentIn(t, nodes[2], "d1") })
		newer := connect(t, nodes[1], tr, nodes[1].Token("d1", ""))
		select {
		case <-older.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the older connection on n1 still runs")
		}
		if upCode(older.Err()) != protocol.CodeReplaced {
			t.Fatalf("older ended with %v, want 4003", older.Err())
		}
		nodes[2].Push(map[string]any{"devices": []string{"d1"}, "data": "to the newer"})
		newer.expect(t, "to the newer")

		status, out := nodes[2].Call(http.MethodPost, "/v1/kick", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "devices": []string{"d1"}})
		if status != http.StatusOK || out["kicked"] != 1.0 {
			t.Fatalf("kick through n3: %d %v", status, out)
		}
		<-newer.Done()
		testserver.Eventually(t, "d1 offline everywhere", func() bool {
			return !presentIn(t, nodes[0], "d1") && !presentIn(t, nodes[1], "d1")
		})
	})
}
