package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// These tests run a gateway on in-process connections (net.Pipe) with its
// store in memory: a connection's life without sockets or a server around
// it. internal/server proves the same over real sockets, end to end.

func push(data string) *gateway.Message {
	return gateway.NewMessage(&protocol.Frame{Op: protocol.OpPush, App: []byte(app), ID: []byte("m-" + data), Data: []byte(data)})
}

// A device logs in, is welcomed with its id and the granted heartbeat, and
// gets what is pushed to it.
func TestLoginAndPush(t *testing.T) {
	h := newHarness(t)
	d := h.connect(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(h.token("d1", time.Hour)), Heartbeat: 45})
	w := d.expect(protocol.OpWelcome)
	if string(w.Device) != "d1" || w.Heartbeat != 45 {
		t.Fatalf("welcome: device %q heartbeat %d", w.Device, w.Heartbeat)
	}
	if n := h.g.PushDevices(app, []string{"d1", "nobody"}, push("hello")); n != 1 {
		t.Fatalf("push reached %d", n)
	}
	if f := d.expect(protocol.OpPush); string(f.Data) != "hello" {
		t.Fatalf("push %q", f.Data)
	}
}

// A second login of the device replaces the first (4003); a kick ends the
// session (4008).
func TestReplaceAndKick(t *testing.T) {
	h := newHarness(t)
	first := h.login("d1")
	second := h.login("d1")
	first.closedWith(protocol.CodeReplaced)
	if n := h.g.Kick(app, []string{"d1"}); n != 1 {
		t.Fatalf("kicked %d", n)
	}
	second.closedWith(protocol.CodeKicked)
	if h.g.Online(app, "d1") {
		t.Fatal("online after the kick")
	}
}

// quietRouter is the part of a test's router that records nothing: no
// release, no broadcast head or ack, no group interest.
type quietRouter struct{}

func (quietRouter) Release(context.Context, string, string, uint64, uint64) {}

func (quietRouter) BroadcastAcked(string, uint64, uint64) {}

func (quietRouter) Acked(string, string, []store.Sent, uint64) {}

func (quietRouter) BroadcastHead(context.Context, string) (uint64, error) { return 0, nil }

func (quietRouter) Joined(context.Context, string, string) error { return nil }

// racingRouter numbers sessions as a cluster's routes would, and holds the
// first claim until the second login has gone live: the older login
// reaches the hub last.
type racingRouter struct {
	quietRouter
	claims  atomic.Int64
	release chan struct{}
}

func (r *racingRouter) Claim(context.Context, string, string, string, uint64, int) (gateway.Claimed, error) {
	n := r.claims.Add(1)
	if n == 1 {
		<-r.release
	}
	return gateway.Claimed{Number: uint64(n)}, nil
}

// Of two logins of a device that race, the newer session (the greater
// number) stays, whichever reaches the hub last: the older is replaced at
// once (4003).
func TestNewerSessionWinsARace(t *testing.T) {
	r := &racingRouter{release: make(chan struct{})}
	h := newHarness(t, func(o *gateway.Options) { o.Router = r })
	older := h.connect(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(h.token("d1", time.Hour))})
	testwait.Eventually(t, "the first claim", func() bool { return r.claims.Load() == 1 })
	newer := h.login("d1")
	close(r.release)
	older.expect(protocol.OpWelcome)
	older.closedWith(protocol.CodeReplaced)
	if n := h.g.PushDevices(app, []string{"d1"}, push("to the newer")); n != 1 {
		t.Fatalf("push reached %d", n)
	}
	if f := newer.expect(protocol.OpPush); string(f.Data) != "to the newer" {
		t.Fatalf("push %q", f.Data)
	}
}

// heldRouter reads a device's place in the store with its claim, as a
// cluster's router does, then holds the claim until released (all but the
// first free claims, which it numbers 1, 2, …); it knows of no broadcast
// (its head stays 0).
type heldRouter struct {
	quietRouter
	st      store.Store
	free    uint64
	claims  atomic.Uint64
	claimed chan struct{}
	release chan struct{}
}

func (r *heldRouter) Claim(ctx context.Context, app, device, _ string, after uint64, limit int) (gateway.Claimed, error) {
	last, err := r.st.LastSeq(ctx, app, device)
	if err != nil {
		return gateway.Claimed{}, err
	}
	waiting, err := r.st.Since(ctx, app, device, min(after, last), limit)
	if err != nil {
		return gateway.Claimed{}, err
	}
	n := r.claims.Add(1)
	if n > r.free {
		close(r.claimed)
		<-r.release
	}
	return gateway.Claimed{Number: n, LastSeq: last, Waiting: waiting}, nil
}

// A stored message or broadcast handed to the node after a login's claim
// read the store, and before its connection can be found, reaches the
// device all the same: the login reads the store again. So does one that
// the device's older connection on this node took meanwhile (the login
// replaces it: what it took may never reach the device).
func TestStoredDuringALoginDelivered(t *testing.T) {
	for _, c := range []struct{ broadcast, older bool }{{false, false}, {true, false}, {false, true}} {
		t.Run(fmt.Sprintf("broadcast=%v,older=%v", c.broadcast, c.older), func(t *testing.T) {
			r := &heldRouter{claimed: make(chan struct{}), release: make(chan struct{})}
			h := newHarness(t, func(o *gateway.Options) { o.Router = r })
			r.st = h.st
			if c.older {
				r.free = 1
				h.connect(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(h.token("d1", time.Hour)), LastBSeqs: []uint64{0}}).
					expect(protocol.OpWelcome)
			}
			d := h.connect(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(h.token("d1", time.Hour)), LastBSeqs: []uint64{0}})
			<-r.claimed
			ctx := context.Background()
			m := store.Message{App: app, ID: "m1", Data: []byte("m1"), Expires: time.Now().Add(time.Hour)}
			f := protocol.Frame{Op: protocol.OpPush, App: []byte(app), ID: []byte(m.ID), Data: m.Data}
			var took int
			if c.broadcast {
				res, err := h.st.AppendBroadcast(ctx, m, "")
				if err != nil {
					t.Fatal(err)
				}
				f.BSeq = res.Seqs[0]
				took = h.g.BroadcastStored(app, gateway.NewMessage(&f))
			} else {
				res, err := h.st.Append(ctx, []string{"d1"}, m, "")
				if err != nil {
					t.Fatal(err)
				}
				took = h.g.PushStored(app, []string{"d1"}, res.Seqs, f)
			}
			want := 0 // no connection can be found
			if c.older {
				want = 1 // the older one
			}
			if took != want {
				t.Fatalf("%d connections took it, want %d", took, want)
			}
			close(r.release)
			d.expect(protocol.OpWelcome)
			if got := d.expect(protocol.OpPush); string(got.ID) != "m1" || got.Seq+got.BSeq != 1 {
				t.Fatalf("got %q seq %d bseq %d", got.ID, got.Seq, got.BSeq)
			}
		})
	}
}

// A device that reads nothing while its send queue fills is closed with
// 4004; the queue it could not take is let go.
func TestTooSlowClosedWith4004(t *testing.T) {
	h := newHarness(t, func(o *gateway.Options) { o.Config.SendQueue, o.Config.WriteTimeout = 4, 200*time.Millisecond })
	d := h.login("slow")
	for i := range 64 {
		h.g.PushDevices(app, []string{"slow"}, push(fmt.Sprint("p", i)))
	}
	d.closedWith(protocol.CodeTooSlow)
}

// A drain sends every device a redirect to the other nodes, then closes
// it with 4009, over the drain period; new logins are refused (4013).
func TestDrainRedirects(t *testing.T) {
	h := newHarness(t)
	devices := []*device{h.login("d1"), h.login("d2"), h.login("d3")}
	other := []protocol.Endpoint{{Transport: "tcp", Address: "127.0.0.1:7071"}}
	done := make(chan error, 1)
	go func() { done <- h.g.Drain(context.Background(), 100*time.Millisecond, [][]protocol.Endpoint{other}) }()
	for _, d := range devices {
		if f := d.expect(protocol.OpRedirect); len(f.Endpoints) != 1 || f.Endpoints[0] != other[0] {
			t.Fatalf("redirect to %+v", f.Endpoints)
		}
		d.closedWith(protocol.CodeGoingAway)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.connect(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(h.token("d4", time.Hour))}).closedWith(protocol.CodeDraining)
}

// The sync loop: what waits in the mailbox is replayed after the login's
// last_seq, a stored push to a live device comes with its seq, and an ack
// empties the mailbox.
func TestStoredReplayAndAck(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for _, id := range []string{"s1", "s2", "s3"} {
		m := store.Message{App: app, ID: id, Data: []byte(id), Expires: time.Now().Add(time.Hour)}
		if _, err := h.st.Append(ctx, []string{"d1"}, m, ""); err != nil {
			t.Fatal(err)
		}
	}
	d := h.connect(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(h.token("d1", time.Hour)), LastSeq: 1})
	d.expect(protocol.OpWelcome)
	for _, want := range []uint64{2, 3} {
		if f := d.expect(protocol.OpPush); f.Seq != want {
			t.Fatalf("replayed seq %d, want %d", f.Seq, want)
		}
	}
	res, err := h.st.Append(ctx, []string{"d1"}, store.Message{App: app, ID: "s4", Data: []byte("s4"), Expires: time.Now().Add(time.Hour)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := h.g.PushStored(app, []string{"d1"}, res.Seqs, protocol.Frame{Op: protocol.OpPush, App: []byte(app), ID: []byte("s4")}); n != 1 {
		t.Fatalf("stored push reached %d", n)
	}
	if f := d.expect(protocol.OpPush); f.Seq != 4 || string(f.ID) != "s4" {
		t.Fatalf("live stored push: seq %d id %q", f.Seq, f.ID)
	}
	d.send(&protocol.Frame{Op: protocol.OpAck, Seq: 4})
	testwait.Eventually(t, "the ack to empty the mailbox", func() bool {
		left, err := h.st.Since(ctx, app, "d1", 0, 10)
		return err == nil && len(left) == 0
	})
}

// hangingStore is a store whose LastSeq waits for its context to end.
type hangingStore struct {
	store.Store
	called chan struct{}
}

func (s *hangingStore) LastSeq(ctx context.Context, _, _ string) (uint64, error) {
	close(s.called)
	<-ctx.Done()
	return 0, ctx.Err()
}

// Shutdown cancels the store calls of connections: a login stuck in its
// store call does not hold Shutdown up, and its connection is closed
// (before a login, without a frame).
func TestShutdownCancelsStoreCalls(t *testing.T) {
	hang := &hangingStore{called: make(chan struct{})}
	h := newHarness(t, func(o *gateway.Options) {
		hang.Store = o.Mailboxes.(store.Store)
		o.Mailboxes = hang
	})
	d := h.connect(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(h.token("d1", time.Hour)), LastSeq: 5})
	<-hang.called
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.g.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("Shutdown waited for a store call that had no end")
	}
	if f, err := d.read(); err == nil {
		t.Fatalf("the connection stayed open: %v", f.Op)
	}
}
