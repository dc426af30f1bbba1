package store

import (
	"context"
	"fmt"
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
	got, err := s.Since("d1", []string{"demo"}, 2, 10)
	if err != nil || !slices.Equal(ids(got), []string{"m3", "m4", "m5"}) || got[0].Seq != 3 || string(got[0].Data) != "data m3" {
		t.Fatalf("since 2: %+v %v", got, err)
	}
	if got, _ := s.Since("d1", []string{"demo"}, 0, 2); !slices.Equal(ids(got), []string{"m1", "m2"}) {
		t.Fatalf("limit: %v", ids(got))
	}
	s.Ack("d1", []string{"demo"}, 4)
	flush(t, s)
	if got, _ := s.Since("d1", []string{"demo"}, 0, 10); !slices.Equal(ids(got), []string{"m5"}) {
		t.Fatalf("after ack 4: %v", ids(got))
	}
	if got, _ := s.Since("d2", []string{"demo"}, 0, 10); len(got) != 5 {
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

func TestSeqsSharedAcrossAppsAckedPerApp(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	s.Append(ctx, []string{"d1"}, msg(clk, "a", "a1"), "")
	s.Append(ctx, []string{"d1"}, msg(clk, "b", "b2"), "")
	s.Append(ctx, []string{"d1"}, msg(clk, "a", "a3"), "")
	if got, _ := s.Since("d1", []string{"a", "b"}, 0, 10); !slices.Equal(ids(got), []string{"a1", "b2", "a3"}) {
		t.Fatalf("merged: %v", ids(got))
	}
	// A connection logged into app a only acks a's messages.
	s.Ack("d1", []string{"a"}, 3)
	flush(t, s)
	if got, _ := s.Since("d1", []string{"a", "b"}, 0, 10); !slices.Equal(ids(got), []string{"b2"}) {
		t.Fatalf("after acking a: %v", ids(got))
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
	if got, _ := s.Since("d1", []string{"demo"}, 0, 10); !slices.Equal(ids(got), []string{"m3", "m4", "m5"}) {
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
	if got, _ := s.Since("d1", []string{"demo"}, 0, 10); !slices.Equal(ids(got), []string{"long"}) {
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
	if got, _ := s.Since("d1", []string{"demo"}, 0, 10); len(got) != 0 {
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
	if got, _ := s.Since("d1", []string{"demo"}, 0, 10); !slices.Equal(ids(got), []string{"u1", "b1", "b2"}) {
		t.Fatalf("mailbox %v", ids(got))
	}
	if n, _ := s.CatchUp(ctx, "other", "d1"); n != 0 {
		t.Fatal("another app's log copied")
	}
}

func TestAckBeyondLastMovesSeqs(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	s.Append(ctx, []string{"d1"}, msg(clk, "demo", "m1"), "")
	s.Ack("d1", []string{"demo"}, 500) // queued: the next append is applied after it
	res, _ := s.Append(ctx, []string{"d1"}, msg(clk, "demo", "m2"), "")
	if res.Seqs[0] != 501 {
		t.Fatalf("next seq %d, want 501", res.Seqs[0])
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
