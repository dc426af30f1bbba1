package embedded

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/longlink/longlink/internal/store"
)

type opKind uint8

const (
	opAppend       opKind = iota // a message into mailboxes, and/or an idempotency key
	opBroadcast                  // a message into an app's broadcast log
	opCatchUp                    // copy an app's log into a device's mailbox
	opAckBroadcast               // move a device's cursor in an app's log
	opAck                        // trim a mailbox
	opBind                       // user <-> device
	opSweep                      // delete what expired
	opUsers                      // read: the devices of users (o.apps holds the users)
	opTag                        // add and remove tags of devices
	opTagDevices                 // read: the devices a tag query selects
	opSchedule                   // keep a scheduled push
	opUnschedule                 // remove one (cancelled, or done)
	opClaim                      // claim the due ones for a lease
	opSent                       // the connections a push was handed to, for its report
	opRecall                     // remove a message wherever it waits
	opVendorToken                // set, remove or drop a device's OS push token
	opEscalated                  // record escalated copies' outcomes
	opLastSeq                    // read: the last seq given to a device
)

// op is one operation for the committer.
type op struct {
	kind        opKind
	msg         store.Message // msg.App is the app of every kind that has one
	devices     []string
	device      string
	user        string
	users       []string
	add         []string           // opTag: tags to add
	remove      []string           // opTag: tags to remove
	query       store.TagQuery     // opTagDevices
	sched       []store.Scheduled  // opSchedule: the push; opClaim: the claimed
	lease       time.Duration      // opClaim
	vendor      vendorToken        // opVendorToken
	escalations []store.Escalation // opEscalated
	seq         uint64
	key         string        // idempotency key
	done        chan struct{} // closed once committed; nil when nobody waits

	// Results, valid once done is closed.
	res     store.Appended
	n       int
	report  store.Report // opRecall
	found   bool         // opRecall: the message has a report
	err     error
	durable bool // the op must be synced before it is visible
}

// sweepChunk bounds the expired keys one sweep deletes (a mailbox's
// messages each count). A variable for the tests.
var sweepChunk = 10000

func (s *Store) run() {
	defer close(s.done)
	sweep := time.NewTicker(s.opts.SweepInterval)
	defer sweep.Stop()
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-sweep.C:
			first = &op{kind: opSweep}
		case <-s.stop:
			for {
				select {
				case o := <-s.ops:
					s.commit([]*op{o})
				default:
					return
				}
			}
		}
		ops := []*op{first}
	gather:
		for len(ops) < maxBatchOps {
			select {
			case o := <-s.ops:
				ops = append(ops, o)
			default:
				break gather
			}
		}
		s.commit(ops)
	}
}

// commit applies ops to one batch and commits it, with an fsync if any op
// needs one. An op that fails is left out and the others are retried in a
// fresh batch, so that a failed op changes nothing.
func (s *Store) commit(ops []*op) {
	for len(ops) > 0 {
		batch := s.db.NewIndexedBatch()
		now := s.opts.Now()
		sync, failed := false, -1
		for i, o := range ops {
			if o.err = s.apply(batch, o, now); o.err != nil {
				failed = i
				break
			}
			sync = sync || o.durable
		}
		if failed >= 0 {
			batch.Close()
			s.meta.reset()
			clear(s.acks)
			finish(ops[failed])
			ops = append(ops[:failed:failed], ops[failed+1:]...)
			continue
		}
		err := s.addAcks(batch)
		written := sync || !batch.Empty() // reads alone (a login's LastSeq) commit nothing
		if err == nil && written {
			opts := pebble.NoSync
			if sync {
				opts = pebble.Sync
			}
			err = batch.Commit(opts)
		}
		batch.Close()
		if err != nil {
			s.meta.reset()
		}
		for _, o := range ops {
			if err != nil {
				o.err = fmt.Errorf("store commit: %w", err)
			}
			finish(o)
		}
		if s.opts.Metrics != nil && written {
			s.opts.Metrics.StoreCommits.Inc()
			s.opts.Metrics.StoreBatchOps.Observe(float64(len(ops)))
		}
		return
	}
}

func finish(o *op) {
	if o.done != nil {
		close(o.done)
	}
}

func (s *Store) apply(b *pebble.Batch, o *op, now time.Time) error {
	switch o.kind {
	case opAppend, opBroadcast:
		return s.applyAppend(b, o, now)
	case opCatchUp:
		return s.applyCatchUp(b, o, now)
	case opAckBroadcast:
		return s.applyAckBroadcast(b, o)
	case opAck:
		return s.applyAck(b, o)
	case opBind:
		return s.applyBind(b, o)
	case opSweep:
		return s.applySweep(b, now)
	case opUsers:
		return s.applyUsers(b, o)
	case opTag:
		return s.applyTag(b, o)
	case opTagDevices:
		return s.applyTagDevices(b, o)
	case opSchedule:
		return s.applySchedule(b, o)
	case opUnschedule:
		return s.applyUnschedule(b, o)
	case opClaim:
		return s.applyClaim(b, o, now)
	case opSent:
		return s.applySent(b, o)
	case opRecall:
		return s.applyRecall(b, o)
	case opVendorToken:
		return s.applyVendorToken(b, o)
	case opEscalated:
		return s.applyEscalated(b, o)
	case opLastSeq:
		mb, _, err := s.meta.read(b, s.meta.countKey(o.msg.App, o.device))
		o.seq = mb.last
		return err
	}
	return fmt.Errorf("store: unknown op %d", o.kind)
}

func (s *Store) applyAppend(b *pebble.Batch, o *op, now time.Time) error {
	o.durable = true
	m := o.msg
	if o.key != "" {
		ik := key(prefixIdem, m.App, o.key)
		v, ok, err := get(b, ik)
		if err != nil {
			return err
		}
		if ok {
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			if r.expires > now.UnixMilli() {
				o.res = store.Appended{ID: r.id, Dup: true}
				return nil
			}
		}
		exp := now.Add(s.opts.IdempotencyWindow)
		b.Set(ik, record{expires: exp.UnixMilli(), id: m.ID}.encode(), nil)
		b.Set(expiryKey(exp, ik), nil, nil)
	}
	o.res.ID = m.ID
	if m.Then != nil {
		keepScheduled(b, *m.Then)
	}
	if o.kind == opBroadcast {
		hk := key(prefixHead, m.App)
		bseq, err := getUint(b, hk)
		if err != nil {
			return err
		}
		bseq++
		b.Set(hk, binary.AppendUvarint(nil, bseq), nil)
		lk := logKey(m.App, bseq)
		b.Set(lk, record{expires: m.Expires.UnixMilli(), id: m.ID, data: m.Data}.encode(), nil)
		b.Set(expiryKey(m.Expires, lk), nil, nil)
		if m.Collapse != "" {
			old, err := collapse(b, key(prefixLogKey, m.App, m.Collapse), bseq, m.Expires)
			if err != nil {
				return err
			}
			if old > 0 {
				b.Delete(logKey(m.App, old), nil)
			}
		}
		o.res.Seqs = []uint64{bseq}
		if m.Target != "" {
			s.newReport(b, m, nil, nil, bseq, now)
		}
		return nil
	}
	o.res.Seqs = make([]uint64, len(o.devices))
	for i, d := range o.devices {
		seq, err := s.appendMessage(b, d, m)
		if err != nil {
			return err
		}
		o.res.Seqs[i] = seq
	}
	if m.Target != "" {
		s.newReport(b, m, o.devices, o.res.Seqs, 0, now)
	}
	return nil
}

// appendMessage puts m in device's mailbox for m.App with the next seq of
// (m.App, device), dropping the mailbox's oldest message when it is full.
func (s *Store) appendMessage(b *pebble.Batch, device string, m store.Message) (uint64, error) {
	mb, err := s.meta.mailbox(b, m.App, device)
	if err != nil {
		return 0, err
	}
	seq := mb.last + 1
	mk := appendMessageKey(s.msgKey[:0], m.App, device, seq)
	v := record{expires: m.Expires.UnixMilli(), id: m.ID, data: m.Data}.appendTo(s.msgValue[:0])
	s.msgKey, s.msgValue = mk, v
	b.Set(mk, v, nil)
	s.meta.appended(mk, bytes.Clone(v[:len(v)-len(m.Data)])) // not v's memory: the data would stay with it

	if m.Collapse != "" {
		old, err := collapse(b, key(prefixCollapse, m.App, device, m.Collapse), seq, m.Expires)
		if err != nil {
			return 0, err
		}
		if old > 0 { // replaced, if not acked, dropped or expired yet
			removed, err := s.removeMessage(b, m.App, device, old)
			if err != nil {
				return 0, err
			}
			if removed { // the mailbox has one less
				if mb, err = s.meta.mailbox(b, m.App, device); err != nil {
					return 0, err
				}
			}
		}
	}
	// The message is the oldest: the mailbox needs an expiry entry at or
	// before its expiry. (A count left high by acks still has in the index
	// the entry made for the oldest message it counts, or a later one: the
	// sweep of that entry writes the count. A count read from n/, which
	// the seqs reserved raise, is not known to have one: due is 0.)
	if mb.count == 0 || mb.due == 0 {
		mb.due = s.expireMailbox(b, m.App, device, mb.due, m.Expires.UnixMilli())
	}
	mb.last = seq
	mb.count++
	if mb.first == 0 {
		mb.first = seq
	}
	if mb.count > uint64(s.opts.MailboxLimit) && !mb.exact {
		if mb, err = mb.recount(b, m.App, device); err != nil {
			return 0, err
		}
	}
	if mb.count > uint64(s.opts.MailboxLimit) {
		oldest, err := mb.oldest(b, m.App, device)
		if err != nil {
			return 0, err
		}
		if oldest > 0 {
			dk := messageKey(m.App, device, oldest)
			b.Delete(dk, nil)
			s.meta.deleted(dk)
			mb.count--
			mb.first = oldest + 1
			if s.opts.Metrics != nil {
				s.opts.Metrics.MailboxDropped.WithLabelValues(m.App).Inc()
			}
		}
	}
	if seq > mb.reserved { // n/ is written once per seqBlock appends
		mb.reserved = seq + seqBlock - 1
		s.meta.setMailbox(b, m.App, device, mb)
	} else {
		s.meta.keepMailbox(m.App, device, mb)
	}
	return seq, nil
}

// collapse points the collapse key ck at seq (a mailbox's seq or a log's
// bseq) until expires, and returns what it pointed at before (0: nothing).
// The key lives as long as the message it points at: its older expiry
// index entry goes.
func collapse(b *pebble.Batch, ck []byte, seq uint64, expires time.Time) (uint64, error) {
	v, ok, err := get(b, ck)
	if err != nil {
		return 0, err
	}
	var old uint64
	if ok {
		var n int
		old, n = binary.Uvarint(v)
		oldExp, _ := binary.Uvarint(v[max(n, 0):])
		b.Delete(expiryKey(time.UnixMilli(int64(oldExp)), ck), nil)
	}
	v = binary.AppendUvarint(binary.AppendUvarint(nil, seq), uint64(expires.UnixMilli()))
	b.Set(ck, v, nil)
	b.Set(expiryKey(expires, ck), nil, nil)
	return old, nil
}

func (s *Store) applyCatchUp(b *pebble.Batch, o *op, now time.Time) error {
	app := o.msg.App
	ck := key(prefixCursor, app, o.device)
	cursor, err := getUint(b, ck)
	if err != nil {
		return err
	}
	head, err := getUint(b, key(prefixHead, app))
	if err != nil || cursor >= head {
		return err
	}
	o.durable = true
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: logKey(app, cursor+1), UpperBound: logKey(app, head+1)})
	if err != nil {
		return err
	}
	var entries []record
	for it.First(); it.Valid(); it.Next() {
		r, err := decodeRecord(it.Value())
		if err != nil {
			it.Close()
			return err
		}
		if r.expires > now.UnixMilli() {
			entries = append(entries, r)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, r := range entries {
		if _, err := s.appendMessage(b, o.device, store.Message{App: app, ID: r.id, Data: r.data,
			Expires: time.UnixMilli(r.expires)}); err != nil {
			return err
		}
	}
	o.n = len(entries)
	b.Set(ck, binary.AppendUvarint(nil, head), nil)
	return nil
}

// applyAckBroadcast moves a device's cursor in its app's broadcast log to
// o.seq, clamped to the log's last bseq (counted), and never back.
func (s *Store) applyAckBroadcast(b *pebble.Batch, o *op) error {
	app := o.msg.App
	head, err := getUint(b, key(prefixHead, app))
	if err != nil {
		return err
	}
	if o.seq > head {
		o.seq = head
		if s.opts.Metrics != nil {
			s.opts.Metrics.SeqClamped.WithLabelValues(app, "ack_bseq").Inc()
		}
	}
	ck := key(prefixCursor, app, o.device)
	cursor, err := getUint(b, ck)
	if err != nil || o.seq <= cursor {
		return err
	}
	b.Set(ck, binary.AppendUvarint(nil, o.seq), nil)
	return eachRecord(b, logKey(app, cursor+1), logKey(app, o.seq+1), func(_, v []byte) error { return s.countAck(app, v) })
}

// pointAcks: an ack of fewer seqs than this past its mailbox's first (the
// usual ack, of the next message or two) reads them one by one, which costs
// less than an iterator over the batch and the database.
const pointAcks = 8

// eachRecord calls f with each key and value between the keys lower and
// upper, through the batch, until f fails.
func eachRecord(b *pebble.Batch, lower, upper []byte, f func(k, v []byte) error) error {
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := f(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// applyAck deletes the messages of one mailbox up to o.seq. A seq above the
// last one given to (app, device) is clamped to it and counted: a client
// never moves the seqs of a mailbox (were it trusted, a seq near 2^64 would
// make the next append wrap).
func (s *Store) applyAck(b *pebble.Batch, o *op) error {
	app := o.msg.App
	mb, err := s.meta.mailbox(b, app, o.device)
	if err != nil {
		return err
	}
	if o.seq > mb.last {
		o.seq = mb.last
		if s.opts.Metrics != nil {
			s.opts.Metrics.SeqClamped.WithLabelValues(app, "ack").Inc()
		}
	}
	if mb.count == 0 || o.seq < mb.first {
		return nil
	}
	// Point deletes, not a range delete: every later read through the
	// batch would fragment all of its range deletes again, which made a
	// batch of many acks quadratic (pprof: fragmentRangeDels).
	n := uint64(0)
	drop := func(k, v []byte) error {
		s.dropMessage(b, k)
		n++
		return s.countAck(app, v)
	}
	if o.seq-mb.first < pointAcks {
		for seq := mb.first; seq <= o.seq; seq++ {
			k := appendMessageKey(s.msgKey[:0], app, o.device, seq)
			s.msgKey = k
			if v, ok, err := s.meta.message(b, k); err != nil {
				return err
			} else if ok {
				if err := drop(k, v); err != nil {
					return err
				}
			}
		}
	} else if err := eachRecord(b, messageKey(app, o.device, mb.first), messageKey(app, o.device, o.seq+1), drop); err != nil {
		return err
	}
	mb.count -= min(n, mb.count)
	mb.first = o.seq + 1
	s.meta.keepMailbox(app, o.device, mb)
	return nil
}

func (s *Store) applyBind(b *pebble.Batch, o *op) error {
	app := o.msg.App
	wk := key(prefixWho, app, o.device)
	old, _, err := get(b, wk)
	if err != nil || string(old) == o.user {
		return err
	}
	if len(old) > 0 {
		b.Delete(key(prefixUser, app, string(old), o.device), nil)
	}
	if o.user == "" {
		b.Delete(wk, nil)
		return nil
	}
	b.Set(key(prefixUser, app, o.user, o.device), nil, nil)
	b.Set(wk, []byte(o.user), nil)
	return nil
}

func (s *Store) applyUsers(b *pebble.Batch, o *op) error {
	for _, u := range o.users {
		p := append(key(prefixUser, o.msg.App, u), 0)
		it, err := b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			o.devices = append(o.devices, string(it.Key()[len(p):]))
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	return nil
}

// applySweep deletes what expired, through the expiry index, a chunk at a time.
func (s *Store) applySweep(b *pebble.Batch, now time.Time) error {
	it, err := b.NewIter(&pebble.IterOptions{
		LowerBound: []byte(prefixExpiry),
		UpperBound: expiryKey(now, nil),
	})
	if err != nil {
		return err
	}
	var expired [][]byte
	for it.First(); it.Valid() && len(expired) < sweepChunk; it.Next() {
		expired = append(expired, append([]byte(nil), it.Key()...))
	}
	if err := it.Close(); err != nil {
		return err
	}
	left := sweepChunk
	for _, xk := range expired {
		if left <= 0 {
			break
		}
		b.Delete(xk, nil)
		left--
		target := xk[len(prefixExpiry)+8:]
		if bytes.HasPrefix(target, []byte(prefixCount)) {
			n, err := s.sweepMailbox(b, target, int64(binary.BigEndian.Uint64(xk[len(prefixExpiry):])), now, left)
			if err != nil {
				return err
			}
			left -= n
			continue
		}
		if bytes.HasPrefix(target, []byte(prefixReport)) { // and its copies, if not inline, and its escalations
			b.Delete(append([]byte(prefixCopies), target[len(prefixReport):]...), nil)
			// Point deletes, not a range delete, for the reason applyAck gives.
			escalated := append(append([]byte(prefixEscalated), target[len(prefixReport):]...), 0)
			err := eachRecord(b, escalated, prefixEnd(escalated), func(k, _ []byte) error { return b.Delete(k, nil) })
			if err != nil {
				return err
			}
			s.meta.forget(target)
		}
		b.Delete(target, nil)
	}
	if len(expired) == sweepChunk || left <= 0 {
		go s.queue(&op{kind: opSweep}) // more to do: continue after what waits
	}
	return nil
}

// sweepMailbox serves the mailbox's expiry entry of time due, whose n/ key
// is nk: it deletes the messages that expired by now, oldest first, up to
// the first that has not (or up to limit of them), makes sure the mailbox
// has an entry at or before that one's expiry (or at due, for the next
// sweep to go on), and returns how many it deleted.
func (s *Store) sweepMailbox(b *pebble.Batch, nk []byte, due int64, now time.Time, limit int) (int, error) {
	app, device, ok := splitPair(nk[len(prefixCount):])
	if !ok {
		return 0, fmt.Errorf("store: expiry entry of %q", nk)
	}
	mb, err := s.meta.mailbox(b, app, device)
	if err != nil {
		return 0, err
	}
	if mb.due == due { // the entry is gone
		mb.due = 0
	}
	var expired [][]byte
	next := int64(0) // the expiry of the oldest message left
	err = eachRecord(b, messageKey(app, device, mb.first), prefixEnd(mailboxPrefix(app, device)), func(k, v []byte) error {
		if when := int64(uvarint(v)); when > now.UnixMilli() {
			next = when
			return errStop
		}
		if len(expired) == limit { // the next sweep goes on
			next = due
			return errStop
		}
		expired = append(expired, bytes.Clone(k))
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return 0, err
	}
	for _, k := range expired {
		s.dropMessage(b, k)
	}
	mb.count -= min(uint64(len(expired)), mb.count)
	if len(expired) > 0 {
		mb.first = seqOf(expired[len(expired)-1]) + 1
	}
	if next > 0 {
		mb.due = s.expireMailbox(b, app, device, mb.due, next)
	}
	s.meta.setMailbox(b, app, device, mb)
	return len(expired), nil
}

// errStop ends an eachRecord early.
var errStop = errors.New("stop")

// dropMessage deletes the mailbox message at mk. Its key is written once (a
// seq is never given again), so its delete is a single delete: a message
// acked before its memtable is flushed leaves neither its key nor a
// tombstone in the tables, where a delete's tombstone would go down every
// level.
func (s *Store) dropMessage(b *pebble.Batch, mk []byte) {
	s.meta.deleted(mk)
	b.SingleDelete(mk, nil)
}

// expireMailbox makes sure (app, device)'s mailbox has an expiry entry at
// or before when (unix ms), given due, the time of the one known (0: none),
// and returns the time of the one known now.
func (s *Store) expireMailbox(b *pebble.Batch, app, device string, due, when int64) int64 {
	if due != 0 && due <= when {
		return due
	}
	b.Set(expiryKey(time.UnixMilli(when), key(prefixCount, app, device)), nil, nil)
	return when
}

// get reads k, a copy of its value, through r: the database, or a batch
// (so that it sees the batch's own writes).
func get(r pebble.Reader, k []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v = append([]byte(nil), v...)
	closer.Close()
	return v, true, nil
}

// getUint reads k's uvarint value through r (0 when absent), without a
// copy.
func getUint(r pebble.Reader, k []byte) (uint64, error) {
	v, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	return uvarint(v), nil
}
