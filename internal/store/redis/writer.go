package redis

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/store"
)

// Acks, bindings and sent reports do not make their callers wait: one
// writer goroutine sends them in batches, in order, from a bounded queue
// (when it is full, they are dropped and counted: a lost ack is a
// redelivery, a lost binding is made again at the device's next login).
// A run of writes of one kind is written by one script per partition
// (one, on one server), pipelined.

// writeQueue bounds the acks and bindings waiting for the writer.
const writeQueue = 65536

// writeLinger is how long the writer lets a batch gather after its first
// write (not after a barrier, which a caller waits on; a barrier queued
// during the wait waits with it, at most this long): a node that answers its
// devices at once would otherwise send their acks in more, smaller
// batches, and Redis would spend 15% more CPU per stored delivery
// (benchmarks.md, "The poller waits in the netpoller"). An ack written
// later costs nothing: it was answered.
const writeLinger = time.Millisecond

// write is an ack (or a message acked), a cursor, a binding, a sent report
// or acks to count for the writer, or a barrier (done set) closed once
// everything queued before it is written.
type write struct {
	kind     *writeKind
	app, id  string // id: the device, or the message (sent, sentAcks)
	arg      string // the seq, bseq, user or count of connections
	passed   moved  // the entries of a broadcast log acked (counted)
	done     chan struct{}
	keys     []string // the script item's keys
	itemArgs []string // and its arguments
}

// moved is a cursor's move in a broadcast log: it passed the entries in
// (from, to].
type moved struct{ from, to uint64 }

// writeKind writes a run of writes of its kind.
type writeKind struct {
	write func(s *Store, ctx context.Context, run []write) error
}

// The kinds of write.
var (
	acks          = &writeKind{writeAcks}
	sentAcks      = &writeKind{writeSentAcks}
	broadcastAcks = &writeKind{writeBroadcastAcks}
	counted       = &writeKind{writeCounted}
	bindings      = &writeKind{writeBindings}
	sent          = &writeKind{writeSent}
)

// batchScript is a writer script: it runs once for a run of writes of its
// kind in one partition, each of keys keys and args arguments, and returns
// one answer per write.
type batchScript struct {
	script     *redisclient.Script
	keys, args int
}

func newBatchScript(keys, args int, src string) *batchScript {
	return &batchScript{script: redisclient.NewScript(shebang + src), keys: keys, args: args}
}

// run runs the script over items (each w.keys and w.itemArgs), one call
// per partition, and returns each item's answer, in order.
func (b *batchScript) run(s *Store, ctx context.Context, items []write) ([]rueidis.RedisMessage, error) {
	groups := s.group(len(items), func(i int) string { return items[i].keys[0] })
	calls := make([]rueidis.LuaExec, len(groups))
	for g, idx := range groups {
		keys, args := make([]string, 0, len(idx)*b.keys), make([]string, 0, len(idx)*b.args)
		for _, i := range idx {
			keys, args = append(keys, items[i].keys...), append(args, items[i].itemArgs...)
		}
		calls[g] = rueidis.LuaExec{Keys: keys, Args: args}
	}
	out := make([]rueidis.RedisMessage, len(items))
	for g, r := range b.script.ExecMulti(ctx, s.client, calls) {
		answers, err := r.ToArray()
		if err := answered(err, len(answers), len(groups[g])); err != nil {
			return nil, err
		}
		for j, i := range groups[g] {
			out[i] = answers[j]
		}
	}
	return out, nil
}

// queue hands w to the writer without waiting, and reports whether it
// was queued (not when the store is closed or the queue full).
func (s *Store) queue(w write) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	select {
	case s.writes <- w:
		return true
	default:
		s.log.Warn("redis: write queue full; an ack or binding was dropped")
		return false
	}
}

// reportFlush is how often the acks counted for reports are added to them:
// a message acked by many devices has its report written once a second,
// not at every batch of acks (no hot key).
const reportFlush = time.Second

// writer sends the queued writes in batches, in order: every write waiting
// writeLinger after the batch's first goes in it. The acks it counts for
// reports are added to them once every reportFlush, and at Close (not at a
// barrier: a read that waits for the writes before it, such as a push to
// users, must not make a busy report a hot key again).
func (s *Store) writer() {
	defer close(s.done)
	tick := time.NewTicker(reportFlush)
	defer tick.Stop()
	for {
		select {
		case w, ok := <-s.writes:
			if !ok {
				s.flushAcks()
				return
			}
			if w.done == nil {
				time.Sleep(writeLinger)
			}
			s.writeBatch(s.gather(w))
		case <-tick.C:
			s.flushAcks()
		}
	}
}

// gather returns a batch of w and the writes waiting after it.
func (s *Store) gather(w write) []write {
	batch := []write{w}
	for len(batch) < 1024 {
		select {
		case w, ok := <-s.writes:
			if !ok {
				return batch
			}
			batch = append(batch, w)
		default:
			return batch
		}
	}
	return batch
}

// writeBatch writes a batch's writes in order, a run of one kind at a
// time, and closes each barrier once what came before it is written.
func (s *Store) writeBatch(batch []write) {
	for len(batch) > 0 {
		if batch[0].done != nil {
			close(batch[0].done)
			batch = batch[1:]
			continue
		}
		n := 1
		for n < len(batch) && batch[n].kind == batch[0].kind {
			n++
		}
		run := batch[:n]
		batch = batch[n:]
		ctx, cancel := s.call(context.Background())
		err := run[0].kind.write(s, ctx, run)
		cancel()
		if err != nil {
			s.log.Warn("redis: acks, bindings or sent reports were not written", "batch", len(run), "err", err)
		}
	}
}

// Ack implements store.Store: the writer sends it.
func (s *Store) Ack(app, device string, seq uint64) {
	s.queue(write{kind: acks, app: app, id: device,
		keys: []string{s.key(app, redisclient.KindSeq, device), s.key(app, redisclient.KindMailbox, device)}, itemArgs: []string{strconv.FormatUint(seq, 10)}})
}

// writeAcks deletes the acked messages, and counts them in their reports.
func writeAcks(s *Store, ctx context.Context, run []write) error {
	out, err := ackScript.run(s, ctx, run)
	if err != nil {
		return err
	}
	acked := make(map[reportOf]int)
	for i, item := range out {
		vals, err := item.ToArray()
		if err != nil || len(vals) == 0 {
			return errCorrupt
		}
		if n, _ := vals[0].AsInt64(); n == 1 {
			s.opts.Metrics.SeqClamped.WithLabelValues(run[i].app, "ack").Inc()
		}
		for _, v := range vals[1:] {
			id, _ := v.ToString()
			acked[reportOf{run[i].app, id}]++
		}
	}
	s.countAcks(acked)
	return nil
}

// Acked deletes from device's mailbox in app the messages sent, which a
// session of the device was sent and acked, by their seqs, and with sweep
// > 0 every other message up to sweep, and counts an ack in the report of
// each of sent that was still there. The caller vouches that the mailbox
// holds no other message after the session's last ack up to the last of
// sent, unless it sweeps (in a cluster the session's node knows it:
// gateway's unacked), so nothing is clamped, and the mailbox is not read.
// It does not wait.
func (s *Store) Acked(app, device string, sent []store.Sent, sweep uint64) {
	mailbox := s.key(app, redisclient.KindMailbox, device)
	for i, m := range sent {
		upTo := ""
		if i == len(sent)-1 && sweep > 0 {
			upTo = strconv.FormatUint(sweep, 10)
		}
		s.queue(write{kind: sentAcks, app: app, id: m.ID, keys: []string{mailbox}, itemArgs: []string{strconv.FormatUint(m.Seq, 10), upTo}})
	}
}

// writeSentAcks deletes the messages acked by the sessions that were sent
// them, and counts those that were still there in their reports.
func writeSentAcks(s *Store, ctx context.Context, run []write) error {
	out, err := sentAckScript.run(s, ctx, run)
	if err != nil {
		return err
	}
	acked := make(map[reportOf]int)
	for i, item := range out {
		n, err := item.AsInt64()
		if err != nil {
			return errCorrupt
		}
		if n == 1 {
			acked[reportOf{run[i].app, run[i].id}]++
		}
	}
	s.countAcks(acked)
	return nil
}

// reportOf names a message's report.
type reportOf struct{ app, id string }

// countAcks counts acks for their reports, to be added at the next flush.
// Only the writer calls it.
func (s *Store) countAcks(acked map[reportOf]int) {
	if s.counted == nil {
		s.counted = make(map[reportOf]int)
	}
	for r, n := range acked {
		s.counted[r] += n
	}
}

// flushAcks adds the acks counted to the reports that exist. Only the
// writer calls it.
func (s *Store) flushAcks() {
	if len(s.counted) == 0 {
		return
	}
	items := make([]write, 0, len(s.counted))
	for r, n := range s.counted {
		items = append(items, write{keys: []string{s.key(r.app, "r", r.id)}, itemArgs: []string{strconv.Itoa(n)}})
	}
	s.counted = nil
	ctx, cancel := s.call(context.Background())
	defer cancel()
	if _, err := addAcksScript.run(s, ctx, items); err != nil {
		s.log.Warn("redis: acks not counted in their reports", "reports", len(items), "err", err)
	}
}

// AckBroadcast implements store.Store: the writer sends it.
func (s *Store) AckBroadcast(app, device string, bseq uint64) {
	s.queue(write{kind: broadcastAcks, app: app, id: device, arg: strconv.FormatUint(bseq, 10),
		keys: []string{s.key(app, redisclient.KindCursor, device)}})
}

// writeBroadcastAcks moves the cursors (clamped to their logs' heads), and
// counts an ack in the report of each log entry a cursor passed, from what
// the writer knows of each log (logView).
func writeBroadcastAcks(s *Store, ctx context.Context, run []write) error {
	if err := s.readHeads(ctx, run); err != nil {
		return err
	}
	for i := range run {
		run[i].itemArgs = []string{run[i].arg, strconv.FormatUint(s.logs[run[i].app].head, 10), s.unused}
	}
	out, err := cursorScript.run(s, ctx, run)
	if err != nil {
		return err
	}
	passed := make(map[string][]moved) // by app
	for i, item := range out {
		vals, err := item.AsIntSlice()
		if err != nil || len(vals) != 3 {
			return errCorrupt
		}
		if vals[0] == 1 {
			s.opts.Metrics.SeqClamped.WithLabelValues(run[i].app, "ack_bseq").Inc()
		}
		if vals[2] > vals[1] {
			passed[run[i].app] = append(passed[run[i].app], moved{uint64(vals[1]), uint64(vals[2])})
		}
	}
	return s.countPassed(ctx, passed)
}

// BroadcastAcked counts an ack of each entry of app's broadcast log in
// (from, to] in its report: a cursor moved so in the memory of a node of
// the cluster (which saves it when the session ends). The writer counts
// them from what it knows of the log.
func (s *Store) BroadcastAcked(app string, from, to uint64) {
	s.queue(write{kind: counted, app: app, passed: moved{from, to}})
}

// writeCounted counts the acks of cursors moved in the nodes' memory.
func writeCounted(s *Store, ctx context.Context, run []write) error {
	passed := make(map[string][]moved) // by app
	for _, w := range run {
		passed[w.app] = append(passed[w.app], w.passed)
	}
	return s.countPassed(ctx, passed)
}

// countPassed counts an ack in the report of each log entry the cursors'
// moves passed (by app), from what the writer knows of each log
// (logView), reading what it does not.
func (s *Store) countPassed(ctx context.Context, passed map[string][]moved) error {
	acked := make(map[reportOf]int)
	for app, ms := range passed {
		from, to := ms[0].from, ms[0].to
		for _, m := range ms[1:] {
			from, to = min(from, m.from), max(to, m.to)
		}
		v := s.view(app)
		if err := s.readEntries(ctx, app, v, from, to); err != nil {
			return err
		}
		bseqs := make([]uint64, 0, len(v.ids)) // the entries' bseqs in (from, to], in order
		for bseq := range v.ids {
			if bseq > from && bseq <= to {
				bseqs = append(bseqs, bseq)
			}
		}
		slices.Sort(bseqs)
		for _, m := range ms {
			i, _ := slices.BinarySearch(bseqs, m.from+1)
			for ; i < len(bseqs) && bseqs[i] <= m.to; i++ {
				acked[reportOf{app, v.ids[bseqs[i]]}]++
			}
		}
	}
	s.countAcks(acked)
	return nil
}

// logView is what the writer knows of an app's broadcast log: its head as
// last read, and the ids of its entries in (lo, hi]. An entry's bseq never
// changes, so the view stays right as the log grows: the head is read
// again only for an ack beyond it, and entries only for a range the view
// does not hold. So the acks of one broadcast read the app's head and log
// once per node, not once per batch (no hot key).
type logView struct {
	head, lo, hi uint64
	ids          map[uint64]string
}

// maxViewEntries bounds a log view: past it, it keeps only its latest read.
const maxViewEntries = 4096

// readHeads reads, in one pipeline, the head of each app of run that has
// no view yet or that an ack of run goes beyond.
func (s *Store) readHeads(ctx context.Context, run []write) error {
	var cmds rueidis.Commands
	var apps []string
	asked := make(map[string]bool)
	for _, w := range run {
		bseq, _ := strconv.ParseUint(w.arg, 10, 64)
		if v := s.logs[w.app]; (v == nil || bseq > v.head) && !asked[w.app] {
			asked[w.app] = true
			head, _, _ := s.logKeys(w.app)
			cmds, apps = append(cmds, s.client.B().Get().Key(head).Build()), append(apps, w.app)
		}
	}
	for i, r := range s.client.DoMulti(ctx, cmds...) {
		head, err := r.AsUint64()
		if err != nil && !rueidis.IsRedisNil(err) {
			return err
		}
		v := s.view(apps[i])
		v.head = max(v.head, head)
	}
	return nil
}

// view returns the writer's view of app's log, an empty one (head 0) if it
// had none.
func (s *Store) view(app string) *logView {
	v := s.logs[app]
	if v == nil {
		if s.logs == nil {
			s.logs = make(map[string]*logView)
		}
		v = &logView{ids: make(map[uint64]string)}
		s.logs[app] = v
	}
	return v
}

// readEntries makes sure view v of app's log holds the entries in (from,
// to], reading them if it does not.
func (s *Store) readEntries(ctx context.Context, app string, v *logView, from, to uint64) error {
	if v.lo <= from && to <= v.hi {
		return nil
	}
	_, log, _ := s.logKeys(app)
	entries, err := s.client.Do(ctx, s.client.B().Zrangebyscore().Key(log).
		Min("("+strconv.FormatUint(from, 10)).Max(strconv.FormatUint(to, 10)).Build()).AsStrSlice()
	if err != nil {
		return err
	}
	if from > v.hi || to < v.lo || len(v.ids)+len(entries) > maxViewEntries { // not joined to what it holds: start again
		v.ids, v.lo, v.hi = make(map[uint64]string, len(entries)), from, to
	} else {
		v.lo, v.hi = min(v.lo, from), max(v.hi, to)
	}
	for _, e := range entries {
		m, err := parseMember(app, []byte(e))
		if err != nil {
			return err
		}
		v.ids[m.Seq] = m.ID
	}
	return nil
}

// Bind implements store.Store: the writer sends it.
func (s *Store) Bind(app, device, user string) {
	s.bindings.Add(1) // before it is queued: until it is written, UserDevices waits for it
	if !s.queue(write{kind: bindings, app: app, id: device, keys: []string{s.key(app, redisclient.KindUser, device)}, itemArgs: []string{user}}) {
		s.bindings.Add(-1)
	}
}

// writeBindings records the devices' users: it reads each device's user,
// then moves those whose user changed (rebind). Of the bindings of one
// device in a run, the last wins.
func writeBindings(s *Store, ctx context.Context, run []write) error {
	defer s.bindings.Add(-int64(len(run)))
	keys := make([]string, len(run))
	for i, w := range run {
		keys[i] = w.keys[0]
	}
	olds, err := redisclient.MGet(ctx, s.client, keys)
	if err != nil {
		return err
	}
	last := make(map[string]int, len(run)) // by key: the binding's place in moves
	var moves []Binding
	for i, w := range run {
		if j, ok := last[keys[i]]; ok {
			moves[j].User = w.itemArgs[0]
			continue
		}
		old, _ := olds[i].ToString() // none: ""
		last[keys[i]] = len(moves)
		moves = append(moves, Binding{App: w.app, Device: w.id, Old: old, User: w.itemArgs[0]})
	}
	return s.rebind(ctx, moves)
}

// A Binding moves a device of an app from its old user to a new one (""
// for none).
type Binding struct{ App, Device, Old, User string }

// Rebind moves device from its user old (as a login's claim read it) to
// user: the users' sets first, then the device's own record, so that a
// failure leaves the record at old and the next login moves it again.
func (s *Store) Rebind(ctx context.Context, b Binding) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	if err := s.rebind(ctx, []Binding{b}); err != nil {
		return fmt.Errorf("store bind: %w", err)
	}
	return nil
}

// rebind makes the moves whose user changed: one pipeline for the users'
// sets, then one for the devices' records.
func (s *Store) rebind(ctx context.Context, moves []Binding) error {
	var sets, records rueidis.Commands
	for _, m := range moves {
		if m.Old == m.User {
			continue
		}
		if m.Old != "" {
			sets = append(sets, s.client.B().Srem().Key(s.key(m.App, "u", m.Old)).Member(m.Device).Build())
		}
		record := s.key(m.App, redisclient.KindUser, m.Device)
		if m.User != "" {
			sets = append(sets, s.client.B().Sadd().Key(s.key(m.App, "u", m.User)).Member(m.Device).Build())
			records = append(records, s.client.B().Set().Key(record).Value(m.User).Build())
		} else {
			records = append(records, s.client.B().Del().Key(record).Build())
		}
	}
	for _, cmds := range []rueidis.Commands{sets, records} {
		for _, r := range s.client.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				return err
			}
		}
	}
	return nil
}
