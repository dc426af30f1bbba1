package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/longlink/longlink/internal/store"
)

// Delivery reports: r/<app>\0<id> holds a message's report (encode) until
// store.ReportKept after the message expires (its own expiry index entry,
// written with it), with where its mailbox copies are (device and seq, for Recall): inline for a few, else under
// o/<app>\0<id>, deleted with the report. Acks are counted by message id
// per commit (acks) and added to the reports once per batch (addAcks): a
// batch of acks for one broadcast reads and writes its report once.

// report is a message's report as kept: store.Report without its id, with
// the bseq of a stored broadcast, and its copies when they are inline.
type report struct {
	store.Report
	bseq   uint64
	copies []byte // encodeCopies; nil: under o/, or none
}

// inlineCopies is how many copies a report holds itself: a unicast push
// writes one key for its report, not two.
const inlineCopies = 8

func (r report) encode() []byte {
	b := []byte{0}
	if r.State == "recalled" {
		b[0] |= reportRecalled
	}
	escalated := r.Escalated > 0 || r.VendorAccepted > 0 || r.VendorFailed > 0
	if escalated {
		b[0] |= reportEscalated
	}
	b = binary.AppendUvarint(b, uint64(len(r.Target)))
	b = append(b, r.Target...)
	for _, n := range []int{r.Targeted, r.Online, r.Stored, r.Acked, r.Recalled} {
		b = binary.AppendUvarint(b, uint64(n))
	}
	b = binary.AppendUvarint(b, uint64(r.Created.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(r.Expires.UnixMilli()))
	b = binary.AppendUvarint(b, r.bseq)
	if escalated {
		for _, n := range []int{r.Escalated, r.VendorAccepted, r.VendorFailed} {
			b = binary.AppendUvarint(b, uint64(n))
		}
	}
	return append(b, r.copies...)
}

// The flags of a report's first byte: recalled, and whether the escalation
// counts follow the bseq (a report written before there were any has none).
const (
	reportRecalled  = 1
	reportEscalated = 2
)

func decodeReport(id string, v []byte) (report, error) {
	if len(v) < 2 {
		return report{}, errCorrupt
	}
	r := report{Report: store.Report{ID: id, State: "sent"}}
	flags := v[0]
	if flags&reportRecalled != 0 {
		r.State = "recalled"
	}
	v = v[1:]
	next := func() uint64 {
		n, l := binary.Uvarint(v)
		if l <= 0 {
			v = nil
			return 0
		}
		v = v[l:]
		return n
	}
	tl := next()
	if tl > uint64(len(v)) {
		return report{}, errCorrupt
	}
	r.Target, v = store.Target(v[:tl]), v[tl:]
	for _, n := range []*int{&r.Targeted, &r.Online, &r.Stored, &r.Acked, &r.Recalled} {
		*n = int(next())
	}
	r.Created = time.UnixMilli(int64(next()))
	r.Expires = time.UnixMilli(int64(next()))
	r.bseq = next()
	if flags&reportEscalated != 0 {
		for _, n := range []*int{&r.Escalated, &r.VendorAccepted, &r.VendorFailed} {
			*n = int(next())
		}
	}
	if v == nil {
		return report{}, errCorrupt
	}
	if len(v) > 0 {
		r.copies = bytes.Clone(v)
	}
	return r, nil
}

// newReport writes the report of a stored message m that applyAppend just
// wrote: to devices at seqs, or to its app's log at bseq.
func (s *Store) newReport(b *pebble.Batch, m store.Message, devices []string, seqs []uint64, bseq uint64, now time.Time) {
	r := report{Report: store.Report{Target: m.Target, Targeted: len(devices), Stored: len(devices),
		Created: now, Expires: m.Expires}, bseq: bseq}
	copies := encodeCopies(devices, seqs)
	if len(devices) <= inlineCopies {
		r.copies = copies
	} else {
		b.Set(key(prefixCopies, m.App, m.ID), copies, nil)
	}
	s.meta.setReport(b, string(key(prefixReport, m.App, m.ID)), r, true)
}

// encodeCopies encodes devices[i] at seqs[i]: uvarint length, device,
// uvarint seq, and so on.
func encodeCopies(devices []string, seqs []uint64) []byte {
	var copies []byte
	for i, d := range devices {
		copies = binary.AppendUvarint(copies, uint64(len(d)))
		copies = append(copies, d...)
		copies = binary.AppendUvarint(copies, seqs[i])
	}
	return copies
}

// Sent records the connections a stored push was handed to, without
// waiting.
func (s *Store) Sent(app, id string, online int) {
	s.queue(&op{kind: opSent, msg: store.Message{App: app, ID: id}, n: online})
}

func (s *Store) applySent(b *pebble.Batch, o *op) error {
	rk := string(key(prefixReport, o.msg.App, o.msg.ID))
	r, ok, err := s.meta.report(b, rk, o.msg.ID)
	if err != nil || !ok {
		return err
	}
	r.Online = o.n
	if r.Target == store.TargetBroadcast {
		r.Targeted = o.n
	}
	s.meta.setReport(b, rk, r, false)
	return nil
}

// Escalated records escalated copies' outcomes, and counts them in
// message id's report.
func (s *Store) Escalated(ctx context.Context, app, id string, outcomes []store.Escalation) error {
	return s.do(ctx, &op{kind: opEscalated, msg: store.Message{App: app, ID: id}, escalations: outcomes})
}

func (s *Store) applyEscalated(b *pebble.Batch, o *op) error {
	rk := string(key(prefixReport, o.msg.App, o.msg.ID))
	r, ok, err := s.meta.report(b, rk, o.msg.ID)
	if err != nil || !ok {
		return err
	}
	o.durable = true
	for _, e := range o.escalations {
		ek := key(prefixEscalated, o.msg.App, o.msg.ID, e.Device, e.Vendor)
		v, _, err := get(b, ek)
		if err != nil {
			return err
		}
		var was store.VendorOutcome
		if len(v) == 1 {
			was = store.VendorOutcome(v[0])
		}
		r.CountEscalation(was, e.Outcome)
		b.Set(ek, []byte{byte(e.Outcome)}, nil)
	}
	s.meta.setReport(b, rk, r, false)
	return nil
}

// Escalations returns the outcomes of message id's escalated copies.
func (s *Store) Escalations(_ context.Context, app, id string) ([]store.Escalation, error) {
	p := append(key(prefixEscalated, app, id), 0)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("store escalations: %w", err)
	}
	var out []store.Escalation
	for it.First(); it.Valid(); it.Next() {
		device, vendor, _ := bytes.Cut(it.Key()[len(p):], []byte{0})
		if v := it.Value(); len(v) == 1 {
			out = append(out, store.Escalation{Device: string(device), Vendor: string(vendor), Outcome: store.VendorOutcome(v[0])})
		}
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("store escalations: %w", err)
	}
	return out, nil
}

// Report returns app's report of message id.
func (s *Store) Report(_ context.Context, app, id string) (store.Report, bool, error) {
	r, ok, err := s.readReport(s.db, app, id)
	if err != nil {
		return store.Report{}, false, fmt.Errorf("store report: %w", err)
	}
	return r.Report, ok, nil
}

// readReport reads app's report of message id through rd, if it is still
// kept.
func (s *Store) readReport(rd pebble.Reader, app, id string) (report, bool, error) {
	v, ok, err := get(rd, key(prefixReport, app, id))
	if err != nil || !ok {
		return report{}, false, err
	}
	r, err := decodeReport(id, v)
	if err != nil {
		return report{}, false, err
	}
	return r, r.Kept(s.opts.Now()), nil // not swept yet
}

// Recall removes message id of app wherever it still waits, durably.
func (s *Store) Recall(ctx context.Context, app, id string) (store.Report, int, bool, error) {
	o := &op{kind: opRecall, msg: store.Message{App: app, ID: id}}
	if err := s.do(ctx, o); err != nil {
		return store.Report{}, 0, false, fmt.Errorf("store recall: %w", err)
	}
	return o.report, o.n, o.found, nil
}

func (s *Store) applyRecall(b *pebble.Batch, o *op) error {
	app, id := o.msg.App, o.msg.ID
	rk := string(key(prefixReport, app, id))
	r, ok, err := s.meta.report(b, rk, id)
	if err != nil || !ok {
		return err
	}
	o.durable, o.found = true, true
	n := 0
	err = eachCopy(b, app, id, r, func(device string, seq uint64) error {
		r.Audience = append(r.Audience, device)
		removed, err := s.removeMessage(b, app, device, seq)
		if removed {
			n++
		}
		return err
	})
	if err != nil {
		return err
	}
	if r.bseq > 0 {
		lk := logKey(app, r.bseq)
		if _, waiting, err := get(b, lk); err != nil {
			return err
		} else if waiting {
			b.Delete(lk, nil)
			n++
		}
	}
	r.State, r.Recalled = "recalled", r.Recalled+n
	s.meta.setReport(b, rk, r, false)
	o.report, o.n = r.Report, n
	return nil
}

// eachCopy calls fn with the device and seq of each mailbox copy of
// report r (of message id of app).
func eachCopy(rd pebble.Reader, app, id string, r report, fn func(device string, seq uint64) error) error {
	copies := r.copies
	if copies == nil {
		var err error
		if copies, _, err = get(rd, key(prefixCopies, app, id)); err != nil {
			return err
		}
	}
	for len(copies) > 0 {
		l, k := binary.Uvarint(copies)
		if k <= 0 || l > uint64(len(copies)-k) {
			return errCorrupt
		}
		device := string(copies[k : k+int(l)])
		copies = copies[k+int(l):]
		seq, k := binary.Uvarint(copies)
		if k <= 0 {
			return errCorrupt
		}
		copies = copies[k:]
		if err := fn(device, seq); err != nil {
			return err
		}
	}
	return nil
}

// Waiting returns what of message id of app still waits for an ack.
func (s *Store) Waiting(_ context.Context, app, id string) (w store.Waiting, ok bool, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("store waiting: %w", err)
		}
	}()
	// One snapshot: an ack that deletes a copy and counts it in the report
	// is seen whole or not at all.
	snap := s.db.NewSnapshot()
	defer snap.Close()
	r, ok, err := s.readReport(snap, app, id)
	if err != nil || !ok {
		return store.Waiting{}, false, err
	}
	w = store.Waiting{Report: r.Report}
	if r.Settled() { // the common case of an escalation: no copy to look for
		return w, true, nil
	}
	now := s.opts.Now()
	// waiting reads the record at k, if it is there and unexpired.
	waiting := func(k []byte) (record, bool, error) {
		v, ok, err := get(snap, k)
		if err != nil || !ok {
			return record{}, false, err
		}
		rec, err := decodeRecord(v)
		return rec, err == nil && rec.id == id && rec.expires > now.UnixMilli(), err
	}
	err = eachCopy(snap, app, id, r, func(device string, seq uint64) error {
		rec, ok, err := waiting(messageKey(app, device, seq))
		if ok {
			w.Add(device, seq, rec.data)
		}
		return err
	})
	if err == nil && r.bseq > 0 {
		var rec record
		if rec, ok, err = waiting(logKey(app, r.bseq)); ok {
			w.BSeq, w.Data = r.bseq, rec.data
		}
	}
	if err != nil {
		return store.Waiting{}, false, err
	}
	return w, true, nil
}

// removeMessage deletes the message at seq from (app, device)'s mailbox if
// it is still there, and reports whether it was.
func (s *Store) removeMessage(b *pebble.Batch, app, device string, seq uint64) (bool, error) {
	mk := messageKey(app, device, seq)
	_, waiting, err := s.meta.message(b, mk)
	if err != nil || !waiting {
		return false, err
	}
	mb, err := s.meta.mailbox(b, app, device)
	if err != nil {
		return false, err
	}
	s.dropMessage(b, mk)
	mb.count -= min(1, mb.count)
	s.meta.setMailbox(b, app, device, mb)
	return true, nil
}

// countAck counts an ack of the record v (a mailbox message or a log entry)
// of app, for its report.
func (s *Store) countAck(app string, v []byte) error {
	id, err := recordID(v)
	if err != nil {
		return err
	}
	k := append(append(append(append(s.ackKey[:0], prefixReport...), app...), 0), id...)
	s.acks[string(k)]++
	s.ackKey = k
	return nil
}

// addAcks adds the acks counted in this batch to their reports (a message
// without a report has none to add to), and forgets them.
func (s *Store) addAcks(b *pebble.Batch) error {
	defer clear(s.acks)
	for rk, n := range s.acks {
		if err := s.meta.addAcked(b, rk, n); err != nil {
			return err
		}
	}
	return nil
}
