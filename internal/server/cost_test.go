package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// The cluster's costs per operation, counted from outside: the commands
// Redis ran (INFO commandstats, summed over the primaries) and the
// messages NATS carried (its monitoring endpoint's in_msgs), before and
// after one operation.

// commandCalls sums, per command (lower case), the calls the Redis servers
// at addrs ran.
func commandCalls(t *testing.T, addrs ...string) map[string]int64 {
	t.Helper()
	calls := make(map[string]int64)
	for _, addr := range addrs {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(info, "\r\n") {
			name, stats, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(stats[:strings.IndexByte(stats, ',')], 10, 64)
			calls[name] += n
		}
	}
	return calls
}

// zrangesBut starts counting the ZRANGEBYSCOREs the Redis at addr runs,
// scripts' included, but for the scheduler's polls (each node reads the due
// schedules every scheduleTick: a ZRANGEBYSCORE of the {due} key, which
// INFO commandstats cannot tell apart). It returns how many were run
// since. Redis's slow log, told to keep every command, names each
// command's key.
func zrangesBut(t *testing.T, addr string) func() int64 {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	for _, cmd := range []rueidis.Completed{
		c.B().ConfigSet().ParameterValue().ParameterValue("slowlog-log-slower-than", "0").ParameterValue("slowlog-max-len", "100000").Build(),
		c.B().SlowlogReset().Build(),
	} {
		if err := c.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	return func() int64 {
		t.Helper()
		entries, err := c.Do(ctx, c.B().SlowlogGet().Count(-1).Build()).ToArray()
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		for _, e := range entries {
			fields, err := e.ToArray()
			if err != nil || len(fields) < 4 {
				t.Fatalf("a slow log entry: %v %v", fields, err)
			}
			args, err := fields[3].AsStrSlice()
			if err != nil {
				t.Fatal(err)
			}
			if len(args) > 1 && strings.EqualFold(args[0], "zrangebyscore") && !strings.HasSuffix(args[1], "{due}due") {
				n++
			}
		}
		return n
	}
}

// diff is what after counts more than before.
func diff(before, after map[string]int64) map[string]int64 {
	out := make(map[string]int64)
	for k, v := range after {
		if v > before[k] {
			out[k] = v - before[k]
		}
	}
	return out
}

// natsMessages is how many messages the NATS server at monitor (its
// monitoring address) took in so far.
func natsMessages(t *testing.T, monitor string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + monitor + "/varz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		InMsgs int64 `json:"in_msgs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.InMsgs
}

// monitoredNATS starts a nats-server with its monitoring endpoint, and
// returns it and the endpoint's address.
func monitoredNATS(t *testing.T) (*testengine.Engine, string) {
	port := testengine.FreePort(t)
	return testengine.NATS(t, "-m", strconv.Itoa(port)), fmt.Sprint("127.0.0.1:", port)
}

// Presence of, and an online-only push to, 1,000 devices, 40 of them
// online on 1 of 4 nodes. On one Redis server each is one MGET of their
// routes and one bus request (and its answer), to that node; not one
// round trip per device. On a Redis Cluster, where their routes would take
// an MGET per slot (860), no route is read: each of the 3 other live nodes
// is asked. Presence of one device there reads its route, and asks its
// node.
func TestCostManyDevices(t *testing.T) {
	t.Run("one Redis", func(t *testing.T) {
		r := testengine.Redis(t)
		manyDevicesCost(t, r, 1, 2, r.Addr)
	})
	t.Run("Redis Cluster", func(t *testing.T) {
		testengine.Long(t, "starts a Redis Cluster")
		rc := testengine.NewRedisCluster(t)
		primaries, _ := rc.Roles(t)
		addrs := make([]string, len(primaries))
		for i, p := range primaries {
			addrs[i] = p.Addr
		}
		manyDevicesCost(t, rc, 0, 6, addrs...)
	})
}

// manyDevicesCost starts a 4-node cluster on r, with 40 of 1,000 devices
// online on one node, and checks that presence of the 1,000, and an
// online-only push to them, each answer right and cost mgets MGETs on the
// Redis servers at addrs and messages NATS messages; and that presence
// of one device reads one route and asks its node alone.
func manyDevicesCost(t *testing.T, r testserver.Redis, mgets, messages int64, addrs ...string) {
	nats, monitor := monitoredNATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 4)
	q := url.Values{"app": {"demo"}}
	var first *device
	for i := range 1000 {
		d := fmt.Sprint("d", i)
		q.Add("device", d)
		if i%25 == 0 {
			c := connect(t, nodes[1], client.TCP, nodes[1].Token(d, ""))
			if first == nil {
				first = c
			}
		}
	}
	testwait.Eventually(t, "the devices routed", func() bool { return presentIn(t, nodes[0], "d975") })
	presentIn(t, nodes[0], "d0") // the leases read, and cached
	cost := func(what string, op func()) {
		t.Helper()
		redisBefore, natsBefore := commandCalls(t, addrs...), natsMessages(t, monitor)
		op()
		redisCost, natsCost := diff(redisBefore, commandCalls(t, addrs...)), natsMessages(t, monitor)-natsBefore
		t.Logf("%s: Redis %v, NATS %d messages", what, redisCost, natsCost)
		if redisCost["mget"] != mgets || natsCost != messages {
			t.Errorf("%s cost %d MGETs and %d bus messages; want %d and %d", what, redisCost["mget"], natsCost, mgets, messages)
		}
	}
	cost("presence of 1,000 devices", func() {
		status, out := nodes[0].Call(http.MethodGet, "/v1/presence?"+q.Encode(), testserver.Demo.APIKey, nil)
		if status != http.StatusOK {
			t.Fatalf("presence: %d %v", status, out)
		}
		online := 0
		for d, p := range out["devices"].(map[string]any) {
			if p.(map[string]any)["online"] == true {
				online++
				if n, _ := strconv.Atoi(d[1:]); n%25 != 0 {
					t.Errorf("%s is said online", d)
				}
			}
		}
		if online != 40 {
			t.Errorf("%d online, want 40", online)
		}
	})
	cost("a push to 1,000 devices", func() {
		if out := nodes[0].Push(map[string]any{"devices": q["device"], "data": "to many"}); out["online"] != 40.0 {
			t.Errorf("push to 1,000 devices, 40 online: %v", out)
		}
	})
	first.expect(t, "to many")

	redisBefore, natsBefore := commandCalls(t, addrs...), natsMessages(t, monitor)
	if !presentIn(t, nodes[0], "d25") {
		t.Error("d25 is said offline")
	}
	if one, bus := diff(redisBefore, commandCalls(t, addrs...)), natsMessages(t, monitor)-natsBefore; one["mget"] != 1 || bus != 2 {
		t.Errorf("presence of one device cost %d MGETs and %d bus messages; want 1 and 2", one["mget"], bus)
	}
}

// A push to a user whose devices are on 1 of 4 nodes is one bus request
// (and its answer), to that node: the user's devices are read from their
// bindings, which a login writes before its welcome, so a push right
// after the login finds them.
func TestCostUserPush(t *testing.T) {
	r := testengine.Redis(t)
	nats, monitor := monitoredNATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 4)
	phone := connect(t, nodes[1], client.TCP, nodes[1].Token("phone", "alice"))
	tablet := connect(t, nodes[1], client.TCP, nodes[1].Token("tablet", "alice"))
	connect(t, nodes[2], client.TCP, nodes[2].Token("other", "bob"))
	testwait.Eventually(t, "the devices routed", func() bool { return presentIn(t, nodes[0], "phone") })
	before := natsMessages(t, monitor)
	out := nodes[0].Push(map[string]any{"users": []string{"alice"}, "data": "to alice"})
	cost := natsMessages(t, monitor) - before
	if out["online"] != 2.0 {
		t.Fatalf("push to alice: %v", out)
	}
	phone.expect(t, "to alice")
	tablet.expect(t, "to alice")
	t.Logf("a push to a user with 2 devices on 1 of 4 nodes: %d bus messages", cost)
	if cost != 2 {
		t.Errorf("a push to a user on 1 of 4 nodes cost %d bus messages; want 2 (a request and its answer)", cost)
	}
}

// A push to a group whose members are on 1 of 4 nodes is one bus request
// (and its answer), to that node: a node records its interest in a group
// at the group's first join there, before the join is answered. Once the
// members are gone, a push finds the node with none and forgets it: the
// pushes after it send nothing.
func TestCostGroupPush(t *testing.T) {
	r := testengine.Redis(t)
	nats, monitor := monitoredNATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 4)
	var members []*device
	for _, name := range []string{"m1", "m2"} {
		d := connect(t, nodes[1], client.TCP, nodes[1].Token(name, ""))
		if err := d.Join(context.Background(), "demo", "room"); err != nil {
			t.Fatal(err)
		}
		members = append(members, d)
	}
	connect(t, nodes[2], client.TCP, nodes[2].Token("outsider", ""))
	push := func() (online any, busMessages int64) {
		before := natsMessages(t, monitor)
		out := nodes[0].Push(map[string]any{"group": "room", "data": "to the room"})
		return out["online"], natsMessages(t, monitor) - before
	}
	online, cost := push()
	if online != 2.0 {
		t.Fatalf("a group push reached %v, want 2", online)
	}
	for _, d := range members {
		d.expect(t, "to the room")
	}
	t.Logf("a push to a group with 2 members on 1 of 4 nodes: %d bus messages", cost)
	if cost != 2 {
		t.Errorf("a push to a group on 1 of 4 nodes cost %d bus messages; want 2 (a request and its answer)", cost)
	}
	for _, d := range members {
		d.Close()
	}
	// A push once the members' connections have left the group finds the
	// node with none, and forgets it; the pushes after it ask no node.
	testwait.Eventually(t, "a group push that asks no node", func() bool {
		online, cost = push()
		return cost == 0
	})
	if online != 0.0 {
		t.Errorf("a push to a group whose members left reached %v", online)
	}
}

// A stored push to 100 devices on a Redis Cluster: one script per
// partition the devices are in, and one for the report (in the message's
// partition, unless a device's), in one pipeline; the scripts read the
// devices' routes too, so there is no other read.
func TestCostStoredPushOnARedisCluster(t *testing.T) {
	rc := testengine.NewRedisCluster(t)
	nodes := testserver.StartClusterOn(t, rc, testengine.NATS(t), 2)
	devices := make([]string, 100)
	partitions := make(map[int]bool)
	for i := range devices {
		devices[i] = fmt.Sprint("d", i)
		partitions[redisclient.Partition("demo", devices[i])] = true
	}
	nodes[0].Push(stored([]string{"warm"}, "load the scripts"))
	primaries, _ := rc.Roles(t)
	addrs := make([]string, len(primaries))
	for i, p := range primaries {
		addrs[i] = p.Addr
	}
	before := commandCalls(t, addrs...)
	out := nodes[0].Push(stored(devices, "to 100"))
	cost := diff(before, commandCalls(t, addrs...))
	if out["offline"] != 100.0 {
		t.Fatalf("push: %v", out)
	}
	t.Logf("a stored push to 100 devices in %d partitions: Redis %v", len(partitions), cost)
	if cost["evalsha"] > int64(len(partitions))+1 || cost["eval"] > 0 {
		t.Errorf("%d scripts for %d partitions (and the report)", cost["evalsha"], len(partitions))
	}
	if cost["mget"] > 0 {
		t.Errorf("%d MGETs of routes: the append's scripts read them", cost["mget"])
	}
}

// A login in a cluster of a device that has had a stored message and acked
// it (last_seq and last_bseqs sent), with nothing waiting: one round trip,
// the claim's script (its route, its last seq, its broadcast cursor, its
// user, its mailbox after last_seq; the app's broadcast head is in the
// node's memory), and one script of the batched writer (the login's ack).
// No bus message: no other node held it.
func TestCostLogin(t *testing.T) {
	r := testengine.Redis(t)
	nats, monitor := monitoredNATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 1)
	rc := redisClient(t, r.URL())
	// A login's ack is the store's (its script loaded here): the session
	// did not send what it acks.
	nodes[0].Push(stored([]string{"warm"}, "w"))
	connect(t, nodes[0], client.TCP, nodes[0].Token("warm", ""), func(c *client.Config) { c.LastSeq = 1 })
	mailboxGone(t, rc, "warm")
	d := connect(t, nodes[0], client.TCP, nodes[0].Token("d1", ""))
	id := nodes[0].Push(stored([]string{"d1"}, "first"))["id"]
	d.expect(t, "first")
	testwait.Eventually(t, "the ack written (the writer idle)", func() bool {
		_, out := nodes[0].Call(http.MethodGet, fmt.Sprint("/v1/messages/", id, "?app=demo"), testserver.Demo.APIKey, nil)
		return out["acked"] == 1.0 && out["online"] == 1.0
	})
	d.Close()
	testwait.Eventually(t, "d1's route released", func() bool {
		n, err := rc.Do(context.Background(), rc.B().Exists().Key(redisclient.Key(config.ClusterPrefix, "demo", "at", "d1")).Build()).AsInt64()
		return err == nil && n == 0
	})
	zranges := zrangesBut(t, r.Addr)
	redisBefore, natsBefore := commandCalls(t, r.Addr), natsMessages(t, monitor)
	c, err := client.Dial(context.Background(), client.Config{Addr: nodes[0].GatewayAddr(), Token: nodes[0].Token("d1", ""),
		LastSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testwait.Eventually(t, "the login's ack written", func() bool {
		return diff(redisBefore, commandCalls(t, r.Addr))["evalsha"] >= 2
	})
	cost, natsCost := diff(redisBefore, commandCalls(t, r.Addr)), natsMessages(t, monitor)-natsBefore
	cost["zrangebyscore"] = zranges() // the slow log's count, which leaves out the scheduler's polls
	t.Logf("a login: Redis %v (the scheduler's polls left out), NATS %d messages", cost, natsCost)
	// GETs: 4 in the claim (the route, the seq, the cursor, the user), 1
	// in the ack (the seq); ZRANGEBYSCOREs: the claim's read of the mailbox,
	// and the ack's. No SET but the route's: the user is unchanged. (An
	// MGET may be the node's check of the broadcast heads, once a second.)
	if cost["evalsha"] != 2 || cost["get"] != 5 || cost["set"] != 1 || cost["zrangebyscore"] != 2 || natsCost != 0 {
		t.Errorf("a login cost %v and %d bus messages", cost, natsCost)
	}
}

// A logout in a cluster is one script: the route's removal (a GET and a
// DEL) and, for a session that acked a stored broadcast, the save of its
// cursor (a GET and a SET), which its acks did not write. The device's
// next session, which acks nothing, saves nothing.
func TestCostLogout(t *testing.T) {
	r := testengine.Redis(t)
	nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 1)
	before := commandCalls(t, r.Addr) // a first logout loads the script
	connect(t, nodes[0], client.TCP, nodes[0].Token("warm", "")).Close()
	testwait.Eventually(t, "the route released", func() bool { return diff(before, commandCalls(t, r.Addr))["del"] == 1 })
	for _, acked := range []bool{true, false} {
		d := connect(t, nodes[0], client.TCP, nodes[0].Token("d1", ""))
		if acked {
			id := nodes[0].Push(map[string]any{"broadcast": true, "data": "to all", "ttl": 600})["id"].(string)
			d.expect(t, "to all")
			report(t, nodes[0], id, map[string]any{"acked": 1.0}) // counted: the writer is done with it
		}
		before := commandCalls(t, r.Addr)
		d.Close()
		testwait.Eventually(t, "the route released", func() bool { return diff(before, commandCalls(t, r.Addr))["del"] == 1 })
		cost := diff(before, commandCalls(t, r.Addr))
		t.Logf("a logout (acked a broadcast: %v): Redis %v", acked, cost)
		want := map[string]int64{"evalsha": 1, "get": 1, "del": 1, "set": 0}
		if acked {
			want["get"], want["set"] = 2, 1
		}
		for cmd, n := range want {
			if cost[cmd] != n {
				t.Errorf("a logout (acked a broadcast: %v) cost %v", acked, cost)
				break
			}
		}
	}
}

// A login of a device whose previous node died (kill -9, its lease lapsed)
// sends no bus message: there is no node to tell.
func TestCostLoginAfterItsNodeDied(t *testing.T) {
	r := testengine.Redis(t)
	nats, monitor := monitoredNATS(t)
	nodes := testserver.StartClusterOn(t, r, nats, 1)
	dead := startChild(t, t.TempDir(), "node: n2", fmt.Sprintf("cluster: {redis: %q, nats: %q, lease: 2s}", r.URL(), nats.NATSURL()))
	c, err := client.Dial(context.Background(), client.Config{Addr: dead.gateway, Token: nodes[0].Token("d1", "")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testwait.Eventually(t, "d1 routed to n2", func() bool { return presentIn(t, nodes[0], "d1") })
	dead.kill9(t)
	until := leaseUntil(t, r, "n2") // its last renewal's
	// n1 reads the leases at most a second old (membersMaxAge).
	testwait.Eventually(t, "n2's lease lapsed, as n1 sees it", func() bool { return time.Now().After(until.Add(time.Second)) })
	before := natsMessages(t, monitor)
	connect(t, nodes[0], client.TCP, nodes[0].Token("d1", ""))
	if sent := natsMessages(t, monitor) - before; sent != 0 {
		t.Errorf("the login sent %d bus messages", sent)
	}
}

// A stored push with "report": false writes no report key in Redis; the
// same push with its report does.
func TestPushWithoutReportKeepsNoKey(t *testing.T) {
	r := testengine.Redis(t)
	nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 1)
	rc, err := redisclient.New(r.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for _, report := range []bool{true, false} {
		body := stored([]string{"d1"}, "kept")
		body["report"] = report
		id := nodes[0].Push(body)["id"].(string)
		key := redisclient.Key(config.ClusterPrefix, "demo", "r", id)
		n, err := rc.Do(context.Background(), rc.B().Exists().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if (n == 1) != report {
			t.Errorf("a push with report %v: its report key exists: %v", report, n == 1)
		}
	}
}

// engineCommands are the commands the Redis servers at addrs ran, summed,
// leaving out those of clients that only look (INFO, HELLO, PING, CLUSTER,
// …): what the nodes asked of them.
func engineCommands(t *testing.T, addrs ...string) int64 {
	var n int64
	for name, calls := range commandCalls(t, addrs...) {
		switch strings.SplitN(name, "|", 2)[0] {
		case "info", "hello", "ping", "cluster", "readonly", "client", "command", "config":
		default:
			n += calls
		}
	}
	return n
}

// On a Redis Cluster (3 primaries, 3 replicas) each operation costs no
// more than 1.3 times the commands it costs on one Redis server, or, for
// one that reads or writes many devices' keys, no more than one command
// more per partition it touches (a script per partition, or an MGET of
// routes per slot: a multi-key command stays in one slot), nothing more
// per device. The same operations run on a 2-node cluster on each engine,
// counted over the primaries; no device is online after the logins, so
// no ack falls in the counts. The lease renewals and head checks of the
// nodes (a few commands a second) do; the operations are many, so they
// weigh little.
func TestCommandsOnARedisCluster(t *testing.T) {
	testengine.Long(t, "starts a Redis Cluster and runs each operation on both engines")
	offline := make([]string, 100)
	for i := range offline {
		offline[i] = fmt.Sprint("away", i)
	}
	presence := url.Values{"app": {"demo"}}
	for i := range 1000 {
		presence.Add("device", fmt.Sprint("d", i))
	}
	ops := []struct {
		name  string
		n     int     // operations
		extra float64 // commands a Redis Cluster may add to each: one per partition (slot) touched
		run   func(t *testing.T, nodes []*testserver.TS)
	}{
		{"login and logout, nothing waiting", 50, 0, func(t *testing.T, nodes []*testserver.TS) {
			for i := range 50 { // the first login of each binds it to its user
				connect(t, nodes[1], client.TCP, nodes[1].Token(fmt.Sprint("d", i), fmt.Sprint("u", i))).Close()
			}
			testwait.Eventually(t, "the devices offline", func() bool { return !presentIn(t, nodes[0], "d49") })
		}},
		{"push to a user", 50, 0, func(t *testing.T, nodes []*testserver.TS) {
			for i := range 50 {
				nodes[0].Push(map[string]any{"users": []string{fmt.Sprint("u", i)}, "data": "to a user"})
			}
		}},
		{"push to a group", 50, 0, func(t *testing.T, nodes []*testserver.TS) {
			for range 50 {
				nodes[0].Push(map[string]any{"group": "room", "data": "to the room"})
			}
		}},
		{"stored push to 100 devices", 10, float64(redisclient.PartitionsOf("demo", offline)), func(t *testing.T, nodes []*testserver.TS) {
			for range 10 {
				if out := nodes[0].Push(stored(offline, "kept")); out["offline"] != 100.0 {
					t.Fatalf("push: %v", out)
				}
			}
		}},
		{"push to 1,000 devices (online only)", 10, 0, func(t *testing.T, nodes []*testserver.TS) {
			for range 10 {
				nodes[0].Push(map[string]any{"devices": presence["device"], "data": "to many"})
			}
		}},
		{"presence of 1,000 devices", 10, 0, func(t *testing.T, nodes []*testserver.TS) {
			for range 10 {
				if status, out := nodes[0].Call(http.MethodGet, "/v1/presence?"+presence.Encode(), testserver.Demo.APIKey, nil); status != http.StatusOK {
					t.Fatalf("presence: %d %v", status, out)
				}
			}
		}},
		{"stored broadcast", 20, 0, func(t *testing.T, nodes []*testserver.TS) {
			for range 20 {
				nodes[0].Push(map[string]any{"broadcast": true, "data": "to all", "ttl": 600})
			}
		}},
	}
	costs := make(map[string][2]float64)
	for e := range 2 {
		var r testserver.Redis
		var primaries []string
		if e == 0 {
			one := testengine.Redis(t)
			r, primaries = one, []string{one.Addr}
		} else {
			rc := testengine.NewRedisCluster(t)
			p, _ := rc.Roles(t)
			for _, x := range p {
				primaries = append(primaries, x.Addr)
			}
			r = rc
		}
		nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 2)
		nodes[0].Push(stored([]string{"warm"}, "load the scripts"))
		for _, o := range ops {
			before := engineCommands(t, primaries...)
			o.run(t, nodes)
			c := costs[o.name]
			c[e] = float64(engineCommands(t, primaries...)-before) / float64(o.n)
			costs[o.name] = c
		}
	}
	for _, o := range ops {
		c := costs[o.name]
		t.Logf("%s: %.1f commands on one Redis, %.1f on a Redis Cluster (%.2f×; one per partition touched may add %.0f)", o.name, c[0], c[1], c[1]/c[0], o.extra)
		// The nodes' own commands (leases, head checks, member reads: a few a
		// second) may add up to one per operation, and 1% to a long one.
		if c[1] > max(1.3*c[0], c[0]+1.01*o.extra+1) {
			t.Errorf("%s costs %.1f commands on a Redis Cluster, %.1f on one Redis", o.name, c[1], c[0])
		}
	}
}

// keyMonitor counts, by key, the commands a Redis server runs (MONITOR:
// those run by scripts too, each once), until stop.
type keyMonitor struct {
	conn net.Conn
	done chan struct{}

	mu    sync.Mutex
	keys  map[string]int
	total int
}

// monitorKeys starts counting the commands the Redis server at addr runs.
func monitorKeys(t *testing.T, addr string) *keyMonitor {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("MONITOR: %q %v", line, err)
	}
	m := &keyMonitor{conn: c, done: make(chan struct{}), keys: make(map[string]int)}
	go func() {
		defer close(m.done)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			m.count(line)
		}
	}()
	t.Cleanup(func() { c.Close() })
	return m
}

// count counts one MONITOR line: `+<time> [<db> <client>] "CMD" "arg" …`.
func (m *keyMonitor) count(line string) {
	_, rest, ok := strings.Cut(line, "] ")
	if !ok {
		return
	}
	args := quoted(rest)
	if len(args) == 0 {
		return
	}
	var keys []string
	switch strings.ToUpper(args[0]) {
	case "EVALSHA", "EVAL", "SCRIPT", "PING", "INFO", "HELLO", "CLIENT", "CLUSTER", "TIME", "WAIT", "SELECT",
		"COMMAND", "CONFIG", "READONLY", "MULTI", "EXEC", "MONITOR":
		// no key, or (a script's call) its commands are counted as they run
	case "MGET", "DEL", "EXISTS", "UNLINK":
		keys = args[1:]
	default:
		keys = args[1:min(2, len(args))]
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		m.keys[k]++
		m.total++
	}
}

// quoted splits MONITOR's quoted arguments, escapes kept as they are.
func quoted(s string) []string {
	var out []string
	for {
		start := strings.IndexByte(s, '"')
		if start < 0 {
			return out
		}
		end := start + 1
		for end < len(s) && s[end] != '"' {
			if s[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(s) {
			return out
		}
		out = append(out, s[start+1:end])
		s = s[end+1:]
	}
}

// hottest returns the key with the most commands, its count and the total
// counted so far.
func (m *keyMonitor) hottest() (key string, n, total int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, c := range m.keys {
		if c > n {
			key, n = k, c
		}
	}
	return key, n, m.total
}

// In a login storm (every device of two nodes logs out and in again, each
// with a stored message waiting) no key takes over 1% of the commands: a
// login touches its device's keys, the app's broadcast head is in the
// nodes' memory, and the acks of the message are added to its report once
// a second. Nor in a stored broadcast that they all ack: each node reads
// the app's head and log once for it, not once per batch of acks, and no
// device's key is written until its session ends (its cursor, saved then).
func TestNoHotKey(t *testing.T) {
	r := testengine.Redis(t)
	nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 2)
	const n = 600
	devices := make([]string, n)
	for i := range devices {
		devices[i] = fmt.Sprint("d", i)
		node := nodes[i%2]
		connect(t, node, client.TCP, node.Token(devices[i], fmt.Sprint("u", i))).Close()
	}
	testwait.Eventually(t, "the devices offline", func() bool { return !presentIn(t, nodes[0], "d299") })
	nodes[0].Push(stored(devices, "waiting")) // one message waits for each
	m := monitorKeys(t, r.Addr)
	online := make([]*device, n)
	for i, d := range devices {
		node := nodes[(i+1)%2] // each on the other node this time
		online[i] = connect(t, node, client.TCP, node.Token(d, fmt.Sprint("u", i)))
		online[i].expect(t, "waiting")
	}
	key, hot, total := m.hottest()
	t.Logf("a storm of %d logins: %d commands on keys; the hottest key, %s, took %d", n, total, key, hot)
	if total < 5*n || hot*100 > total {
		t.Errorf("the hottest key %s took %d of %d commands", key, hot, total)
	}

	acks := func() float64 {
		return metricValue(nodes[0], `longlink_acks_total\{app="demo"\}`) + metricValue(nodes[1], `longlink_acks_total\{app="demo"\}`)
	}
	before := acks()
	m = monitorKeys(t, r.Addr)
	id := nodes[0].Push(map[string]any{"broadcast": true, "data": "to all", "ttl": 600})["id"].(string)
	for _, d := range online {
		d.expect(t, "to all")
	}
	testwait.Eventually(t, "every ack taken", func() bool { return acks() >= before+n })
	key, hot, total = m.hottest()
	logKey := redisclient.Key(config.ClusterPrefix, "demo", "b", "")
	t.Logf("a stored broadcast acked by %d devices: %d commands on keys; the hottest key, %s, took %d; the log, %d", n, total, key, hot, m.of(logKey))
	if hot > n/10 {
		t.Errorf("the hottest key %s took %d commands for %d acks", key, hot, n)
	}
	if total > n/6 { // the append, a read of the log and the report's updates, by each node, once a second
		t.Errorf("a stored broadcast and %d acks cost %d commands: they grow with the devices", n, total)
	}
	// The acks wrote no device's key: each cursor is in its node's memory,
	// and is saved once, when its session ends.
	if c := m.matching(":c:"); c != 0 {
		t.Errorf("the acks of a stored broadcast touched %d cursors while their sessions live", c)
	}
	report(t, nodes[1], id, map[string]any{"acked": float64(n)})
	for _, d := range online {
		d.Close()
	}
	testwait.Eventually(t, "every session's cursor saved as it ends", func() bool { return m.matching(":c:") == n })
}

// of is how many commands went to key.
func (m *keyMonitor) of(key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.keys[key]
}

// matching is how many keys that contain part were touched.
func (m *keyMonitor) matching(part string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k := range m.keys {
		if strings.Contains(k, part) {
			n++
		}
	}
	return n
}
