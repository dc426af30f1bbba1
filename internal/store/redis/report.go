package redis

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/store"
)

// Delivery reports: a hash per message (<p><app>:r:<id>: state, target,
// the counts, created and expires in unix ms, bseq; absent ones are 0 or
// "sent"), written with a stored message by its append script and counted
// in by the ack scripts; its copies name each device and seq, for Recall:
// a few in the hash's field copies, more in <p><app>:o:<id>. Both expire
// store.ReportKept after the message.

// reportArgs are the append scripts' report arguments for m: its target
// ("" for none), the report's TTL in ms, and m's expiry (unix ms).
func (s *Store) reportArgs(m store.Message) []string {
	return []string{string(m.Target), s.keep(m.Expires), strconv.FormatInt(m.Expires.UnixMilli(), 10)}
}

// keep is how long, in ms, the report of a message that expires at exp is
// kept (at least 1).
func (s *Store) keep(exp time.Time) string {
	return strconv.FormatInt(max(exp.Add(store.ReportKept).Sub(s.opts.Now()).Milliseconds(), 1), 10)
}

// sentScript records the connections stored pushes were handed to (a
// writer script: see scripts.go).
//
//	item keys: the report
//	item args: the connections
var sentScript = newBatchScript(1, 1, `
local out = {}
for i = 1, #KEYS do
  local target = redis.call('HGET', KEYS[i], 'target')
  if target == 'broadcast' then
    redis.call('HSET', KEYS[i], 'online', ARGV[i], 'targeted', ARGV[i])
  elseif target then
    redis.call('HSET', KEYS[i], 'online', ARGV[i])
  end
  out[#out + 1] = 0
end
return out
`)

// recallScript removes a message from the mailboxes and the log where it
// waits, and marks its report recalled. It returns how many copies it
// removed, or -1 when the report is gone.
//
//	KEYS[1] the report; KEYS[2] the app's log; KEYS[3...] the mailboxes
//	ARGV[1] the bseq in the log (0: none); ARGV[2...] the seq in each mailbox
var recallScript = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local n = 0
for i = 3, #KEYS do
  n = n + redis.call('ZREMRANGEBYSCORE', KEYS[i], ARGV[i - 1], ARGV[i - 1])
end
if ARGV[1] ~= '0' then
  n = n + redis.call('ZREMRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[1])
end
redis.call('HSET', KEYS[1], 'state', 'recalled')
redis.call('HINCRBY', KEYS[1], 'recalled', n)
return n
`)

// Sent implements store.Store: the writer sends it.
func (s *Store) Sent(app, id string, online int) {
	s.queue(write{script: sentScript, keys: []string{s.key(app, "r", id)}, args: []string{strconv.Itoa(online)}})
}

// Report implements store.Store.
func (s *Store) Report(ctx context.Context, app, id string) (store.Report, bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	r, _, _, ok, err := s.report(ctx, app, id)
	if err != nil {
		return store.Report{}, false, fmt.Errorf("store report: %w", err)
	}
	return r, ok && r.Kept(s.opts.Now()), nil
}

// report reads the report of message id of app, its copies if it holds
// them, and its bseq.
func (s *Store) report(ctx context.Context, app, id string) (r store.Report, copies, bseq string, ok bool, err error) {
	h, err := s.client.Do(ctx, s.client.B().Hgetall().Key(s.key(app, "r", id)).Build()).AsStrMap()
	if err != nil || len(h) == 0 {
		return store.Report{}, "", "", false, err
	}
	num := func(f string) int { n, _ := strconv.Atoi(h[f]); return n }
	ms := func(f string) time.Time { return time.UnixMilli(int64(num(f))) }
	r = store.Report{ID: id, State: cmp.Or(h["state"], "sent"), Target: store.Target(h["target"]), Created: ms("created"), Expires: ms("expires"),
		Targeted: num("targeted"), Online: num("online"), Stored: num("stored"), Acked: num("acked"), Recalled: num("recalled")}
	return r, h["copies"], cmp.Or(h["bseq"], "0"), true, nil
}

// Recall implements store.Store.
func (s *Store) Recall(ctx context.Context, app, id string) (store.Report, int, bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	r, cs, ok, err := s.copies(ctx, app, id)
	if err != nil || !ok {
		return store.Report{}, 0, false, wrap("store recall", err)
	}
	keys, args := []string{s.key(app, "r", id), s.opts.Prefix + app + ":b"}, []string{cs.bseq}
	for i, device := range cs.devices {
		r.Audience = append(r.Audience, device)
		keys, args = append(keys, s.key(app, "m", device)), append(args, cs.seqs[i])
	}
	n, err := recallScript.Exec(ctx, s.client, keys, args).AsInt64()
	if err != nil || n < 0 {
		return store.Report{}, 0, false, wrap("store recall", err)
	}
	r.State, r.Recalled = "recalled", r.Recalled+int(n)
	return r, int(n), true, nil
}

// copies are where a message's copies are: each device's mailbox at its
// seq, and the app's broadcast log at bseq ("0": none).
type copies struct {
	devices, seqs []string
	bseq          string
}

// copies reads the report of message id of app, and where its copies are.
func (s *Store) copies(ctx context.Context, app, id string) (store.Report, copies, bool, error) {
	r, list, bseq, ok, err := s.report(ctx, app, id)
	if err != nil || !ok {
		return store.Report{}, copies{}, false, err
	}
	if list == "" {
		list, err = s.client.Do(ctx, s.client.B().Get().Key(s.key(app, "o", id)).Build()).ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return store.Report{}, copies{}, false, err
		}
	}
	cs := copies{bseq: bseq}
	for line := range strings.SplitSeq(list, "\n") {
		if seq, device, ok := strings.Cut(line, " "); ok {
			cs.devices, cs.seqs = append(cs.devices, device), append(cs.seqs, seq)
		}
	}
	return r, cs, true, nil
}

// Waiting implements store.Store: one pipelined read of every copy.
func (s *Store) Waiting(ctx context.Context, app, id string) (store.Waiting, bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	r, cs, ok, err := s.copies(ctx, app, id)
	if err != nil || !ok || !r.Kept(s.opts.Now()) {
		return store.Waiting{}, false, wrap("store waiting", err)
	}
	at := func(key, seq string) rueidis.Completed {
		return s.client.B().Zrangebyscore().Key(key).Min(seq).Max(seq).Build()
	}
	cmds := make(rueidis.Commands, 0, len(cs.devices)+1)
	for i, device := range cs.devices {
		cmds = append(cmds, at(s.key(app, "m", device), cs.seqs[i]))
	}
	if cs.bseq != "0" {
		cmds = append(cmds, at(s.opts.Prefix+app+":b", cs.bseq))
	}
	w := store.Waiting{Report: r}
	now := s.opts.Now()
	for i, res := range s.client.DoMulti(ctx, cmds...) {
		members, err := res.AsStrSlice()
		if err != nil {
			return store.Waiting{}, false, fmt.Errorf("store waiting: %w", err)
		}
		for _, member := range members {
			m, err := parseMember(app, []byte(member))
			if err != nil {
				return store.Waiting{}, false, fmt.Errorf("store waiting: %w", err)
			}
			switch {
			case !m.Expires.After(now) || m.ID != id:
			case i < len(cs.devices):
				w.Add(cs.devices[i], m.Seq, m.Data)
			default:
				w.BSeq, w.Data = m.Seq, m.Data
			}
		}
	}
	return w, true, nil
}

// wrap prefixes a non-nil err with what failed.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
