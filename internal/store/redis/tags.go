package redis

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/protocol"
)

// tagScript adds and removes tags of devices (one partition's; every
// device, on one server), all or nothing: it checks every device's count
// before it writes. With the tags' sets in KEYS it writes them too (one
// server); else the caller does (a Redis Cluster).
//
//	KEYS[1..n]   the devices' tags (sets), n = #KEYS - ARGV[4]
//	KEYS[n+1..]  the tags' device sets (ARGV[4] of them: the tags to add,
//	             then those to remove), or none
//	ARGV[1]      the most tags a device may have
//	ARGV[2]      how many tags to add, ARGV[3] how many to remove
//	ARGV[4]      how many keys are the tags' sets
//	ARGV[5...]   the tags to add, the tags to remove, the devices (one per
//	             device key)
//
// It returns 0, or i for the first device i that would have too many. With
// ARGV[5] "check" it only checks.
var tagScript = redisclient.NewScript(shebang + `
local most, nadd, nrem, nsets = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n = #KEYS - nsets
local add, rem = {}, {}
for j = 1, nadd do add[j] = ARGV[5 + j] end
for j = 1, nrem do rem[j] = ARGV[5 + nadd + j] end
for i = 1, n do
  local c = redis.call('SCARD', KEYS[i])
  for _, t in ipairs(rem) do c = c - redis.call('SISMEMBER', KEYS[i], t) end
  for _, t in ipairs(add) do c = c + 1 - redis.call('SISMEMBER', KEYS[i], t) end
  if c > most then
    return i
  end
end
if ARGV[5] == 'check' then
  return 0
end
for i = 1, n do
  local device = ARGV[5 + nadd + nrem + i]
  for j, t in ipairs(rem) do
    redis.call('SREM', KEYS[i], t)
    if nsets > 0 then redis.call('SREM', KEYS[n + nadd + j], device) end
  end
  for j, t in ipairs(add) do
    redis.call('SADD', KEYS[i], t)
    if nsets > 0 then redis.call('SADD', KEYS[n + j], device) end
  end
end
return 0
`)

// Tag implements store.Store: one script per partition of the devices,
// pipelined, then the tags' sets. On a Redis Cluster every partition is
// checked first, then written: all or nothing, unless a concurrent Tag of
// the same devices fills one of them in between (then the partitions
// written before stay written).
func (s *Store) Tag(ctx context.Context, app string, devices, add, remove []string) error {
	if len(devices) == 0 {
		return nil
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	sharded := redisclient.Sharded(s.client)
	groups := s.group(len(devices), func(i int) string { return s.key(app, "g", devices[i]) })
	var sets []string
	if !sharded {
		for _, t := range append(slices.Clip(add), remove...) {
			sets = append(sets, s.key(app, "t", t))
		}
	}
	calls := func(mode string) []rueidis.LuaExec {
		calls := make([]rueidis.LuaExec, len(groups))
		for g, idx := range groups {
			keys := make([]string, 0, len(idx)+len(sets))
			args := append([]string{strconv.Itoa(protocol.MaxTags), strconv.Itoa(len(add)), strconv.Itoa(len(remove)),
				strconv.Itoa(len(sets)), mode}, add...)
			args = append(args, remove...)
			for _, i := range idx {
				keys, args = append(keys, s.key(app, "g", devices[i])), append(args, devices[i])
			}
			calls[g] = rueidis.LuaExec{Keys: append(keys, sets...), Args: args}
		}
		return calls
	}
	modes := []string{"write"}
	if sharded && len(groups) > 1 {
		modes = []string{"check", "write"}
	}
	for _, mode := range modes {
		for _, res := range tagScript.ExecMulti(ctx, s.client, calls(mode)) {
			over, err := res.AsInt64()
			if err != nil {
				return fmt.Errorf("store tag: %w", err)
			}
			if over > 0 {
				return store.ErrTooManyTags
			}
		}
	}
	if !sharded {
		return nil
	}
	var cmds rueidis.Commands
	for _, t := range add {
		cmds = append(cmds, s.client.B().Sadd().Key(s.key(app, "t", t)).Member(devices...).Build())
	}
	for _, t := range remove {
		cmds = append(cmds, s.client.B().Srem().Key(s.key(app, "t", t)).Member(devices...).Build())
	}
	for _, res := range s.client.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			return fmt.Errorf("store tag: %w", err)
		}
	}
	return nil
}

// TagDevices implements store.Store: each of Any's, All's and Not's sets
// is one round trip (the tags' sets read together, each on its primary).
func (s *Store) TagDevices(ctx context.Context, app string, q store.TagQuery) ([]string, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	devices, err := q.Select(func(tags []string, all bool) (map[string]bool, error) {
		keys := make([]string, len(tags))
		for i, t := range tags {
			keys[i] = s.key(app, "t", t)
		}
		if !all {
			return s.union(ctx, keys)
		}
		sets, err := s.members(ctx, keys)
		if err != nil {
			return nil, err
		}
		in := make(map[string]bool)
		for _, d := range sets[0] {
			in[d] = true
		}
		for _, set := range sets[1:] {
			has := make(map[string]bool, len(set))
			for _, d := range set {
				has[d] = true
			}
			maps.DeleteFunc(in, func(d string, _ bool) bool { return !has[d] })
		}
		return in, nil
	})
	if err != nil {
		return nil, fmt.Errorf("store tag devices: %w", err)
	}
	return devices, nil
}
