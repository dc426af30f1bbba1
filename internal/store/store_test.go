package store

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/internal/metrics"
)

// clock is a test clock that only moves when told.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) in(d time.Duration) time.Time { return c.now().Add(d) }

func open(t testing.TB, dir string, clk *clock, edit ...func(*Options)) *Store {
	t.Helper()
	o := Options{Metrics: metrics.New(), Now: clk.now, SweepInterval: time.Hour}
	for _, e := range edit {
		e(&o)
	}
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var ctx = context.Background()

func msg(clk *clock, app, id string) Message {
	return Message{App: app, ID: id, Data: []byte("data " + id), Expires: clk.in(time.Hour)}
}

func ids(ms []Stored) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestAppendSinceAck(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	for i := 1; i <= 5; i++ {
		res, err := s.Append(ctx, []string{"d1", "d2"}, msg(clk, "demo", fmt.Sprint("m", i)), "")
		if err != nil || !slices.Equal(res.Seqs, []uint64{uint64(i), uint64(i)}) {
			t.Fatalf("append %d: %+v %v", i, res, err)
		}
	}
	got, err := s.Since("demo", "d1", 2, 10)
	if err != nil || !slices.Equal(ids(got), []string{"m3", "m4", "m5"}) || got[0].Seq != 3 || string(got[0].Data) != "data m3" {
		t.Fatalf("since 2: %+v %v", got, err)
	}
	if got, _ := s.Since("demo", "d1", 0, 2); !slices.Equal(ids(got), []string{"m1", "m2"}) {
		t.Fatalf("limit: %v", ids(got))
	}
	s.Ack("demo", "d1", 4)
	flush(t, s)
	if got, _ := s.Since("demo", "d1", 0, 10); !slices.Equal(ids(got), []string{"m5"}) {
		t.Fatalf("after ack 4: %v", ids(got))
	}
	if got, _ := s.Since("demo", "d2", 0, 10); len(got) != 5 {
		t.Fatalf("d2 touched by d1's ack: %v", ids(got))
	}
}

// flush waits until every queued operation is committed.
func flush(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.Append(ctx, nil, Message{}, ""); err != nil {
		t.Fatal(err)
	}
}

func TestSeqsAndAcksPerApp(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	for _, m := range []Message{msg(clk, "a", "a1"), msg(clk, "b", "b1"), msg(clk, "a", "a2")} {
		res, err := s.Append(ctx, []string{"d1"}, m, "")
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]uint64{"a1": 1, "b1": 1, "a2": 2}[m.ID]; res.Seqs[0] != want {
			t.Fatalf("%s got seq %d, want %d: each (app, device) has its own sequence", m.ID, res.Seqs[0], want)
		}
	}
	// An ack of app a touches a's mailbox only.
	s.Ack("a", "d1", 2)
	flush(t, s)
	if got, _ := s.Since("a", "d1", 0, 10); len(got) != 0 {
		t.Fatalf("a after ack: %v", ids(got))
	}
	if got, _ := s.Since("b", "d1", 0, 10); !slices.Equal(ids(got), []string{"b1"}) {
		t.Fatalf("b after a's ack: %v", ids(got))
	}
}

func TestConcurrentAppendsGetDistinctOrderedSeqs(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var seqs []uint64
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				res, err := s.Append(ctx, []string{"hot"}, msg(clk, "demo", "x"), "")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seqs = append(seqs, res.Seqs[0])
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(seqs)
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("seqs not 1..1280 without gaps or repeats: at %d got %d", i, seq)
		}
	}
}

func TestMailboxLimitDropsOldest(t *testing.T) {
	clk := newClock()
	m := metrics.New()
	s := open(t, t.TempDir(), clk, func(o *Options) { o.MailboxLimit = 3; o.Metrics = m })
	for i := 1; i <= 5; i++ {
		s.Append(ctx, []string{"d1"}, msg(clk, "demo", fmt.Sprint("m", i)), "")
	}
	if got, _ := s.Since("demo", "d1", 0, 10); !slices.Equal(ids(got), []string{"m3", "m4", "m5"}) {
		t.Fatalf("kept %v", ids(got))
	}
	if n := testutil.ToFloat64(m.MailboxDropped.WithLabelValues("demo")); n != 2 {
		t.Fatalf("dropped counted %v, want 2", n)
	}
}

func TestExpiredNeverDeliveredAndReclaimed(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	s := open(t, dir, clk)
	short := msg(clk, "demo", "short")
	short.Expires = clk.in(time.Minute)
	s.Append(ctx, []string{"d1"}, short, "")
	s.Append(ctx, []string{"d1"}, msg(clk, "demo", "long"), "")
	s.AppendBroadcast(ctx, short, "")
	clk.add(2 * time.Minute)
	if got, _ := s.Since("demo", "d1", 0, 10); !slices.Equal(ids(got), []string{"long"}) {
		t.Fatalf("expired delivered: %v", ids(got))
	}
	if n, _ := s.CatchUp(ctx, "demo", "d2"); n != 0 {
		t.Fatalf("expired broadcast copied to %d", n)
	}
	// The sweep deletes the expired message, its index entry and log entry.
	s.queue(&op{kind: opSweep})
	flush(t, s)
	if n := countKeys(t, s, prefixMessage); n != 1 {
		t.Fatalf("%d message keys after sweep, want 1", n)
	}
	if n := countKeys(t, s, prefixBroadcast); n != 0 {
		t.Fatalf("%d log keys after sweep, want 0", n)
	}
	if n := countKeys(t, s, prefixExpiry); n != 1 { // the long message's
		t.Fatalf("%d expiry keys after sweep, want 1", n)
	}
}

func TestIdempotencySurvivesReopen(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	s := open(t, dir, clk)
	first, err := s.Append(ctx, []string{"d1"}, msg(clk, "demo", "id-1"), "order-42")
	if err != nil || first.Dup {
		t.Fatal(first, err)
	}
	again, _ := s.Append(ctx, []string{"d1"}, msg(clk, "demo", "id-2"), "order-42")
	if !again.Dup || again.ID != "id-1" || len(again.Seqs) != 0 {
		t.Fatalf("repeat: %+v", again)
	}
	other, _ := s.Append(ctx, []string{"d1"}, msg(clk, "other", "id-3"), "order-42")
	if other.Dup {
		t.Fatal("a key of another app counted as a repeat")
	}
	s.Close()
	s = open(t, dir, clk)
	if again, _ := s.Append(ctx, nil, msg(clk, "demo", "id-4"), "order-42"); !again.Dup || again.ID != "id-1" {
		t.Fatalf("after reopen: %+v", again)
	}
	clk.add(25 * time.Hour)
	if later, _ := s.Append(ctx, nil, msg(clk, "demo", "id-5"), "order-42"); later.Dup {
		t.Fatal("key remembered past its window")
	}
	if got, _ := s.Since("demo", "d1", 0, 10); len(got) != 0 {
		t.Fatalf("expired or duplicate messages present: %v", ids(got)) // id-1 expired after 1h
	}
}

func TestBroadcastCatchUp(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	res, err := s.AppendBroadcast(ctx, msg(clk, "demo", "b1"), "")
	if err != nil || res.Seqs[0] != 1 {
		t.Fatal(res, err)
	}
	s.Append(ctx, []string{"d1"}, msg(clk, "demo", "u1"), "")
	if n, err := s.CatchUp(ctx, "demo", "d1"); n != 1 || err != nil {
		t.Fatalf("catch up: %d %v", n, err)
	}
	if n, _ := s.CatchUp(ctx, "demo", "d1"); n != 0 {
		t.Fatalf("second catch up copied %d again", n)
	}
	s.AppendBroadcast(ctx, msg(clk, "demo", "b2"), "")
	s.CatchUp(ctx, "demo", "d1")
	if got, _ := s.Since("demo", "d1", 0, 10); !slices.Equal(ids(got), []string{"u1", "b1", "b2"}) {
		t.Fatalf("mailbox %v", ids(got))
	}
	if n, _ := s.CatchUp(ctx, "other", "d1"); n != 0 {
		t.Fatal("another app's log copied")
	}
}

// The repro: another app's token for the same device id acks
// 2^64-1. Before seqs were per app and acks clamped, the shared counter moved
// there and the next append wrapped to 0, a message never replayed.
func TestAckBeyondLastIsClampedAndCounted(t *testing.T) {
	clk := newClock()
	m := metrics.New()
	s := open(t, t.TempDir(), clk, func(o *Options) { o.Metrics = m })
	s.Ack("b", "victim2", math.MaxUint64)
	s.Append(ctx, []string{"victim2"}, msg(clk, "a", "a1"), "")
	s.Ack("a", "victim2", math.MaxUint64) // clamped to 1: deletes a1 only
	var seqs []uint64
	for _, id := range []string{"a2", "a3", "a4"} {
		res, err := s.Append(ctx, []string{"victim2"}, msg(clk, "a", id), "")
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, res.Seqs[0])
	}
	if !slices.Equal(seqs, []uint64{2, 3, 4}) {
		t.Fatalf("seqs after a clamped ack: %v, want [2 3 4]", seqs)
	}
	if got, _ := s.Since("a", "victim2", 0, 10); !slices.Equal(ids(got), []string{"a2", "a3", "a4"}) {
		t.Fatalf("replayed %v, want a2 a3 a4", ids(got))
	}
	if last, err := s.LastSeq("a", "victim2"); last != 4 || err != nil {
		t.Fatalf("LastSeq = %d, %v; want 4", last, err)
	}
	for app, want := range map[string]float64{"a": 1, "b": 1} {
		if n := testutil.ToFloat64(m.SeqClamped.WithLabelValues(app, "ack")); n != want {
			t.Fatalf("clamped acks of %s counted %v, want %v", app, n, want)
		}
	}
}

func TestUserBinding(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	s.Bind("demo", "phone", "alice")
	s.Bind("demo", "laptop", "alice")
	s.Bind("demo", "tablet", "bob")
	s.Bind("other", "phone", "carol")
	got, _ := s.UserDevices(ctx, "demo", []string{"alice"})
	slices.Sort(got)
	if !slices.Equal(got, []string{"laptop", "phone"}) {
		t.Fatalf("alice: %v", got)
	}
	s.Bind("demo", "laptop", "bob") // the laptop changes hands
	s.Bind("demo", "tablet", "")    // and the tablet logs in without a user
	if got, _ := s.UserDevices(ctx, "demo", []string{"alice", "bob"}); !slices.Equal(got, []string{"phone", "laptop"}) {
		t.Fatalf("after rebinding: %v", got)
	}
}

func countKeys(t *testing.T, s *Store, prefix string) int {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd([]byte(prefix))})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}
