// Package storetest is the conformance suite of store.Store: every backend
// runs the same tests, through the interface only, against a real instance
// of itself.
package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// Opener opens a store on one place (a directory, a database); opening the
// same place again finds what was stored there. The store closes with the
// test.
type Opener func(o store.Options) store.Store

// Backend makes a fresh, empty place for one test.
type Backend func(t testing.TB) Opener

// Clock is a test clock that only moves when told. Safe for concurrent use.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a clock at 2026-01-01.
func NewClock() *Clock {
	c := &Clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Add moves the clock.
func (c *Clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// In returns the clock's time plus d.
func (c *Clock) In(d time.Duration) time.Time { return c.Now().Add(d) }

var ctx = context.Background()

// env is one test's backend, clock and metrics.
type env struct {
	t     *testing.T
	open  Opener
	clock *Clock
	m     *metrics.Metrics
}

func (e *env) store(edit ...func(*store.Options)) store.Store {
	o := store.Options{Metrics: e.m, Now: e.clock.Now, SweepInterval: time.Hour}
	for _, f := range edit {
		f(&o)
	}
	return e.open(o)
}

func (e *env) msg(app, id string) store.Message {
	return store.Message{App: app, ID: id, Data: []byte("data " + id), Expires: e.clock.In(time.Hour)}
}

// since waits (Ack does not) until device's mailbox in app holds want
// after seq 0, and fails if it does not in time.
func (e *env) since(s store.Store, app, device string, want ...string) []store.Stored {
	e.t.Helper()
	var got []store.Stored
	testwait.EventuallyNil(e.t, func() error {
		var err error
		if got, err = s.Since(ctx, app, device, 0, 100); err != nil {
			e.t.Fatal(err)
		}
		if !slices.Equal(ids(got), want) {
			return fmt.Errorf("mailbox of %s in %s: %v, want %v", device, app, ids(got), want)
		}
		return nil
	})
	return got
}

func ids(ms []store.Stored) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// concerns are the conformance cases, by the concern of store.Store each
// proves (a case may use other concerns too, to set up or to look).
var concerns = []struct {
	name  string
	cases []testCase
}{
	{"Mailboxes", []testCase{
		{"AppendSinceAck", testAppendSinceAck},
		{"SeqsAndAcksPerApp", testSeqsAndAcksPerApp},
		{"ConcurrentAppendsGetDistinctOrderedSeqs", testConcurrentAppends},
		{"MailboxLimitDropsOldest", testMailboxLimit},
		{"ExpiredNeverDelivered", testExpired},
		{"IdempotencySurvivesReopen", testIdempotency},
		{"CollapseReplacesWaiting", testCollapse},
		{"AckBeyondLastIsClampedAndCounted", testAckClamped},
	}},
	{"BroadcastLog", []testCase{
		{"BroadcastCatchUp", testBroadcastCatchUp},
		{"BroadcastCursor", testBroadcastCursor},
	}},
	{"Bindings", []testCase{{"UserBinding", testUserBinding}}},
	{"Tags", []testCase{{"Tags", testTags}}},
	{"Schedules", []testCase{{"Schedule", testSchedule}, {"WithAMessage", testScheduleThen}}},
	{"Reports", []testCase{{"ReportsAndRecall", testReportsAndRecall}, {"Waiting", testWaiting}, {"Escalated", testEscalated}}},
	{"VendorTokens", []testCase{{"VendorTokens", testVendorTokens}}},
}

type testCase struct {
	name string
	fn   func(*env)
}

// Run runs the conformance suite against backend, one subtest per concern
// (go test -run 'TestConformance/Tags' runs one).
func Run(t *testing.T, backend Backend) {
	for _, c := range concerns {
		t.Run(c.name, func(t *testing.T) {
			for _, tc := range c.cases {
				t.Run(tc.name, func(t *testing.T) {
					tc.fn(&env{t: t, open: backend(t), clock: NewClock(), m: metrics.New()})
				})
			}
		})
	}
}

func testAppendSinceAck(e *env) {
	s := e.store()
	for i := 1; i <= 5; i++ {
		res, err := s.Append(ctx, []string{"d1", "d2"}, e.msg("demo", fmt.Sprint("m", i)), "")
		if err != nil || !slices.Equal(res.Seqs, []uint64{uint64(i), uint64(i)}) {
			e.t.Fatalf("append %d: %+v %v", i, res, err)
		}
	}
	got, err := s.Since(ctx, "demo", "d1", 2, 10)
	if err != nil || !slices.Equal(ids(got), []string{"m3", "m4", "m5"}) || got[0].Seq != 3 || string(got[0].Data) != "data m3" {
		e.t.Fatalf("since 2: %+v %v", got, err)
	}
	if got, _ := s.Since(ctx, "demo", "d1", 0, 2); !slices.Equal(ids(got), []string{"m1", "m2"}) {
		e.t.Fatalf("limit: %v", ids(got))
	}
	s.Ack("demo", "d1", 4)
	e.since(s, "demo", "d1", "m5")
	e.since(s, "demo", "d2", "m1", "m2", "m3", "m4", "m5") // d2 untouched by d1's ack
	if last, err := s.LastSeq(ctx, "demo", "d1"); last != 5 || err != nil {
		e.t.Fatalf("LastSeq = %d, %v; want 5", last, err)
	}
}

func testSeqsAndAcksPerApp(e *env) {
	s := e.store()
	for _, m := range []store.Message{e.msg("a", "a1"), e.msg("b", "b1"), e.msg("a", "a2")} {
		res, err := s.Append(ctx, []string{"d1"}, m, "")
		if err != nil {
			e.t.Fatal(err)
		}
		if want := map[string]uint64{"a1": 1, "b1": 1, "a2": 2}[m.ID]; res.Seqs[0] != want {
			e.t.Fatalf("%s got seq %d, want %d: each (app, device) has its own sequence", m.ID, res.Seqs[0], want)
		}
	}
	s.Ack("a", "d1", 2) // touches a's mailbox only
	e.since(s, "a", "d1")
	e.since(s, "b", "d1", "b1")
}

func testConcurrentAppends(e *env) {
	s := e.store()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var seqs []uint64
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				res, err := s.Append(ctx, []string{"hot"}, e.msg("demo", "x"), "")
				if err != nil {
					e.t.Error(err)
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
			e.t.Fatalf("seqs not 1..1280 without gaps or repeats: at %d got %d", i, seq)
		}
	}
}

func testMailboxLimit(e *env) {
	s := e.store(func(o *store.Options) { o.MailboxLimit = 3 })
	for i := 1; i <= 5; i++ {
		if _, err := s.Append(ctx, []string{"d1"}, e.msg("demo", fmt.Sprint("m", i)), ""); err != nil {
			e.t.Fatal(err)
		}
	}
	e.since(s, "demo", "d1", "m3", "m4", "m5")
	if n := testutil.ToFloat64(e.m.MailboxDropped.WithLabelValues("demo")); n != 2 {
		e.t.Fatalf("dropped counted %v, want 2", n)
	}
}

func testExpired(e *env) {
	s := e.store()
	short := e.msg("demo", "short")
	short.Expires = e.clock.In(time.Minute)
	s.Append(ctx, []string{"d1"}, short, "")
	s.Append(ctx, []string{"d1"}, e.msg("demo", "long"), "")
	s.AppendBroadcast(ctx, short, "")
	e.clock.Add(2 * time.Minute)
	e.since(s, "demo", "d1", "long")
	if n, err := s.CatchUp(ctx, "demo", "d2"); n != 0 || err != nil {
		e.t.Fatalf("expired broadcast copied to %d (%v)", n, err)
	}
}

func testIdempotency(e *env) {
	s := e.store()
	first, err := s.Append(ctx, []string{"d1"}, e.msg("demo", "id-1"), "order-42")
	if err != nil || first.Dup {
		e.t.Fatal(first, err)
	}
	again, _ := s.Append(ctx, []string{"d1"}, e.msg("demo", "id-2"), "order-42")
	if !again.Dup || again.ID != "id-1" || len(again.Seqs) != 0 {
		e.t.Fatalf("repeat: %+v", again)
	}
	if other, _ := s.Append(ctx, []string{"d1"}, e.msg("other", "id-3"), "order-42"); other.Dup {
		e.t.Fatal("a key of another app counted as a repeat")
	}
	if b, _ := s.AppendBroadcast(ctx, e.msg("demo", "id-5"), "order-42"); !b.Dup || b.ID != "id-1" {
		e.t.Fatalf("a broadcast with a used key: %+v", b)
	}
	s.Close()
	s = e.store()
	if again, _ := s.Append(ctx, nil, e.msg("demo", "id-4"), "order-42"); !again.Dup || again.ID != "id-1" {
		e.t.Fatalf("after reopen: %+v", again)
	}
	e.clock.Add(25 * time.Hour)
	if later, _ := s.Append(ctx, nil, e.msg("demo", "id-5"), "order-42"); later.Dup {
		e.t.Fatal("key remembered past its window")
	}
	e.since(s, "demo", "d1") // id-1 expired after 1h; the repeat was never stored
}

func testBroadcastCatchUp(e *env) {
	s := e.store()
	res, err := s.AppendBroadcast(ctx, e.msg("demo", "b1"), "")
	if err != nil || res.Seqs[0] != 1 {
		e.t.Fatal(res, err)
	}
	s.Append(ctx, []string{"d1"}, e.msg("demo", "u1"), "")
	if n, err := s.CatchUp(ctx, "demo", "d1"); n != 1 || err != nil {
		e.t.Fatalf("catch up: %d %v", n, err)
	}
	if n, _ := s.CatchUp(ctx, "demo", "d1"); n != 0 {
		e.t.Fatalf("second catch up copied %d again", n)
	}
	s.AppendBroadcast(ctx, e.msg("demo", "b2"), "")
	s.CatchUp(ctx, "demo", "d1")
	got := e.since(s, "demo", "d1", "u1", "b1", "b2")
	if got[2].Seq != 3 {
		e.t.Fatalf("b2 has seq %d, want 3 (from d1's sequence in demo)", got[2].Seq)
	}
	if n, _ := s.CatchUp(ctx, "other", "d1"); n != 0 {
		e.t.Fatal("another app's log copied")
	}
}

// broadcasts waits (AckBroadcast does not) until device's unread part of
// app's broadcast log, after after, holds want, and fails if it does not
// in time.
func (e *env) broadcasts(s store.Store, app, device string, after uint64, want ...string) []store.Stored {
	e.t.Helper()
	var got []store.Stored
	testwait.EventuallyNil(e.t, func() error {
		var err error
		if got, _, err = s.Broadcasts(ctx, app, device, after, 100); err != nil {
			e.t.Fatal(err)
		}
		if !slices.Equal(ids(got), want) {
			return fmt.Errorf("broadcasts of %s in %s after %d: %v, want %v", device, app, after, ids(got), want)
		}
		return nil
	})
	return got
}

// A device reads the broadcast log after its cursor, which its acks move:
// nothing is written per device until it acks, and an ack writes only its
// cursor. Cursors are per (app, device), never move back, and are clamped
// to the log's end; CatchUp (for seq clients) moves the same cursor.
func testBroadcastCursor(e *env) {
	s := e.store()
	for _, id := range []string{"b1", "b2", "b3"} {
		if _, err := s.AppendBroadcast(ctx, e.msg("demo", id), ""); err != nil {
			e.t.Fatal(err)
		}
	}
	got := e.broadcasts(s, "demo", "d1", 0, "b1", "b2", "b3")
	if got[0].Seq != 1 || got[2].Seq != 3 || string(got[1].Data) != "data b2" || got[1].App != "demo" {
		e.t.Fatalf("log entries: %+v", got)
	}
	e.broadcasts(s, "demo", "d1", 1, "b2", "b3") // after the client's own last bseq
	if got, last, _ := s.Broadcasts(ctx, "demo", "d1", 0, 2); len(got) != 2 || last != 3 {
		e.t.Fatalf("limit 2 gave %d entries and last %d, want 2 and 3", len(got), last)
	}
	if got, last, _ := s.Broadcasts(ctx, "other", "d1", 0, 2); len(got) != 0 || last != 0 {
		e.t.Fatalf("an app without a log: %d entries, last %d", len(got), last)
	}
	e.since(s, "demo", "d1") // no copy in the mailbox

	s.AckBroadcast("demo", "d1", 2)
	e.broadcasts(s, "demo", "d1", 0, "b3")
	e.broadcasts(s, "demo", "d2", 0, "b1", "b2", "b3") // another device
	e.broadcasts(s, "other", "d1", 0)                  // another app
	s.AckBroadcast("demo", "d1", 1)                    // never back
	s.AckBroadcast("demo", "d2", 1)
	e.broadcasts(s, "demo", "d2", 0, "b2", "b3")
	e.broadcasts(s, "demo", "d1", 0, "b3")

	s.AckBroadcast("demo", "d1", math.MaxUint64) // clamped to 3
	e.broadcasts(s, "demo", "d1", 0)
	s.AppendBroadcast(ctx, e.msg("demo", "b4"), "")
	e.broadcasts(s, "demo", "d1", 0, "b4")
	if n := testutil.ToFloat64(e.m.SeqClamped.WithLabelValues("demo", "ack_bseq")); n != 1 {
		e.t.Fatalf("clamped broadcast acks counted %v, want 1", n)
	}

	// A seq client of d2 copies what it has not acked (b2, b3, b4) into
	// its mailbox; the cursor follows.
	if n, err := s.CatchUp(ctx, "demo", "d2"); n != 3 || err != nil {
		e.t.Fatalf("catch up after a cursor ack: %d %v", n, err)
	}
	e.broadcasts(s, "demo", "d2", 0)

	// Expired entries are not read; cursors survive a reopen.
	short := e.msg("demo", "short")
	short.Expires = e.clock.In(time.Minute)
	s.AppendBroadcast(ctx, short, "")
	e.clock.Add(2 * time.Minute)
	e.broadcasts(s, "demo", "d1", 0, "b4")
	s.Close()
	s = e.store()
	e.broadcasts(s, "demo", "d1", 0, "b4")
	e.broadcasts(s, "demo", "d2", 0)
	e.since(s, "demo", "d2", "b2", "b3", "b4")
}

// A message with a collapse key replaces the one with the same key still
// waiting in each target mailbox, and in the broadcast log; one acked is
// not touched; keys are per app and per device; no key, no replacing.
func testCollapse(e *env) {
	s := e.store()
	withKey := func(app, id, key string) store.Message {
		m := e.msg(app, id)
		m.Collapse = key
		return m
	}
	s.Append(ctx, []string{"d1", "d2"}, withKey("demo", "score-1", "score"), "")
	s.Append(ctx, []string{"d1", "d2"}, withKey("demo", "news-1", "news"), "")
	s.Append(ctx, []string{"d1", "d2"}, e.msg("demo", "plain"), "")
	s.Append(ctx, []string{"d1"}, withKey("other", "score-o", "score"), "")
	e.since(s, "demo", "d2", "score-1", "news-1", "plain")
	s.Ack("demo", "d2", 1) // d2 had score-1
	e.since(s, "demo", "d2", "news-1", "plain")
	res, err := s.Append(ctx, []string{"d1", "d2"}, withKey("demo", "score-2", "score"), "")
	if err != nil || !slices.Equal(res.Seqs, []uint64{4, 4}) {
		e.t.Fatalf("append with a collapse key: %+v %v", res, err)
	}
	s.Append(ctx, []string{"d1"}, withKey("demo", "score-3", "score"), "")
	e.since(s, "demo", "d1", "news-1", "plain", "score-3")
	e.since(s, "demo", "d2", "news-1", "plain", "score-2")
	e.since(s, "other", "d1", "score-o")

	// In the broadcast log.
	s.AppendBroadcast(ctx, withKey("demo", "b-score-1", "score"), "")
	s.AppendBroadcast(ctx, e.msg("demo", "b-plain"), "")
	s.AppendBroadcast(ctx, withKey("demo", "b-score-2", "score"), "")
	e.broadcasts(s, "demo", "d3", 0, "b-plain", "b-score-2")

	// A full mailbox counts the replaced message out: nothing else is
	// dropped. (The same place, reopened with a smaller limit.)
	s.Close()
	small := e.store(func(o *store.Options) { o.MailboxLimit = 2 })
	small.Append(ctx, []string{"d9"}, e.msg("demo", "keep"), "")
	for i := range 5 {
		small.Append(ctx, []string{"d9"}, withKey("demo", fmt.Sprint("live-", i), "live"), "")
	}
	e.since(small, "demo", "d9", "keep", "live-4")
}

// Tags are kept per (app, device) both ways: a query of any, all and not
// finds the devices; a change that would give one device too many tags
// changes nothing; tags survive a reopen.
func testTags(e *env) {
	s := e.store()
	tag := func(devices []string, add, remove []string) {
		e.t.Helper()
		if err := s.Tag(ctx, "demo", devices, add, remove); err != nil {
			e.t.Fatal(err)
		}
	}
	query := func(q store.TagQuery, want ...string) {
		e.t.Helper()
		got, err := s.TagDevices(ctx, "demo", q)
		if err != nil || len(got) != len(want) || len(want) > 0 && !slices.Equal(got, want) {
			e.t.Fatalf("%+v: %v %v, want %v", q, got, err, want)
		}
	}
	tag([]string{"d1", "d2", "d3"}, []string{"vip"}, nil)
	tag([]string{"d2", "d3", "d4"}, []string{"beijing"}, nil)
	tag([]string{"d3"}, []string{"beta", "vip"}, nil) // vip again: no change
	s.Tag(ctx, "other", []string{"d1"}, []string{"beijing"}, nil)
	query(store.TagQuery{Any: []string{"vip"}}, "d1", "d2", "d3")
	query(store.TagQuery{Any: []string{"vip", "beijing"}}, "d1", "d2", "d3", "d4")
	query(store.TagQuery{All: []string{"vip", "beijing"}}, "d2", "d3")
	query(store.TagQuery{All: []string{"vip", "beijing"}, Not: []string{"beta"}}, "d2")
	query(store.TagQuery{Any: []string{"beijing", "nobody"}, All: []string{"vip"}}, "d2", "d3")
	query(store.TagQuery{Any: []string{"nobody"}})

	tag([]string{"d2"}, nil, []string{"vip", "never-had"})
	query(store.TagQuery{Any: []string{"vip"}}, "d1", "d3")

	// 99 more tags on d1 (1 + 99 = 100) is fine; one more on d1 and d5 fails
	// for both: d5 keeps none.
	var many []string
	for i := range protocol.MaxTags - 1 {
		many = append(many, fmt.Sprint("t", i))
	}
	tag([]string{"d1"}, many, nil)
	if err := s.Tag(ctx, "demo", []string{"d5", "d1"}, []string{"one-more"}, nil); !errors.Is(err, store.ErrTooManyTags) {
		e.t.Fatalf("101 tags: %v", err)
	}
	query(store.TagQuery{Any: []string{"one-more"}})
	tag([]string{"d1"}, []string{"one-more"}, []string{"t0"}) // one out, one in: 100
	query(store.TagQuery{Any: []string{"one-more"}}, "d1")

	s.Close()
	s = e.store()
	query(store.TagQuery{All: []string{"vip", "beijing"}}, "d3")
	if got, _ := s.TagDevices(ctx, "other", store.TagQuery{Any: []string{"beijing"}}); !slices.Equal(got, []string{"d1"}) {
		e.t.Fatalf("another app's tags: %v", got)
	}
}

// Scheduled pushes are listed per app by time, claimed once due (and
// again only when a claim's lease ran out before Unschedule), and survive
// a reopen.
func testSchedule(e *env) {
	s := e.store()
	at := func(d time.Duration) time.Time { return e.clock.Now().Add(d).Truncate(time.Millisecond) }
	for _, p := range []store.Scheduled{
		{App: "demo", ID: "later", At: at(2 * time.Hour), Request: []byte(`{"data":"later"}`)},
		{App: "demo", ID: "soon", At: at(time.Hour), Request: []byte(`{"data":"soon"}`)},
		{App: "other", ID: "soon", At: at(time.Hour), Request: []byte(`{"data":"other"}`)},
		{App: "demo", ID: "cancelled", At: at(time.Hour), Request: []byte(`{}`)},
	} {
		if err := s.Schedule(ctx, p); err != nil {
			e.t.Fatal(err)
		}
	}
	if ok, err := s.Unschedule(ctx, "demo", "cancelled"); !ok || err != nil {
		e.t.Fatalf("unschedule: %v %v", ok, err)
	}
	if ok, _ := s.Unschedule(ctx, "demo", "cancelled"); ok {
		e.t.Fatal("unscheduled twice")
	}
	list, err := s.Scheduled(ctx, "demo", 10)
	if err != nil || len(list) != 2 || list[0].ID != "soon" || list[1].ID != "later" ||
		!list[0].At.Equal(at(time.Hour)) || string(list[1].Request) != `{"data":"later"}` {
		e.t.Fatalf("scheduled: %+v %v", list, err)
	}
	if got, _ := s.ClaimDue(ctx, e.clock.Now(), time.Minute, 10); len(got) != 0 {
		e.t.Fatalf("claimed before they are due: %+v", got)
	}
	if p, ok, err := s.FindScheduled(ctx, "other", "soon"); err != nil || !ok || string(p.Request) != `{"data":"other"}` ||
		!p.At.Equal(at(time.Hour)) || p.App != "other" || p.ID != "soon" {
		e.t.Fatalf("find: %+v %v %v", p, ok, err)
	}
	for _, id := range []string{"cancelled", "nope"} {
		if _, ok, err := s.FindScheduled(ctx, "demo", id); ok || err != nil {
			e.t.Fatalf("found %s: %v %v", id, ok, err)
		}
	}

	e.clock.Add(time.Hour)
	got, err := s.ClaimDue(ctx, e.clock.Now(), time.Minute, 10)
	slices.SortFunc(got, func(a, b store.Scheduled) int { return strings.Compare(a.App, b.App) })
	if err != nil || len(got) != 2 || got[0].App != "demo" || got[0].ID != "soon" || string(got[1].Request) != `{"data":"other"}` {
		e.t.Fatalf("claim: %+v %v", got, err)
	}
	if again, _ := s.ClaimDue(ctx, e.clock.Now(), time.Minute, 10); len(again) != 0 {
		e.t.Fatalf("claimed twice within the lease: %+v", again)
	}
	s.Unschedule(ctx, "demo", "soon")

	// other's claimer died: its lease runs out and it is claimed again;
	// the store survives a reopen meanwhile.
	s.Close()
	s = e.store()
	e.clock.Add(2 * time.Minute)
	if again, _ := s.ClaimDue(ctx, e.clock.Now(), time.Minute, 10); len(again) != 1 || again[0].App != "other" {
		e.t.Fatalf("after the lease: %+v", again)
	}
	s.Unschedule(ctx, "other", "soon")
	if list, _ := s.Scheduled(ctx, "demo", 10); len(list) != 1 || list[0].ID != "later" {
		e.t.Fatalf("left: %+v", list)
	}
	e.clock.Add(2 * time.Hour)
	if last, _ := s.ClaimDue(ctx, e.clock.Now(), time.Minute, 10); len(last) != 1 || last[0].ID != "later" {
		e.t.Fatalf("the last: %+v", last)
	}
}

// A message's Then is kept among the schedules with it, whether it goes
// to mailboxes or to the broadcast log, and claimed when due.
func testScheduleThen(e *env) {
	s := e.store()
	due := e.clock.Now().Add(time.Hour).Truncate(time.Millisecond)
	m := e.msg("demo", "m1")
	m.Target, m.Then = store.TargetDevices, &store.Scheduled{App: "demo", ID: "m1/then", At: due, Request: []byte(`{"after":"m1"}`)}
	if _, err := s.Append(ctx, []string{"d1", "d2"}, m, "k1"); err != nil {
		e.t.Fatal(err)
	}
	b := e.msg("demo", "b1")
	b.Then = &store.Scheduled{App: "demo", ID: "b1/then", At: due, Request: []byte(`{"after":"b1"}`)}
	if _, err := s.AppendBroadcast(ctx, b, ""); err != nil {
		e.t.Fatal(err)
	}
	s.Close()
	s = e.store()
	for _, id := range []string{"m1/then", "b1/then"} {
		if p, ok, err := s.FindScheduled(ctx, "demo", id); err != nil || !ok || !p.At.Equal(due) {
			e.t.Fatalf("%s: %+v %v %v", id, p, ok, err)
		}
	}
	e.since(s, "demo", "d2", "m1")
	e.clock.Add(time.Hour)
	got, err := s.ClaimDue(ctx, e.clock.Now(), time.Minute, 10)
	slices.SortFunc(got, func(a, b store.Scheduled) int { return strings.Compare(a.ID, b.ID) })
	if err != nil || len(got) != 2 || got[0].ID != "b1/then" || string(got[1].Request) != `{"after":"m1"}` {
		e.t.Fatalf("claimed: %+v %v", got, err)
	}
}

// Another app's token for the same device id acks 2^64-1: before seqs
// were per app and acks clamped, the shared counter moved there and the
// next append wrapped to 0, a message never replayed.
func testAckClamped(e *env) {
	s := e.store()
	s.Ack("b", "victim2", math.MaxUint64)
	s.Append(ctx, []string{"victim2"}, e.msg("a", "a1"), "")
	s.Ack("a", "victim2", math.MaxUint64) // clamped to 1: deletes a1 only
	e.since(s, "a", "victim2")
	var seqs []uint64
	for _, id := range []string{"a2", "a3", "a4"} {
		res, err := s.Append(ctx, []string{"victim2"}, e.msg("a", id), "")
		if err != nil {
			e.t.Fatal(err)
		}
		seqs = append(seqs, res.Seqs[0])
	}
	if !slices.Equal(seqs, []uint64{2, 3, 4}) {
		e.t.Fatalf("seqs after a clamped ack: %v, want [2 3 4]", seqs)
	}
	e.since(s, "a", "victim2", "a2", "a3", "a4")
	for app, want := range map[string]float64{"a": 1, "b": 1} {
		if n := testutil.ToFloat64(e.m.SeqClamped.WithLabelValues(app, "ack")); n != want {
			e.t.Fatalf("clamped acks of %s counted %v, want %v", app, n, want)
		}
	}
}

func testUserBinding(e *env) {
	s := e.store()
	s.Bind("demo", "phone", "alice")
	s.Bind("demo", "laptop", "alice")
	s.Bind("demo", "tablet", "bob")
	s.Bind("other", "phone", "carol")
	got, _ := s.UserDevices(ctx, "demo", []string{"alice"})
	slices.Sort(got)
	if !slices.Equal(got, []string{"laptop", "phone"}) {
		e.t.Fatalf("alice: %v", got)
	}
	s.Bind("demo", "laptop", "bob") // the laptop changes hands
	s.Bind("demo", "tablet", "")    // and the tablet logs in without a user
	got, _ = s.UserDevices(ctx, "demo", []string{"alice", "bob"})
	slices.Sort(got)
	if !slices.Equal(got, []string{"laptop", "phone"}) {
		e.t.Fatalf("after rebinding: %v", got)
	}
}

// report waits (Sent and acks do not) until app's report of id passes
// ok, and fails if it does not in time.
func (e *env) report(s store.Store, app, id string, ok func(store.Report) bool) store.Report {
	e.t.Helper()
	var r store.Report
	testwait.EventuallyNil(e.t, func() error {
		var found bool
		var err error
		if r, found, err = s.Report(ctx, app, id); err != nil {
			e.t.Fatal(err)
		}
		if !found || !ok(r) {
			return fmt.Errorf("report of %s in %s: %+v (found %v)", id, app, r, found)
		}
		return nil
	})
	return r
}

// A stored message's report is made with it; Sent adds how it went out
// (and makes no report of an online-only one); acks are counted once per device,
// for mailboxes and for the broadcast log's cursors; Recall removes what
// still waits; reports survive a reopen, are per app, and go ReportKept
// after their message.
func testReportsAndRecall(e *env) {
	s := e.store()
	created, exp := e.clock.Now(), e.clock.In(time.Hour)
	m := e.msg("demo", "m1")
	m.Target = store.TargetDevices
	if _, err := s.Append(ctx, []string{"d1", "d2", "d3"}, m, ""); err != nil {
		e.t.Fatal(err)
	}
	r, ok, err := s.Report(ctx, "demo", "m1")
	want := store.Report{ID: "m1", State: "sent", Target: store.TargetDevices, Targeted: 3, Stored: 3, Created: created, Expires: exp}
	if err != nil || !ok || !r.Created.Equal(created) || !r.Expires.Equal(exp) {
		e.t.Fatalf("report right after the append: %+v %v %v", r, ok, err)
	}
	r.Created, r.Expires = want.Created, want.Expires
	if !reflect.DeepEqual(r, want) {
		e.t.Fatalf("report right after the append: %+v, want %+v", r, want)
	}
	if _, ok, _ := s.Report(ctx, "other", "m1"); ok {
		e.t.Fatal("another app sees demo's report")
	}
	s.Sent("demo", "m1", 1)
	s.Ack("demo", "d1", 1)
	s.Ack("demo", "d2", 1)
	s.Ack("demo", "d2", 1) // once per device
	e.report(s, "demo", "m1", func(r store.Report) bool { return r.Online == 1 && r.Acked == 2 })

	// A message without a report: its acks count nowhere.
	if _, err := s.Append(ctx, []string{"d1"}, e.msg("demo", "plain"), ""); err != nil {
		e.t.Fatal(err)
	}
	s.Ack("demo", "d1", 2)
	e.since(s, "demo", "d1")
	if _, ok, _ := s.Report(ctx, "demo", "plain"); ok {
		e.t.Fatal("a message appended without a target has a report")
	}

	// Online-only: nothing stored, no report, nothing to recall.
	s.Sent("demo", "o1", 4)
	s.UserDevices(ctx, "demo", []string{"nobody"}) // served after the queued Sent
	if _, ok, _ := s.Report(ctx, "demo", "o1"); ok {
		e.t.Fatal("Sent made a report of an online-only message")
	}
	if _, _, ok, err := s.Recall(ctx, "demo", "o1"); ok || err != nil {
		e.t.Fatalf("recall of an online-only message: ok %v, %v", ok, err)
	}

	// A stored broadcast: acks by cursor (d1, d2) and by a copy in the
	// mailbox (d3, a client that takes broadcasts by seq), once each.
	b := e.msg("demo", "b1")
	b.Target = store.TargetBroadcast
	if _, err := s.AppendBroadcast(ctx, b, ""); err != nil {
		e.t.Fatal(err)
	}
	s.Sent("demo", "b1", 2)
	s.AckBroadcast("demo", "d1", 1)
	s.AckBroadcast("demo", "d2", 1)
	s.AckBroadcast("demo", "d1", 1)
	if n, err := s.CatchUp(ctx, "demo", "d3"); n != 1 || err != nil {
		e.t.Fatalf("catch up: %d %v", n, err)
	}
	e.since(s, "demo", "d3", "m1", "b1")
	e.report(s, "demo", "b1", func(r store.Report) bool { return r.Acked == 2 && r.Stored == 0 && r.Online == 2 && r.Targeted == 2 })
	s.Ack("demo", "d3", 2) // m1 and the copy of b1
	e.report(s, "demo", "b1", func(r store.Report) bool { return r.Acked == 3 })
	if r := e.report(s, "demo", "m1", func(r store.Report) bool { return r.Acked == 3 }); r.Expired(e.clock.Now()) != 0 {
		e.t.Fatalf("expired before the message expires: %+v", r)
	}

	// Recall: removed where it waits (d5, d6), not where acked (d4).
	m2 := e.msg("demo", "m2")
	m2.Target = store.TargetUsers
	if _, err := s.Append(ctx, []string{"d4", "d5", "d6"}, m2, ""); err != nil {
		e.t.Fatal(err)
	}
	s.Append(ctx, []string{"d5"}, e.msg("demo", "after"), "")
	s.Ack("demo", "d4", 1)
	e.report(s, "demo", "m2", func(r store.Report) bool { return r.Acked == 1 })
	r, n, ok, err := s.Recall(ctx, "demo", "m2")
	if err != nil || !ok || n != 2 || r.State != "recalled" || r.Recalled != 2 || r.Acked != 1 ||
		!slices.Equal(r.Audience, []string{"d4", "d5", "d6"}) {
		e.t.Fatalf("recall: %+v n=%d ok=%v err=%v", r, n, ok, err)
	}
	e.since(s, "demo", "d5", "after")
	e.since(s, "demo", "d6")
	if _, n, ok, err := s.Recall(ctx, "demo", "m2"); n != 0 || !ok || err != nil {
		e.t.Fatalf("a second recall removed %d (ok %v, %v)", n, ok, err)
	}
	if _, _, ok, err := s.Recall(ctx, "other", "m2"); ok || err != nil {
		e.t.Fatalf("recall in another app: ok %v, %v", ok, err)
	}
	many := make([]string, 20) // copies too many to keep with the report, in some backend
	for i := range many {
		many[i] = fmt.Sprint("e", i)
	}
	m4 := e.msg("demo", "m4")
	m4.Target = store.TargetTags
	if _, err := s.Append(ctx, many, m4, ""); err != nil {
		e.t.Fatal(err)
	}
	if r, n, ok, err := s.Recall(ctx, "demo", "m4"); err != nil || !ok || n != 20 || !slices.Equal(r.Audience, many) {
		e.t.Fatalf("recall of a push to 20 devices: %+v n=%d ok=%v err=%v", r, n, ok, err)
	}
	e.since(s, "demo", "e19")
	if r, n, ok, _ := s.Recall(ctx, "demo", "b1"); n != 1 || !ok || r.State != "recalled" {
		e.t.Fatalf("recall of a broadcast: %+v n=%d ok=%v", r, n, ok)
	}
	e.broadcasts(s, "demo", "d9", 0)

	// Expired copies are counted once the message expires; reports
	// survive a reopen and go ReportKept after their message.
	m3 := e.msg("demo", "m3")
	m3.Target, m3.Expires = store.TargetTags, e.clock.In(time.Minute)
	s.Append(ctx, []string{"d7", "d8"}, m3, "")
	e.clock.Add(2 * time.Minute)
	s.Close()
	s = e.store()
	if r, ok, _ := s.Report(ctx, "demo", "m3"); !ok || r.Expired(e.clock.Now()) != 2 {
		e.t.Fatalf("expired copies after a reopen: %+v (ok %v), want 2", r, ok)
	}
	if r, _, _ := s.Report(ctx, "demo", "m2"); r.Recalled != 2 || r.State != "recalled" || r.Expired(e.clock.In(2*time.Hour)) != 0 {
		e.t.Fatalf("recalled report after a reopen: %+v", r)
	}
	e.clock.Add(store.ReportKept)
	if _, ok, _ := s.Report(ctx, "demo", "m3"); ok {
		e.t.Fatal("a report outlived its message by more than ReportKept")
	}
	if _, ok, _ := s.Report(ctx, "demo", "m1"); !ok {
		e.t.Fatal("a report went before its message's expiry + ReportKept")
	}
}

// Waiting lists the copies of a message not acked, recalled or expired
// (many, too), with the message's data, and a broadcast's log entry while
// it is kept; nothing for a message without a report, or of another app.
func testWaiting(e *env) {
	s := e.store()
	waiting := func(app, id string, ok bool, devices ...string) store.Waiting {
		e.t.Helper()
		var w store.Waiting
		testwait.EventuallyNil(e.t, func() error { // acks do not wait
			var got bool
			var err error
			if w, got, err = s.Waiting(ctx, app, id); err != nil {
				e.t.Fatal(err)
			}
			if got != ok || !slices.Equal(w.Devices, devices) {
				return fmt.Errorf("waiting of %s in %s: %v %v, want %v %v", id, app, got, w.Devices, ok, devices)
			}
			return nil
		})
		if len(devices) > 0 && string(w.Data) != "data "+id {
			e.t.Fatalf("waiting of %s: data %q", id, w.Data)
		}
		return w
	}
	m := e.msg("demo", "m1")
	m.Target = store.TargetDevices
	s.Append(ctx, []string{"d0"}, e.msg("demo", "first"), "")
	if _, err := s.Append(ctx, []string{"d0", "d1", "d2"}, m, ""); err != nil {
		e.t.Fatal(err)
	}
	if w := waiting("demo", "m1", true, "d0", "d1", "d2"); !slices.Equal(w.Seqs, []uint64{2, 1, 1}) || w.Target != store.TargetDevices || w.BSeq != 0 {
		e.t.Fatalf("waiting: %+v", w)
	}
	s.Ack("demo", "d1", 1)
	waiting("demo", "m1", true, "d0", "d2")
	s.Ack("demo", "d0", 2)
	s.Ack("demo", "d2", 1)
	e.report(s, "demo", "m1", func(r store.Report) bool { return r.Acked == 3 }) // counted (in Redis, within a second)
	if w := waiting("demo", "m1", true); w.Data != nil || w.Acked != 3 {         // every copy acked: settled
		e.t.Fatalf("waiting once all acked: %+v", w)
	}
	waiting("other", "m1", false)
	waiting("demo", "nope", false)
	s.Append(ctx, []string{"d1"}, e.msg("demo", "plain"), "") // no report
	waiting("demo", "plain", false)

	many := make([]string, 20) // copies too many to keep with the report, in some backend
	for i := range many {
		many[i] = fmt.Sprint("e", i)
	}
	m2 := e.msg("demo", "m2")
	m2.Target = store.TargetTags
	s.Append(ctx, many, m2, "")
	waiting("demo", "m2", true, many...)
	s.Ack("demo", "e3", 1)
	waiting("demo", "m2", true, slices.Delete(slices.Clone(many), 3, 4)...)
	s.Recall(ctx, "demo", "m2")
	waiting("demo", "m2", true)

	b := e.msg("demo", "b1")
	b.Target = store.TargetBroadcast
	s.AppendBroadcast(ctx, b, "")
	if w := waiting("demo", "b1", true); w.BSeq != 1 || string(w.Data) != "data b1" {
		e.t.Fatalf("waiting of a broadcast: %+v", w)
	}
	e.clock.Add(2 * time.Hour) // past the messages' expiry: nothing waits, the reports are kept
	waiting("demo", "m1", true)
	if w := waiting("demo", "b1", true); w.BSeq != 0 || w.Data != nil {
		e.t.Fatalf("an expired broadcast waits: %+v", w)
	}
}

// A device's OS push tokens: one per vendor, replaced by a newer one,
// removed by an empty one, dropped only while they are still the one a
// vendor called dead, per (app, device), and durable.
func testVendorTokens(e *env) {
	s := e.store()
	tokens := func(app, device string, want map[string]string) {
		e.t.Helper()
		got, err := s.VendorTokens(ctx, app, []string{device})
		if err != nil || len(got) != 1 || !maps.Equal(got[0], want) {
			e.t.Fatalf("tokens of %s in %s: %v %v, want %v", device, app, got, err, want)
		}
	}
	for _, w := range [][4]string{
		{"demo", "d1", "fcm", "f1"},
		{"demo", "d1", "apns", "a1"},
		{"demo", "d1", "fcm", "f2"}, // replaces f1
		{"demo", "d2", "fcm", "f3"},
		{"other", "d1", "hms", "h1"},
	} {
		if err := s.SetVendorToken(ctx, w[0], w[1], w[2], w[3]); err != nil {
			e.t.Fatal(err)
		}
	}
	tokens("demo", "d1", map[string]string{"fcm": "f2", "apns": "a1"})
	tokens("other", "d1", map[string]string{"hms": "h1"})
	tokens("demo", "d3", nil)
	// Many devices at once (each in its partition, in Redis), in order.
	got, err := s.VendorTokens(ctx, "demo", []string{"d2", "d3", "d1"})
	if err != nil || len(got) != 3 || !maps.Equal(got[0], map[string]string{"fcm": "f3"}) || len(got[1]) != 0 ||
		!maps.Equal(got[2], map[string]string{"fcm": "f2", "apns": "a1"}) {
		e.t.Fatalf("tokens of d2, d3, d1: %v %v", got, err)
	}
	// A vendor called f1 dead: the device has f2 since, which stays.
	if err := s.DropVendorToken(ctx, "demo", "d1", "fcm", "f1"); err != nil {
		e.t.Fatal(err)
	}
	tokens("demo", "d1", map[string]string{"fcm": "f2", "apns": "a1"})
	if err := s.DropVendorToken(ctx, "demo", "d1", "fcm", "f2"); err != nil {
		e.t.Fatal(err)
	}
	if err := s.SetVendorToken(ctx, "demo", "d2", "fcm", ""); err != nil {
		e.t.Fatal(err)
	}
	tokens("demo", "d1", map[string]string{"apns": "a1"})
	tokens("demo", "d2", nil)
	s.Close()
	s = e.store()
	tokens("demo", "d1", map[string]string{"apns": "a1"})
	tokens("other", "d1", map[string]string{"hms": "h1"})
}

// A report counts its message's escalated copies, each (device, vendor)
// once and by its last outcome, and keeps their outcomes across a reopen
// and a recall; a message without a report gets none.
func testEscalated(e *env) {
	s := e.store()
	m := e.msg("demo", "m1")
	m.Target = store.TargetDevices
	if _, err := s.Append(ctx, []string{"d1", "d2"}, m, ""); err != nil {
		e.t.Fatal(err)
	}
	steps := [][]store.Escalation{
		{{Device: "d1", Vendor: "fcm", Outcome: store.VendorPending}, {Device: "d1", Vendor: "apns", Outcome: store.VendorAccepted}},
		{{Device: "d1", Vendor: "fcm", Outcome: store.VendorAccepted}, {Device: "d2", Vendor: "hms", Outcome: store.VendorFailed}},
		{{Device: "d2", Vendor: "hms", Outcome: store.VendorFailed}, {Device: "d2", Vendor: "fcm", Outcome: store.VendorPending}},
	}
	for _, outcomes := range steps {
		if err := s.Escalated(ctx, "demo", "m1", outcomes); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := s.Escalated(ctx, "demo", "nothing", steps[0]); err != nil {
		e.t.Fatal(err)
	}
	want := []store.Escalation{{Device: "d1", Vendor: "apns", Outcome: store.VendorAccepted}, {Device: "d1", Vendor: "fcm", Outcome: store.VendorAccepted},
		{Device: "d2", Vendor: "fcm", Outcome: store.VendorPending}, {Device: "d2", Vendor: "hms", Outcome: store.VendorFailed}}
	check := func(s store.Store, state string) {
		e.t.Helper()
		r, ok, err := s.Report(ctx, "demo", "m1")
		if err != nil || !ok || r.Escalated != 4 || r.VendorAccepted != 2 || r.VendorFailed != 1 || r.Stored != 2 || r.State != state {
			e.t.Fatalf("report after escalations: %+v %v %v", r, ok, err)
		}
		got, err := s.Escalations(ctx, "demo", "m1")
		slices.SortFunc(got, func(a, b store.Escalation) int {
			return cmp.Or(strings.Compare(a.Device, b.Device), strings.Compare(a.Vendor, b.Vendor))
		})
		if err != nil || !slices.Equal(got, want) {
			e.t.Fatalf("escalations: %+v %v, want %+v", got, err, want)
		}
	}
	check(s, "sent")
	s.Close()
	s = e.store()
	check(s, "sent")
	if _, ok, err := s.Report(ctx, "demo", "nothing"); ok || err != nil {
		e.t.Fatalf("an escalation made a report: %v %v", ok, err)
	}
	if got, err := s.Escalations(ctx, "demo", "nothing"); len(got) != 0 || err != nil {
		e.t.Fatalf("escalations of a message without a report: %v %v", got, err)
	}
	if _, _, _, err := s.Recall(ctx, "demo", "m1"); err != nil {
		e.t.Fatal(err)
	}
	check(s, "recalled")
}
