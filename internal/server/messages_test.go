package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// eachMode runs body over TCP and WebSocket against one node (as nodes[0],
// [1] and [2]) and against a 3-node cluster on real redis-server and
// nats-server: the same behaviour on both backends.
func eachMode(t *testing.T, body func(t *testing.T, nodes []*testserver.TS, tr client.Transport)) {
	t.Run("node", func(t *testing.T) {
		eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
			body(t, []*testserver.TS{ts, ts, ts}, tr)
		})
	})
	t.Run("cluster", func(t *testing.T) { eachClusterTransport(t, body) })
}

// report reads message id's delivery report through ts until it has the
// counts in want (a 200 with them), and returns it.
func report(t *testing.T, ts *testserver.TS, id string, want map[string]any) map[string]any {
	t.Helper()
	var out map[string]any
	testwait.EventuallyNil(t, func() error {
		var status int
		status, out = ts.Call(http.MethodGet, "/v1/messages/"+id+"?app=demo", testserver.Demo.APIKey, nil)
		ok := status == http.StatusOK
		for k, v := range want {
			ok = ok && out[k] == v
		}
		if !ok {
			return fmt.Errorf("report of %s: %d %v, want %v", id, status, out, want)
		}
		return nil
	})
	return out
}

// recaller collects the recall ops a device gets.
type recaller chan string

func (r recaller) config(c *client.Config) { c.OnRecall = func(app, id string) { r <- app + "/" + id } }

func (r recaller) expect(t *testing.T, id string) {
	t.Helper()
	select {
	case got := <-r:
		if got != "demo/"+id {
			t.Fatalf("recall of %s, want demo/%s", got, id)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no recall of %s", id)
	}
}

// A delivery report counts the devices targeted, handed it live, stored
// for and that acked it (each once), for stored pushes and stored
// broadcasts (acks by cursor, counted once per device); any node reads it;
// another app cannot; an online-only push has none.
func TestDeliveryReport(t *testing.T) {
	eachMode(t, func(t *testing.T, nodes []*testserver.TS, tr client.Transport) {
		d1 := connect(t, nodes[1], tr, nodes[1].Token("d1", ""))
		testwait.Eventually(t, "d1 online", func() bool { return presentIn(t, nodes[0], "d1") })
		out := nodes[0].Push(stored([]string{"d1", "d2", "d3"}, "counted"))
		id := out["id"].(string)
		d1.expect(t, "counted")
		rep := report(t, nodes[2], id, map[string]any{"state": "sent", "target": "devices", "targeted": 3.0,
			"online": 1.0, "stored": 3.0, "acked": 1.0, "expired": 0.0, "recalled": 0.0})
		if rep["created_at"] == nil || rep["expires_at"] == nil {
			t.Fatalf("report without its times: %v", rep)
		}
		d2 := connect(t, nodes[2], tr, nodes[2].Token("d2", ""))
		d2.expect(t, "counted")
		report(t, nodes[0], id, map[string]any{"acked": 2.0})

		// A stored broadcast: d1 and d2 online, d4 later; acked once each.
		out = nodes[0].Push(map[string]any{"broadcast": true, "data": "to all", "ttl": 600})
		bid := out["id"].(string)
		d1.expect(t, "to all")
		d2.expect(t, "to all")
		d4 := connect(t, nodes[1], tr, nodes[1].Token("d4", ""))
		d4.expect(t, "to all")
		report(t, nodes[2], bid, map[string]any{"target": "broadcast", "targeted": 2.0, "online": 2.0, "stored": 0.0, "acked": 3.0})
		d4.Close()
		connect(t, nodes[2], tr, nodes[2].Token("d4", "")).expectNone(t)
		report(t, nodes[0], bid, map[string]any{"acked": 3.0})

		// Online-only: handed over when sent, never stored: no report, no recall.
		out = nodes[0].Push(map[string]any{"devices": []string{"d1", "d9"}, "data": "now"})
		d1.expect(t, "now")
		for _, method := range []string{http.MethodGet, http.MethodDelete} {
			status, body := nodes[1].Call(method, "/v1/messages/"+out["id"].(string)+"?app=demo", testserver.Demo.APIKey, nil)
			if status != http.StatusNotFound || !strings.Contains(body["error"].(string), "online-only") {
				t.Fatalf("%s of an online-only message: %d %v", method, status, body)
			}
		}

		status, body := nodes[0].Call(http.MethodGet, "/v1/messages/"+id+"?app=other", testserver.Other.APIKey, nil)
		if status != http.StatusNotFound {
			t.Fatalf("another app reads demo's report: %d %v", status, body)
		}
		if status, _ := nodes[0].Call(http.MethodGet, "/v1/messages/nope?app=demo", testserver.Demo.APIKey, nil); status != http.StatusNotFound {
			t.Fatalf("a report of nothing: %d", status)
		}
	})
}

// A stored push with "report": false is delivered as any other, and keeps
// no delivery report: its id reads and recalls as not found.
func TestPushWithoutReport(t *testing.T) {
	eachMode(t, func(t *testing.T, nodes []*testserver.TS, tr client.Transport) {
		d1 := connect(t, nodes[1], tr, nodes[1].Token("d1", ""))
		testwait.Eventually(t, "d1 online", func() bool { return presentIn(t, nodes[0], "d1") })
		body := stored([]string{"d1", "d2"}, "unreported")
		body["report"] = false
		out := nodes[0].Push(body)
		if out["online"] != 1.0 || out["offline"] != 1.0 {
			t.Fatalf("push: %v", out)
		}
		d1.expect(t, "unreported")
		connect(t, nodes[2], tr, nodes[2].Token("d2", "")).expect(t, "unreported")
		for _, method := range []string{http.MethodGet, http.MethodDelete} {
			status, got := nodes[1].Call(method, "/v1/messages/"+out["id"].(string)+"?app=demo", testserver.Demo.APIKey, nil)
			if status != http.StatusNotFound || !strings.Contains(got["error"].(string), `"report": false`) {
				t.Fatalf("%s of a push without a report: %d %v", method, status, got)
			}
		}
	})
}

// A recall removes a stored message wherever it still waits (so a device
// that comes back never gets it), tells connected devices that got it, and
// is counted in the report; a broadcast's log entry goes too.
func TestRecall(t *testing.T) {
	eachMode(t, func(t *testing.T, nodes []*testserver.TS, tr client.Transport) {
		r1 := make(recaller, 4)
		d1 := connect(t, nodes[1], tr, nodes[1].Token("d1", ""), r1.config)
		testwait.Eventually(t, "d1 online", func() bool { return presentIn(t, nodes[0], "d1") })
		visit(t, nodes[2], tr, "d2", "")
		id := nodes[0].Push(stored([]string{"d1", "d2"}, "oops"))["id"].(string)
		d1.expect(t, "oops")
		report(t, nodes[0], id, map[string]any{"acked": 1.0}) // else d1's copy, not yet acked, is recalled too
		delivered := `longlink_messages_delivered_total\{app="demo"\}`
		before := metricValue(nodes[1], delivered)
		status, out := nodes[0].Call(http.MethodDelete, "/v1/messages/"+id+"?app=demo", testserver.Demo.APIKey, nil)
		if status != http.StatusOK || out["recalled"] != 1.0 || out["notified"] != 1.0 {
			t.Fatalf("recall: %d %v", status, out)
		}
		r1.expect(t, id)
		if after := metricValue(nodes[1], delivered); after != before { // a recall is no delivery
			t.Fatalf("deliveries counted %v, then %v after a recall", before, after)
		}
		r2 := make(recaller, 4)
		connect(t, nodes[2], tr, nodes[2].Token("d2", ""), r2.config).expectNone(t)
		report(t, nodes[1], id, map[string]any{"state": "recalled", "recalled": 1.0, "acked": 1.0})
		if status, out := nodes[0].Call(http.MethodDelete, "/v1/messages/"+id+"?app=demo", testserver.Demo.APIKey, nil); status != http.StatusOK || out["recalled"] != 0.0 {
			t.Fatalf("recall again: %d %v", status, out)
		}
		r1.expect(t, id)
		r2.expect(t, id) // d2 is online now: told, though it never had it

		// A stored broadcast: gone from the log for whoever has not read it.
		visit(t, nodes[0], tr, "d3", "")
		bid := nodes[0].Push(map[string]any{"broadcast": true, "data": "to all, by mistake", "ttl": 600})["id"].(string)
		d1.expect(t, "to all, by mistake")
		if status, out := nodes[2].Call(http.MethodDelete, "/v1/messages/"+bid+"?app=demo", testserver.Demo.APIKey, nil); status != http.StatusOK || out["recalled"] != 1.0 {
			t.Fatalf("recall of a broadcast: %d %v", status, out)
		}
		r1.expect(t, bid)
		connect(t, nodes[1], tr, nodes[1].Token("d3", "")).expectNone(t)

		if status, _ := nodes[0].Call(http.MethodDelete, "/v1/messages/"+id+"?app=other", testserver.Other.APIKey, nil); status != http.StatusNotFound {
			t.Fatalf("another app recalls demo's message: %d", status)
		}
	})
}
