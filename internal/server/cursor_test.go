package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// redisClient is a client of the Redis at url until the test ends.
func redisClient(t *testing.T, url string) rueidis.Client {
	t.Helper()
	rc, err := redisclient.New(url, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	return rc
}

// savedCursor reads device's broadcast cursor in demo as Redis holds it (0
// if none).
func savedCursor(t *testing.T, rc rueidis.Client, device string) uint64 {
	t.Helper()
	key := redisclient.Key(config.ClusterPrefix, "demo", redisclient.KindCursor, device)
	v, err := rc.Do(context.Background(), rc.B().Get().Key(key).Build()).AsUint64()
	if err != nil && !rueidis.IsRedisNil(err) {
		t.Fatal(err)
	}
	return v
}

// ackedBSeq is device's cursor in demo's broadcast log as the node holding
// its session knows it (the admin API, through node).
func ackedBSeq(t *testing.T, node *testserver.TS, device string) uint64 {
	t.Helper()
	_, out := admin(t, node, "/v1/admin/devices/demo/"+device)
	v, _ := out["acked_bseq"].(float64)
	return uint64(v)
}

// broadcastAll pushes n stored broadcasts through node, and returns their
// data in order.
func broadcastAll(t *testing.T, node *testserver.TS, n int, tag string) []string {
	t.Helper()
	data := make([]string, n)
	for i := range data {
		data[i] = fmt.Sprintf("%s %d", tag, i)
		node.Push(map[string]any{"broadcast": true, "data": data[i], "ttl": 600})
	}
	return data
}

// In a cluster a device's acks of stored broadcasts move its cursor in
// its node's memory, not in Redis; the session saves it when it ends, and
// a new process of the device logging in elsewhere gets nothing again. On
// one Redis and on a Redis Cluster (the save's script touches the route
// and the cursor: one partition).
func TestClusterBroadcastCursorSavedAtSessionEnd(t *testing.T) {
	for name, r := range map[string]func(t *testing.T) testserver.Redis{
		"redis":         func(t *testing.T) testserver.Redis { return testengine.Redis(t) },
		"redis-cluster": func(t *testing.T) testserver.Redis { return testengine.NewRedisCluster(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := r(t)
			nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 2, withOpsToken)
			rc := redisClient(t, r.URL())

			d := connect(t, nodes[0], client.TCP, nodes[0].Token("d1", ""))
			for _, data := range broadcastAll(t, nodes[1], 3, "before") {
				d.expect(t, data)
			}
			testwait.Eventually(t, "the three acks taken", func() bool { return ackedBSeq(t, nodes[1], "d1") == 3 })
			if got := savedCursor(t, rc, "d1"); got != 0 {
				t.Fatalf("the acks wrote the cursor in Redis (%d) while the session lives", got)
			}
			_, out := admin(t, nodes[1], "/v1/admin/devices/demo/d1")
			if out["broadcasts_waiting"] != 0.0 {
				t.Fatalf("a live device with every broadcast acked: %v", out)
			}

			d.Close()
			testwait.Eventually(t, "the session's cursor saved as it ends", func() bool { return savedCursor(t, rc, "d1") == 3 })
			again := connect(t, nodes[1], client.TCP, nodes[1].Token("d1", "")) // a new process: no last_bseqs of its own
			nodes[0].Push(map[string]any{"broadcast": true, "data": "after", "ttl": 600})
			again.expect(t, "after") // and none of the three before it
		})
	}
}

// A login that replaces a live session whose cursor is only in its node's
// memory starts from that cursor: on another node (the replace request's
// answer carries it) and on the same node (the session is here). On the
// same node the older session saves nothing as it ends: the newer one,
// closed before it acked anything, saves the cursor it took over.
func TestClusterReplacedSessionHandsOverItsCursor(t *testing.T) {
	r := testengine.Redis(t)
	nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 2, withOpsToken)
	rc := redisClient(t, r.URL())
	var log []string // the app's broadcast log: a new device gets it all
	for i, c := range []struct {
		to      *testserver.TS
		closeIt bool // the newer session ends at once
	}{{nodes[1], false}, {nodes[0], false}, {nodes[0], true}} {
		device := fmt.Sprint("d", i)
		old := connect(t, nodes[0], client.TCP, nodes[0].Token(device, ""))
		log = append(log, broadcastAll(t, nodes[0], 2, device)...)
		for _, data := range log {
			old.expect(t, data)
		}
		testwait.Eventually(t, "the acks taken", func() bool { return ackedBSeq(t, nodes[0], device) == uint64(len(log)) })
		if got := savedCursor(t, rc, device); got != 0 {
			t.Fatalf("the acks wrote the cursor in Redis (%d)", got)
		}
		// A new process of the device, while the old connection lives.
		replacing := connect(t, c.to, client.TCP, c.to.Token(device, ""))
		old.expectEnded(t, protocol.CodeReplaced)
		if c.closeIt {
			replacing.Close()
			testwait.Eventually(t, "the cursor saved", func() bool { return savedCursor(t, rc, device) == uint64(len(log)) })
			replacing = connect(t, c.to, client.TCP, c.to.Token(device, ""))
		}
		log = append(log, broadcastAll(t, nodes[1], 1, device+" after")...)
		replacing.expect(t, log[len(log)-1]) // and none the old session acked
	}
}

// A device that closes and logs in again at once, on either node, never
// gets a broadcast its last session acked: the save of the cursor is
// ordered before the next login's read wherever it logs in.
func TestClusterQuickReloginsGetNoBroadcastAgain(t *testing.T) {
	nodes := testserver.StartCluster(t, 2, withOpsToken)
	const rounds = 30
	for i := range rounds {
		node := nodes[i%3%2] // n1, n2, n1, n1, n2, n1…: to the other node twice, then the same one
		d := connect(t, node, client.TCP, node.Token("d1", ""))
		data := fmt.Sprint("round ", i)
		nodes[0].Push(map[string]any{"broadcast": true, "data": data, "ttl": 600})
		d.expect(t, data)
		testwait.Eventually(t, "the ack taken", func() bool { return ackedBSeq(t, node, "d1") == uint64(i+1) })
		d.Close()
	}
}

// A node killed (kill -9) loses the broadcast cursors its sessions moved
// since their logins, and nothing else: a new process of each of its
// devices gets again the broadcasts its lost session acked (not the one
// acked before it, saved as that earlier session ended), then every later
// one.
func TestClusterNodeKilledLosesOnlyItsSessionsCursors(t *testing.T) {
	r, nats := testengine.Redis(t), testengine.NATS(t)
	clusterYAML := fmt.Sprintf("cluster: {redis: %q, nats: %q, lease: 2s}", r.URL(), nats.NATSURL())
	n1 := startChild(t, t.TempDir(), "node: n1", clusterYAML)
	n2 := startChild(t, t.TempDir(), "node: n2", clusterYAML)
	rc := redisClient(t, r.URL())
	dial := func(node *child, device string) *device {
		return dialDevice(t, client.Config{Addr: testserver.AddrFor(client.TCP, node.gateway), Transport: client.TCP,
			Token: testserver.MintToken(t, testserver.Demo, device, "")})
	}
	push := func(data string) {
		status, out := testserver.CallAPI(t, "http://"+n1.api, http.MethodPost, "/v1/push", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "broadcast": true, "data": data, "ttl": 600})
		if status != http.StatusOK {
			t.Fatalf("push: %d %v", status, out)
		}
	}
	acks := func(node *child) float64 { return sampleValue(node.metrics(t), `longlink_acks_total\{app="demo"\}`) }
	devices := []string{"d0", "d1", "d2", "d3", "d4"}

	push("early") // acked by a session on n1, which saves its cursor as it ends
	earlies := make([]*device, len(devices))
	for i, d := range devices {
		earlies[i] = dial(n1, d)
		earlies[i].expect(t, "early")
	}
	testwait.Eventually(t, "the acks on n1", func() bool { return acks(n1) >= float64(len(devices)) })
	for _, early := range earlies {
		early.Close()
	}
	for _, d := range devices {
		testwait.Eventually(t, d+"'s cursor saved", func() bool { return savedCursor(t, rc, d) == 1 })
	}

	olds := make([]*device, len(devices)) // sessions on n2 ack two more, then n2 dies
	for i, d := range devices {
		olds[i] = dial(n2, d)
	}
	push("a")
	push("b")
	for _, old := range olds {
		old.expect(t, "a")
		old.expect(t, "b")
	}
	testwait.Eventually(t, "the acks on n2", func() bool { return acks(n2) >= float64(2*len(devices)) })
	n2.kill9(t)

	news := make([]*device, len(devices)) // new processes: no last_bseqs of their own
	for i, d := range devices {
		news[i] = dial(n1, d)
		news[i].expect(t, "a")
		news[i].expect(t, "b")
	}
	push("after")
	for _, d := range news {
		d.expect(t, "after")
	}
}

// In a cluster, where the cursor moves in the node's memory, a client still
// cannot skip broadcasts: an ack beyond what its session was sent, and a
// login's last_bseq beyond the log, are clamped (and counted), so the
// cursor saved as the session ends is the log's, and the next broadcast
// reaches the device.
func TestClusterBroadcastCursorClamped(t *testing.T) {
	r := testengine.Redis(t)
	nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 2, withOpsToken)
	rc := redisClient(t, r.URL())
	login := func(device string, lastBSeq uint64) *rawConn {
		c := rawDial(t, nodes[0], client.TCP)
		c.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(nodes[0].Token(device, "")), LastBSeqs: []uint64{lastBSeq}}, time.Second)
		readUntil(t, c, protocol.OpWelcome)
		return c
	}
	nodes[1].Push(map[string]any{"broadcast": true, "data": "b1", "ttl": 600})

	acker := login("acker", 0)
	if p := readUntil(t, acker, protocol.OpPush); p.BSeq != 1 {
		t.Fatalf("the replay: %+v", p)
	}
	acker.WriteFrame(&protocol.Frame{Op: protocol.OpAck, BSeq: 1000}, time.Second)
	testwait.Eventually(t, "the ack clamped", func() bool {
		return strings.Contains(nodes[0].Metrics(), `longlink_seq_clamped_total{app="demo",op="ack_bseq"} 1`)
	})
	ahead := login("ahead", 1000)
	testwait.Eventually(t, "the login's last_bseq clamped", func() bool {
		return strings.Contains(nodes[0].Metrics(), `longlink_seq_clamped_total{app="demo",op="login_bseq"} 1`)
	})
	for _, device := range []string{"acker", "ahead"} {
		if got := ackedBSeq(t, nodes[1], device); got != 1 {
			t.Fatalf("%s's cursor is at %d, past the log's 1", device, got)
		}
	}
	acker.Close()
	ahead.Close()
	for _, device := range []string{"acker", "ahead"} {
		testwait.Eventually(t, device+"'s cursor saved", func() bool { return savedCursor(t, rc, device) == 1 })
	}
	nodes[1].Push(map[string]any{"broadcast": true, "data": "b2", "ttl": 600})
	for _, device := range []string{"acker", "ahead"} {
		connect(t, nodes[1], client.TCP, nodes[1].Token(device, "")).expect(t, "b2")
	}
}
