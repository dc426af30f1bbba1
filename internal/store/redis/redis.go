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
// Keys, under a prefix (default "ll:"), carry their partition's hash tag
// (redisclient.Key: a device's keys share one slot of a Redis Cluster);
// app ids have no ':', so the rest of a key after its kind is the device,
// user or idempotency key as it is:
//
//	<p>{t}<app>:s:<device>   last seq given to the device in app (integer)
//	<p>{t}<app>:m:<device>   the mailbox: zset of "<seq>:<rest>" by seq
//	<p>{t}<app>:c:<device>   the device's cursor in the broadcast log: highest bseq acked or copied into the mailbox
//	<p>{t}<app>:k:<device>   the mailbox's collapse keys: hash of key -> seq
//	<p>{t}<app>:g:<device>   the device's tags (set)
//	<p>{t}<app>:w:<device>   the device's user
//	<p>{t}<app>:h:           last seq of the app's broadcast log
//	<p>{t}<app>:b:           the broadcast log: zset of "<bseq>:<rest>" by bseq
//	<p>{t}<app>:kb:          the log's collapse keys: hash of key -> bseq
//	<p>{t}<app>:t:<tag>      the tag's devices (set)
//	<p>{t}<app>:u:<user>     the user's devices (set)
//	<p>{t}<app>:i:<key>      idempotency key: "<expires ms>:<message id>"
//	<p>{t}<app>:j:<key>      the same key, recorded in each other partition a push of it wrote to
//	<p>{t}<app>:r:<id>       a message's delivery report (hash; report.go)
//	<p>{t}<app>:o:<id>       the devices of its mailbox copies, if many, one per line
//	<p>{due}...              scheduled pushes (schedule.go)
//
// A device's keys are in its partition ({t} the tag of Partition(app,
// device)); the broadcast log's in the app's (of id ""); a tag's, user's,
// key's or message's in its own.
//
// On a Redis Cluster a push writes one script per partition it touches,
// pipelined: each is atomic, the push as a whole is not. Its idempotency
// key is recorded first, in the key's partition; then each partition
// records the key (j) with its copies, so that a retry of a push that
// failed part way, with the same key, stores the message (its first id)
// in the partitions that missed it and in no other.
//
// Mailboxes and logs expire with their newest message; seq counters and
// cursors do not expire, so that a device's seqs never start over.
package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// URL is the Redis server (redis://[user:password@]host:port/db), or
	// a Redis Cluster's seeds (redis://host:port?addr=host:port&...).
	URL string
	// Prefix begins every key. Empty means config.ClusterPrefix.
	Prefix string
	// Timeout bounds one call to Redis. Zero means config.ClusterTimeout.
	Timeout time.Duration
	// ReplicasAck, if not 0, makes a stored push return only once that many
	// replicas of each primary it wrote to have its writes (WAIT, within
	// ReplicasAckTimeout; zero means 1s), else fail with
	// store.ErrNotReplicated.
	ReplicasAck        int
	ReplicasAckTimeout time.Duration
	// DeviceExpiry, if not 0, is how long a device's seq counter and
	// broadcast cursor live after its last login, push or ack (and at
	// least as long as its stored messages).
	DeviceExpiry time.Duration
}

// Store is the Redis store. Safe for concurrent use.
type Store struct {
	// Static after Open.
	client rueidis.Client
	opts   Options
	unused string // DeviceExpiry in ms, for the scripts that keep a device's keys
	log    *slog.Logger
	writes chan write
	done   chan struct{}

	// The writer's own: the acks counted for reports and not yet added to
	// them (flushAcks), and what it knows of each app's broadcast log.
	counted map[reportOf]int
	logs    map[string]*logView

	// bindings counts the bindings queued and not yet written: a read of
	// users' devices waits for the writer only when there are some (a
	// cluster binds in its login script, and queues none).
	bindings atomic.Int64

	closeOnce sync.Once
	mu        sync.RWMutex // guards closed against sends on writes
	closed    bool
}

// Open connects to Redis (one server, or a Redis Cluster) and starts the
// writer.
func Open(o Options) (*Store, error) {
	o.Options = o.Options.WithDefaults()
	o.Prefix = cmp.Or(o.Prefix, config.ClusterPrefix)
	o.Timeout = cmp.Or(o.Timeout, config.ClusterTimeout)
	o.ReplicasAckTimeout = cmp.Or(o.ReplicasAckTimeout, time.Second)
	client, err := redisclient.New(o.URL, o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{client: client, opts: o, log: o.Logger, writes: make(chan write, writeQueue), done: make(chan struct{}),
		unused: strconv.FormatInt(o.DeviceExpiry.Milliseconds(), 10)}
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

// key is the key of kind named after id in app, in id's partition.
func (s *Store) key(app, kind, id string) string {
	return redisclient.Key(s.opts.Prefix, app, kind, id)
}

// logKeys are app's broadcast log's keys: its head, the log, its collapse
// keys (in the app's partition).
func (s *Store) logKeys(app string) (head, log, collapse string) {
	return s.key(app, redisclient.KindHead, ""), s.key(app, "b", ""), s.key(app, "kb", "")
}

// group splits n items, item i named by key(i), into the groups one script
// may take together (redisclient.Group).
func (s *Store) group(n int, key func(i int) string) [][]int {
	return redisclient.Group(s.client, n, key)
}

// together reports whether one script may touch keys a and b.
func (s *Store) together(a, b string) bool {
	return !redisclient.Sharded(s.client) || redisclient.Slot(a) == redisclient.Slot(b)
}

func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.Timeout)
}

func (s *Store) now() int64 { return s.opts.Now().UnixMilli() }

// ttl is how long a mailbox or log must live for m, in ms (at least 1).
func (s *Store) ttl(m store.Message) string {
	return strconv.FormatInt(max(m.Expires.Sub(s.opts.Now()).Milliseconds(), 1), 10)
}

// idempotency are the first arguments of the scripts that store m: now,
// then for a key (if any) its expiry and TTL, then m's id and rest.
func (s *Store) idempotency(m store.Message, key string) []string {
	exp, ttl := "", "0"
	if key != "" {
		w := s.opts.IdempotencyWindow
		exp, ttl = strconv.FormatInt(s.opts.Now().Add(w).UnixMilli(), 10), strconv.FormatInt(w.Milliseconds(), 10)
	}
	return []string{strconv.FormatInt(s.now(), 10), exp, ttl, m.ID, rest(m)}
}

// write runs a store script's calls (a stored push's writes), pipelined;
// with ReplicasAck, each primary's writes are waited for on its replicas
// (store.ErrNotReplicated when too few confirm in time).
func (s *Store) write(ctx context.Context, script *redisclient.Script, calls ...rueidis.LuaExec) ([]rueidis.RedisResult, error) {
	if s.opts.ReplicasAck == 0 {
		return script.ExecMulti(ctx, s.client, calls), nil
	}
	out, err := script.ExecMultiReplicated(ctx, s.client, calls, s.opts.ReplicasAck, s.opts.ReplicasAckTimeout)
	if errors.Is(err, redisclient.ErrNotReplicated) {
		err = fmt.Errorf("%w: %w", store.ErrNotReplicated, err)
	}
	return out, err
}

// claim records key for m (in the key's partition), and returns the id of
// the message that used it first, and whether that was another.
func (s *Store) claim(ctx context.Context, m store.Message, key string) (string, bool, error) {
	ik := s.key(m.App, "i", key)
	res, err := s.write(ctx, appendScript, rueidis.LuaExec{Keys: []string{ik, ik, ik},
		Args: slices.Concat(s.idempotency(m, key), []string{"0", "0", ""}, noReport, []string{s.unused})})
	if err != nil {
		return "", false, err
	}
	out, err := res[0].ToArray()
	if err != nil {
		return "", false, err
	}
	return firstID(out, m.ID)
}

// firstID reads a store script's answer: the id of the message that used
// its key first (mine if none did), and whether that was another.
func firstID(out []rueidis.RedisMessage, mine string) (string, bool, error) {
	if len(out) < 2 {
		return "", false, errCorrupt
	}
	if flag, _ := out[0].AsInt64(); flag != 1 {
		return mine, false, nil
	}
	first, err := out[1].ToString()
	return first, true, err
}

// reportArgs are the store scripts' report arguments for m, to the devices
// (or none: a broadcast): its target, the report's TTL in ms, m's expiry
// (unix ms), how many devices, the devices, and its bseq ("" for none).
func (s *Store) reportArgs(m store.Message, devices []string, bseq string) []string {
	return []string{string(m.Target), s.keep(m.Expires), strconv.FormatInt(m.Expires.UnixMilli(), 10),
		strconv.Itoa(len(devices)), strings.Join(devices, "\n"), bseq}
}

// noReport are the report arguments of a script that makes none.
var noReport = []string{"", "", "", "0", "", ""}

// Append implements store.Store: one script per partition of the devices
// (one, on one server), pipelined; with a key on a Redis Cluster, the key
// is recorded first (claim), and a repeat stores the first message in the
// partitions a first try missed.
func (s *Store) Append(ctx context.Context, devices []string, m store.Message, key string) (store.Appended, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	m, dup, err := s.claimIfSharded(ctx, m, key)
	if err == nil && !dup {
		err = s.scheduleThen(ctx, m)
	}
	if err != nil {
		return store.Appended{}, fmt.Errorf("store append: %w", err)
	}
	rk := s.key(m.App, "r", m.ID)
	report := m.Target != ""
	groups := s.group(len(devices), func(i int) string { return s.key(m.App, redisclient.KindSeq, devices[i]) })
	calls := make([]rueidis.LuaExec, 0, len(groups)+1)
	for _, g := range groups {
		anchor := rk // a group of no devices: the key alone, on one server
		if len(g) > 0 {
			anchor = s.key(m.App, redisclient.KindSeq, devices[g[0]])
		}
		keys := make([]string, 0, 3+4*len(g))
		args := append(s.idempotency(m, key), strconv.Itoa(s.opts.MailboxLimit), s.ttl(m), m.Collapse)
		keys = append(keys, s.marker(m.App, key, anchor))
		if report && s.together(anchor, rk) {
			keys, args = append(keys, rk, s.key(m.App, "o", m.ID)), append(args, s.reportArgs(m, devices, "")...)
			report = false
		} else {
			keys, args = append(keys, anchor, anchor), append(args, noReport...)
		}
		args = append(args, s.unused)
		collapse := redisclient.KindMailbox // any key: not touched without a collapse key
		if m.Collapse != "" {
			collapse = "k"
		}
		for _, i := range g {
			keys = redisclient.AppendKeys(keys, s.opts.Prefix, m.App, devices[i], redisclient.KindSeq, redisclient.KindMailbox, collapse, redisclient.KindRoute)
		}
		calls = append(calls, rueidis.LuaExec{Keys: keys, Args: args})
	}
	if report { // the report, in its own partition
		calls = append(calls, s.reportCall(m, devices, ""))
	}
	written, err := s.write(ctx, appendScript, calls...)
	if err != nil {
		return store.Appended{}, fmt.Errorf("store append: %w", err)
	}
	res := store.Appended{ID: m.ID, Dup: dup, Seqs: make([]uint64, len(devices)), Routes: make([]string, len(devices))}
	for c, r := range written {
		out, err := r.ToArray()
		if err != nil {
			return store.Appended{}, fmt.Errorf("store append: %w", err)
		}
		first, used, err := s.repeated(out, m.ID, dup)
		switch {
		case err != nil:
			return store.Appended{}, fmt.Errorf("store append: %w", err)
		case used && !dup: // on one server: the first try had it all
			return store.Appended{ID: first, Dup: true}, nil
		case used: // this partition had it from a first try: the routes are read apart
			res.Routes = nil
			continue
		case c >= len(groups): // the report
			continue
		}
		if dropped, _ := out[1].AsInt64(); dropped > 0 {
			s.opts.Metrics.MailboxDropped.WithLabelValues(m.App).Add(float64(dropped))
		}
		if len(out) != 2+2*len(groups[c]) {
			return store.Appended{}, fmt.Errorf("store append: %w", errCorrupt)
		}
		for j, i := range groups[c] {
			seq, err := out[2+2*j].AsInt64()
			route, rerr := out[3+2*j].ToString()
			if err = cmp.Or(err, rerr); err != nil {
				return store.Appended{}, fmt.Errorf("store append: %w", err)
			}
			res.Seqs[i] = uint64(seq)
			if res.Routes != nil {
				res.Routes[i] = route
			}
		}
	}
	if dup {
		return store.Appended{ID: m.ID, Dup: true}, nil
	}
	return res, nil
}

// claimIfSharded records key (if any) for m first on a Redis Cluster
// (claim), and returns m with the id of the message that used the key
// first, and whether that was another.
func (s *Store) claimIfSharded(ctx context.Context, m store.Message, key string) (store.Message, bool, error) {
	if key == "" || !redisclient.Sharded(s.client) {
		return m, false, nil
	}
	first, used, err := s.claim(ctx, m, key)
	m.ID = first
	return m, used, err
}

// marker is where a store script records key (if any) for its writes
// beside anchor: the key itself on one server (the script is the whole
// push), else the key's mark in anchor's partition (j).
func (s *Store) marker(app, key, anchor string) string {
	switch {
	case key == "":
		return anchor // unused
	case redisclient.Sharded(s.client):
		return redisclient.KeyIn(redisclient.PartitionOfKey(anchor), s.opts.Prefix, app, "j", key)
	default:
		return s.key(app, "i", key)
	}
}

// repeated reads a store script's answer: whether its key was used before,
// and by which message. A use on a Redis Cluster, by a push other than the
// first try this one repeats (dup: the claim found the key), is a repeat
// that raced this one: errRaced.
func (s *Store) repeated(out []rueidis.RedisMessage, mine string, dup bool) (string, bool, error) {
	first, used, err := firstID(out, mine)
	if err == nil && used && redisclient.Sharded(s.client) && !dup {
		err = errRaced
	}
	return first, used, err
}

// errRaced fails a push whose key a repeat of it used while it ran (on a
// Redis Cluster): the repeat stores the message; this push answers 503.
var errRaced = errors.New("a repeat of this push, with the same key, ran at the same time")

// reportCall is the script call that makes m's report (to devices; bseq a
// broadcast's, or ""), alone in its partition.
func (s *Store) reportCall(m store.Message, devices []string, bseq string) rueidis.LuaExec {
	rk := s.key(m.App, "r", m.ID)
	return rueidis.LuaExec{Keys: []string{rk, rk, s.key(m.App, "o", m.ID)},
		Args: slices.Concat(s.idempotency(m, ""), []string{"0", "1", ""}, s.reportArgs(m, devices, bseq), []string{s.unused})}
}

// AppendBroadcast implements store.Store: one script in the app's
// partition; on a Redis Cluster, the key's claim before it and the report
// after it when they are in other partitions.
func (s *Store) AppendBroadcast(ctx context.Context, m store.Message, key string) (store.Appended, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	m, dup, err := s.claimIfSharded(ctx, m, key)
	if err == nil && !dup {
		err = s.scheduleThen(ctx, m)
	}
	if err != nil {
		return store.Appended{}, fmt.Errorf("store broadcast: %w", err)
	}
	head, log, collapse := s.logKeys(m.App)
	rk := s.key(m.App, "r", m.ID)
	inline := s.together(head, rk)
	keys := []string{s.marker(m.App, key, head), head, log, collapse, head, head}
	args := append(s.idempotency(m, key), s.ttl(m), m.Collapse, "")
	if inline {
		keys[4], keys[5] = rk, s.key(m.App, "o", m.ID)
		args = append(args, s.reportArgs(m, nil, "")...)
	} else {
		args = append(args, noReport...)
	}
	written, err := s.write(ctx, broadcastScript, rueidis.LuaExec{Keys: keys, Args: args})
	if err != nil {
		return store.Appended{}, fmt.Errorf("store broadcast: %w", err)
	}
	out, err := written[0].ToArray()
	if err != nil {
		return store.Appended{}, fmt.Errorf("store broadcast: %w", err)
	}
	first, used, err := s.repeated(out, m.ID, dup)
	if err != nil {
		return store.Appended{}, fmt.Errorf("store broadcast: %w", err)
	}
	if used && !dup { // on one server: the first try had it all
		return store.Appended{ID: first, Dup: true}, nil
	}
	at := 1
	if used {
		at = 2 // its bseq, 0 if gone from the log
	}
	bseq, err := out[min(at, len(out)-1)].AsInt64()
	if err != nil {
		return store.Appended{}, fmt.Errorf("store broadcast: %w", err)
	}
	if !inline && bseq > 0 { // the report, in its own partition (a first try may have made it)
		written, err := s.write(ctx, appendScript, s.reportCall(m, nil, strconv.FormatInt(bseq, 10)))
		if err == nil {
			err = written[0].Error()
		}
		if err != nil {
			return store.Appended{}, fmt.Errorf("store broadcast: %w", err)
		}
	}
	return store.Appended{ID: m.ID, Dup: dup, Seqs: []uint64{uint64(bseq)}}, nil
}

// CatchUp implements store.Store: the device's cursor and the log's head
// in one round trip; when the log has more, its entries, then one script
// in the device's partition.
func (s *Store) CatchUp(ctx context.Context, app, device string) (int, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	cursor, head, err := s.cursorHead(ctx, app, device)
	if err != nil || cursor >= head {
		return 0, wrap("store catch up", err)
	}
	_, log, _ := s.logKeys(app)
	entries, err := s.client.Do(ctx, s.client.B().Zrangebyscore().Key(log).
		Min("("+strconv.FormatUint(cursor, 10)).Max(strconv.FormatUint(head, 10)).Build()).AsStrSlice()
	if err != nil {
		return 0, fmt.Errorf("store catch up: %w", err)
	}
	args := append([]string{strconv.FormatInt(s.now(), 10), strconv.Itoa(s.opts.MailboxLimit), strconv.FormatUint(head, 10), s.unused},
		entries...)
	out, err := catchUpScript.Exec(ctx, s.client, []string{s.key(app, redisclient.KindCursor, device), s.key(app, redisclient.KindSeq, device), s.key(app, redisclient.KindMailbox, device)},
		args).AsIntSlice()
	if err := answered(err, len(out), 2); err != nil {
		return 0, fmt.Errorf("store catch up: %w", err)
	}
	if out[1] > 0 {
		s.opts.Metrics.MailboxDropped.WithLabelValues(app).Add(float64(out[1]))
	}
	return int(out[0]), nil
}

// cursorHead reads device's cursor in app's broadcast log and the log's
// head (0 for none), in one round trip.
func (s *Store) cursorHead(ctx context.Context, app, device string) (cursor, head uint64, err error) {
	headKey, _, _ := s.logKeys(app)
	res := s.client.DoMulti(ctx, s.client.B().Get().Key(s.key(app, redisclient.KindCursor, device)).Build(), s.client.B().Get().Key(headKey).Build())
	var v [2]uint64
	for i, r := range res {
		if n, err := r.AsUint64(); err == nil {
			v[i] = n
		} else if !rueidis.IsRedisNil(err) {
			return 0, 0, err
		}
	}
	return v[0], v[1], nil
}

// Since implements store.Store.
func (s *Store) Since(ctx context.Context, app, device string, after uint64, limit int) ([]store.Stored, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	out, err := s.scan(ctx, s.key(app, redisclient.KindMailbox, device), app, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store since: %w", err)
	}
	return out, nil
}

// Broadcasts implements store.Store: the cursor and the log's head in one
// round trip, then the log when it has entries after them.
func (s *Store) Broadcasts(ctx context.Context, app, device string, after uint64, limit int) ([]store.Stored, uint64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	cursor, head, err := s.cursorHead(ctx, app, device)
	if err != nil {
		return nil, 0, fmt.Errorf("store broadcasts: %w", err)
	}
	if max(after, cursor) >= head { // nothing after them: no read of the log
		return nil, head, nil
	}
	_, log, _ := s.logKeys(app)
	out, err := s.scan(ctx, log, app, max(after, cursor), limit)
	if err != nil {
		return nil, 0, fmt.Errorf("store broadcasts: %w", err)
	}
	return out, head, nil
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
		if out, after, err = Unexpired(out, app, members, now); err != nil {
			return nil, err
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
	v, err := s.client.Do(ctx, s.client.B().Get().Key(s.key(app, redisclient.KindSeq, device)).Build()).AsUint64()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store last seq: %w", err)
	}
	return v, nil
}

// UserDevices implements store.Store: it waits until the bindings queued
// before it are written (only when some are: not behind a batch of acks),
// then reads the users' sets in one round trip.
func (s *Store) UserDevices(ctx context.Context, app string, users []string) ([]string, error) {
	if s.bindings.Load() > 0 { // the bindings made before this call are read
		done := make(chan struct{})
		if !s.queue(write{done: done}) {
			return nil, store.ErrClosed
		}
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	keys := make([]string, len(users))
	for i, u := range users {
		keys[i] = s.key(app, "u", u)
	}
	set, err := s.union(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("store user devices: %w", err)
	}
	return slices.Sorted(maps.Keys(set)), nil
}

// members reads the sets at keys in one round trip (each on its primary).
func (s *Store) members(ctx context.Context, keys []string) ([][]string, error) {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = s.client.B().Smembers().Key(k).Build()
	}
	out := make([][]string, len(keys))
	for i, r := range s.client.DoMulti(ctx, cmds...) {
		var err error
		if out[i], err = r.AsStrSlice(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// union is the union of the sets at keys.
func (s *Store) union(ctx context.Context, keys []string) (map[string]bool, error) {
	sets, err := s.members(ctx, keys)
	if err != nil {
		return nil, err
	}
	union := make(map[string]bool)
	for _, set := range sets {
		for _, m := range set {
			union[m] = true
		}
	}
	return union, nil
}
