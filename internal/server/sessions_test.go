package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// Tests of one live session per (app, device) through faults, and of the
// sessions' numbers.

// endedWithin waits for d to end with 4003 (replaced) and fails unless it
// did within bound of since.
func (d *device) endedWithin(t *testing.T, since time.Time, bound time.Duration) {
	t.Helper()
	d.expectEnded(t, protocol.CodeReplaced)
	took := time.Since(since)
	if took > bound {
		t.Fatalf("the replaced session ended %v after the fault, want within %v", took, bound)
	}
	t.Logf("the replaced session ended %v after the fault", took)
}

// A device that logs in on n2 while the bus is away (killed, then
// stalled) replaced its session on n1, which could not be told: n1's
// session ends within 5 s of the bus coming back, and a broadcast then
// reaches one session of the device. Before, both stayed live.
func TestClusterOneSessionAfterABusOutage(t *testing.T) {
	r, bus := testengine.Redis(t), testengine.NATS(t)
	nodes := testserver.StartClusterOn(t, r, bus, 2)
	for _, fault := range []struct {
		name       string
		down, back func()
	}{
		{"killed", bus.Stop, bus.Start},
		{"stalled", func() { bus.Signal(syscall.SIGSTOP) }, func() { bus.Signal(syscall.SIGCONT) }},
	} {
		device := "d-" + fault.name
		older := connect(t, nodes[0], client.TCP, nodes[0].Token(device, ""))
		fault.down()
		newer := connect(t, nodes[1], client.TCP, nodes[1].Token(device, ""))
		fault.back()
		older.endedWithin(t, time.Now(), 5*time.Second)
		testwait.Eventually(t, "a broadcast across the nodes again", func() bool {
			return nodes[1].Push(map[string]any{"broadcast": true, "data": "to " + device})["online"] == 1.0
		})
		newer.expect(t, "to "+device)
		newer.Close()
	}
}

// A node stalled past its lease is not asked to end the sessions that
// logins elsewhere replaced meanwhile (it would hold them up): when it
// resumes, it checks its sessions against their routes and ends those
// (4003) within 5 s.
func TestClusterStalledNodeEndsReplacedSessions(t *testing.T) {
	r, bus := testengine.Redis(t), testengine.NATS(t)
	n1 := testserver.StartClusterOn(t, r, bus, 1)[0]
	n2 := startChild(t, t.TempDir(), "node: n2",
		fmt.Sprintf("cluster: {redis: %q, nats: %q, lease: 2s}", r.URL(), bus.NATSURL()))
	d := dialDevice(t, client.Config{Addr: n2.gateway, Token: n1.Token("d1", "")})
	n1.Push(stored([]string{"d1"}, "on n2")) // n2 is done with the login (its replay)
	d.expect(t, "on n2")
	testwait.Eventually(t, "d1 to ack it", func() bool { return d.LastSeq("demo") == 1 })
	n2.signal(t, syscall.SIGSTOP)
	testwait.Eventually(t, "n2's lease to lapse, as n1 reads it", func() bool {
		return time.Since(leaseUntil(t, r, "n2")) > time.Second+100*time.Millisecond // n1 reads the members at most a second old
	})
	// The device again, where it left off (its ack may not have reached
	// Redis before n2 stalled: last_seq acks it).
	newer := connect(t, n1, client.TCP, n1.Token("d1", ""), func(c *client.Config) { c.LastSeq = 1 })
	n2.signal(t, syscall.SIGCONT)
	d.endedWithin(t, time.Now(), 5*time.Second)
	n1.Push(map[string]any{"devices": []string{"d1"}, "data": "on n1"})
	newer.expect(t, "on n1")
}

// A node told to end a session replaced by an older one (a request that
// lost a race: the device logged in there again since) keeps it; told of
// a newer one, it ends it.
func TestClusterReplaceKeepsNewerSession(t *testing.T) {
	r, bus := testengine.Redis(t), testengine.NATS(t)
	n1 := testserver.StartClusterOn(t, r, bus, 1)[0]
	d := connect(t, n1, client.TCP, n1.Token("d1", ""))
	rc, err := redisclient.New(r.URL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	route, err := rc.Do(context.Background(), rc.B().Get().Key(redisclient.Key(config.ClusterPrefix, "demo", "at", "d1")).Build()).ToString()
	fields := strings.Fields(route)
	if err != nil || len(fields) != 3 || fields[0] != "n1" {
		t.Fatalf("d1's route: %q %v; want \"n1 <incarnation> <session>\"", route, err)
	}
	var session uint64
	fmt.Sscan(fields[2], &session)
	nc, err := nats.Connect(bus.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	replace := func(newer uint64) int {
		req, _ := json.Marshal(map[string]any{"op": "replace", "app": "demo", "devices": []string{"d1"}, "sessions": []uint64{newer}})
		msg, err := nc.Request("longlink.node.n1", req, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ N int }
		json.Unmarshal(msg.Data, &out)
		return out.N
	}
	if n := replace(session - 1); n != 0 {
		t.Fatalf("a replace by an older session ended %d sessions", n)
	}
	n1.Push(map[string]any{"devices": []string{"d1"}, "data": "still here"})
	d.expect(t, "still here")
	if n := replace(session + 1); n != 1 {
		t.Fatalf("a replace by a newer session ended %d sessions, want 1", n)
	}
	d.expectEnded(t, protocol.CodeReplaced)
}

// Status events carry the session's number, growing with each login of
// the device anywhere in the cluster: a backend that gets a replaced
// session's offline (from its node) after the newer session's online (from
// another node) sees that it is older.
func TestClusterStatusEventsCarrySessions(t *testing.T) {
	r, bus := testengine.Redis(t), testengine.NATS(t)
	b := newBackend(t)
	nodes := testserver.StartClusterOn(t, r, bus, 2, withWebhooks(b))
	connect(t, nodes[0], client.TCP, nodes[0].Token("d1", ""))
	visit(t, nodes[1], client.TCP, "d1", "") // replaces the session on n1, then closes
	visit(t, nodes[0], client.TCP, "d1", "")
	byEvent := map[string][]uint64{}
	testwait.EventuallyNil(t, func() error {
		events, sessions := b.sessionsOf("d1")
		clear(byEvent)
		for i, e := range events {
			byEvent[e] = append(byEvent[e], sessions[i])
		}
		if len(byEvent["online:login"]) != 3 || len(byEvent["offline:replaced"]) != 1 || len(byEvent["offline:closed"]) != 2 {
			return fmt.Errorf("events of d1: %v", events)
		}
		return nil
	})
	logins := byEvent["online:login"]
	slices.Sort(logins)
	if logins[0] == 0 || logins[0] == logins[1] || logins[1] == logins[2] || logins[2] >= 1<<53 {
		t.Fatalf("the logins' sessions %v are not distinct numbers in (0, 2^53)", logins)
	}
	// Each offline event names the session it ends: the one on n1 was
	// replaced by the one on n2, which closed, as did the last one.
	if byEvent["offline:replaced"][0] != logins[0] || !slices.Equal(sorted(byEvent["offline:closed"]), logins[1:]) {
		t.Fatalf("offline events %v, logins %v", byEvent, logins)
	}
}

func sorted(s []uint64) []uint64 { s = slices.Clone(s); slices.Sort(s); return s }

// A login keeps the device's seq counter and broadcast cursor from expiring
// (cluster.device_expiry from then on), so that a device that logs in now
// and then keeps its seqs.
func TestClusterLoginKeepsDeviceKeys(t *testing.T) {
	r := testengine.Redis(t)
	nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 1, func(c *config.Config) { c.Cluster.DeviceExpiry = time.Hour })
	rc, err := redisclient.New(r.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ctx := context.Background()
	seq := redisclient.Key(config.ClusterPrefix, "demo", redisclient.KindSeq, "d1")
	nodes[0].Push(stored([]string{"d1"}, "kept"))
	if err := rc.Do(ctx, rc.B().Pexpire().Key(seq).Milliseconds(10_000).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	d := connect(t, nodes[0], client.TCP, nodes[0].Token("d1", ""))
	d.expect(t, "kept")
	ms, err := rc.Do(ctx, rc.B().Pttl().Key(seq).Build()).AsInt64()
	if err != nil || ms < 59*60*1000 {
		t.Fatalf("after a login the seq counter lives %d ms more (%v); want about an hour", ms, err)
	}
}
