package redis

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/store"
)

// Delivery reports: a hash per message (<p>{t}<app>:r:<id>: state,
// target, the counts, created and expires in unix ms, bseq; absent ones
// are 0 or "sent"), made with a stored message by its append script and
// counted in by the writer as acks come; its copies name each device whose
// mailbox has it (for Recall and Waiting, which find the copy there by its
// id): a few in the hash's field copies, more in <p>{t}<app>:o:<id>. Both
// expire store.ReportKept after the message.

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

// copiesLua defines copies(mailbox, id): the entries of message id in a
// mailbox.
const copiesLua = entryLua + `
local function copies(mailbox, id)
  local found = {}
  for _, e in ipairs(redis.call('ZRANGE', mailbox, 0, -1)) do
    if entryID(e) == id then
      found[#found + 1] = e
    end
  end
  return found
end
`

// findScript finds message ARGV[1]'s copies in the mailboxes KEYS, and
// returns, per mailbox, its entry ("" for none).
var findScript = redisclient.NewScript(shebang + copiesLua + `
local out = {}
for i = 1, #KEYS do
  out[i] = copies(KEYS[i], ARGV[1])[1] or ''
end
return out
`)

// recallScript removes message ARGV[1]'s copies from the mailboxes KEYS,
// and returns how many it removed.
var recallScript = redisclient.NewScript(shebang + copiesLua + `
local n = 0
for i = 1, #KEYS do
  for _, e in ipairs(copies(KEYS[i], ARGV[1])) do
    n = n + redis.call('ZREM', KEYS[i], e)
  end
end
return n
`)

// recalledScript marks a report (KEYS[1]) recalled, with ARGV[1] more
// copies recalled. It returns -1 when the report is gone.
var recalledScript = redisclient.NewScript(shebang + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
redis.call('HSET', KEYS[1], 'state', 'recalled')
redis.call('HINCRBY', KEYS[1], 'recalled', ARGV[1])
return 0
`)

// Sent implements store.Store: the writer sends it.
func (s *Store) Sent(app, id string, online int) {
	s.queue(write{kind: sent, app: app, id: id, keys: []string{s.key(app, "r", id)}, itemArgs: []string{strconv.Itoa(online)}})
}

// writeSent records what stored pushes were handed to.
func writeSent(s *Store, ctx context.Context, run []write) error {
	_, err := sentScript.run(s, ctx, run)
	return err
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
		Targeted: num("targeted"), Online: num("online"), Stored: num("stored"), Acked: num("acked"), Recalled: num("recalled"),
		Escalated: num("escalated"), VendorAccepted: num("vendor_accepted"), VendorFailed: num("vendor_failed")}
	return r, h["copies"], cmp.Or(h["bseq"], "0"), true, nil
}

// escalatedScript records escalated copies' outcomes in the hash KEYS[2]
// (field "<vendor>:<device>", value the store.VendorOutcome) and counts
// them in the report KEYS[1], if it is there; the hash expires with it.
// ARGV holds field, outcome pairs.
var escalatedScript = redisclient.NewScript(shebang + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local counts = {['escalated'] = 0, ['vendor_accepted'] = 0, ['vendor_failed'] = 0}
local names = {['` + outcomeLua(store.VendorAccepted) + `'] = 'vendor_accepted', ['` + outcomeLua(store.VendorFailed) + `'] = 'vendor_failed'}
for i = 1, #ARGV, 2 do
  local was = redis.call('HGET', KEYS[2], ARGV[i])
  if not was then
    counts.escalated = counts.escalated + 1
  elseif names[was] then
    counts[names[was]] = counts[names[was]] - 1
  end
  if names[ARGV[i + 1]] then
    counts[names[ARGV[i + 1]]] = counts[names[ARGV[i + 1]]] + 1
  end
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
for field, n in pairs(counts) do
  if n ~= 0 then
    redis.call('HINCRBY', KEYS[1], field, n)
  end
end
local at = redis.call('PEXPIRETIME', KEYS[1])
if at > 0 then
  redis.call('PEXPIREAT', KEYS[2], at)
end
return 0
`)

// outcomeLua is how an outcome is kept in Redis.
func outcomeLua(o store.VendorOutcome) string { return strconv.Itoa(int(o)) }

// Escalated implements store.Store.
func (s *Store) Escalated(ctx context.Context, app, id string, outcomes []store.Escalation) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	args := make([]string, 0, 2*len(outcomes))
	for _, e := range outcomes {
		args = append(args, e.Vendor+":"+e.Device, outcomeLua(e.Outcome))
	}
	err := escalatedScript.Exec(ctx, s.client, []string{s.key(app, "r", id), s.key(app, "e", id)}, args).Error()
	return wrap("store escalated", err)
}

// Escalations implements store.Store.
func (s *Store) Escalations(ctx context.Context, app, id string) ([]store.Escalation, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	h, err := s.client.Do(ctx, s.client.B().Hgetall().Key(s.key(app, "e", id)).Build()).AsStrMap()
	if err != nil {
		return nil, wrap("store escalations", err)
	}
	out := make([]store.Escalation, 0, len(h))
	for field, v := range h {
		vendor, device, _ := strings.Cut(field, ":")
		o, _ := strconv.Atoi(v)
		out = append(out, store.Escalation{Device: device, Vendor: vendor, Outcome: store.VendorOutcome(o)})
	}
	return out, nil
}

// Recall implements store.Store: one script per partition of the copies,
// pipelined, then the report marked.
func (s *Store) Recall(ctx context.Context, app, id string) (store.Report, int, bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	r, cs, ok, err := s.copies(ctx, app, id)
	if err != nil || !ok {
		return store.Report{}, 0, false, wrap("store recall", err)
	}
	r.Audience = cs.devices
	n := 0
	calls, _ := s.byPartition(app, cs.devices, id)
	for _, res := range recallScript.ExecMulti(ctx, s.client, calls) {
		removed, err := res.AsInt64()
		if err != nil {
			return store.Report{}, 0, false, fmt.Errorf("store recall: %w", err)
		}
		n += int(removed)
	}
	if cs.bseq != "0" {
		_, log, _ := s.logKeys(app)
		removed, err := s.client.Do(ctx, s.client.B().Zremrangebyscore().Key(log).Min(cs.bseq).Max(cs.bseq).Build()).AsInt64()
		if err != nil {
			return store.Report{}, 0, false, fmt.Errorf("store recall: %w", err)
		}
		n += int(removed)
	}
	gone, err := recalledScript.Exec(ctx, s.client, []string{s.key(app, "r", id)}, []string{strconv.Itoa(n)}).AsInt64()
	if err != nil || gone < 0 {
		return store.Report{}, 0, false, wrap("store recall", err)
	}
	r.State, r.Recalled = "recalled", r.Recalled+n
	return r, n, true, nil
}

// byPartition are the calls of a script over the mailboxes of devices in
// app, one per partition, each with the message id as its argument, and
// the devices of each call (their indexes).
func (s *Store) byPartition(app string, devices []string, id string) ([]rueidis.LuaExec, [][]int) {
	if len(devices) == 0 {
		return nil, nil
	}
	groups := s.group(len(devices), func(i int) string { return s.key(app, redisclient.KindMailbox, devices[i]) })
	calls := make([]rueidis.LuaExec, len(groups))
	for g, idx := range groups {
		keys := make([]string, len(idx))
		for j, i := range idx {
			keys[j] = s.key(app, redisclient.KindMailbox, devices[i])
		}
		calls[g] = rueidis.LuaExec{Keys: keys, Args: []string{id}}
	}
	return calls, groups
}

// copies are where a message's copies are: the devices whose mailboxes
// have it, and the app's broadcast log at bseq ("0": none).
type copies struct {
	devices []string
	bseq    string
}

// copies reads the report of message id of app, and where its copies are.
func (s *Store) copies(ctx context.Context, app, id string) (store.Report, copies, bool, error) {
	r, list, bseq, ok, err := s.report(ctx, app, id)
	if err != nil || !ok {
		return store.Report{}, copies{}, false, err
	}
	if list == "" && r.Stored > 0 {
		list, err = s.client.Do(ctx, s.client.B().Get().Key(s.key(app, "o", id)).Build()).ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return store.Report{}, copies{}, false, err
		}
	}
	cs := copies{bseq: bseq}
	if list != "" {
		cs.devices = strings.Split(list, "\n")
	}
	return r, cs, true, nil
}

// Waiting implements store.Store: one script per partition of the copies,
// pipelined, finds them in their mailboxes.
func (s *Store) Waiting(ctx context.Context, app, id string) (store.Waiting, bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	r, cs, ok, err := s.copies(ctx, app, id)
	if err != nil || !ok || !r.Kept(s.opts.Now()) {
		return store.Waiting{}, false, wrap("store waiting", err)
	}
	w := store.Waiting{Report: r}
	if r.Settled() { // the common case of an escalation: no copy to look for
		return w, true, nil
	}
	now := s.opts.Now()
	// waiting calls add with each of members (i its index) that is message
	// id, unexpired; "" is none.
	waiting := func(members []string, add func(i int, m store.Stored)) error {
		for i, member := range members {
			if member == "" {
				continue
			}
			m, err := parseMember(app, []byte(member))
			if err != nil {
				return fmt.Errorf("store waiting: %w", err)
			}
			if m.Expires.After(now) && m.ID == id {
				add(i, m)
			}
		}
		return nil
	}
	calls, groups := s.byPartition(app, cs.devices, id)
	for c, res := range findScript.ExecMulti(ctx, s.client, calls) {
		members, err := res.AsStrSlice()
		if err := answered(err, len(members), len(groups[c])); err != nil {
			return store.Waiting{}, false, fmt.Errorf("store waiting: %w", err)
		}
		if err := waiting(members, func(j int, m store.Stored) { w.Add(cs.devices[groups[c][j]], m.Seq, m.Data) }); err != nil {
			return store.Waiting{}, false, err
		}
	}
	if cs.bseq != "0" {
		_, log, _ := s.logKeys(app)
		members, err := s.client.Do(ctx, s.client.B().Zrangebyscore().Key(log).Min(cs.bseq).Max(cs.bseq).Build()).AsStrSlice()
		if err != nil {
			return store.Waiting{}, false, fmt.Errorf("store waiting: %w", err)
		}
		if err := waiting(members, func(_ int, m store.Stored) { w.BSeq, w.Data = m.Seq, m.Data }); err != nil {
			return store.Waiting{}, false, err
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
