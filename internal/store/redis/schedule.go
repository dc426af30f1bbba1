package redis

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/store"
)

// Scheduled pushes: a hash per app (<p>{due}<app>:q, id -> "<ms>:<request>",
// the time it is due or its claim ends) and one index by time for every
// app (<p>{due}due, a zset of "<app>:<id>"; app ids have no ':'), all in
// one slot of a Redis Cluster (the hash tag {due}): the scheduler claims
// the pushes due of every app in one script.

// scheduleScript keeps a scheduled push.
//
//	KEYS[1] the app's hash; KEYS[2] the index; ARGV[1] the id; ARGV[2] its
//	member in the index; ARGV[3] when it is due (ms); ARGV[4] the request
var scheduleScript = redisclient.NewScript(shebang + `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. ':' .. ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 0
`)

// unscheduleScript removes a scheduled push; it returns 1 if it was there.
//
//	KEYS[1] the app's hash; KEYS[2] the index; ARGV[1] the id; ARGV[2] its
//	member in the index
var unscheduleScript = redisclient.NewScript(shebang + `
redis.call('ZREM', KEYS[2], ARGV[2])
return redis.call('HDEL', KEYS[1], ARGV[1])
`)

// claimScript claims due pushes (found due just before): each one's time
// moves to the end of its claim, unless another claimer took it since. It
// returns member, value, member, value...
//
//	KEYS[1] the index; KEYS[i+1] the hash of ARGV[i+2]'s app
//	ARGV[1] now (ms); ARGV[2] the claim's end (ms); ARGV[3...] the
//	members ("<app>:<id>")
var claimScript = redisclient.NewScript(shebang + `
local out = {}
for i = 2, #KEYS do
  local member = ARGV[i + 1]
  local at = tonumber(redis.call('ZSCORE', KEYS[1], member) or 'inf')
  if at <= tonumber(ARGV[1]) then
    local id = string.sub(member, string.find(member, ':', 1, true) + 1)
    local v = redis.call('HGET', KEYS[i], id)
    if v then
      local rest = string.sub(v, string.find(v, ':', 1, true) + 1)
      redis.call('HSET', KEYS[i], id, ARGV[2] .. ':' .. rest)
      redis.call('ZADD', KEYS[1], ARGV[2], member)
      out[#out + 1] = member
      out[#out + 1] = v
    else
      redis.call('ZREM', KEYS[1], member)
    end
  end
end
return out
`)

// schedules is the key of app's scheduled pushes.
func (s *Store) schedules(app string) string { return s.opts.Prefix + "{due}" + app + ":q" }

// due is the key of the index of every app's scheduled pushes by time.
func (s *Store) due() string { return s.opts.Prefix + "{due}due" }

func (s *Store) scheduleKeys(app string) []string { return []string{s.schedules(app), s.due()} }

// Schedule implements store.Store.
func (s *Store) Schedule(ctx context.Context, p store.Scheduled) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	err := scheduleScript.Exec(ctx, s.client, s.scheduleKeys(p.App),
		[]string{p.ID, p.App + ":" + p.ID, strconv.FormatInt(p.At.UnixMilli(), 10), string(p.Request)}).Error()
	if err != nil {
		return fmt.Errorf("store schedule: %w", err)
	}
	return nil
}

// scheduleThen keeps m.Then, if any, before m is stored (a schedule's keys
// are not in a message's partition).
func (s *Store) scheduleThen(ctx context.Context, m store.Message) error {
	if m.Then == nil {
		return nil
	}
	return s.Schedule(ctx, *m.Then)
}

// Unschedule implements store.Store.
func (s *Store) Unschedule(ctx context.Context, app, id string) (bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	n, err := unscheduleScript.Exec(ctx, s.client, s.scheduleKeys(app), []string{id, app + ":" + id}).AsInt64()
	if err != nil {
		return false, fmt.Errorf("store unschedule: %w", err)
	}
	return n == 1, nil
}

// ClaimDue implements store.Store: the pushes due are found, then
// claimed in one script.
func (s *Store) ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.Scheduled, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	due, err := s.client.Do(ctx, s.client.B().Zrangebyscore().Key(s.due()).Min("-inf").Max(ms).Limit(0, int64(limit)).Build()).AsStrSlice()
	if err != nil || len(due) == 0 {
		return nil, wrap("store claim", err)
	}
	keys, args := []string{s.due()}, []string{ms, strconv.FormatInt(now.Add(lease).UnixMilli(), 10)}
	for _, member := range due {
		app, _, _ := strings.Cut(member, ":")
		keys, args = append(keys, s.schedules(app)), append(args, member)
	}
	out, err := claimScript.Exec(ctx, s.client, keys, args).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("store claim: %w", err)
	}
	var claimed []store.Scheduled
	for i := 0; i+1 < len(out); i += 2 {
		app, id, _ := strings.Cut(out[i], ":")
		p, err := parseSchedule(app, id, out[i+1])
		if err != nil {
			return nil, err
		}
		claimed = append(claimed, p)
	}
	return claimed, nil
}

// FindScheduled implements store.Store.
func (s *Store) FindScheduled(ctx context.Context, app, id string) (store.Scheduled, bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	v, err := s.client.Do(ctx, s.client.B().Hget().Key(s.schedules(app)).Field(id).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return store.Scheduled{}, false, nil
	}
	if err != nil {
		return store.Scheduled{}, false, fmt.Errorf("store scheduled: %w", err)
	}
	p, err := parseSchedule(app, id, v)
	return p, err == nil, err
}

// Scheduled implements store.Store.
func (s *Store) Scheduled(ctx context.Context, app string, limit int) ([]store.Scheduled, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	all, err := s.client.Do(ctx, s.client.B().Hgetall().Key(s.schedules(app)).Build()).AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("store scheduled: %w", err)
	}
	out := make([]store.Scheduled, 0, len(all))
	for id, v := range all {
		p, err := parseSchedule(app, id, v)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b store.Scheduled) int { return a.At.Compare(b.At) })
	return out[:min(len(out), limit)], nil
}

// parseSchedule decodes a hash value "<ms>:<request>".
func parseSchedule(app, id, v string) (store.Scheduled, error) {
	ms, req, ok := strings.Cut(v, ":")
	at, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return store.Scheduled{}, fmt.Errorf("store: bad scheduled push %s/%s", app, id)
	}
	return store.Scheduled{App: app, ID: id, At: time.UnixMilli(at), Request: []byte(req)}, nil
}
