// Package embedded is the store of a single node: an embedded Pebble
// database in data_dir holding per-(app, device) mailboxes of stored
// messages, each app's broadcast log, user bindings and idempotency keys.
//
// One committer goroutine makes every write. It takes all the operations
// waiting for it, applies them to one batch and commits it with one fsync,
// so concurrent pushers share syncs. Being the only writer, it gives each
// (app, device)'s seqs in order; a batch becomes visible only once it is durable, so
// no seq a device has seen can be lost and given again after a crash.
package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"

	"github.com/longlink/longlink/internal/golabel"
	"github.com/longlink/longlink/internal/store"
)

var _ store.Store = (*Store)(nil)

// Store is the embedded durable store. Safe for concurrent use.
type Store struct {
	// Static after Open.
	db   *pebble.DB
	opts store.Options
	ops  chan *op
	stop chan struct{}
	done chan struct{}

	closeOnce sync.Once
	closeErr  error

	meta   metaCache      // owned by the committer
	acks   map[string]int // owned by the committer: acks by report key, this batch
	ackKey []byte         // owned by the committer: countAck's key buffer
	// Owned by the committer: a mailbox message's key and record being
	// written or read (the batch copies what it is given).
	msgKey, msgValue []byte
}

// maxBatchOps bounds how many operations share one commit.
const maxBatchOps = 1024

// Open opens (creating if needed) the store in dir and starts its committer.
func Open(dir string, o store.Options) (*Store, error) {
	o = o.WithDefaults()
	opts := &pebble.Options{Logger: quietLogger{o.Logger}, Cache: pebble.NewCache(64 << 20)}
	defer opts.Cache.Unref()
	// Bloom filters: most Gets of a commit are for keys of devices that
	// have none yet, which filters answer without reading blocks.
	opts.Levels = make([]pebble.LevelOptions, 7)
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	err = migrate(db, o.Logger)
	if err == nil {
		err = releaseClaims(db)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	s := &Store{db: db, opts: o, ops: make(chan *op, maxBatchOps),
		stop: make(chan struct{}), done: make(chan struct{}), acks: make(map[string]int)}
	golabel.Go("store.commit", s.run)
	return s, nil
}

// Close stops the committer after the operations already queued, and closes
// the database. Later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// do queues o and waits until it is committed. Once queued, an operation is
// waited for even if ctx ends, so that an error always means "not done".
func (s *Store) do(ctx context.Context, o *op) error {
	o.done = make(chan struct{})
	select {
	case s.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return store.ErrClosed
	}
	select {
	case <-o.done:
	case <-s.done: // the committer stopped; o may have come after its last drain
		select {
		case <-o.done:
		default:
			return store.ErrClosed
		}
	}
	return o.err
}

// queue queues o without waiting for it.
func (s *Store) queue(o *op) {
	select {
	case s.ops <- o:
	case <-s.stop:
	}
}

// Append stores m in the mailbox of every device (for m.App) and returns
// their seqs (each from its own (app, device) sequence), once durable. With a key, a repeat of the key within the
// idempotency window stores nothing and returns the first message's id;
// with no devices only the key is recorded (online-only messages).
func (s *Store) Append(ctx context.Context, devices []string, m store.Message, key string) (store.Appended, error) {
	o := &op{kind: opAppend, devices: devices, msg: m, key: key}
	err := s.do(ctx, o)
	return o.res, err
}

// AppendBroadcast writes m once to its app's broadcast log, once durable,
// and returns its bseq.
func (s *Store) AppendBroadcast(ctx context.Context, m store.Message, key string) (store.Appended, error) {
	o := &op{kind: opBroadcast, msg: m, key: key}
	err := s.do(ctx, o)
	return o.res, err
}

// CatchUp copies into device's mailbox every unexpired entry of app's
// broadcast log it has not had yet, and returns how many.
func (s *Store) CatchUp(ctx context.Context, app, device string) (int, error) {
	o := &op{kind: opCatchUp, msg: store.Message{App: app}, device: device}
	err := s.do(ctx, o)
	return o.n, err
}

// Broadcasts returns up to limit unexpired entries of app's broadcast log
// after both after and device's cursor, in bseq order, and the log's last
// bseq.
func (s *Store) Broadcasts(_ context.Context, app, device string, after uint64, limit int) ([]store.Stored, uint64, error) {
	cursor, err := getUint(s.db, key(prefixCursor, app, device))
	if err != nil {
		return nil, 0, fmt.Errorf("store broadcasts: %w", err)
	}
	last, err := getUint(s.db, key(prefixHead, app))
	if err != nil {
		return nil, 0, fmt.Errorf("store broadcasts: %w", err)
	}
	out, err := s.scan(logKey(app, max(after, cursor)+1), prefixEnd(logPrefix(app)), app, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("store broadcasts: %w", err)
	}
	return out, last, nil
}

// AckBroadcast moves device's cursor in app's broadcast log to bseq, never
// back. It does not wait.
func (s *Store) AckBroadcast(app, device string, bseq uint64) {
	s.queue(&op{kind: opAckBroadcast, msg: store.Message{App: app}, device: device, seq: bseq})
}

// Ack marks every stored message of device in app with seq <= seq done, and
// deletes them. It does not wait: a lost ack only means a redelivery. A seq
// beyond the last one given to (app, device) is clamped to it and counted
// (longlink_seq_clamped_total): the client's word never moves the sequence.
func (s *Store) Ack(app, device string, seq uint64) {
	s.queue(&op{kind: opAck, msg: store.Message{App: app}, device: device, seq: seq})
}

// LastSeq returns the last seq given to device in app that is durable (0
// if none). Any seq a client was handed is at or below it, and every seq
// given later above it. The committer answers it: n/ holds a reserve of
// seqs, not the last given (see mailbox).
func (s *Store) LastSeq(ctx context.Context, app, device string) (uint64, error) {
	o := &op{kind: opLastSeq, msg: store.Message{App: app}, device: device}
	if err := s.do(ctx, o); err != nil {
		return 0, fmt.Errorf("store last seq: %w", err)
	}
	return o.seq, nil
}

// Bind records that device belongs to user in app (user "" unbinds it).
// It does not wait.
func (s *Store) Bind(app, device, user string) {
	s.queue(&op{kind: opBind, msg: store.Message{App: app}, device: device, user: user})
}

// Since returns up to limit unexpired messages of device in app with seq
// greater than after, in seq order.
func (s *Store) Since(_ context.Context, app, device string, after uint64, limit int) ([]store.Stored, error) {
	out, err := s.scan(messageKey(app, device, after+1), prefixEnd(mailboxPrefix(app, device)), app, limit)
	if err != nil {
		return nil, fmt.Errorf("store since: %w", err)
	}
	return out, nil
}

// scan returns up to limit unexpired records of app between the keys lower
// and upper (a mailbox or a broadcast log), each with the number its key
// ends with as Seq.
func (s *Store) scan(lower, upper []byte, app string, limit int) ([]store.Stored, error) {
	now := s.opts.Now().UnixMilli()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	var out []store.Stored
	for it.First(); it.Valid() && len(out) < limit; it.Next() {
		r, err := decodeRecord(it.Value())
		if err != nil {
			it.Close()
			return nil, err
		}
		if r.expires <= now {
			continue
		}
		out = append(out, store.Stored{Seq: seqOf(it.Key()), Message: store.Message{
			App: app, ID: r.id, Data: r.data, Expires: time.UnixMilli(r.expires)}})
	}
	return out, it.Close()
}

// UserDevices returns the devices bound to any of users in app. It is served
// by the committer, after every Bind queued before it, so a push right after
// a login finds the binding that login made.
func (s *Store) UserDevices(ctx context.Context, app string, users []string) ([]string, error) {
	o := &op{kind: opUsers, msg: store.Message{App: app}, users: users}
	err := s.do(ctx, o)
	return o.devices, err
}

// quietLogger sends Pebble's informational chatter to debug level.
type quietLogger struct{ log *slog.Logger }

func (q quietLogger) Infof(format string, args ...any) { q.log.Debug(fmt.Sprintf(format, args...)) }
func (q quietLogger) Errorf(format string, args ...any) {
	q.log.Error(fmt.Sprintf(format, args...))
}
func (q quietLogger) Fatalf(format string, args ...any) {
	q.log.Error(fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}
