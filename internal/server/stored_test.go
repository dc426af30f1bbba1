package server_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// The seeds' acceptance table for stored messages, and the contract's
// semantics around it, end to end over every transport.

func stored(devices []string, data string) map[string]any {
	return map[string]any{"devices": devices, "data": data, "ttl": 3600}
}

// visit logs d1 in and out once, so that the server has seen it.
func visit(t *testing.T, ts *testserver.TS, tr client.Transport, device, user string) {
	d := connect(t, ts, tr, ts.Token(device, user))
	d.Close()
	testwait.Eventually(t, device+" offline", func() bool { return !online(t, ts, device) })
}

func online(t *testing.T, ts *testserver.TS, device string) bool {
	_, out := ts.Call(http.MethodGet, "/v1/presence?app=demo&device="+device, testserver.Demo.APIKey, nil)
	return out["devices"].(map[string]any)[device].(map[string]any)["online"] == true
}

func TestUnicastOfflineCompensation(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		out := ts.Push(stored([]string{"d1", "d2"}, "kept for you"))
		if out["online"] != 0.0 || out["offline"] != 2.0 {
			t.Fatalf("answer %v", out)
		}
		d1 := connect(t, ts, tr, ts.Token("d1", ""))
		p := d1.expect(t, "kept for you")
		if p.Seq != 1 || p.ID != out["id"] {
			t.Fatalf("push %+v, answer %v", p, out)
		}
	})
}

// A stored broadcast is written once, to the app's broadcast log: a live
// device gets it by bseq (no seq, nothing in its mailbox), and its ack
// moves its cursor in the log; a device that was offline gets it at login;
// the one that acked it does not get it again, even from a new process
// that knows nothing of it.
func TestBroadcastOfflineCompensation(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		onlineDev := connect(t, ts, tr, ts.Token("online", ""))
		out := ts.Push(map[string]any{"broadcast": true, "data": "to everyone", "ttl": 3600})
		if out["online"] != 1.0 {
			t.Fatalf("answer %v", out)
		}
		if p := onlineDev.expect(t, "to everyone"); p.BSeq != 1 || p.Seq != 0 || p.ID != out["id"] {
			t.Fatalf("broadcast push %+v", p)
		}
		testwait.Eventually(t, "the ack to move the cursor", func() bool {
			_, d := admin(t, ts, "/v1/admin/devices/demo/online")
			return d["broadcasts_waiting"] == 0.0 && d["stored_waiting"] == 0.0
		})
		if _, d := admin(t, ts, "/v1/admin/devices/demo/late"); d["broadcasts_waiting"] != 1.0 || d["stored_waiting"] != 0.0 {
			t.Fatalf("a device that was away: %v", d)
		}
		onlineDev.Close()

		late := connect(t, ts, tr, ts.Token("late", ""))
		if p := late.expect(t, "to everyone"); p.BSeq != 1 {
			t.Fatalf("broadcast at login %+v", p)
		}
		again := connect(t, ts, tr, ts.Token("online", ""))
		ts.Push(stored([]string{"online"}, "only this"))
		again.expect(t, "only this")
		// Another app's devices never see it.
		other := connect(t, ts, tr, testserver.MintToken(t, testserver.Other, "other-dev", ""))
		testserver.CallAPI(t, ts.APIURL(), http.MethodPost, "/v1/push", testserver.Other.APIKey,
			map[string]any{"app": "other", "devices": []string{"other-dev"}, "data": "own", "ttl": 60})
		other.expect(t, "own")
	}, withOpsToken)
}

func TestEmptyStoredMessageRefused(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		for _, body := range []map[string]any{
			stored([]string{"d1"}, ""),
			{"broadcast": true, "data": "", "ttl": 60},
			{"devices": []string{"d1"}, "data_base64": "", "ttl": 60},
		} {
			body["app"] = "demo"
			if status, out := ts.Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey, body); status != 400 {
				t.Fatalf("%v: %d %v", body, status, out)
			}
		}
		ts.Push(stored([]string{"d1"}, "the only one"))
		d1 := connect(t, ts, tr, ts.Token("d1", ""))
		d1.expect(t, "the only one") // nothing of the refused pushes came first
	})
}

func TestStoredMessageReconnectSameServer(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		visit(t, ts, tr, "d1", "")
		out := ts.Push(stored([]string{"d1"}, "while you were away"))
		if out["offline"] != 1.0 {
			t.Fatalf("answer %v", out)
		}
		connect(t, ts, tr, ts.Token("d1", "")).expect(t, "while you were away")
	})
}

func TestStoredMessageReconnectFreshServer(t *testing.T) {
	eachTransport(t, func(t *testing.T, first *testserver.TS, tr client.Transport) {
		visit(t, first, tr, "d1", "")
		first.Push(stored([]string{"d1"}, "survives a restart"))
		if err := first.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		second := testserver.Start(t, func(c *config.Config) { c.DataDir = first.Config().DataDir })
		connect(t, second, tr, second.Token("d1", "")).expect(t, "survives a restart")
	})
}

func TestOnlineOnlyNotReplayed(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		visit(t, ts, tr, "d1", "")
		out := ts.Push(map[string]any{"devices": []string{"d1"}, "data": "now or never", "ttl": 0})
		if out["online"] != 0.0 || out["offline"] != 0.0 {
			t.Fatalf("answer %v", out)
		}
		ts.Push(stored([]string{"d1"}, "stored"))
		connect(t, ts, tr, ts.Token("d1", "")).expect(t, "stored") // not "now or never"
	})
}

func TestOnlineOnlyToOnlineDevice(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		d1 := connect(t, ts, tr, ts.Token("d1", ""))
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "live", "ttl": 0})
		if p := d1.expect(t, "live"); p.Seq != 0 {
			t.Fatalf("online-only message with seq %d", p.Seq)
		}
	})
}

func TestAckThenReconnectNoRedelivery(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		acks := make(chan uint64, 4)
		d1 := connect(t, ts, tr, ts.Token("d1", ""), func(c *client.Config) { c.OnAck = func(_ string, s uint64) { acks <- s } })
		id := ts.Push(stored([]string{"d1"}, "once"))["id"].(string)
		d1.expect(t, "once")
		seq := <-acks
		d1.Close()
		// A fresh client (a restarted app) resumes at the persisted seq; the
		// server trimmed the mailbox on the ack anyway, so even from 0 the
		// message must not come again. (Acks do not wait: the one the SDK
		// sent as it closed, or the login's last_seq, is applied a moment
		// later; its report says when.)
		for _, resume := range []uint64{seq, 0} {
			if resume == 0 {
				report(t, ts, id, map[string]any{"acked": 1.0})
			}
			d := connect(t, ts, tr, ts.Token("d1", ""), func(c *client.Config) { c.LastSeq = resume })
			ts.Push(map[string]any{"devices": []string{"d1"}, "data": fmt.Sprint("marker ", resume)})
			d.expect(t, fmt.Sprint("marker ", resume))
			d.Close()
		}
	})
}

func TestNoAckThenReconnectRedelivered(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		ts.Push(stored([]string{"d1"}, "ack me"))
		for i := 0; i < 2; i++ { // a raw device that never acks gets it every time
			c := rawLogin(t, ts, tr, ts.Token("d1", ""), 0, 0)
			if f := readUntil(t, c, protocol.OpPush); string(f.Data) != "ack me" || f.Seq != 1 {
				t.Fatalf("round %d: %+v", i, f)
			}
			c.Close()
		}
		// last_seq at login acks too.
		c := rawLogin(t, ts, tr, ts.Token("d1", ""), 0, 1)
		ts.Push(stored([]string{"d1"}, "next"))
		if f := readUntil(t, c, protocol.OpPush); string(f.Data) != "next" || f.Seq != 2 {
			t.Fatalf("after last_seq 1: %+v", f)
		}
	})
}

func TestStoredMessageExpires(t *testing.T) {
	testengine.Long(t, "waits for TTLs")
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "brief", "ttl": 1})
		time.Sleep(1100 * time.Millisecond) // the ttl itself is what is tested
		ts.Push(stored([]string{"d1"}, "lasting"))
		connect(t, ts, tr, ts.Token("d1", "")).expect(t, "lasting")
	})
}

func TestMailboxLimit(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		for i := 1; i <= 5; i++ {
			ts.Push(stored([]string{"d1"}, fmt.Sprint("m", i)))
		}
		d1 := connect(t, ts, tr, ts.Token("d1", ""))
		for _, want := range []string{"m3", "m4", "m5"} {
			d1.expect(t, want)
		}
		if !strings.Contains(ts.Metrics(), `longlink_mailbox_dropped_total{app="demo"} 2`) {
			t.Error("dropped messages not counted")
		}
	}, func(c *config.Config) { c.Store.MailboxLimit = 3 })
}

func TestIdempotentRepeat(t *testing.T) {
	eachTransport(t, func(t *testing.T, first *testserver.TS, tr client.Transport) {
		d1 := connect(t, first, tr, first.Token("d1", ""))
		body := func(data string, ttl int) map[string]any {
			return map[string]any{"devices": []string{"d1"}, "data": data, "ttl": ttl, "id": "order-42-shipped"}
		}
		out := first.Push(body("shipped", 3600))
		d1.expect(t, "shipped")
		// A repeat answers as the first did (the device has it), and is
		// not handed to the device again.
		again := first.Push(body("shipped, again", 3600))
		if again["id"] != out["id"] || again["duplicate"] != true || again["online"] != 1.0 || again["offline"] != 0.0 {
			t.Fatalf("repeat answered %v, first %v", again, out)
		}
		// An online-only push with a key is deduplicated the same way.
		live := first.Push(map[string]any{"devices": []string{"d1"}, "data": "live", "id": "live-1"})
		d1.expect(t, "live")
		if liveAgain := first.Push(map[string]any{"devices": []string{"d1"}, "data": "live", "id": "live-1"}); liveAgain["id"] != live["id"] {
			t.Fatalf("online-only repeat: %v", liveAgain)
		}
		d1.Close()

		// Keys survive a restart.
		first.Shutdown(context.Background())
		second := testserver.Start(t, func(c *config.Config) { c.DataDir = first.Config().DataDir })
		d := connect(t, second, tr, second.Token("d1", ""), func(c *client.Config) { c.LastSeq = d1.LastSeq("demo") })
		if after := second.Push(body("shipped, third time", 3600)); after["id"] != out["id"] {
			t.Fatalf("after restart: %v", after)
		}
		second.Push(map[string]any{"devices": []string{"d1"}, "data": "marker"})
		d.expect(t, "marker") // nothing of the repeats arrived first

		// So is a stored broadcast's.
		bc := map[string]any{"broadcast": true, "data": "to all", "ttl": 3600, "id": "news-1"}
		bout := second.Push(bc)
		d.expect(t, "to all")
		if bagain := second.Push(bc); bagain["id"] != bout["id"] || bagain["duplicate"] != true || bagain["online"] != 1.0 {
			t.Fatalf("broadcast repeat answered %v, first %v", bagain, bout)
		}
		second.Push(map[string]any{"devices": []string{"d1"}, "data": "second marker"})
		d.expect(t, "second marker")
	})
}

func TestUsersStoredReachOfflineDevices(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		visit(t, ts, tr, "phone", "alice") // the binding is learned from the token
		laptop := connect(t, ts, tr, ts.Token("laptop", "alice"))
		out := ts.Push(map[string]any{"users": []string{"alice"}, "data": "for alice", "ttl": 3600})
		if out["online"] != 1.0 || out["offline"] != 1.0 {
			t.Fatalf("answer %v", out)
		}
		laptop.expect(t, "for alice")
		connect(t, ts, tr, ts.Token("phone", "alice")).expect(t, "for alice")
	})
}

// TestStoredOrderUnderConcurrentPushes: stored messages pushed while the
// device logs in and replays arrive once each, in seq order, with no gap.
func TestStoredOrderUnderConcurrentPushes(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		const before, during = 300, 300
		for i := 0; i < before; i++ {
			ts.Push(stored([]string{"d1"}, fmt.Sprint(i)))
		}
		d1 := connect(t, ts, tr, ts.Token("d1", ""))
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := before; i < before+during; i++ {
				testserver.CallAPI(t, ts.APIURL(), http.MethodPost, "/v1/push", testserver.Demo.APIKey,
					map[string]any{"app": "demo", "devices": []string{"d1"}, "data": fmt.Sprint(i), "ttl": 3600})
			}
		}()
		for i := 0; i < before+during; i++ {
			if p := d1.expect(t, fmt.Sprint(i)); p.Seq != uint64(i+1) {
				t.Fatalf("message %d has seq %d", i, p.Seq)
			}
		}
		<-done
	})
}

// TestCrashAfterAnswer: every stored message answered 200 survives a kill -9
// of the server process right after.
func TestCrashAfterAnswer(t *testing.T) {
	for _, tr := range []client.Transport{client.TCP, client.WebSocket} {
		t.Run(string(tr), func(t *testing.T) {
			dataDir := t.TempDir()
			srv := startChild(t, dataDir)
			const n = 200
			var wg sync.WaitGroup
			ids := make([]string, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					status, out := testserver.CallAPI(t, "http://"+srv.api, http.MethodPost, "/v1/push", testserver.Demo.APIKey,
						map[string]any{"app": "demo", "devices": []string{"d1"}, "data": fmt.Sprint("m", i), "ttl": 3600})
					if status != 200 {
						t.Errorf("push %d: %d %v", i, status, out)
						return
					}
					ids[i] = out["id"].(string)
				}()
			}
			wg.Wait()
			srv.kill9(t)

			again := startChild(t, dataDir)
			got := make(chan client.Push, n)
			c, err := client.Dial(context.Background(), client.Config{Addr: testserver.AddrFor(tr, again.gateway),
				Transport: tr, Token: testserver.MintToken(t, testserver.Demo, "d1", ""),
				OnPush: func(p client.Push) { got <- p }})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := map[string]bool{}
			for _, id := range ids {
				want[id] = true
			}
			for len(want) > 0 {
				select {
				case p := <-got:
					if !want[p.ID] {
						t.Fatalf("unexpected or repeated message %s", p.ID)
					}
					delete(want, p.ID)
				case <-time.After(10 * time.Second):
					t.Fatalf("%d acknowledged messages lost in the crash", len(want))
				}
			}
		})
	}
}

// A client that sends no last_bseqs (written against v1 of the protocol)
// gets stored broadcasts the older way: copied into its mailbox and sent
// with a seq, acked by seq. A login whose last_bseqs do not match its
// tokens is refused; one beyond the log is clamped and counted.
func TestBroadcastBySeqForOlderClients(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		ts.Push(map[string]any{"broadcast": true, "data": "b1", "ttl": 3600})
		old := rawLogin(t, ts, tr, ts.Token("old", ""), 0, 0)
		p := readUntil(t, old, protocol.OpPush)
		if p.Seq != 1 || p.BSeq != 0 || string(p.Data) != "b1" {
			t.Fatalf("a broadcast to a v1 client: %+v", p)
		}
		if _, d := admin(t, ts, "/v1/admin/devices/demo/old"); d["stored_waiting"] != 1.0 || d["broadcasts_waiting"] != 0.0 {
			t.Fatalf("the copy: %v", d)
		}
		old.WriteFrame(&protocol.Frame{Op: protocol.OpAck, Seq: 1}, time.Second)
		testwait.Eventually(t, "the ack by seq", func() bool {
			_, d := admin(t, ts, "/v1/admin/devices/demo/old")
			return d["stored_waiting"] == 0.0
		})
		ts.Push(map[string]any{"broadcast": true, "data": "b2", "ttl": 3600})
		if p := readUntil(t, old, protocol.OpPush); p.Seq != 2 || p.BSeq != 0 {
			t.Fatalf("a live broadcast to a v1 client: %+v", p)
		}

		bad := rawDial(t, ts, tr)
		bad.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(ts.Token("bad", "")), LastBSeqs: []uint64{0, 0}}, time.Second)
		if f := readUntil(t, bad, protocol.OpError); f.Code != protocol.CodeBadFrame || !strings.Contains(string(f.Reason), "last_bseqs") {
			t.Fatalf("mismatched last_bseqs: %+v", f)
		}

		// A last_bseq of 1000 on a log of 2: clamped, so the next
		// broadcast (bseq 3) still arrives.
		ahead := rawDial(t, ts, tr)
		ahead.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(ts.Token("ahead", "")), LastBSeqs: []uint64{1000}}, time.Second)
		readUntil(t, ahead, protocol.OpWelcome)
		testwait.Eventually(t, "the clamp", func() bool {
			return strings.Contains(ts.Metrics(), `longlink_seq_clamped_total{app="demo",op="login_bseq"} 1`)
		})
		ts.Push(map[string]any{"broadcast": true, "data": "b3", "ttl": 3600})
		if p := readUntil(t, ahead, protocol.OpPush); p.BSeq != 3 || p.Seq != 0 || string(p.Data) != "b3" {
			t.Fatalf("after a clamped last_bseq: %+v", p)
		}
	}, withOpsToken)
}

// Stored broadcasts pushed back to back, from several pushers at once,
// reach a live device in bseq order, once each, whether each goes straight
// to its queue or through the log; a device that logs in later gets them
// all, in order.
func TestStoredBroadcastsInOrder(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		live := connect(t, ts, tr, ts.Token("live", ""))
		const n = 40
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range n / 4 {
					ts.Push(map[string]any{"broadcast": true, "data": fmt.Sprint("b", i, "-", j), "ttl": 600})
				}
			}()
		}
		wg.Wait()
		for _, d := range []*device{live, connect(t, ts, tr, ts.Token("late", ""))} {
			for want := uint64(1); want <= n; want++ {
				if p := d.next(t); p.BSeq != want {
					t.Fatalf("push %d: bseq %d (%+v)", want, p.BSeq, p)
				}
			}
			d.expectNone(t)
		}
	})
}

// A stored push with a collapse key replaces the message with the same key
// still waiting for each target device, and in the broadcast log: a device
// that comes back gets the newest only; a device online got each as it
// came. Without a ttl, to a group, or with a bad key, it is refused.
func TestCollapse(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		online := connect(t, ts, tr, ts.Token("online", ""))
		score := func(target map[string]any, data string) {
			body := maps.Clone(target)
			body["data"], body["ttl"], body["collapse"] = data, 600, "score"
			ts.Push(body)
		}
		devices := map[string]any{"devices": []string{"online", "away"}}
		score(devices, "1-0")
		ts.Push(map[string]any{"devices": []string{"online", "away"}, "data": "news", "ttl": 600})
		score(devices, "2-0")
		score(devices, "2-1")
		all := map[string]any{"broadcast": true}
		score(all, "final 1-0")
		score(all, "final 2-1")
		for _, want := range []string{"1-0", "news", "2-0", "2-1", "final 1-0", "final 2-1"} {
			online.expect(t, want)
		}
		away := connect(t, ts, tr, ts.Token("away", ""))
		got := map[string]bool{}
		for range 3 {
			got[string(away.next(t).Data)] = true
		}
		if !got["news"] || !got["2-1"] || !got["final 2-1"] {
			t.Fatalf("the device that was away got %v, want news, 2-1 and final 2-1", got)
		}
		ts.Push(stored([]string{"away"}, "last"))
		away.expect(t, "last")

		for _, body := range []map[string]any{
			{"devices": []string{"d1"}, "data": "x", "collapse": "k"},
			{"group": "g", "data": "x", "ttl": 60, "collapse": "k"},
			{"devices": []string{"d1"}, "data": "x", "ttl": 60, "collapse": strings.Repeat("k", 65)},
			{"devices": []string{"d1"}, "data": "x", "ttl": 60, "collapse": "has space"},
		} {
			body["app"] = "demo"
			if status, out := ts.Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey, body); status != http.StatusBadRequest ||
				!strings.Contains(out["error"].(string), "collapse") {
				t.Errorf("%v: %d %v", body, status, out)
			}
		}
	})
}

// A stored message the app showed already, from an OS push notification
// (Config.Shown, MarkShown), is acked and not handed to OnPush when the
// connection brings it; the others are handed over as usual.
func TestShownFromANotification(t *testing.T) {
	ts := testserver.Start(t)
	shown := ts.Push(map[string]any{"devices": []string{"d1"}, "data": "shown by the OS", "ttl": 600})["id"].(string)
	d := connect(t, ts, client.TCP, ts.Token("d1", ""), func(c *client.Config) { c.Shown = []string{shown} })
	ts.Push(map[string]any{"devices": []string{"d1"}, "data": "not shown yet", "ttl": 600})
	d.expect(t, "not shown yet")
	testwait.Eventually(t, "both acked", func() bool {
		_, out := ts.Call(http.MethodGet, "/v1/messages/"+shown+"?app=demo", testserver.Demo.APIKey, nil)
		return out["acked"] == 1.0
	})
}
