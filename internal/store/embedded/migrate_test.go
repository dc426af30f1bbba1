package embedded

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/store/storetest"
)

// A data dir written by format 1 (device-first keys, one seq sequence per
// device) opens with every stored message where the apps expect it, seqs
// unchanged, and each app's sequence going on from the device's old counter.
func TestMigrateFormat1(t *testing.T) {
	clk := storetest.NewClock()
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	exp := clk.In(time.Hour)
	put := func(k []byte, v []byte) {
		if err := db.Set(k, v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	// d1 got seq 1 in app a, 2 in b, 3 in a; it acked nothing.
	for _, m := range []struct {
		app string
		seq uint64
		id  string
	}{{"a", 1, "a1"}, {"b", 2, "b2"}, {"a", 3, "a3"}} {
		mk := binary.BigEndian.AppendUint64(append(key(prefixMessage, "d1", m.app), 0), m.seq)
		put(mk, record{expires: exp.UnixMilli(), id: m.id, data: []byte(m.id)}.encode())
		put(expiryKey(exp, mk), nil)
	}
	put(key(prefixDevice, "d1"), uv(3))
	put(key(prefixCount, "d1", "a"), append(uv(2), uv(1)...))
	put(key(prefixCount, "d1", "b"), append(uv(1), uv(2)...))
	put(key(prefixCursor, "d1", "a"), uv(0))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := open(t, dir, clk)
	if got, _ := s.Since(ctx, "a", "d1", 0, 10); !slices.Equal(ids(got), []string{"a1", "a3"}) || got[1].Seq != 3 {
		t.Fatalf("a after migration: %+v", got)
	}
	if got, _ := s.Since(ctx, "b", "d1", 1, 10); !slices.Equal(ids(got), []string{"b2"}) {
		t.Fatalf("b after migration: %v", ids(got))
	}
	res, err := s.Append(ctx, []string{"d1"}, msg(clk, "b", "b4"), "")
	if err != nil || res.Seqs[0] != 4 {
		t.Fatalf("next seq in b: %+v %v, want 4", res, err)
	}
	s.Ack("a", "d1", 3)
	flush(t, s)
	if got, _ := s.Since(ctx, "a", "d1", 0, 10); len(got) != 0 {
		t.Fatalf("a after ack: %v", ids(got))
	}
	// The expiry index names the moved keys: the sweep reclaims them.
	clk.Add(2 * time.Hour)
	s.queue(&op{kind: opSweep})
	flush(t, s)
	if n := countKeys(t, s, prefixMessage); n != 0 {
		t.Fatalf("%d message keys left after the sweep", n)
	}
	// Opening again migrates nothing twice; b's seqs go on after those
	// its append reserved (4 given, up to 4+63 reserved).
	s.Close()
	s = open(t, dir, clk)
	if last, _ := s.LastSeq(ctx, "b", "d1"); last != 4+seqBlock-1 {
		t.Fatalf("b's last seq after reopen: %d, want %d", last, 4+seqBlock-1)
	}
}

// A data dir written by format 2, where a report was indexed by its first
// copy's expiry entry, opens with the report indexed by its own: it still
// goes store.ReportKept after its message expires, and not before.
func TestMigrateFormat2(t *testing.T) {
	clk := storetest.NewClock()
	dir := t.TempDir()
	s := open(t, dir, clk)
	m := msg(clk, "demo", "m1")
	m.Target = "devices"
	if _, err := s.Append(ctx, []string{"d1", "d2"}, m, ""); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Rewrite it as format 2 had it.
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rk := key(prefixReport, "demo", "m1")
	for _, k := range [][]byte{expiryKey(m.Expires.Add(store.ReportKept), rk), []byte(keyVersion)} {
		if err := db.Delete(k, nil); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range map[string][]byte{
		string(expiryKey(m.Expires, messageKey("demo", "d1", 1))): rk,
		keyVersion: binary.AppendUvarint(nil, 2),
	} {
		if err := db.Set([]byte(k), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, clk)
	sweepAt := func(d time.Duration) {
		clk.Add(d)
		s.queue(&op{kind: opSweep})
		flush(t, s)
	}
	sweepAt(2 * time.Hour) // the messages expire
	if n := countKeys(t, s, prefixMessage); n != 0 {
		t.Fatalf("%d messages left after they expired", n)
	}
	if _, ok, err := s.Report(ctx, "demo", "m1"); err != nil || !ok {
		t.Fatalf("the report went with its messages: %v %v", ok, err)
	}
	sweepAt(store.ReportKept)
	for _, p := range []string{prefixReport, prefixExpiry} {
		if n := countKeys(t, s, p); n != 0 {
			t.Fatalf("%d %s keys left after ReportKept", n, p)
		}
	}
}

// A data dir written by format 3, where a device's last seq had a key of
// its own (d/), opens with it in the mailbox's bookkeeping (n/): the seqs
// go on from it, the count still bounds the mailbox, and no d/ key is left.
func TestMigrateFormat3(t *testing.T) {
	clk := storetest.NewClock()
	dir := t.TempDir()
	s := open(t, dir, clk, func(o *store.Options) { o.MailboxLimit = 2 })
	for _, id := range []string{"m1", "m2"} {
		if _, err := s.Append(ctx, []string{"d1"}, msg(clk, "demo", id), ""); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// Rewrite it as format 3 had it: d1 was given seqs up to 7, of which
	// 6 and 7 wait (its mailbox: 2 messages, the lowest 6).
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	for i := range 2 {
		old, seq := messageKey("demo", "d1", uint64(i+1)), uint64(i+6)
		v, closer, err := db.Get(old)
		if err != nil {
			t.Fatal(err)
		}
		v = slices.Clone(v)
		closer.Close()
		r, _ := decodeRecord(v)
		exp := time.UnixMilli(r.expires)
		for k, v := range map[string][]byte{string(messageKey("demo", "d1", seq)): v, string(expiryKey(exp, messageKey("demo", "d1", seq))): nil} {
			if err := db.Set([]byte(k), v, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range [][]byte{old, expiryKey(exp, old)} {
			if err := db.Delete(k, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, v := range map[string][]byte{
		string(key(prefixDevice, "demo", "d1")): uv(7),
		string(key(prefixCount, "demo", "d1")):  append(uv(2), uv(6)...),
		keyVersion:                              uv(3),
	} {
		if err := db.Set([]byte(k), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, clk, func(o *store.Options) { o.MailboxLimit = 2 })
	if last, err := s.LastSeq(ctx, "demo", "d1"); last != 7 || err != nil {
		t.Fatalf("last seq after migration: %d %v, want 7", last, err)
	}
	res, err := s.Append(ctx, []string{"d1"}, msg(clk, "demo", "m8"), "")
	if err != nil || res.Seqs[0] != 8 {
		t.Fatalf("next seq: %+v %v, want 8", res, err)
	}
	// The mailbox held 2 of 2: m1 (seq 6) was dropped for m8.
	if got, _ := s.Since(ctx, "demo", "d1", 0, 10); !slices.Equal(ids(got), []string{"m2", "m8"}) || got[0].Seq != 7 {
		t.Fatalf("mailbox after migration and one more: %+v", got)
	}
	if n := countKeys(t, s, prefixDevice); n != 0 {
		t.Fatalf("%d d/ keys left", n)
	}
}

// A data dir written by format 4, where each mailbox message had an expiry
// entry of its own, opens with one entry per mailbox, at the earliest of
// its messages' (the index is in time order), through which the sweep then
// deletes what expires.
func TestMigrateFormat4(t *testing.T) {
	clk := storetest.NewClock()
	dir := t.TempDir()
	s := open(t, dir, clk)
	soon, late := clk.In(time.Minute), clk.In(time.Hour)
	for _, d := range []string{"d1", "d2"} {
		for _, exp := range []time.Time{late, soon} {
			m := msg(clk, "demo", d+exp.String())
			m.Expires = exp
			if _, err := s.Append(ctx, []string{d}, m, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Close()
	// Rewrite it as format 4 had it: an entry per message, none per mailbox.
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	for _, d := range []string{"d1", "d2"} {
		nk := key(prefixCount, "demo", d)
		b.Delete(expiryKey(late, nk), nil)
		b.Set(expiryKey(late, messageKey("demo", d, 1)), nil, nil)
		b.Set(expiryKey(soon, messageKey("demo", d, 2)), nil, nil)
	}
	b.Set([]byte(keyVersion), binary.AppendUvarint(nil, 4), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, clk)
	got := keysOf(t, s, prefixExpiry)
	want := []string{string(expiryKey(soon, key(prefixCount, "demo", "d1"))), string(expiryKey(soon, key(prefixCount, "demo", "d2")))}
	if !slices.Equal(got, want) {
		t.Fatalf("expiry entries after migration: %q, want %q", got, want)
	}
	clk.Add(2 * time.Minute)
	s.queue(&op{kind: opSweep})
	flush(t, s)
	// The soon messages are behind the late ones: they wait with them,
	// and no read returns them.
	if got, _ := s.Since(ctx, "demo", "d1", 0, 10); len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("d1's mailbox after the sweep: %+v", got)
	}
	clk.Add(time.Hour)
	s.queue(&op{kind: opSweep})
	flush(t, s)
	if m, x := countKeys(t, s, prefixMessage), countKeys(t, s, prefixExpiry); m != 0 || x != 0 {
		t.Fatalf("%d messages and %d expiry entries after they expired, want none", m, x)
	}
}
