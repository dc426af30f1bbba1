// Package memstore is a store.Store in memory, for unit tests: it passes
// the same conformance suite (storetest) as the durable backends, but keeps
// nothing across a process. What it holds lives in a Data, which a test
// may open again (as a backend reopens its place) to see what survives a
// restart.
package memstore

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/protocol"
)

// Data is what a memory store holds. Safe for concurrent use.
type Data struct {
	mu        sync.Mutex
	mailboxes map[key]*mailbox
	logs      map[string]*broadcastLog
	cursors   map[key]uint64 // (app, device) → last bseq acked
	keys      map[key]idemKey
	users     map[key]string            // (app, device) → user
	byUser    map[key]map[string]bool   // (app, user) → devices
	tags      map[key]map[string]bool   // (app, device) → tags
	byTag     map[key]map[string]bool   // (app, tag) → devices
	schedules map[key]*scheduled        // (app, id)
	reports   map[key]*report           // (app, message id)
	vendors   map[key]map[string]string // (app, device) → vendor → token
}

// key is a pair of names within an app.
type key struct{ app, name string }

type mailbox struct {
	last    uint64 // the last seq given
	entries []entry
}

// entry is a stored message and the report (its message id) its acks
// count for, if any.
type entry struct {
	store.Stored
	collapse string
	reported bool
}

type broadcastLog struct {
	last    uint64
	entries []entry
}

type idemKey struct {
	id    string
	until time.Time
}

type scheduled struct {
	store.Scheduled
	claimedUntil time.Time
}

type report struct {
	store.Report
	devices []string
	seqs    []uint64
	bseq    uint64
	// escalations are its escalated copies' outcomes, by device and vendor
	escalations map[[2]string]store.VendorOutcome
}

// NewData returns an empty Data.
func NewData() *Data {
	return &Data{mailboxes: map[key]*mailbox{}, logs: map[string]*broadcastLog{}, cursors: map[key]uint64{},
		keys: map[key]idemKey{}, users: map[key]string{}, byUser: map[key]map[string]bool{},
		tags: map[key]map[string]bool{}, byTag: map[key]map[string]bool{}, schedules: map[key]*scheduled{},
		reports: map[key]*report{}, vendors: map[key]map[string]string{}}
}

// Store is a store.Store over a Data.
type Store struct {
	d      *Data
	opts   store.Options
	closed bool // under d.mu
}

var _ store.Store = (*Store)(nil)

// Open returns a store over d, with o's limits and clock.
func Open(d *Data, o store.Options) *Store { return &Store{d: d, opts: o.WithDefaults()} }

// New returns a store over a Data of its own.
func New(o store.Options) *Store { return Open(NewData(), o) }

// lock takes the data's lock, failing when the store is closed.
func (s *Store) lock() error {
	s.d.mu.Lock()
	if s.closed {
		s.d.mu.Unlock()
		return store.ErrClosed
	}
	return nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	s.closed = true
	return nil
}

// seen reports whether key was used in app within the idempotency window,
// with the first message's id; else it records key for id.
func (s *Store) seen(app, k, id string, now time.Time) (string, bool) {
	if k == "" {
		return "", false
	}
	if prev, ok := s.d.keys[key{app, k}]; ok && now.Before(prev.until) {
		return prev.id, true
	}
	s.d.keys[key{app, k}] = idemKey{id: id, until: now.Add(s.opts.IdempotencyWindow)}
	return "", false
}

// appendOnce runs add under the lock, unless key k was used in m's app
// within the idempotency window.
func (s *Store) appendOnce(m store.Message, k string, add func(now time.Time) store.Appended) (store.Appended, error) {
	if err := s.lock(); err != nil {
		return store.Appended{}, err
	}
	defer s.d.mu.Unlock()
	now := s.opts.Now()
	if first, dup := s.seen(m.App, k, m.ID, now); dup {
		return store.Appended{ID: first, Dup: true}, nil
	}
	s.schedule(m.Then)
	return add(now), nil
}

// Append implements store.Store.
func (s *Store) Append(_ context.Context, devices []string, m store.Message, k string) (store.Appended, error) {
	return s.appendOnce(m, k, func(now time.Time) store.Appended {
		seqs := make([]uint64, len(devices))
		for i, d := range devices {
			seqs[i] = s.put(m.App, d, m, m.Target != "")
		}
		if m.Target != "" {
			s.d.reports[key{m.App, m.ID}] = &report{Report: store.Report{ID: m.ID, State: "sent", Target: m.Target,
				Targeted: len(devices), Stored: len(devices), Created: now, Expires: m.Expires},
				devices: slices.Clone(devices), seqs: seqs}
		}
		return store.Appended{ID: m.ID, Seqs: seqs}
	})
}

// put appends m to (app, device)'s mailbox, replacing the waiting message
// with its collapse key and dropping the oldest past the limit, and
// returns its seq.
func (s *Store) put(app, device string, m store.Message, reported bool) uint64 {
	mb := s.d.mailboxes[key{app, device}]
	if mb == nil {
		mb = &mailbox{}
		s.d.mailboxes[key{app, device}] = mb
	}
	mb.entries = collapse(mb.entries, m.Collapse)
	if over := len(mb.entries) + 1 - s.opts.MailboxLimit; over > 0 {
		mb.entries = slices.Delete(mb.entries, 0, over)
		s.opts.Metrics.MailboxDropped.WithLabelValues(app).Add(float64(over))
	}
	mb.last++
	mb.entries = append(mb.entries, entry{Stored: store.Stored{Seq: mb.last, Message: kept(m)}, collapse: m.Collapse, reported: reported})
	return mb.last
}

// kept is m as it is stored: without what is not kept with a message.
func kept(m store.Message) store.Message {
	m.Collapse, m.Target = "", ""
	m.Data = slices.Clone(m.Data)
	return m
}

// collapse removes the entry with collapse key c, if any.
func collapse(entries []entry, c string) []entry {
	if c == "" {
		return entries
	}
	return slices.DeleteFunc(entries, func(e entry) bool { return e.collapse == c })
}

// AppendBroadcast implements store.Store.
func (s *Store) AppendBroadcast(_ context.Context, m store.Message, k string) (store.Appended, error) {
	return s.appendOnce(m, k, func(now time.Time) store.Appended {
		l := s.d.logs[m.App]
		if l == nil {
			l = &broadcastLog{}
			s.d.logs[m.App] = l
		}
		l.entries = collapse(l.entries, m.Collapse)
		l.last++
		l.entries = append(l.entries, entry{Stored: store.Stored{Seq: l.last, Message: kept(m)}, collapse: m.Collapse, reported: m.Target != ""})
		if m.Target != "" {
			s.d.reports[key{m.App, m.ID}] = &report{Report: store.Report{ID: m.ID, State: "sent", Target: m.Target,
				Created: now, Expires: m.Expires}, bseq: l.last}
		}
		return store.Appended{ID: m.ID, Seqs: []uint64{l.last}}
	})
}

// unread returns the unexpired entries of app's log after both after and
// device's cursor, at most limit (limit < 0: all).
func (s *Store) unread(app, device string, after uint64, limit int) ([]store.Stored, uint64) {
	l := s.d.logs[app]
	if l == nil {
		return nil, 0
	}
	return s.after(l.entries, max(after, s.d.cursors[key{app, device}]), limit), l.last
}

// after returns the unexpired entries with seqs above seq, at most limit
// (limit < 0: all).
func (s *Store) after(entries []entry, seq uint64, limit int) []store.Stored {
	now := s.opts.Now()
	var out []store.Stored
	for _, e := range entries {
		if len(out) == limit {
			break
		}
		if e.Seq > seq && now.Before(e.Expires) {
			out = append(out, e.Stored)
		}
	}
	return out
}

// Broadcasts implements store.Store.
func (s *Store) Broadcasts(_ context.Context, app, device string, after uint64, limit int) ([]store.Stored, uint64, error) {
	if err := s.lock(); err != nil {
		return nil, 0, err
	}
	defer s.d.mu.Unlock()
	out, last := s.unread(app, device, after, limit)
	return out, last, nil
}

// AckBroadcast implements store.Store: device's cursor in app's log
// moves to bseq (clamped to the log's last, and counted).
func (s *Store) AckBroadcast(app, device string, bseq uint64) {
	if s.lock() != nil {
		return
	}
	defer s.d.mu.Unlock()
	var last uint64
	if l := s.d.logs[app]; l != nil {
		last = l.last
	}
	if bseq > last {
		bseq = last
		s.opts.Metrics.SeqClamped.WithLabelValues(app, "ack_bseq").Inc()
	}
	// The cursor moves forward only, and each reported entry it passes
	// counts an ack.
	k := key{app, device}
	from := s.d.cursors[k]
	if bseq <= from {
		return
	}
	s.d.cursors[k] = bseq
	if l := s.d.logs[app]; l != nil {
		for _, e := range l.entries {
			if e.reported && e.Seq > from && e.Seq <= bseq {
				s.acked(app, e.ID)
			}
		}
	}
}

// acked counts an ack on app's report of message id, if it has one.
func (s *Store) acked(app, id string) {
	if r := s.d.reports[key{app, id}]; r != nil {
		r.Acked++
	}
}

// CatchUp implements store.Store.
func (s *Store) CatchUp(_ context.Context, app, device string) (int, error) {
	if err := s.lock(); err != nil {
		return 0, err
	}
	defer s.d.mu.Unlock()
	unread, last := s.unread(app, device, 0, -1)
	for _, e := range unread {
		s.put(app, device, e.Message, s.d.reports[key{app, e.ID}] != nil)
	}
	if last > s.d.cursors[key{app, device}] {
		s.d.cursors[key{app, device}] = last
	}
	return len(unread), nil
}

// Since implements store.Store.
func (s *Store) Since(_ context.Context, app, device string, after uint64, limit int) ([]store.Stored, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	mb := s.d.mailboxes[key{app, device}]
	if mb == nil {
		return nil, nil
	}
	return s.after(mb.entries, after, limit), nil
}

// LastSeq implements store.Store.
func (s *Store) LastSeq(_ context.Context, app, device string) (uint64, error) {
	if err := s.lock(); err != nil {
		return 0, err
	}
	defer s.d.mu.Unlock()
	if mb := s.d.mailboxes[key{app, device}]; mb != nil {
		return mb.last, nil
	}
	return 0, nil
}

// Ack implements store.Store.
func (s *Store) Ack(app, device string, seq uint64) {
	if s.lock() != nil {
		return
	}
	defer s.d.mu.Unlock()
	mb := s.d.mailboxes[key{app, device}]
	var last uint64
	if mb != nil {
		last = mb.last
	}
	if seq > last {
		seq = last
		s.opts.Metrics.SeqClamped.WithLabelValues(app, "ack").Inc()
	}
	if mb == nil {
		return
	}
	mb.entries = slices.DeleteFunc(mb.entries, func(e entry) bool {
		if e.Seq > seq {
			return false
		}
		if e.reported {
			s.acked(app, e.ID)
		}
		return true
	})
}

// Bind implements store.Store.
func (s *Store) Bind(app, device, user string) {
	if s.lock() != nil {
		return
	}
	defer s.d.mu.Unlock()
	k := key{app, device}
	if prev, ok := s.d.users[k]; ok {
		delete(s.d.byUser[key{app, prev}], device)
		delete(s.d.users, k)
	}
	if user != "" {
		s.d.users[k] = user
		addTo(s.d.byUser, key{app, user}, device)
	}
}

func addTo(index map[key]map[string]bool, k key, name string) {
	if index[k] == nil {
		index[k] = map[string]bool{}
	}
	index[k][name] = true
}

// UserDevices implements store.Store.
func (s *Store) UserDevices(_ context.Context, app string, users []string) ([]string, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	var out []string
	for _, u := range users {
		out = append(out, slices.Sorted(maps.Keys(s.d.byUser[key{app, u}]))...)
	}
	return out, nil
}

// Tag implements store.Store.
func (s *Store) Tag(_ context.Context, app string, devices, add, remove []string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.d.mu.Unlock()
	for _, d := range devices { // all or nothing
		after := maps.Clone(s.d.tags[key{app, d}])
		for _, t := range remove {
			delete(after, t)
		}
		n := len(after)
		for _, t := range add {
			if !after[t] {
				n++
			}
		}
		if n > protocol.MaxTags {
			return store.ErrTooManyTags
		}
	}
	for _, d := range devices {
		for _, t := range remove {
			delete(s.d.tags[key{app, d}], t)
			delete(s.d.byTag[key{app, t}], d)
		}
		for _, t := range add {
			addTo(s.d.tags, key{app, d}, t)
			addTo(s.d.byTag, key{app, t}, d)
		}
	}
	return nil
}

// TagDevices implements store.Store.
func (s *Store) TagDevices(_ context.Context, app string, q store.TagQuery) ([]string, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	return q.Select(func(tags []string, all bool) (map[string]bool, error) {
		out := map[string]bool{}
		maps.Copy(out, s.d.byTag[key{app, tags[0]}])
		for _, t := range tags[1:] {
			ds := s.d.byTag[key{app, t}]
			if all {
				maps.DeleteFunc(out, func(d string, _ bool) bool { return !ds[d] })
			} else {
				maps.Copy(out, ds)
			}
		}
		return out, nil
	})
}

// Schedule implements store.Store.
func (s *Store) Schedule(_ context.Context, p store.Scheduled) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.d.mu.Unlock()
	s.schedule(&p)
	return nil
}

// schedule keeps p, if not nil. The caller holds the lock.
func (s *Store) schedule(p *store.Scheduled) {
	if p != nil {
		kept := *p
		kept.Request = slices.Clone(p.Request)
		s.d.schedules[key{p.App, p.ID}] = &scheduled{Scheduled: kept}
	}
}

// byTime orders scheduled pushes by time, then app and id.
func byTime(a, b store.Scheduled) int {
	return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.App, b.App), cmp.Compare(a.ID, b.ID))
}

// Scheduled implements store.Store.
func (s *Store) Scheduled(_ context.Context, app string, limit int) ([]store.Scheduled, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	var out []store.Scheduled
	for k, p := range s.d.schedules {
		if k.app == app {
			out = append(out, p.Scheduled)
		}
	}
	slices.SortFunc(out, byTime)
	return out[:min(len(out), limit)], nil
}

// FindScheduled implements store.Store.
func (s *Store) FindScheduled(_ context.Context, app, id string) (store.Scheduled, bool, error) {
	if err := s.lock(); err != nil {
		return store.Scheduled{}, false, err
	}
	defer s.d.mu.Unlock()
	if p := s.d.schedules[key{app, id}]; p != nil {
		return p.Scheduled, true, nil
	}
	return store.Scheduled{}, false, nil
}

// Unschedule implements store.Store.
func (s *Store) Unschedule(_ context.Context, app, id string) (bool, error) {
	if err := s.lock(); err != nil {
		return false, err
	}
	defer s.d.mu.Unlock()
	_, ok := s.d.schedules[key{app, id}]
	delete(s.d.schedules, key{app, id})
	return ok, nil
}

// ClaimDue implements store.Store.
func (s *Store) ClaimDue(_ context.Context, now time.Time, lease time.Duration, limit int) ([]store.Scheduled, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	var due []*scheduled
	for _, p := range s.d.schedules {
		if !p.At.After(now) && !p.claimedUntil.After(now) {
			due = append(due, p)
		}
	}
	slices.SortFunc(due, func(a, b *scheduled) int { return byTime(a.Scheduled, b.Scheduled) })
	out := make([]store.Scheduled, 0, min(len(due), limit))
	for _, p := range due[:min(len(due), limit)] {
		p.claimedUntil = now.Add(lease)
		out = append(out, p.Scheduled)
	}
	return out, nil
}

// Sent implements store.Store.
func (s *Store) Sent(app, id string, online int) {
	if s.lock() != nil {
		return
	}
	defer s.d.mu.Unlock()
	if r := s.d.reports[key{app, id}]; r != nil {
		r.Online = online
		if r.Target == store.TargetBroadcast {
			r.Targeted = online
		}
	}
}

// Escalated implements store.Store.
func (s *Store) Escalated(_ context.Context, app, id string, outcomes []store.Escalation) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.d.mu.Unlock()
	r := s.d.reports[key{app, id}]
	if r == nil {
		return nil
	}
	if r.escalations == nil {
		r.escalations = map[[2]string]store.VendorOutcome{}
	}
	for _, e := range outcomes {
		k := [2]string{e.Device, e.Vendor}
		r.CountEscalation(r.escalations[k], e.Outcome)
		r.escalations[k] = e.Outcome
	}
	return nil
}

// Escalations implements store.Store.
func (s *Store) Escalations(_ context.Context, app, id string) ([]store.Escalation, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	r := s.d.reports[key{app, id}]
	if r == nil {
		return nil, nil
	}
	out := make([]store.Escalation, 0, len(r.escalations))
	for k, o := range r.escalations {
		out = append(out, store.Escalation{Device: k[0], Vendor: k[1], Outcome: o})
	}
	return out, nil
}

// Report implements store.Store.
func (s *Store) Report(_ context.Context, app, id string) (store.Report, bool, error) {
	if err := s.lock(); err != nil {
		return store.Report{}, false, err
	}
	defer s.d.mu.Unlock()
	r := s.d.reports[key{app, id}]
	if r == nil || !r.Kept(s.opts.Now()) {
		return store.Report{}, false, nil
	}
	return r.Report, true, nil
}

// Recall implements store.Store.
func (s *Store) Recall(_ context.Context, app, id string) (store.Report, int, bool, error) {
	if err := s.lock(); err != nil {
		return store.Report{}, 0, false, err
	}
	defer s.d.mu.Unlock()
	r := s.d.reports[key{app, id}]
	if r == nil || !r.Kept(s.opts.Now()) {
		return store.Report{}, 0, false, nil
	}
	n := 0
	for i, d := range r.devices {
		if mb := s.d.mailboxes[key{app, d}]; mb != nil {
			n += remove(&mb.entries, r.seqs[i])
		}
	}
	if l := s.d.logs[app]; l != nil && r.bseq > 0 {
		n += remove(&l.entries, r.bseq)
	}
	r.State, r.Recalled = "recalled", r.Recalled+n
	out := r.Report
	out.Audience = slices.Clone(r.devices)
	return out, n, true, nil
}

// Waiting implements store.Store.
func (s *Store) Waiting(_ context.Context, app, id string) (store.Waiting, bool, error) {
	if err := s.lock(); err != nil {
		return store.Waiting{}, false, err
	}
	defer s.d.mu.Unlock()
	r := s.d.reports[key{app, id}]
	if r == nil || !r.Kept(s.opts.Now()) {
		return store.Waiting{}, false, nil
	}
	w := store.Waiting{Report: r.Report}
	now := s.opts.Now()
	waiting := func(entries []entry, seq uint64) (store.Stored, bool) {
		for _, e := range entries {
			if e.Seq == seq && e.Expires.After(now) {
				return e.Stored, true
			}
		}
		return store.Stored{}, false
	}
	for i, d := range r.devices {
		if mb := s.d.mailboxes[key{app, d}]; mb != nil {
			if m, ok := waiting(mb.entries, r.seqs[i]); ok {
				w.Add(d, m.Seq, m.Data)
			}
		}
	}
	if l := s.d.logs[app]; l != nil && r.bseq > 0 {
		if m, ok := waiting(l.entries, r.bseq); ok {
			w.BSeq, w.Data = m.Seq, m.Data
		}
	}
	return w, true, nil
}

// remove deletes the entry at seq from entries, and returns 1 if it was
// there.
func remove(entries *[]entry, seq uint64) int {
	before := len(*entries)
	*entries = slices.DeleteFunc(*entries, func(e entry) bool { return e.Seq == seq })
	return before - len(*entries)
}

// SetVendorToken implements store.Store.
func (s *Store) SetVendorToken(_ context.Context, app, device, vendor, token string) error {
	return s.vendorToken(app, device, vendor, token, false)
}

// DropVendorToken implements store.Store.
func (s *Store) DropVendorToken(_ context.Context, app, device, vendor, token string) error {
	return s.vendorToken(app, device, vendor, token, true)
}

func (s *Store) vendorToken(app, device, vendor, token string, drop bool) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.d.mu.Unlock()
	k := key{app, device}
	tokens := s.d.vendors[k]
	switch {
	case drop:
		if tokens[vendor] == token {
			delete(tokens, vendor)
		}
	case token == "":
		delete(tokens, vendor)
	case tokens == nil:
		s.d.vendors[k] = map[string]string{vendor: token}
	default:
		tokens[vendor] = token
	}
	return nil
}

// VendorTokens implements store.Store.
func (s *Store) VendorTokens(_ context.Context, app string, devices []string) ([]map[string]string, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	out := make([]map[string]string, len(devices))
	for i, d := range devices {
		out[i] = maps.Clone(s.d.vendors[key{app, d}])
	}
	return out, nil
}
