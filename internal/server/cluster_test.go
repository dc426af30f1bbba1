package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// eachClusterTransport runs body over TCP and WebSocket, each against its
// own 3-node cluster on a real redis-server and nats-server; and over TCP
// against one on a Redis Cluster (3 primaries, 3 replicas).
func eachClusterTransport(t *testing.T, body func(t *testing.T, nodes []*testserver.TS, tr client.Transport)) {
	for _, tr := range []client.Transport{client.TCP, client.WebSocket} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			body(t, testserver.StartCluster(t, 3), tr)
		})
	}
	t.Run("redis-cluster", func(t *testing.T) {
		t.Parallel()
		body(t, testserver.StartClusterOn(t, testengine.NewRedisCluster(t), testengine.NATS(t), 3), client.TCP)
	})
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
		testwait.Eventually(t, "d1 routed", func() bool { return presentIn(t, nodes[0], "d1") })
		out := nodes[0].Push(map[string]any{"devices": []string{"d1", "nobody"}, "data": "from n1"})
		if out["online"] != 1.0 {
			t.Fatalf("push through n1: %v", out)
		}
		d.expect(t, "from n1")

		// Dispatch names every live node (3: dispatch.max_endpoints).
		_, out = nodes[0].Call(http.MethodGet, "/v1/dispatch?app=demo&device=d9", "", nil)
		var tcp []string
		for _, e := range out["endpoints"].([]any) {
			if e := e.(map[string]any); e["transport"] == "tcp" {
				tcp = append(tcp, e["address"].(string))
			}
		}
		if len(tcp) != 3 || !slices.Contains(tcp, nodes[0].GatewayAddr()) || !slices.Contains(tcp, nodes[1].GatewayAddr()) ||
			!slices.Contains(tcp, nodes[2].GatewayAddr()) {
			t.Fatalf("dispatch on n1: %v", tcp)
		}
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
		testwait.Eventually(t, "d1 offline", func() bool { return !presentIn(t, nodes[0], "d1") })
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
		testwait.Eventually(t, "all routed", func() bool {
			return presentIn(t, nodes[0], "a") && presentIn(t, nodes[0], "b") && presentIn(t, nodes[0], "c")
		})
		tag(t, nodes[0], []string{"a", "b", "c", "away"}, []string{"team"}, nil)
		for _, tc := range []struct {
			body map[string]any
			data string
		}{
			{map[string]any{"users": []string{"alice"}, "data": "to alice"}, "to alice"},
			{map[string]any{"tags": map[string]any{"any": []string{"team"}}, "data": "to the team"}, "to the team"},
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
		// A stored broadcast too: every node hands it to its connections by
		// bseq; and a stored push to a tag, kept for the tagged device away.
		if out := nodes[2].Push(map[string]any{"broadcast": true, "data": "kept for all", "ttl": 60}); out["online"] != 3.0 {
			t.Fatalf("stored broadcast: %v", out)
		}
		for _, d := range devices {
			if p := d.expect(t, "kept for all"); p.BSeq != 1 {
				t.Fatalf("stored broadcast %+v", p)
			}
		}
		if out := nodes[1].Push(map[string]any{"tags": map[string]any{"all": []string{"team"}}, "data": "team, kept", "ttl": 60}); out["online"] != 3.0 || out["offline"] != 1.0 {
			t.Fatalf("stored push to a tag: %v", out)
		}
		for _, d := range devices {
			d.expect(t, "team, kept")
		}
	})
}

// Presence, kick and replacement work across nodes: a login on n2 ends
// the older session on n1 with 4003.
func TestClusterPresenceKickReplace(t *testing.T) {
	eachClusterTransport(t, func(t *testing.T, nodes []*testserver.TS, tr client.Transport) {
		older := connect(t, nodes[0], tr, nodes[0].Token("d1", ""))
		testwait.Eventually(t, "d1 routed", func() bool { return presentIn(t, nodes[2], "d1") })
		newer := connect(t, nodes[1], tr, nodes[1].Token("d1", ""))
		older.expectEnded(t, protocol.CodeReplaced)
		nodes[2].Push(map[string]any{"devices": []string{"d1"}, "data": "to the newer"})
		newer.expect(t, "to the newer")

		status, out := nodes[2].Call(http.MethodPost, "/v1/kick", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "devices": []string{"d1"}})
		if status != http.StatusOK || out["kicked"] != 1.0 {
			t.Fatalf("kick through n3: %d %v", status, out)
		}
		<-newer.Done()
		testwait.Eventually(t, "d1 offline everywhere", func() bool {
			return !presentIn(t, nodes[0], "d1") && !presentIn(t, nodes[1], "d1")
		})
	})
}

// The scenario: node n2 is killed (kill -9) while more than 1,000
// stored pushes go through n1 to devices on n2. Its devices reconnect to
// n3, resuming at their last seq, and between the two connections each
// receives every message that got a 200.
func TestClusterNodeKilledLosesNothingStored(t *testing.T) {
	for _, tr := range []client.Transport{client.TCP, client.WebSocket} {
		t.Run(string(tr), func(t *testing.T) {
			r, nats := testengine.Redis(t), testengine.NATS(t)
			clusterYAML := fmt.Sprintf("cluster: {redis: %q, nats: %q, lease: 2s}", r.URL(), nats.NATSURL())
			var nodes []*child
			for i := 1; i <= 3; i++ {
				nodes = append(nodes, startChild(t, t.TempDir(), fmt.Sprintf("node: n%d", i), clusterYAML))
			}
			const devices = 20
			var mu sync.Mutex
			got := map[string]bool{} // message ids received, by any connection
			onPush := func(p client.Push) { mu.Lock(); got[p.ID] = true; mu.Unlock() }
			olds := make([]*client.Client, devices)
			for i := range olds {
				c, err := client.Dial(context.Background(), client.Config{Addr: testserver.AddrFor(tr, nodes[1].gateway),
					Transport: tr, Token: testserver.MintToken(t, testserver.Demo, fmt.Sprint("d", i), ""), OnPush: onPush,
					MaxBackoff: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				olds[i] = c
			}
			const pushers, each = 40, 30 // 1,200 stored pushes
			var wg sync.WaitGroup
			var answered atomic.Int64
			sent := make(chan string, pushers*each)
			for p := range pushers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						status, out := testserver.CallAPI(t, "http://"+nodes[0].api, http.MethodPost, "/v1/push", testserver.Demo.APIKey,
							map[string]any{"app": "demo", "devices": []string{fmt.Sprint("d", (p+i)%devices)}, "data": "x", "ttl": 600})
						if status == http.StatusOK {
							sent <- out["id"].(string)
							answered.Add(1)
						}
					}
				}()
			}
			for answered.Load() < pushers*each/3 {
				time.Sleep(time.Millisecond)
			}
			nodes[1].kill9(t)
			wg.Wait()
			close(sent)
			if answered.Load() < 1000 {
				t.Fatalf("only %d pushes got a 200", answered.Load())
			}
			for i, old := range olds {
				news, err := client.Dial(context.Background(), client.Config{Addr: testserver.AddrFor(tr, nodes[2].gateway),
					Transport: tr, Token: testserver.MintToken(t, testserver.Demo, fmt.Sprint("d", i), ""), OnPush: onPush,
					LastSeq: old.LastSeq("demo")})
				if err != nil {
					t.Fatal(err)
				}
				defer news.Close()
			}
			var want []string
			for id := range sent {
				want = append(want, id)
			}
			testwait.Eventually(t, "every acknowledged message received", func() bool {
				mu.Lock()
				defer mu.Unlock()
				for _, id := range want {
					if !got[id] {
						return false
					}
				}
				return true
			})
		})
	}
}

// Redis or NATS briefly down: pushes answer 503 with a clear error (or,
// with NATS down, reach no remote device) while connections stay up, and
// everything recovers by itself when the engine is back; what was acked
// before is not delivered again, what was stored is.
func TestClusterEnginesDownAndBack(t *testing.T) {
	r, nats := testengine.Redis(t), testengine.NATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 2)
	d := connect(t, nodes[1], client.TCP, nodes[1].Token("d1", ""), func(c *client.Config) {
		c.OnDisconnect = func(err error) { t.Errorf("d1 disconnected: %v", err) }
	})
	nodes[0].Push(stored([]string{"d1"}, "before"))
	d.expect(t, "before")

	r.Stop()
	storedBody := stored([]string{"d1"}, "refused")
	storedBody["app"] = "demo"
	for _, body := range []map[string]any{storedBody, {"app": "demo", "devices": []string{"d1"}, "data": "refused"}} {
		status, out := nodes[0].Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey, body)
		if status != http.StatusServiceUnavailable || !strings.Contains(out["error"].(string), "retry later") {
			t.Fatalf("push with Redis down: %d %v", status, out)
		}
	}
	r.Start()
	// The leases lapsed while Redis was down; once renewed, n2 is routed to.
	testwait.Eventually(t, "pushes work again", func() bool {
		status, out := nodes[0].Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "redis is back"})
		return status == http.StatusOK && out["online"] == 1.0
	})
	d.expect(t, "redis is back")
	nodes[0].Push(stored([]string{"d1"}, "after redis"))
	d.expect(t, "after redis") // not "before" again, nor "refused"

	nats.Stop()
	if out := nodes[0].Push(stored([]string{"d1"}, "while nats is down")); out["offline"] != 1.0 {
		t.Fatalf("stored push with NATS down: %v", out)
	}
	nats.Start()
	testwait.Eventually(t, "online pushes across nodes again", func() bool {
		return nodes[0].Push(map[string]any{"devices": []string{"d1"}, "data": "after nats"})["online"] == 1.0
	})
	d.expect(t, "after nats")
	// The stored message the bus could not hand over waits in the mailbox:
	// the next stored push makes the connection read it, in seq order.
	nodes[0].Push(stored([]string{"d1"}, "last"))
	d.expect(t, "while nats is down")
	d.expect(t, "last")
}

// After Redis restarts (kill -9, then from its AOF), a device that logs
// in is routable when it is welcomed: its route is written (the broken
// connection to Redis retried once), or the login is refused with 4009;
// never welcomed and unroutable, as before (a stored push through another
// node answered offline, and the online device did not get it).
func TestClusterWelcomeWaitsForRoute(t *testing.T) {
	r, nats := testengine.Redis(t), testengine.NATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 2)
	for round := range 5 {
		r.Stop()
		r.Start()
		device := fmt.Sprint("d", round)
		d := connect(t, nodes[0], client.TCP, nodes[0].Token(device, ""))
		if out := nodes[1].Push(stored([]string{device}, "routable")); out["online"] != 1.0 {
			t.Fatalf("round %d: a stored push to the welcomed device through n2: %v", round, out)
		}
		d.expect(t, "routable")
	}
	// With Redis away, a login is refused (4009), not welcomed unroutable.
	r.Stop()
	c, err := client.Dial(context.Background(), client.Config{Addr: nodes[0].GatewayAddr(), Token: nodes[0].Token("late", "")})
	if err == nil {
		c.Close()
		t.Fatal("a device was welcomed while its route could not be recorded")
	}
	if !strings.Contains(err.Error(), "4009") {
		t.Fatalf("a login with Redis away: %v, want 4009", err)
	}
	r.Start() // for the nodes to give up their leases as they stop
}

// /v1/dispatch gives devices only nodes that renewed their lease in the
// last 3 s: a node killed (kill -9) leaves it while its lease still runs,
// instead of drawing devices for a whole lease.
func TestClusterDispatchLeavesOutSilentNodes(t *testing.T) {
	r, nats := testengine.Redis(t), testengine.NATS(t)
	n1 := testserver.StartClusterOn(t, r, nats, 1)[0]
	n2 := startChild(t, t.TempDir(), "node: n2",
		fmt.Sprintf("cluster: {redis: %q, nats: %q, lease: 30s}", r.URL(), nats.NATSURL()))
	dispatched := func() bool {
		_, out := n1.Call(http.MethodGet, "/v1/dispatch?app=demo&device=d1", "", nil)
		for _, e := range out["endpoints"].([]any) {
			if e.(map[string]any)["address"] == n2.gateway {
				return true
			}
		}
		return false
	}
	testwait.Eventually(t, "n2 in dispatch", dispatched)
	n2.kill9(t)
	testwait.Eventually(t, "the killed n2 out of dispatch", func() bool { return !dispatched() })
	if leaseUntil(t, r, "n2").Before(time.Now()) {
		t.Fatal("n2 left dispatch only when its lease ended")
	}
}

// leaseUntil reads when node's lease ends, from the cluster's Redis r.
func leaseUntil(t *testing.T, r *testengine.Engine, node string) time.Time {
	t.Helper()
	rc, err := redisclient.New(r.URL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	raw, err := rc.Do(context.Background(), rc.B().Hget().Key(config.ClusterPrefix+"nodes").Field(node).Build()).ToString()
	var l struct{ Until int64 }
	if err != nil || json.Unmarshal([]byte(raw), &l) != nil || l.Until == 0 {
		t.Fatalf("%s's lease: %q %v", node, raw, err)
	}
	return time.UnixMilli(l.Until)
}

// A login does not wait on a stalled node: the node that held the
// device's older session is SIGSTOPped (its lease still running), and the
// device's login on n1 is welcomed within a second, where it waited out the
// whole cluster timeout (5 s) before.
func TestClusterLoginNotHeldByAStalledNode(t *testing.T) {
	r, nats := testengine.Redis(t), testengine.NATS(t)
	n1 := testserver.StartClusterOn(t, r, nats, 1)[0]
	n2 := startChild(t, t.TempDir(), "node: n2",
		fmt.Sprintf("cluster: {redis: %q, nats: %q, lease: 30s}", r.URL(), nats.NATSURL()))
	dialDevice(t, client.Config{Addr: n2.gateway, Token: n1.Token("d1", "")})
	n2.signal(t, syscall.SIGSTOP)
	start := time.Now()
	d := connect(t, n1, client.TCP, n1.Token("d1", ""))
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the login waited %v on the stalled node", took)
	}
	n1.Push(map[string]any{"devices": []string{"d1"}, "data": "on n1"})
	d.expect(t, "on n1")
}

// An online-only push the cluster answered as not handed over is not
// handed over later: NATS is SIGSTOPped while the push is made (it answers
// online 0 once the caller gives up); when NATS resumes and passes the
// request on, the node drops it, past its deadline, and the device's next
// message is the next push, not the stale one (before, it came 5-10 s
// late).
func TestClusterNoLateHandOver(t *testing.T) {
	r, nats := testengine.Redis(t), testengine.NATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 2)
	got := make(chan string, 4)
	d, err := client.Dial(context.Background(), client.Config{Addr: nodes[1].GatewayAddr(), Token: nodes[1].Token("d1", ""),
		OnPush: func(p client.Push) { got <- string(p.Data) }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	nats.Signal(syscall.SIGSTOP)
	if out := nodes[0].Push(map[string]any{"devices": []string{"d1"}, "data": "stale"}); out["online"] != 0.0 {
		nats.Signal(syscall.SIGCONT)
		t.Fatalf("a push across a stalled bus: %v", out)
	}
	nats.Signal(syscall.SIGCONT)
	testwait.Eventually(t, "a push to reach d1 again", func() bool {
		return nodes[0].Push(map[string]any{"devices": []string{"d1"}, "data": "next"})["online"] == 1.0
	})
	if first := <-got; first != "next" {
		t.Fatalf("the device got %q after the bus resumed, want the next push", first)
	}
}

// A device's user is the one its latest login's token names: a login with
// another uid moves it from the old user to the new one, and one with no
// uid unbinds it; pushes to users follow at once.
func TestClusterDeviceChangesUser(t *testing.T) {
	nodes := testserver.StartCluster(t, 2)
	reach := func(user string) any {
		return nodes[0].Push(map[string]any{"users": []string{user}, "data": "to " + user, "ttl": 60})["online"]
	}
	for _, step := range []struct{ user, reached, notReached string }{
		{"alice", "alice", "bob"},
		{"bob", "bob", "alice"},
		{"", "", "bob"},
	} {
		d := connect(t, nodes[1], client.TCP, nodes[1].Token("d1", step.user))
		if step.reached != "" && reach(step.reached) != 1.0 {
			t.Fatalf("logged in as %q: a push to %s did not reach it", step.user, step.reached)
		}
		if got := reach(step.notReached); got != 0.0 {
			t.Fatalf("logged in as %q: a push to %s reached %v", step.user, step.notReached, got)
		}
		d.Close()
		testwait.Eventually(t, "d1 offline", func() bool { return !presentIn(t, nodes[0], "d1") })
	}
}

// A join that would make a group's first member on its node waits for the
// node to record its interest in the group: while Redis is away the join
// is refused (4009: retry), and once it is back a join, and a push to the
// group from another node, go through.
func TestClusterJoinWaitsForTheGroupsInterest(t *testing.T) {
	testengine.Long(t, "stalls Redis past the cluster's timeout (5 s)")
	r, nats := testengine.Redis(t), testengine.NATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 2)
	d := connect(t, nodes[1], client.TCP, nodes[1].Token("d1", ""))
	nodes[0].Push(stored([]string{"d1"}, "first"))
	d.expect(t, "first") // its login's sync read what it needs
	r.Signal(syscall.SIGSTOP)
	err := d.Join(context.Background(), "demo", "room")
	r.Signal(syscall.SIGCONT)
	if upCode(err) != protocol.CodeGoingAway {
		t.Fatalf("a join while Redis stalls: %v, want 4009", err)
	}
	testwait.EventuallyNil(t, func() error { return d.Join(context.Background(), "demo", "room") })
	// The stall outlasted the nodes' leases (2 s): until n2 renews its
	// own, a push from n1 sends it nothing, but must not forget that it
	// holds the room's member (no join would record it again).
	testwait.Eventually(t, "a group push after the join reaching d1", func() bool {
		return nodes[0].Push(map[string]any{"group": "room", "data": "to the room"})["online"] == 1.0
	})
	d.expect(t, "to the room")
}

// A node keeps each app's broadcast head in memory, raised by the bus.
// When the bus loses a stored broadcast (here NATS stalls past the push's
// deadline, so the node drops the late request), the node's check of the
// heads in Redis finds the log grew, and its connections read it: the
// device gets the broadcast all the same, in a few seconds.
func TestClusterBroadcastTheBusLostIsDelivered(t *testing.T) {
	r, nats := testengine.Redis(t), testengine.NATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 2)
	d1 := connect(t, nodes[1], client.TCP, nodes[1].Token("d1", ""))
	if out := nodes[0].Push(map[string]any{"broadcast": true, "data": "first", "ttl": 600}); out["online"] != 1.0 {
		t.Fatalf("stored broadcast: %v", out)
	}
	d1.expect(t, "first")
	nats.Signal(syscall.SIGSTOP)
	out := nodes[0].Push(map[string]any{"broadcast": true, "data": "second", "ttl": 600})
	nats.Signal(syscall.SIGCONT)
	if out["online"] != 0.0 {
		t.Fatalf("a stored broadcast across a stalled bus: %v", out)
	}
	if p := d1.expect(t, "second"); p.BSeq != 2 {
		t.Fatalf("the broadcast the bus lost: %+v", p)
	}
}

// A stored push that answered 5xx may be stored all the same: here Redis
// stalls past cluster.timeout (the node answers 503), then runs the write.
// The retry with the same id answers as a first success would and hands
// the message to the online device, which gets it once.
func TestClusterRetryHandsOverWhatAFailedPushStored(t *testing.T) {
	testengine.Long(t, "stalls Redis past cluster.timeout (5 s)")
	r, nats := testengine.Redis(t), testengine.NATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 2)
	d1 := connect(t, nodes[1], client.TCP, nodes[1].Token("d1", ""))
	nodes[0].Push(map[string]any{"devices": []string{"d1"}, "data": "first", "ttl": 600}) // Redis has the scripts
	d1.expect(t, "first")
	body := map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "once", "ttl": 600, "id": "order-7"}
	r.Signal(syscall.SIGSTOP)
	status, out := nodes[0].Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey, body)
	r.Signal(syscall.SIGCONT)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("a push while Redis stalls answered %d %v", status, out)
	}
	// The leases lapsed meanwhile: a retry hands the message over once n2
	// is live again (one before may answer it offline, still waiting).
	testwait.Eventually(t, "a retry to hand the message to the online device", func() bool {
		out = nodes[0].Push(body)
		return out["online"] == 1.0 && out["offline"] == 0.0
	})
	d1.expect(t, "once")
	nodes[0].Push(map[string]any{"devices": []string{"d1"}, "data": "next", "ttl": 600})
	d1.expect(t, "next") // and "once" only once
}

// With cluster.replicas_ack set, a stored push that fewer replicas than
// that confirmed answers 503 and says to retry with the same id (here:
// a Redis server with no replica).
func TestClusterReplicasAckUnmet(t *testing.T) {
	nodes := testserver.StartCluster(t, 1, func(c *config.Config) {
		c.Cluster.ReplicasAck, c.Cluster.ReplicasAckTimeout = 1, 100*time.Millisecond
	})
	status, out := nodes[0].Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey,
		map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "kept?", "ttl": 600, "id": "order-1"})
	if status != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(out["error"]), "retry with the same id") {
		t.Fatalf("a push its replicas did not confirm: %d %v", status, out)
	}
	status, out = nodes[0].Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey,
		map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "now", "ttl": 0})
	if status != http.StatusOK {
		t.Fatalf("an online push, which stores nothing: %d %v", status, out)
	}
}
