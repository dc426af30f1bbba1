package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/longlink/longlink/internal/store"
)

// Schedule keeps p, durably.
func (s *Store) Schedule(ctx context.Context, p store.Scheduled) error {
	return s.do(ctx, &op{kind: opSchedule, msg: store.Message{App: p.App}, sched: []store.Scheduled{p}})
}

// Unschedule removes app's scheduled push id, and reports whether it was
// there.
func (s *Store) Unschedule(ctx context.Context, app, id string) (bool, error) {
	o := &op{kind: opUnschedule, msg: store.Message{App: app, ID: id}}
	err := s.do(ctx, o)
	return o.n > 0, err
}

// ClaimDue claims up to limit pushes due at now for lease. When none is
// due (most of the time) it only reads.
func (s *Store) ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.Scheduled, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixDue), UpperBound: dueEnd(now)})
	if err != nil {
		return nil, fmt.Errorf("store claim: %w", err)
	}
	due := it.First()
	if err := it.Close(); err != nil || !due {
		return nil, err
	}
	o := &op{kind: opClaim, n: limit, lease: lease}
	err = s.do(ctx, o)
	return o.sched, err
}

// FindScheduled returns app's scheduled push id, if it is there.
func (s *Store) FindScheduled(_ context.Context, app, id string) (store.Scheduled, bool, error) {
	v, ok, err := get(s.db, key(prefixSchedule, app, id))
	if err != nil {
		return store.Scheduled{}, false, fmt.Errorf("store scheduled: %w", err)
	}
	if !ok {
		return store.Scheduled{}, false, nil
	}
	at, req := decodeSchedule(v)
	return store.Scheduled{App: app, ID: id, At: at, Request: req}, true, nil
}

// Scheduled lists app's scheduled pushes by time, at most limit.
func (s *Store) Scheduled(_ context.Context, app string, limit int) ([]store.Scheduled, error) {
	p := append(key(prefixSchedule, app), 0)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("store scheduled: %w", err)
	}
	var out []store.Scheduled
	for it.First(); it.Valid(); it.Next() {
		at, req := decodeSchedule(it.Value()) // the iterator's own memory: copied
		out = append(out, store.Scheduled{App: app, ID: string(it.Key()[len(p):]), At: at, Request: bytes.Clone(req)})
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("store scheduled: %w", err)
	}
	slices.SortFunc(out, func(a, b store.Scheduled) int { return a.At.Compare(b.At) })
	return out[:min(len(out), limit)], nil
}

func encodeSchedule(at time.Time, req []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(at.UnixMilli())), req...)
}

func decodeSchedule(v []byte) (time.Time, []byte) {
	ms, n := binary.Uvarint(v)
	return time.UnixMilli(int64(ms)), v[max(n, 0):]
}

// dueKey is a schedule's place in the index by time.
func dueKey(at time.Time, app, id string) []byte {
	k := binary.BigEndian.AppendUint64([]byte(prefixDue), uint64(at.UnixMilli()))
	return append(append(append(k, app...), 0), id...)
}

// dueEnd bounds the index's keys due at now.
func dueEnd(now time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefixDue), uint64(now.UnixMilli())+1)
}

func (s *Store) applySchedule(b *pebble.Batch, o *op) error {
	o.durable = true
	keepScheduled(b, o.sched[0])
	return nil
}

// keepScheduled writes p and its due index entry.
func keepScheduled(b *pebble.Batch, p store.Scheduled) {
	b.Set(key(prefixSchedule, p.App, p.ID), encodeSchedule(p.At, p.Request), nil)
	b.Set(dueKey(p.At, p.App, p.ID), nil, nil)
}

func (s *Store) applyUnschedule(b *pebble.Batch, o *op) error {
	sk := key(prefixSchedule, o.msg.App, o.msg.ID)
	v, ok, err := get(b, sk)
	if err != nil || !ok {
		return err
	}
	o.durable = true
	at, _ := decodeSchedule(v)
	b.Delete(sk, nil)
	b.Delete(dueKey(at, o.msg.App, o.msg.ID), nil)
	b.Delete(key(prefixClaimed, o.msg.App, o.msg.ID), nil)
	o.n = 1
	return nil
}

// releaseClaims gives back, at open, the claims of the process that had
// the store before: it is gone (one process holds a data dir), so the
// pushes and escalations it claimed are due again at once, at their time
// before the claim, not when the claim's lease would have ended.
func releaseClaims(db *pebble.DB) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixClaimed), UpperBound: prefixEnd([]byte(prefixClaimed))})
	if err != nil {
		return err
	}
	b := db.NewBatch()
	defer b.Close()
	for it.First(); it.Valid(); it.Next() {
		b.Delete(it.Key(), nil)
		app, id, _ := bytes.Cut(it.Key()[len(prefixClaimed):], []byte{0})
		sk := key(prefixSchedule, string(app), string(id))
		v, ok, err := get(db, sk)
		if err != nil {
			it.Close()
			return err
		}
		if !ok {
			continue
		}
		until, req := decodeSchedule(v)
		at := time.UnixMilli(int64(uvarint(it.Value())))
		b.Delete(dueKey(until, string(app), string(id)), nil)
		keepScheduled(b, store.Scheduled{App: string(app), ID: string(id), At: at, Request: req})
	}
	if err := it.Close(); err != nil || b.Empty() {
		return err
	}
	return b.Commit(pebble.Sync)
}

// applyClaim moves each due push's time to the end of its claim, so that
// no other claim takes it before then, and returns it with its time.
func (s *Store) applyClaim(b *pebble.Batch, o *op, now time.Time) error {
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixDue), UpperBound: dueEnd(now)})
	if err != nil {
		return err
	}
	var due [][]byte
	for it.First(); it.Valid() && len(due) < o.n; it.Next() {
		due = append(due, bytes.Clone(it.Key()))
	}
	if err := it.Close(); err != nil {
		return err
	}
	until := now.Add(o.lease)
	o.durable = len(due) > 0 // a claim must outlive a crash; looking and finding none writes nothing
	for _, dk := range due {
		app, id, _ := bytes.Cut(dk[len(prefixDue)+8:], []byte{0})
		b.Delete(dk, nil)
		sk := key(prefixSchedule, string(app), string(id))
		v, ok, err := get(b, sk)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		at, req := decodeSchedule(v)
		b.Set(sk, encodeSchedule(until, req), nil)
		b.Set(dueKey(until, string(app), string(id)), nil, nil)
		b.Set(key(prefixClaimed, string(app), string(id)), binary.AppendUvarint(nil, uint64(at.UnixMilli())), nil)
		o.sched = append(o.sched, store.Scheduled{App: string(app), ID: string(id), At: at, Request: req})
	}
	return nil
}
