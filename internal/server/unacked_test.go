package server_test

import (
	"context"
	"fmt"
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

// mailboxGone waits until device's mailbox in demo is gone from Redis:
// every message in it deleted.
func mailboxGone(t *testing.T, rc rueidis.Client, device string) {
	t.Helper()
	key := redisclient.Key(config.ClusterPrefix, "demo", redisclient.KindMailbox, device)
	testwait.Eventually(t, device+"'s mailbox emptied", func() bool {
		n, err := rc.Do(context.Background(), rc.B().Exists().Key(key).Build()).AsInt64()
		return err == nil && n == 0
	})
}

// pushAll pushes a stored message to device through ts for each of data,
// and returns their ids.
func pushAll(ts *testserver.TS, device string, data ...string) []string {
	ids := make([]string, len(data))
	for i, d := range data {
		ids[i] = ts.Push(stored([]string{device}, d))["id"].(string)
	}
	return ids
}

// readPushes reads n pushes from c, and checks their seqs: from first on.
func readPushes(t *testing.T, c *rawConn, n int, first uint64) {
	t.Helper()
	for i := range n {
		if p := readUntil(t, c, protocol.OpPush); p.Seq != first+uint64(i) {
			t.Fatalf("push %d of %d: seq %d, want %d", i+1, n, p.Seq, first+uint64(i))
		}
	}
}

// In a cluster an ack of mailbox messages the session was sent deletes
// them by their seqs, from what the session's node knows: no read of the
// device's seq counter or of its mailbox. Their reports count exactly the
// messages that were still there: one replaced by a collapse key after it
// was sent is not counted. An ack beyond what the session was sent is the
// store's, as before: clamped to the last seq given, and counted.
func TestClusterAckOfWhatWasSent(t *testing.T) {
	r := testengine.Redis(t)
	nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 2, withOpsToken)
	rc := redisClient(t, r.URL())
	ids := pushAll(nodes[0], "d1", "r1") // replayed at the login
	c := rawLogin(t, nodes[1], client.TCP, nodes[1].Token("d1", ""), 0, 0)
	readPushes(t, c, 1, 1)
	c.WriteFrame(&protocol.Frame{Op: protocol.OpAck, Seq: 1}, time.Second) // its script loaded here
	mailboxGone(t, rc, "d1")
	report(t, nodes[0], ids[0], map[string]any{"acked": 1.0}) // counted: the writer is done with it
	ids = append(ids, pushAll(nodes[0], "d1", "m2", "m3")...)
	readPushes(t, c, 2, 2)
	replaced := nodes[0].Push(map[string]any{"devices": []string{"d1"}, "data": "c4", "ttl": 3600, "collapse": "k"})["id"].(string)
	readPushes(t, c, 1, 4)
	latest := nodes[0].Push(map[string]any{"devices": []string{"d1"}, "data": "c5", "ttl": 3600, "collapse": "k"})["id"].(string)
	readPushes(t, c, 1, 5)

	zranges := zrangesBut(t, r.Addr)
	before := commandCalls(t, r.Addr)
	c.WriteFrame(&protocol.Frame{Op: protocol.OpAck, Seq: 3}, time.Second)
	c.WriteFrame(&protocol.Frame{Op: protocol.OpAck, Seq: 5}, time.Second)
	mailboxGone(t, rc, "d1")
	cost := diff(before, commandCalls(t, r.Addr))
	cost["zrangebyscore"] = zranges()
	t.Logf("two acks of 4 messages the session was sent: Redis %v", cost)
	// One ZREMRANGEBYSCORE per message acked (their seqs have no gap), in
	// one script or two (and the once-a-second flush of the acks to their
	// reports may fall in the count: a script of EXISTS and HINCRBY).
	if cost["get"] != 0 || cost["zrangebyscore"] != 0 || cost["zremrangebyscore"] != 4 || cost["evalsha"] < 1 {
		t.Errorf("two acks of 4 messages the session was sent cost %v", cost)
	}
	for _, id := range append(ids, latest) {
		report(t, nodes[0], id, map[string]any{"acked": 1.0})
	}
	if out := report(t, nodes[0], replaced, nil); out["acked"] != 0.0 {
		t.Errorf("the message a collapse key replaced after it was sent: %v, want acked 0", out)
	}

	ids = pushAll(nodes[0], "d1", "m6", "m7")
	readPushes(t, c, 2, 6)
	c.WriteFrame(&protocol.Frame{Op: protocol.OpAck, Seq: 1000}, time.Second)
	testwait.Eventually(t, "the ack clamped", func() bool {
		return strings.Contains(nodes[1].Metrics(), `longlink_seq_clamped_total{app="demo",op="ack"} 1`)
	})
	mailboxGone(t, rc, "d1")
	for _, id := range ids {
		report(t, nodes[0], id, map[string]any{"acked": 1.0})
	}
}

// A message that expired before it could be sent stays in the mailbox
// until deleted: an ack of the message sent after it, across the gap of
// seqs, deletes it too, and does not count it as acked.
func TestClusterAckSweepsWhatExpiredUnsent(t *testing.T) {
	r := testengine.Redis(t)
	nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 2)
	rc := redisClient(t, r.URL())
	short := nodes[0].Push(map[string]any{"devices": []string{"d1"}, "data": "short", "ttl": 1})["id"].(string)
	kept := pushAll(nodes[0], "d1", "kept")[0]
	report(t, nodes[0], short, map[string]any{"expired": 1.0})
	c := rawLogin(t, nodes[1], client.TCP, nodes[1].Token("d1", ""), 0, 0)
	if p := readUntil(t, c, protocol.OpPush); p.Seq != 2 || string(p.Data) != "kept" {
		t.Fatalf("the replay: %+v", p)
	}
	c.WriteFrame(&protocol.Frame{Op: protocol.OpAck, Seq: 2}, time.Second)
	mailboxGone(t, rc, "d1")
	report(t, nodes[0], kept, map[string]any{"acked": 1.0})
	report(t, nodes[0], short, map[string]any{"acked": 0.0, "expired": 1.0})
}

// A session lists at most 64 messages it was sent and the device has not
// acked. An ack within the list is the node's; one past it is the store's,
// which reads the mailbox; once every message sent is acked, the list
// starts again. Each message is counted once in its report, whichever
// deleted it.
func TestClusterAckPastTheList(t *testing.T) {
	r := testengine.Redis(t)
	nodes := testserver.StartClusterOn(t, r, testengine.NATS(t), 2, withOpsToken)
	rc := redisClient(t, r.URL())
	c := rawLogin(t, nodes[1], client.TCP, nodes[1].Token("d1", ""), 0, 0)
	data := make([]string, 100)
	for i := range data {
		data[i] = fmt.Sprint("m", i+1)
	}
	ids := pushAll(nodes[0], "d1", data...)
	readPushes(t, c, len(data), 1)

	zranges := zrangesBut(t, r.Addr)
	c.WriteFrame(&protocol.Frame{Op: protocol.OpAck, Seq: 30}, time.Second) // listed
	report(t, nodes[0], ids[29], map[string]any{"acked": 1.0})
	if n := zranges(); n != 0 {
		t.Errorf("an ack of listed messages read the mailbox (%d ZRANGEBYSCOREs)", n)
	}
	c.WriteFrame(&protocol.Frame{Op: protocol.OpAck, Seq: 100}, time.Second) // past the list: 65 on are not listed
	mailboxGone(t, rc, "d1")
	if n := zranges(); n == 0 {
		t.Error("an ack past the list did not read the mailbox")
	}
	for _, i := range []int{0, 29, 30, 63, 64, 99} {
		report(t, nodes[0], ids[i], map[string]any{"acked": 1.0})
	}

	last := pushAll(nodes[0], "d1", "m101")[0]
	readPushes(t, c, 1, 101)
	zranges = zrangesBut(t, r.Addr)
	c.WriteFrame(&protocol.Frame{Op: protocol.OpAck, Seq: 101}, time.Second)
	mailboxGone(t, rc, "d1")
	report(t, nodes[0], last, map[string]any{"acked": 1.0})
	if n := zranges(); n != 0 {
		t.Errorf("once every message sent was acked, the list did not start again (%d ZRANGEBYSCOREs)", n)
	}
}
