// Package redis is the store shared by the nodes of a cluster: stored
// messages, seqs, broadcast logs, user bindings and idempotency keys in one
// Redis server (or a Sentinel-managed primary), so that any node replays
// any device's mailbox.
//
// Every write of a push is one Lua script, so one round trip and atomic:
// a push that got an error wrote nothing. rueidis pipelines the calls of
// concurrent pushers on shared connections. Durability is Redis's own: a
// 200 for a stored push means Redis has it as durably as its AOF settings
// say; `appendonly yes` and `appendfsync always` make it survive a crash
// (Open logs a warning when the server says otherwise).
//
// Acks, bindings and sent reports do not make their callers wait: one writer goroutine
// sends them in pipelined batches, in order, from a bounded queue (when it
// is full, they are dropped and counted: a lost ack is a redelivery, a lost
// binding is made again at the device's next login).
//
// Keys, under a prefix (default "ll:"); app ids have no ':', so the rest
// of a key after its kind is the device, user or idempotency key as it is:
//
//	<p><app>:s:<device>   last seq given to the device in app (integer)
//	<p><app>:m:<device>   the mailbox: zset of "<seq>:<rest>" by seq
//	<p><app>:c:<device>   the device's cursor in the broadcast log: highest bseq acked or copied into the mailbox
//	<p><app>:h            last seq of the app's broadcast log
//	<p><app>:b            the broadcast log: zset of "<bseq>:<rest>" by bseq
//	<p><app>:k:<device>   the mailbox's collapse keys: hash of key -> seq
//	<p><app>:kb           the log's collapse keys: hash of key -> bseq
//	<p><app>:t:<tag>      the tag's devices (set)
//	<p><app>:g:<device>   the device's tags (set)
//	<p><app>:u:<user>     the user's devices (set)
//	<p><app>:w:<device>   the device's user
//	<p><app>:i:<key>      idempotency key: "<expires ms>:<message id>"
//	<p><app>:r:<id>       a message's delivery report (hash; report.go)
//	<p><app>:o:<id>       where its mailbox copies are, if many: "<seq> <device>" lines
//
// Mailboxes and logs expire with their newest message; seq counters and
// cursors do not expire, so that a device's seqs never start over.
package redis

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/golabel"
	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/store"
)

var _ store.Store = (*Store)(nil)

// Options configure a Store beyond store.Options.
type Options struct {
	store.Options
	// URL is the Redis server: redis://[user:password@]host:port/db.
	URL string
	// Prefix begins every key. Empty means config.ClusterPrefix.
	Prefix string
	// Timeout bounds one call to Redis. Zero means config.ClusterTimeout.
	Timeout time.Duration
}

// writeQueue bounds the acks and bindings waiting for the writer.
const writeQueue = 65536

// Store is the Redis store. Safe for concurrent use.
type Store struct {
	// Static after Open.
	client rueidis.Client
	opts   Options
	log    *slog.Logger
	writes chan write
	done   chan struct{}

	closeOnce sync.Once
	mu        sync.RWMutex // guards closed against sends on writes
	closed    bool
}

// write is an ack, a binding or a sent report for the writer (one item of
// its script), or a barrier (done set) closed once everything queued before
// it is written.
type write struct {
	script     *batchScript
	keys, args []string
	app        string // for the clamped-ack metric
	clamp      string // its op label, for a script that returns 1 when it clamped
	done       chan struct{}
}

// batchScript is a writer script: it runs once for a run of writes of its
// kind, each of keys keys and args arguments, and returns one integer per
// write.
type batchScript struct {
	lua        *rueidis.Lua
	keys, args int
}

func newBatchScript(keys, args int, src string) *batchScript {
	return &batchScript{lua: rueidis.NewLuaScript(src), keys: keys, args: args}
}

// Open connects to Redis and starts the writer.
func Open(o Options) (*Store, error) {
	o.Options = o.Options.WithDefaults()
	o.Prefix = cmp.Or(o.Prefix, config.ClusterPrefix)
	o.Timeout = cmp.Or(o.Timeout, config.ClusterTimeout)
	client, err := redisclient.New(o.URL, o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{client: client, opts: o, log: o.Logger, writes: make(chan write, writeQueue), done: make(chan struct{})}
	s.checkDurability()
	golabel.Go("store.writer", s.writer)
	return s, nil
}

// checkDurability warns when the server would lose acknowledged writes in
// a crash.
func (s *Store) checkDurability() {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	conf, err := s.client.Do(ctx, s.client.B().ConfigGet().Parameter("append*").Build()).AsStrMap()
	if err != nil {
		s.log.Warn("redis: could not read the server's AOF settings", "err", err)
		return
	}
	if conf["appendonly"] != "yes" || conf["appendfsync"] != "always" {
		s.log.Warn("redis: stored messages are not durable on this server: a crash may lose what the API answered 200 for; set appendonly yes and appendfsync always",
			"appendonly", conf["appendonly"], "appendfsync", conf["appendfsync"])
	}
}

// Close writes what is queued and disconnects. Later calls return nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.writes)
		s.mu.Unlock()
		<-s.done
		s.client.Close()
	})
	return nil
}

func (s *Store) key(app, kind, id string) string { return s.opts.Prefix + app + ":" + kind + ":" + id }

func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.Timeout)
}

func (s *Store) now() int64 { return s.opts.Now().UnixMilli() }

// idempotency returns the key's name and the script arguments for it.
func (s *Store) idempotency(app, key string) (name, expires, ttl string) {
	if key == "" {
		return s.opts.Prefix + app + ":i:", "", "0"
	}
	w := s.opts.IdempotencyWindow
	return s.key(app, "i", key), strconv.FormatInt(s.opts.Now().Add(w).UnixMilli(), 10), strconv.FormatInt(w.Milliseconds(), 10)
}

// ttl is how long a mailbox or log must live for m, in ms (at least 1).
func (s *Store) ttl(m store.Message) string {
	return strconv.FormatInt(max(m.Expires.Sub(s.opts.Now()).Milliseconds(), 1), 10)
}

// writeMessage runs script, one of those that store m after its
// idempotency key (idempotencyLua): KEYS are the key then keys, ARGV the
// five of idempotencyLua then extra. dup is set for a key in use.
func (s *Store) writeMessage(ctx context.Context, script *rueidis.Lua, m store.Message, key string, keys []string,
	extra ...string) (out []rueidis.RedisMessage, dup *store.Appended, err error) {
	ik, exp, ttl := s.idempotency(m.App, key)
	args := append([]string{strconv.FormatInt(s.now(), 10), exp, ttl, m.ID, rest(m)}, extra...)
	ctx, cancel := s.call(ctx)
	defer cancel()
	if out, err = script.Exec(ctx, s.client, append([]string{ik}, keys...), args).ToArray(); err != nil {
		return nil, nil, err
	}
	if flag, _ := out[0].AsInt64(); flag == 1 {
		id, _ := out[1].ToString()
		return nil, &store.Appended{ID: id, Dup: true}, nil
	}
	return out, nil, nil
}

// Append implements store.Store.
func (s *Store) Append(ctx context.Context, devices []string, m store.Message, key string) (store.Appended, error) {
	rk, copies := s.key(m.App, "r", m.ID), s.key(m.App, "o", m.ID)
	keys := make([]string, 0, 2+3*len(devices))
	keys = append(keys, rk, copies)
	for _, d := range devices {
		mailbox := s.key(m.App, "m", d)
		collapse := mailbox // not touched without a collapse key: no key to build
		if m.Collapse != "" {
			collapse = s.key(m.App, "k", d)
		}
		keys = append(keys, s.key(m.App, "s", d), mailbox, collapse)
	}
	out, dup, err := s.writeMessage(ctx, appendScript, m, key, keys,
		append([]string{strconv.Itoa(s.opts.MailboxLimit), s.ttl(m), m.Collapse}, append(s.reportArgs(m), s.key(m.App, "m", ""))...)...)
	if err != nil {
		return store.Appended{}, fmt.Errorf("store append: %w", err)
	}
	if dup != nil {
		return *dup, nil
	}
	if dropped, _ := out[1].AsInt64(); dropped > 0 {
		s.opts.Metrics.MailboxDropped.WithLabelValues(m.App).Add(float64(dropped))
	}
	res := store.Appended{ID: m.ID, Seqs: make([]uint64, len(devices))}
	for i := range devices {
		seq, err := out[2+i].AsInt64()
		if err != nil {
			return store.Appended{}, fmt.Errorf("store append: %w", err)
		}
		res.Seqs[i] = uint64(seq)
	}
	return res, nil
}

// AppendBroadcast implements store.Store.
func (s *Store) AppendBroadcast(ctx context.Context, m store.Message, key string) (store.Appended, error) {
	out, dup, err := s.writeMessage(ctx, broadcastScript, m, key,
		[]string{s.opts.Prefix + m.App + ":h", s.opts.Prefix + m.App + ":b", s.opts.Prefix + m.App + ":kb", s.key(m.App, "r", m.ID)},
		append([]string{s.ttl(m), m.Collapse}, s.reportArgs(m)...)...)
	if err != nil {
		return store.Appended{}, fmt.Errorf("store broadcast: %w", err)
	}
	if dup != nil {
		return *dup, nil
	}
	bseq, err := out[1].AsInt64()
	if err != nil {
		return store.Appended{}, fmt.Errorf("store broadcast: %w", err)
	}
	return store.Appended{ID: m.ID, Seqs: []uint64{uint64(bseq)}}, nil
}

// CatchUp implements store.Store.
func (s *Store) CatchUp(ctx context.Context, app, device string) (int, error) {
	keys := []string{s.key(app, "c", device), s.opts.Prefix + app + ":h", s.opts.Prefix + app + ":b",
		s.key(app, "s", device), s.key(app, "m", device)}
	ctx, cancel := s.call(ctx)
	defer cancel()
	out, err := catchUpScript.Exec(ctx, s.client, keys,
		[]string{strconv.FormatInt(s.now(), 10), strconv.Itoa(s.opts.MailboxLimit)}).AsIntSlice()
	if err := answered(err, len(out), 2); err != nil {
		return 0, fmt.Errorf("store catch up: %w", err)
	}
	if out[1] > 0 {
		s.opts.Metrics.MailboxDropped.WithLabelValues(app).Add(float64(out[1]))
	}
	return int(out[0]), nil
}

// Since implements store.Store.
func (s *Store) Since(ctx context.Context, app, device string, after uint64, limit int) ([]store.Stored, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	out, err := s.scan(ctx, s.key(app, "m", device), app, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store since: %w", err)
	}
	return out, nil
}

// Broadcasts implements store.Store.
func (s *Store) Broadcasts(ctx context.Context, app, device string, after uint64, limit int) ([]store.Stored, uint64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	vals, err := s.client.Do(ctx, s.client.B().Mget().Key(s.key(app, "c", device), s.opts.Prefix+app+":h").Build()).ToArray()
	if err := answered(err, len(vals), 2); err != nil {
		return nil, 0, fmt.Errorf("store broadcasts: %w", err)
	}
	var cursorLast [2]uint64
	for i, v := range vals {
		if n, err := v.AsUint64(); err == nil {
			cursorLast[i] = n
		} else if !rueidis.IsRedisNil(err) {
			return nil, 0, fmt.Errorf("store broadcasts: %w", err)
		}
	}
	out, err := s.scan(ctx, s.opts.Prefix+app+":b", app, max(after, cursorLast[0]), limit)
	if err != nil {
		return nil, 0, fmt.Errorf("store broadcasts: %w", err)
	}
	return out, cursorLast[1], nil
}

// scan returns up to limit unexpired messages of the zset key (a mailbox
// or a broadcast log) with a score above after, in order.
func (s *Store) scan(ctx context.Context, key, app string, after uint64, limit int) ([]store.Stored, error) {
	now := s.opts.Now()
	var out []store.Stored
	for len(out) < limit {
		want := limit - len(out)
		members, err := s.client.Do(ctx, s.client.B().Zrangebyscore().Key(key).
			Min("("+strconv.FormatUint(after, 10)).Max("+inf").Limit(0, int64(want)).Build()).AsStrSlice()
		if err != nil {
			return nil, err
		}
		for _, member := range members {
			m, err := parseMember(app, []byte(member))
			if err != nil {
				return nil, err
			}
			after = m.Seq
			if m.Expires.After(now) {
				out = append(out, m)
			}
		}
		if len(members) < want {
			break
		}
	}
	return out, nil
}

// LastSeq implements store.Store.
func (s *Store) LastSeq(ctx context.Context, app, device string) (uint64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	v, err := s.client.Do(ctx, s.client.B().Get().Key(s.key(app, "s", device)).Build()).AsUint64()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store last seq: %w", err)
	}
	return v, nil
}

// AckBroadcast implements store.Store: the writer sends it.
func (s *Store) AckBroadcast(app, device string, bseq uint64) {
	s.queue(write{script: ackBroadcastScript, app: app, clamp: "ack_bseq",
		keys: []string{s.key(app, "c", device), s.opts.Prefix + app + ":h", s.opts.Prefix + app + ":b"},
		args: []string{strconv.FormatUint(bseq, 10), s.key(app, "r", "")}})
}

// Ack implements store.Store: the writer sends it.
func (s *Store) Ack(app, device string, seq uint64) {
	s.queue(write{script: ackScript, app: app, clamp: "ack",
		keys: []string{s.key(app, "s", device), s.key(app, "m", device)},
		args: []string{strconv.FormatUint(seq, 10), s.key(app, "r", "")}})
}

// Bind implements store.Store: the writer sends it.
func (s *Store) Bind(app, device, user string) {
	s.queue(write{script: bindScript, keys: []string{s.key(app, "w", device)},
		args: []string{s.opts.Prefix + app + ":u:", device, user}})
}

// UserDevices implements store.Store: it waits until the bindings queued
// before it are written.
func (s *Store) UserDevices(ctx context.Context, app string, users []string) ([]string, error) {
	done := make(chan struct{})
	if !s.queue(write{done: done}) {
		return nil, store.ErrClosed
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	keys := make([]string, len(users))
	for i, u := range users {
		keys[i] = s.key(app, "u", u)
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	devices, err := s.client.Do(ctx, s.client.B().Sunion().Key(keys...).Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("store user devices: %w", err)
	}
	return devices, nil
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

// writer sends the queued acks and bindings in batches, in order: every
// write waiting when a batch starts goes in it, each kind in one pipelined
// round trip.
func (s *Store) writer() {
	defer close(s.done)
	for w, ok := <-s.writes; ok; w, ok = <-s.writes {
		batch := []write{w}
	gather:
		for len(batch) < 1024 {
			select {
			case w, ok := <-s.writes:
				if !ok {
					break gather
				}
				batch = append(batch, w)
			default:
				break gather
			}
		}
		s.writeBatch(batch)
	}
}

// writeBatch runs a batch's writes in order, a run of the same script at a
// time in one call of it, and closes each barrier once what came before it
// is written.
func (s *Store) writeBatch(batch []write) {
	for len(batch) > 0 {
		if batch[0].done != nil {
			close(batch[0].done)
			batch = batch[1:]
			continue
		}
		n := 1
		for n < len(batch) && batch[n].script == batch[0].script {
			n++
		}
		run := batch[:n]
		batch = batch[n:]
		script := run[0].script
		keys, args := make([]string, 0, len(run)*script.keys), make([]string, 0, len(run)*script.args)
		for _, w := range run {
			keys, args = append(keys, w.keys...), append(args, w.args...)
		}
		ctx, cancel := s.call(context.Background())
		out, err := script.lua.Exec(ctx, s.client, keys, args).AsIntSlice()
		cancel()
		if err == nil && len(out) != len(run) {
			err = errCorrupt
		}
		if err != nil {
			s.log.Warn("redis: acks, bindings or sent reports were not written", "batch", len(run), "err", err)
			continue
		}
		for i, clamped := range out {
			if run[i].clamp != "" && clamped == 1 {
				s.opts.Metrics.SeqClamped.WithLabelValues(run[i].app, run[i].clamp).Inc()
			}
		}
	}
}
