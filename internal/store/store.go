// Package store defines longlink's durable state behind one interface:
// per-(app, device) mailboxes of stored messages with their seqs, each app's
// broadcast log, user bindings and idempotency keys. Its backends live in
// packages of their own (embedded: Pebble in data_dir, for one node; redis:
// shared by the nodes of a cluster), and storetest holds the conformance
// suite every backend passes.
package store

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/metrics"
)

// Store keeps stored messages durably: every concern below, on one
// backend. Implementations are safe for concurrent use. An error means the
// operation did not happen. A consumer asks for the concerns it uses.
type Store interface {
	Mailboxes
	BroadcastLog
	Bindings
	Tags
	Schedules
	Reports
	VendorTokens
	// Close lets the operations already queued finish, and closes.
	Close() error
}

// Mailboxes are the per-(app, device) mailboxes of stored messages.
type Mailboxes interface {
	// Append stores m in the mailbox of every device (for m.App) and
	// returns their seqs (each from its own (app, device) sequence), once
	// durable. With a key, a repeat of the key within the idempotency
	// window stores nothing and returns the first message's id; with no
	// devices only the key is recorded (online-only messages).
	Append(ctx context.Context, devices []string, m Message, key string) (Appended, error)
	// Since returns up to limit unexpired messages of device in app with
	// seq greater than after, in seq order.
	Since(ctx context.Context, app, device string, after uint64, limit int) ([]Stored, error)
	// LastSeq returns the last seq given to device in app that is durable
	// (0 if none). Any seq a client was handed is at or below it.
	LastSeq(ctx context.Context, app, device string) (uint64, error)
	// Ack marks every stored message of device in app with seq <= seq
	// done, and deletes them. It does not wait: a lost ack only means a
	// redelivery. A seq beyond the last one given is clamped to it and
	// counted (longlink_seq_clamped_total).
	Ack(app, device string, seq uint64)
}

// Sent is a mailbox message as a session of its device was sent it: its
// seq, and its id.
type Sent struct {
	Seq uint64
	ID  string
}

// BroadcastLog is each app's log of stored broadcasts, and each device's
// cursor in it.
type BroadcastLog interface {
	// AppendBroadcast writes m once to its app's broadcast log, once
	// durable, and returns its bseq (its place in the log). Devices read
	// the log after their cursor (Broadcasts, AckBroadcast), or have it
	// copied into their mailboxes (CatchUp).
	AppendBroadcast(ctx context.Context, m Message, key string) (Appended, error)
	// Broadcasts returns up to limit unexpired entries of app's broadcast
	// log after both after and device's cursor, in bseq order (Stored.Seq
	// is the bseq), and the log's last bseq (so that a reader can clamp
	// an after beyond it). It writes nothing.
	Broadcasts(ctx context.Context, app, device string, after uint64, limit int) (entries []Stored, last uint64, err error)
	// AckBroadcast moves device's cursor in app's broadcast log to bseq
	// (never back; a bseq beyond the log's last is clamped to it and
	// counted). It does not wait: a lost ack only means a redelivery.
	AckBroadcast(app, device string, bseq uint64)
	// CatchUp copies into device's mailbox every unexpired entry of app's
	// broadcast log after its cursor, moves the cursor to the log's end,
	// and returns how many (for clients that take broadcasts by seq).
	CatchUp(ctx context.Context, app, device string) (int, error)
}

// Bindings are which user each device belongs to.
type Bindings interface {
	// Bind records that device belongs to user in app (user "" unbinds
	// it). It does not wait; a login binds again.
	Bind(app, device, user string)
	// UserDevices returns the devices bound to any of users in app,
	// including the bindings of every Bind that returned before it.
	UserDevices(ctx context.Context, app string, users []string) ([]string, error)
}

// Tags are each device's tags, and their index.
type Tags interface {
	// Tag adds the tags add to, and takes remove from, each of devices in
	// app, once durable, all or nothing: a device that would have more
	// than protocol.MaxTags fails it with ErrTooManyTags.
	Tag(ctx context.Context, app string, devices, add, remove []string) error
	// TagDevices returns the devices of app that have any tag of q.Any
	// (if given), every tag of q.All (if given) and none of q.Not,
	// including the tags of every Tag that returned before it. At least
	// one of Any and All is given.
	TagDevices(ctx context.Context, app string, q TagQuery) ([]string, error)
}

// Schedules are the pushes kept until their time.
type Schedules interface {
	// Schedule keeps p (its ID unique in its app) until it is due and
	// claimed, durably.
	Schedule(ctx context.Context, p Scheduled) error
	// Scheduled lists app's scheduled pushes not yet done, by time, at most
	// limit.
	Scheduled(ctx context.Context, app string, limit int) ([]Scheduled, error)
	// FindScheduled returns app's scheduled push id if it is not done yet.
	FindScheduled(ctx context.Context, app, id string) (Scheduled, bool, error)
	// Unschedule removes app's scheduled push id (cancelled, or made),
	// and reports whether it was there.
	Unschedule(ctx context.Context, app, id string) (bool, error)
	// ClaimDue returns up to limit pushes due at now, of every app, each
	// claimed for lease: no other ClaimDue returns it until the lease
	// ends (so that a claimer that dies does not lose it). Unschedule
	// removes it once made.
	ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Scheduled, error)
}

// VendorTokens are each device's OS push tokens (FCM, APNs, HMS...): one
// per (app, device, vendor), registered by the device or its backend.
type VendorTokens interface {
	// SetVendorToken keeps token as device's token of vendor in app, once
	// durable, replacing the one it had; an empty token removes it.
	SetVendorToken(ctx context.Context, app, device, vendor, token string) error
	// DropVendorToken removes device's token of vendor in app if it is
	// still token (its vendor said it is dead; a device that registered a
	// newer one meanwhile keeps it), once durable.
	DropVendorToken(ctx context.Context, app, device, vendor, token string) error
	// VendorTokens returns the tokens in app of each of devices, in their
	// order, by vendor (empty: none), including those of every
	// SetVendorToken that returned before it; in one round trip where the
	// backend has them.
	VendorTokens(ctx context.Context, app string, devices []string) ([]map[string]string, error)
}

// Reports are the delivery reports of stored messages, and recall.
type Reports interface {
	// Sent records, without waiting, the connections a stored message
	// (whose report its append made) was handed to when it was sent; for a
	// broadcast they are also its Targeted. A message without a report
	// (online-only) is left alone.
	Sent(app, id string, online int)
	// Report returns app's delivery report of message id; false when
	// there is none (never made, or no longer kept: reports are kept
	// until ReportKept after their message expires).
	Report(ctx context.Context, app, id string) (Report, bool, error)
	// Recall removes message id of app from every mailbox (and its app's
	// broadcast log) where it still waits, durably, marks its report
	// recalled, and returns the report (with its Audience) and how many
	// copies it removed (a broadcast's log entry is one); false when there
	// is no report.
	Recall(ctx context.Context, app, id string) (Report, int, bool, error)
	// Escalated records the outcomes of escalated copies of message id
	// (if it has a report), each replacing what its (device, vendor) had,
	// durably. The report counts each (device, vendor) once in Escalated,
	// and by its last outcome in VendorAccepted or VendorFailed.
	Escalated(ctx context.Context, app, id string, outcomes []Escalation) error
	// Escalations returns the outcomes recorded for message id, by device
	// and vendor, including those of every Escalated that returned before
	// it; they are kept as long as its report.
	Escalations(ctx context.Context, app, id string) ([]Escalation, error)
	// Waiting returns what of message id of app still waits for an ack
	// (unexpired, not recalled): the copies in mailboxes and a broadcast's
	// log entry, so that a retry of its push (same key) can hand it to the
	// online devices that missed it; false when there is no report.
	Waiting(ctx context.Context, app, id string) (Waiting, bool, error)
}

// Waiting is what of a stored message still waits for an ack.
type Waiting struct {
	Report
	Data    []byte   // the message as stored; nil when nothing waits
	Devices []string // the devices whose copy waits, and the copies' seqs
	Seqs    []uint64
	BSeq    uint64 // a stored broadcast's bseq while its log entry waits; else 0
}

// Add records that device's copy at seq waits, with its data.
func (w *Waiting) Add(device string, seq uint64, data []byte) {
	w.Devices, w.Seqs = append(w.Devices, device), append(w.Seqs, seq)
	w.Data = data
}

// Escalation is what became of one escalated copy of a message: its
// notification to one device's token of one vendor.
type Escalation struct {
	Device, Vendor string
	Outcome        VendorOutcome
}

// VendorOutcome is what a vendor made of an escalated copy.
type VendorOutcome uint8

// The outcomes of an escalated copy.
const (
	// VendorPending: the vendor asked for it again later.
	VendorPending VendorOutcome = iota + 1
	// VendorAccepted: the vendor took it.
	VendorAccepted
	// VendorFailed: a dead token, a refusal, or retries given up.
	VendorFailed
)

// CountEscalation counts in r an escalated copy's outcome now, where it
// had was (0: none, the copy's first).
func (r *Report) CountEscalation(was, now VendorOutcome) {
	if was == 0 {
		r.Escalated++
	}
	count := func(o VendorOutcome, n int) {
		switch o {
		case VendorAccepted:
			r.VendorAccepted += n
		case VendorFailed:
			r.VendorFailed += n
		}
	}
	count(was, -1)
	count(now, 1)
}

// Target is the kind of audience a push names.
type Target string

// The kinds of target. A group push is online only: it is never stored.
const (
	TargetDevices   Target = "devices"
	TargetUsers     Target = "users"
	TargetTags      Target = "tags"
	TargetGroup     Target = "group"
	TargetBroadcast Target = "broadcast"
)

// ReportKept is how long a delivery report is kept after its message
// expires.
const ReportKept = 24 * time.Hour

// Report is what became of a stored message: its delivery report. Acks are
// counted as they come (each device's once: an ack deletes its copy, and a
// broadcast cursor never moves back).
type Report struct {
	ID      string
	State   string // "sent" or "recalled"
	Target  Target // devices, users, tags or broadcast
	Created time.Time
	Expires time.Time // the message's expiry
	// Targeted counts the devices addressed (for a broadcast, the
	// connections it was handed to when sent); Online the connections it
	// was handed to when sent; Stored its mailbox copies (a stored
	// broadcast has none: its one log entry is read by every device, and
	// Acked counts them); Acked the devices that acked it; Recalled the
	// copies a recall removed.
	Targeted, Online, Stored, Acked, Recalled int
	// Escalated counts the notifications sent through devices' OS push
	// channels for copies not acked in time (one per device and vendor);
	// VendorAccepted those a vendor took, VendorFailed those it did not
	// (a dead token, a refusal, or retries given up).
	Escalated, VendorAccepted, VendorFailed int
	// Audience, set by Recall only, is the devices it was stored for.
	Audience []string
}

// Settled reports whether every stored copy of r's message is accounted
// for, acked or recalled, so that none can wait (a broadcast's log entry
// waits until it expires: never settled).
func (r Report) Settled() bool {
	return r.Target != TargetBroadcast && r.Stored <= r.Acked+r.Recalled
}

// Kept reports whether r is still kept at now (a backend may delete it
// later than that).
func (r Report) Kept(now time.Time) bool { return now.Before(r.Expires.Add(ReportKept)) }

// Expired counts the stored copies that were never acked and can no longer
// be: those still waiting when the message expired (or replaced by a newer
// one with its collapse key, or dropped from a full mailbox). Zero before
// the message expires.
func (r Report) Expired(now time.Time) int {
	if now.Before(r.Expires) {
		return 0
	}
	return max(r.Stored-r.Acked-r.Recalled, 0)
}

// Scheduled is a push to make at a time: its API request, kept as it came.
type Scheduled struct {
	App     string
	ID      string // the message id it will have
	At      time.Time
	Request []byte
}

// TagQuery selects devices by their tags.
type TagQuery struct {
	Any, All, Not []string
}

// Select evaluates q with a backend's sets: set(tags, false) is the union
// of those tags' devices, set(tags, true) their intersection. It returns
// the union of Any's (if given), within the intersection of All's (if
// given), less the union of Not's, sorted.
func (q TagQuery) Select(set func(tags []string, all bool) (map[string]bool, error)) ([]string, error) {
	var sel map[string]bool
	for _, part := range []struct {
		tags []string
		all  bool
	}{{q.Any, false}, {q.All, true}} {
		if len(part.tags) == 0 {
			continue
		}
		ds, err := set(part.tags, part.all)
		if err != nil {
			return nil, err
		}
		if sel == nil {
			sel = ds
		} else {
			maps.DeleteFunc(sel, func(d string, _ bool) bool { return !ds[d] })
		}
	}
	if len(q.Not) > 0 {
		not, err := set(q.Not, false)
		if err != nil {
			return nil, err
		}
		maps.DeleteFunc(sel, func(d string, _ bool) bool { return not[d] })
	}
	return slices.Sorted(maps.Keys(sel)), nil
}

// ErrTooManyTags fails a Tag that would give a device more than MaxTags.
var ErrTooManyTags = errors.New("store: a device would have more than 100 tags")

// Message is a message to store.
type Message struct {
	App     string
	ID      string
	Data    []byte
	Expires time.Time
	// Collapse, if set, replaces the message with the same key still
	// waiting in each target mailbox (or in the app's broadcast log): a
	// device that comes back gets the newest only. Not kept with the
	// message.
	Collapse string
	// Target, if set (a push's target kind), makes the append keep the
	// message's delivery report, and for a mailbox append where each copy
	// is (so that Recall finds them). Not kept with the message.
	Target Target
	// Then, if set, is kept among the schedules (as Schedule would) with
	// the message: in the same durable write where the backend can, else
	// just before it. A repeat of a used key may keep it or not.
	Then *Scheduled
}

// Stored is a message in a device's mailbox.
type Stored struct {
	Seq uint64
	Message
}

// Appended is the result of an append.
type Appended struct {
	ID   string   // the message id; the first message's id when Dup
	Dup  bool     // the idempotency key was used before: nothing was stored
	Seqs []uint64 // per device (Append), or the log's bseq (AppendBroadcast)
	// Routes are, per device, the cluster's route of its session as the
	// append read it ("" for none), from a store that keeps them with the
	// devices' keys (Redis), so that no other read finds them; nil when
	// not read.
	Routes []string
}

// Options configure a Store, whatever its backend. Zero values mean the
// documented defaults; WithDefaults fills them in.
type Options struct {
	// MailboxLimit bounds each (app, device) mailbox; when full the oldest
	// message is dropped and counted. Zero means store.mailbox_limit's
	// default.
	MailboxLimit int
	// IdempotencyWindow is how long an idempotency key is remembered.
	// Zero means 24h.
	IdempotencyWindow time.Duration
	// SweepInterval is how often expired data is deleted, where the
	// backend does not expire it by itself. Zero means
	// store.sweep_interval's default.
	SweepInterval time.Duration
	Metrics       *metrics.Metrics // required
	Logger        *slog.Logger     // nil means slog.Default()
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
}

// WithDefaults returns o with its zero values replaced by the defaults.
func (o Options) WithDefaults() Options {
	d := config.Default().Store
	if o.MailboxLimit == 0 {
		o.MailboxLimit = d.MailboxLimit
	}
	if o.IdempotencyWindow == 0 {
		o.IdempotencyWindow = 24 * time.Hour
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = d.SweepInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// ErrNotReplicated fails a stored push whose writes the primary has but
// fewer replicas than asked for (cluster.replicas_ack) confirmed in time: it
// may or may not survive a failover; a retry with the same key completes
// it.
var ErrNotReplicated = errors.New("store: the message is not on enough replicas yet")

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store: closed")
