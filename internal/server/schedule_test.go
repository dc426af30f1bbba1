package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// schedule pushes body at the time in, and returns the scheduled id.
func schedule(t *testing.T, ts *testserver.TS, in time.Duration, body map[string]any) string {
	t.Helper()
	body["app"], body["at"] = "demo", time.Now().Add(in).UTC().Format(time.RFC3339Nano)
	status, out := ts.Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey, body)
	id, _ := out["id"].(string)
	if status != http.StatusAccepted || id == "" || out["scheduled_at"] == nil {
		t.Fatalf("schedule: %d %v", status, out)
	}
	return id
}

// A scheduled push answers 202 with its id, is listed until it fires, is
// delivered at its time (not before) with that id, and can be cancelled.
func TestScheduledPush(t *testing.T) {
	testengine.Long(t, "waits for scheduled times")
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		d1 := connect(t, ts, tr, ts.Token("d1", ""))
		start := time.Now()
		sent := map[string]any{"devices": []string{"d1"}, "data": "at its time", "ttl": 600}
		id := schedule(t, ts, time.Second, sent)
		cancelled := schedule(t, ts, time.Second, map[string]any{"devices": []string{"d1"}, "data": "never"})
		status, out := ts.Call(http.MethodGet, "/v1/messages?app=demo&state=scheduled", testserver.Demo.APIKey, nil)
		list, _ := out["messages"].([]any)
		if status != http.StatusOK || len(list) != 2 || list[0].(map[string]any)["state"] != "scheduled" {
			t.Fatalf("list: %d %v", status, out)
		}
		// Each lists the request as it was sent: no internal key, no empty fields.
		i := slices.IndexFunc(list, func(m any) bool { return m.(map[string]any)["id"] == id })
		if push, _ := json.Marshal(list[max(i, 0)].(map[string]any)["push"]); i < 0 ||
			string(push) != fmt.Sprintf(`{"app":"demo","at":%q,"data":"at its time","devices":["d1"],"ttl":600}`, sent["at"]) {
			t.Fatalf("%s listed as %s", id, push)
		}
		report(t, ts, id, map[string]any{"state": "scheduled"})
		if status, out := ts.Call(http.MethodDelete, "/v1/messages/"+cancelled+"?app=demo", testserver.Demo.APIKey, nil); status != http.StatusOK || out["cancelled"] != true {
			t.Fatalf("cancel: %d %v", status, out)
		}
		if status, _ := ts.Call(http.MethodDelete, "/v1/messages/"+cancelled+"?app=demo", testserver.Demo.APIKey, nil); status != http.StatusNotFound {
			t.Fatalf("cancel again: %d", status)
		}
		p := d1.expect(t, "at its time")
		if p.ID != id || time.Since(start) < time.Second {
			t.Fatalf("fired %+v after %s", p, time.Since(start))
		}
		report(t, ts, id, map[string]any{"state": "sent", "online": 1.0})
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "later"})
		d1.expect(t, "later") // and not "never"
		if _, out := ts.Call(http.MethodGet, "/v1/messages?app=demo&state=scheduled", testserver.Demo.APIKey, nil); len(out["messages"].([]any)) != 0 {
			t.Fatalf("still listed after firing: %v", out)
		}
		for _, at := range []string{"tomorrow", time.Now().Add(-time.Minute).Format(time.RFC3339), time.Now().Add(1000 * time.Hour).Format(time.RFC3339)} {
			status, out := ts.Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey,
				map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "x", "at": at})
			if status != http.StatusBadRequest || !strings.Contains(out["error"].(string), "at must") {
				t.Errorf("at %q: %d %v", at, status, out)
			}
		}
	})
}

// A schedule is durable: one made before a restart fires after it.
func TestScheduledPushSurvivesRestart(t *testing.T) {
	testengine.Long(t, "waits for a scheduled time across a restart")
	first := testserver.Start(t)
	id := schedule(t, first, 1500*time.Millisecond, map[string]any{"devices": []string{"d1"}, "data": "kept", "ttl": 600})
	if err := first.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := testserver.Start(t, func(c *config.Config) { c.DataDir = first.Config().DataDir })
	d1 := connect(t, second, client.TCP, second.Token("d1", ""))
	if p := d1.expect(t, "kept"); p.ID != id || p.Seq != 1 {
		t.Fatalf("after a restart: %+v", p)
	}
}

// In a cluster every node looks for due pushes, and each fires once.
func TestClusterScheduledPushFiresOnce(t *testing.T) {
	nodes := testserver.StartCluster(t, 3)
	d := connect(t, nodes[2], client.TCP, nodes[2].Token("d1", ""))
	testwait.Eventually(t, "d1 routed", func() bool { return presentIn(t, nodes[0], "d1") })
	for range 5 {
		schedule(t, nodes[0], 700*time.Millisecond, map[string]any{"devices": []string{"d1"}, "data": "once", "ttl": 600})
	}
	for range 5 {
		d.expect(t, "once")
	}
	testwait.Eventually(t, "every schedule done", func() bool { // no node can claim one again
		_, out := nodes[1].Call(http.MethodGet, "/v1/messages?app=demo&state=scheduled", testserver.Demo.APIKey, nil)
		list, _ := out["messages"].([]any)
		return out["messages"] != nil && len(list) == 0
	})
	nodes[1].Push(map[string]any{"devices": []string{"d1"}, "data": "after"})
	d.expect(t, "after")
}

// A scheduling call with an idempotency key schedules nothing again: its
// repeat answers the first id, and one push is kept.
func TestScheduledPushIdempotent(t *testing.T) {
	ts := testserver.Start(t)
	body := func() map[string]any {
		return map[string]any{"devices": []string{"d1"}, "data": "once", "ttl": 60, "id": "campaign-7"}
	}
	first := schedule(t, ts, time.Hour, body())
	b := body()
	b["app"], b["at"] = "demo", time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
	status, out := ts.Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey, b)
	if status != http.StatusAccepted || out["id"] != first || out["duplicate"] != true {
		t.Fatalf("repeat: %d %v, want the first id %s", status, out, first)
	}
	if _, out := ts.Call(http.MethodGet, "/v1/messages?app=demo&state=scheduled", testserver.Demo.APIKey, nil); len(out["messages"].([]any)) != 1 {
		t.Fatalf("scheduled: %v", out)
	}
}
