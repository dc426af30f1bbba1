package embedded

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/store/storetest"
	"github.com/longlink/longlink/internal/testwait"
)

// backend is a fresh directory per test; opening it again reopens it.
func backend(t testing.TB) storetest.Opener {
	dir := t.TempDir()
	return func(o store.Options) store.Store {
		s, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) { storetest.Run(t, backend) }

func open(t testing.TB, dir string, clk *storetest.Clock, edit ...func(*store.Options)) *Store {
	t.Helper()
	o := store.Options{Metrics: metrics.New(), Now: clk.Now, SweepInterval: time.Hour}
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

func msg(clk *storetest.Clock, app, id string) store.Message {
	return store.Message{App: app, ID: id, Data: []byte("data " + id), Expires: clk.In(time.Hour)}
}

func ids(ms []store.Stored) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// flush waits until every queued operation is committed.
func flush(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.Append(ctx, nil, store.Message{}, ""); err != nil {
		t.Fatal(err)
	}
}

// The sweep deletes what expired: messages, their index entries and
// broadcast log entries, so that their space is reclaimed.
func TestSweepReclaimsExpired(t *testing.T) {
	clk := storetest.NewClock()
	s := open(t, t.TempDir(), clk)
	short := msg(clk, "demo", "short")
	short.Expires = clk.In(time.Minute)
	s.Append(ctx, []string{"d1"}, short, "")
	s.Append(ctx, []string{"d1"}, msg(clk, "demo", "long"), "")
	s.AppendBroadcast(ctx, short, "")
	clk.Add(2 * time.Minute)
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
	if got, _ := s.Since(ctx, "demo", "d1", 0, 10); !slices.Equal(ids(got), []string{"long"}) {
		t.Fatalf("after the sweep: %v", ids(got))
	}
}

// Reports go ReportKept after their message, with their copies, inline
// (a few) or not (many), and their escalations.
func TestSweepReclaimsReports(t *testing.T) {
	clk := storetest.NewClock()
	s := open(t, t.TempDir(), clk)
	many := make([]string, inlineCopies+1)
	for i := range many {
		many[i] = fmt.Sprint("d", i)
	}
	for _, devices := range [][]string{many[:1], many} {
		m := msg(clk, "demo", fmt.Sprint("m", len(devices)))
		m.Expires, m.Target = clk.In(time.Minute), "devices"
		s.Append(ctx, devices, m, "")
	}
	for _, id := range []string{"m1", fmt.Sprint("m", len(many))} {
		if err := s.Escalated(ctx, "demo", id, []store.Escalation{{Device: "d0", Vendor: "fcm", Outcome: store.VendorAccepted}}); err != nil {
			t.Fatal(err)
		}
	}
	if r, c, e := countKeys(t, s, prefixReport), countKeys(t, s, prefixCopies), countKeys(t, s, prefixEscalated); r != 2 || c != 1 || e != 2 {
		t.Fatalf("%d reports, %d copies keys and %d escalations, want 2, 1 (one push's copies inline) and 2", r, c, e)
	}
	clk.Add(2 * time.Minute) // the messages go, and their reports are indexed
	s.queue(&op{kind: opSweep})
	flush(t, s)
	if r, c, x := countKeys(t, s, prefixReport), countKeys(t, s, prefixCopies), countKeys(t, s, prefixExpiry); r != 2 || c != 1 || x != 2 {
		t.Fatalf("after the messages: %d reports, %d copies keys, %d expiry keys; want 2, 1, 2", r, c, x)
	}
	clk.Add(store.ReportKept)
	s.queue(&op{kind: opSweep})
	flush(t, s)
	for _, p := range []string{prefixReport, prefixCopies, prefixExpiry, prefixMessage, prefixEscalated} {
		if n := countKeys(t, s, p); n != 0 {
			t.Fatalf("%d %s keys after the sweep, want 0", n, p)
		}
	}
}

// A message acked before its memtable is flushed reaches the tables with
// neither its key nor a tombstone: a stored message that is delivered
// costs no flush or compaction work of its own.
func TestAckedMessagesLeaveNoTombstones(t *testing.T) {
	clk := storetest.NewClock()
	s := open(t, t.TempDir(), clk)
	devices := []string{"d1", "d2", "d3", "d4"}
	for i := range 500 {
		m := msg(clk, "demo", fmt.Sprint("m", i))
		m.Target = "devices"
		if _, err := s.Append(ctx, devices, m, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range devices {
		s.Ack("demo", d, 250) // a range (eachRecord)
		for seq := uint64(251); seq <= 500; seq++ {
			s.Ack("demo", d, seq) // one at a time (point reads)
		}
	}
	flush(t, s)
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, s, prefixMessage); n != 0 {
		t.Fatalf("%d messages left after their acks", n)
	}
	if n := countKeys(t, s, prefixExpiry); n != 500+len(devices) { // the reports', and the mailboxes'
		t.Fatalf("%d expiry entries after the acks, want the 500 reports' and the %d mailboxes'", n, len(devices))
	}
	if n := s.db.Metrics().Keys.TombstoneCount; n != 0 {
		t.Fatalf("%d tombstones in the tables after the acks, want 0", n)
	}
}

// A mailbox, not each message, has an expiry entry: messages appended
// to it and acked write none while the entry it has comes before their
// expiry, and the sweep, when the entry is due, deletes what expired,
// oldest first, and gives the mailbox the entry of its oldest message
// left. A message that expires behind an older one that has not is never
// read after its expiry, and is deleted with that one.
func TestOneExpiryEntryPerMailbox(t *testing.T) {
	clk := storetest.NewClock()
	s := open(t, t.TempDir(), clk)
	put := func(device, id string, life time.Duration) {
		t.Helper()
		m := msg(clk, "demo", id)
		m.Expires = clk.In(life)
		if _, err := s.Append(ctx, []string{device}, m, ""); err != nil {
			t.Fatal(err)
		}
	}
	entries := func(want ...[]byte) {
		t.Helper()
		got := keysOf(t, s, prefixExpiry)
		var keys []string
		for _, k := range want {
			keys = append(keys, string(k))
		}
		slices.Sort(keys)
		if !slices.Equal(got, keys) {
			t.Fatalf("expiry entries %q, want %q", got, keys)
		}
	}
	d1, d2 := key(prefixCount, "demo", "d1"), key(prefixCount, "demo", "d2")
	first := clk.In(time.Hour)
	for i := range 10 {
		put("d1", fmt.Sprint("a", i), time.Hour)
	}
	entries(expiryKey(first, d1))
	s.Ack("demo", "d1", 10)
	clk.Add(time.Minute)
	for i := range 5 {
		put("d1", fmt.Sprint("b", i), time.Hour)
	}
	entries(expiryKey(first, d1))

	put("d2", "long", 2*time.Hour)
	put("d2", "short", time.Minute)
	long := clk.In(2 * time.Hour)
	entries(expiryKey(first, d1), expiryKey(long, d2))
	clk.Add(2 * time.Minute)
	if got, _ := s.Since(ctx, "demo", "d2", 0, 10); !slices.Equal(ids(got), []string{"long"}) {
		t.Fatalf("d2's mailbox after short expired: %v", ids(got))
	}

	clk.Add(first.Add(30 * time.Second).Sub(clk.Now())) // d1's entry is due, b0..b4 not
	s.queue(&op{kind: opSweep})
	flush(t, s)
	entries(expiryKey(first.Add(time.Minute), d1), expiryKey(long, d2)) // b0's expiry
	if got, _ := s.Since(ctx, "demo", "d1", 0, 10); len(got) != 5 || got[0].ID != "b0" {
		t.Fatalf("d1's mailbox after the sweep: %v", ids(got))
	}
	if n := countKeys(t, s, prefixMessage); n != 7 {
		t.Fatalf("%d messages after the sweep, want d1's 5 and d2's 2", n)
	}
	clk.Add(3 * time.Hour)
	s.queue(&op{kind: opSweep})
	flush(t, s)
	entries()
	if n := countKeys(t, s, prefixMessage); n != 0 {
		t.Fatalf("%d messages after the last sweep, want 0", n)
	}
	put("d1", "c", time.Hour) // the mailbox is empty: it gets an entry again
	entries(expiryKey(clk.In(time.Hour), d1))
}

// An ack does not write its mailbox's count (the committer's cache has
// it): a count read back after a restart may be high, and is counted again
// before it makes the mailbox drop a message.
func TestMailboxLimitAfterAcksAndRestart(t *testing.T) {
	clk := storetest.NewClock()
	dir := t.TempDir()
	limit := func(o *store.Options) { o.MailboxLimit = 2 }
	s := open(t, dir, clk, limit)
	put := func(id string) {
		t.Helper()
		if _, err := s.Append(ctx, []string{"d1"}, msg(clk, "demo", id), ""); err != nil {
			t.Fatal(err)
		}
	}
	mailbox := func(want ...string) {
		t.Helper()
		if got, err := s.Since(ctx, "demo", "d1", 0, 10); err != nil || !slices.Equal(ids(got), want) {
			t.Fatalf("mailbox %v (%v), want %v", ids(got), err, want)
		}
	}
	put("a1")
	put("a2")
	s.Ack("demo", "d1", 2)
	flush(t, s)
	s.Close()

	s = open(t, dir, clk, limit)
	put("b1")
	put("b2")
	mailbox("b1", "b2") // nothing dropped below the limit
	put("b3")
	mailbox("b2", "b3") // full: the oldest goes
}

// An append writes its mailbox's n/ once per seqBlock seqs: the last seq
// it holds is a reserve. LastSeq is the last seq given all the same, and
// after a restart a device's seqs go on after the reserve, with its
// mailbox whole and its limit kept.
func TestSeqsReservedAcrossRestart(t *testing.T) {
	clk := storetest.NewClock()
	dir := t.TempDir()
	limit := func(o *store.Options) { o.MailboxLimit = 4 }
	s := open(t, dir, clk, limit)
	put := func(id string) uint64 {
		t.Helper()
		res, err := s.Append(ctx, []string{"d1"}, msg(clk, "demo", id), "")
		if err != nil {
			t.Fatal(err)
		}
		return res.Seqs[0]
	}
	lastSeq := func(want uint64) {
		t.Helper()
		if last, err := s.LastSeq(ctx, "demo", "d1"); err != nil || last != want {
			t.Fatalf("LastSeq %d (%v), want %d", last, err, want)
		}
	}
	onDisk := func() mailbox {
		t.Helper()
		v, _, err := get(s.db, key(prefixCount, "demo", "d1"))
		if err != nil {
			t.Fatal(err)
		}
		return decodeMailbox(v)
	}
	for i, id := range []string{"a1", "a2", "a3"} {
		if seq := put(id); seq != uint64(i+1) {
			t.Fatalf("seq %d for %s", seq, id)
		}
	}
	commits := testutil.ToFloat64(s.opts.Metrics.StoreCommits)
	lastSeq(3)
	if n := testutil.ToFloat64(s.opts.Metrics.StoreCommits) - commits; n != 0 {
		t.Fatalf("LastSeq, a read, committed %v batches", n)
	}
	if mb := onDisk(); mb.last != seqBlock || mb.count != 1+seqBlock-1 {
		t.Fatalf("n/ after 3 appends: %+v, want the first append's reserve (last %d, count %d)", mb, seqBlock, seqBlock)
	}
	s.Close()

	s = open(t, dir, clk, limit)
	lastSeq(seqBlock)
	if n := len(s.meta.mailboxes); n != 0 { // a read: it caches nothing
		t.Fatalf("%d mailboxes cached by LastSeq", n)
	}
	if seq := put("b1"); seq != seqBlock+1 {
		t.Fatalf("first seq after the restart: %d, want %d", seq, seqBlock+1)
	}
	put("b2")
	got, err := s.Since(ctx, "demo", "d1", 0, 10)
	if err != nil || !slices.Equal(ids(got), []string{"a2", "a3", "b1", "b2"}) {
		t.Fatalf("mailbox %v (%v): the limit of 4 after a restart", ids(got), err)
	}
	if got[3].Seq != seqBlock+2 {
		t.Fatalf("b2's seq %d", got[3].Seq)
	}
}

// A mailbox read back from n/ (its count raised by the reserve) is not
// known to have an expiry entry: an append after a restart makes one, so
// that what it stores is swept when it expires, even when the last sweep
// found the mailbox empty.
func TestExpiryEntryAfterRestart(t *testing.T) {
	clk := storetest.NewClock()
	dir := t.TempDir()
	s := open(t, dir, clk)
	if _, err := s.Append(ctx, []string{"d1"}, msg(clk, "demo", "a1"), ""); err != nil {
		t.Fatal(err)
	}
	s.Ack("demo", "d1", 1)
	clk.Add(2 * time.Hour)
	s.queue(&op{kind: opSweep}) // finds the mailbox empty: no entry left
	flush(t, s)
	if n := countKeys(t, s, prefixExpiry); n != 0 {
		t.Fatalf("%d expiry entries after the sweep", n)
	}
	s.Close()

	s = open(t, dir, clk)
	m := msg(clk, "demo", "b1")
	if _, err := s.Append(ctx, []string{"d1"}, m, ""); err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(t, s, prefixExpiry), []string{string(expiryKey(m.Expires, key(prefixCount, "demo", "d1")))}; !slices.Equal(got, want) {
		t.Fatalf("expiry entries %q, want %q", got, want)
	}
	clk.Add(2 * time.Hour)
	s.queue(&op{kind: opSweep})
	flush(t, s)
	if n := countKeys(t, s, prefixMessage); n != 0 {
		t.Fatalf("%d messages after b1 expired and the sweep ran", n)
	}
}

// A sweep deletes at most sweepChunk keys, a mailbox's messages each
// counted: a mailbox with more expired messages than that is swept in
// several commits, each going on where the one before stopped.
func TestSweepInChunks(t *testing.T) {
	was := sweepChunk
	t.Cleanup(func() { sweepChunk = was }) // after the store's Close (cleanups run last first)
	sweepChunk = 100
	clk := storetest.NewClock()
	s := open(t, t.TempDir(), clk, func(o *store.Options) { o.MailboxLimit = 1000 })
	var wg sync.WaitGroup
	for i := range 250 {
		wg.Go(func() {
			m := msg(clk, "demo", fmt.Sprint("m", i))
			m.Expires = clk.In(time.Minute)
			if _, err := s.Append(ctx, []string{"d1"}, m, ""); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	put := func(device string) {
		t.Helper()
		if _, err := s.Append(ctx, []string{device}, msg(clk, "demo", "later"), ""); err != nil {
			t.Fatal(err)
		}
	}
	put("d1") // an hour's life: it stays
	put("d2")
	clk.Add(2 * time.Minute)
	commits := testutil.ToFloat64(s.opts.Metrics.StoreCommits)
	s.queue(&op{kind: opSweep})
	testwait.Eventually(t, "the expired messages deleted", func() bool { return countKeys(t, s, prefixMessage) == 2 })
	if n := testutil.ToFloat64(s.opts.Metrics.StoreCommits) - commits; n < 3 {
		t.Errorf("250 expired messages deleted in %v commits, want at least 3 of at most 100 keys", n)
	}
	for _, d := range []string{"d1", "d2"} {
		if got, _ := s.Since(ctx, "demo", d, 0, 10); !slices.Equal(ids(got), []string{"later"}) {
			t.Errorf("%s's mailbox after the sweeps: %v", d, ids(got))
		}
	}
	if got := keysOf(t, s, prefixExpiry); len(got) != 2 { // d1's and d2's
		t.Errorf("expiry entries after the sweeps: %q", got)
	}
}

func countKeys(t *testing.T, s *Store, prefix string) int { return len(keysOf(t, s, prefix)) }

// keysOf returns the keys of s with prefix, in order.
func keysOf(t *testing.T, s *Store, prefix string) []string {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd([]byte(prefix))})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var keys []string
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, string(it.Key()))
	}
	return keys
}

func BenchmarkStore(b *testing.B) { storetest.Bench(b, backend) }

// An ack that reaches a message deleted meanwhile (replaced through its
// collapse key, recalled, dropped from a full mailbox, or expired) deletes
// and counts nothing: the committer's cache of recent messages' headers,
// which spares an ack its read, forgets a message at each of these deletes.
func TestAckOfADeletedMessage(t *testing.T) {
	clk := storetest.NewClock()
	s := open(t, t.TempDir(), clk, func(o *store.Options) { o.MailboxLimit = 2 })
	put := func(device, id, collapse string, life time.Duration) {
		t.Helper()
		m := msg(clk, "demo", id)
		m.Target, m.Collapse, m.Expires = store.TargetDevices, collapse, clk.In(life)
		if _, err := s.Append(ctx, []string{device}, m, ""); err != nil {
			t.Fatal(err)
		}
	}
	put("c", "c1", "k", time.Hour)
	put("c", "c2", "k", time.Hour) // replaces c1
	put("r", "r1", "", time.Hour)
	if _, _, _, err := s.Recall(ctx, "demo", "r1"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"f1", "f2", "f3"} { // f1 dropped: the mailbox holds 2
		put("f", id, "", time.Hour)
	}
	put("x", "x1", "", time.Minute)
	put("x", "x2", "", time.Hour)
	clk.Add(2 * time.Minute)
	s.queue(&op{kind: opSweep}) // x1 expired
	flush(t, s)
	// Every header the cache holds is of a message still there. (The
	// committer owns the cache; the flush above orders its writes before
	// this read.)
	for k := range s.meta.headers {
		if _, ok, err := get(s.db, []byte(k)); !ok || err != nil {
			t.Errorf("the cache holds the header of %q, deleted (%v)", k, err)
		}
	}
	for device, seq := range map[string]uint64{"c": 2, "r": 1, "f": 3, "x": 2} {
		s.Ack("demo", device, seq)
	}
	flush(t, s)
	for id, want := range map[string]int{"c1": 0, "c2": 1, "r1": 0, "f1": 0, "f2": 1, "f3": 1, "x1": 0, "x2": 1} {
		if r, ok, err := s.Report(ctx, "demo", id); err != nil || !ok || r.Acked != want {
			t.Errorf("%s: acked %d (%v %v), want %d", id, r.Acked, ok, err, want)
		}
	}
}

// The claims of a process that had the store are given back when it is
// opened again (one process holds a data dir: the claimer is gone): what
// it claimed is due at once, at its time before the claim, and not when
// the lease would have ended. A push made and unscheduled leaves no claim.
func TestClaimsReleasedAtOpen(t *testing.T) {
	clk := storetest.NewClock()
	dir := t.TempDir()
	s := open(t, dir, clk)
	at := clk.Now().Truncate(time.Millisecond)
	for _, id := range []string{"made", "claimed"} {
		if err := s.Schedule(ctx, store.Scheduled{App: "demo", ID: id, At: at, Request: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.ClaimDue(ctx, clk.Now(), time.Minute, 10); err != nil || len(got) != 2 {
		t.Fatalf("claim: %+v %v", got, err)
	}
	if ok, err := s.Unschedule(ctx, "demo", "made"); !ok || err != nil {
		t.Fatalf("unschedule: %v %v", ok, err)
	}
	if again, _ := s.ClaimDue(ctx, clk.Now(), time.Minute, 10); len(again) != 0 {
		t.Fatalf("claimed twice within the lease: %+v", again)
	}
	s.Close() // as a crash would: the claims are left

	s = open(t, dir, clk)
	got, err := s.ClaimDue(ctx, clk.Now(), time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].ID != "claimed" || !got[0].At.Equal(at) {
		t.Fatalf("claimed at once after the reopen: %+v %v", got, err)
	}
	s.Unschedule(ctx, "demo", "claimed")
	if n := countKeys(t, s, prefixClaimed); n != 0 {
		t.Fatalf("%d claims left", n)
	}
}
