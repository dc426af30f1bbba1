package redis

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/protocol"
)

// tagScript adds and removes tags of devices, both ways (the tag's set of
// devices, the device's set of tags), all or nothing: it checks every
// device's count before it writes.
//
//	KEYS[i]     device i's tags (set)
//	ARGV[1]     the prefix of the tags' device sets; ARGV[2] the most tags
//	            a device may have; ARGV[3] how many tags to add, ARGV[4]
//	            how many to remove; then the tags to add, the tags to
//	            remove, and the devices (one per key)
//
// It returns 0, or i for the first device i that would have too many.
var tagScript = rueidis.NewLuaScript(`
local prefix, most, nadd, nrem = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local add, rem, first = {}, {}, 5 + nadd + nrem
for j = 5, 4 + nadd do add[#add + 1] = ARGV[j] end
for j = 5 + nadd, 4 + nadd + nrem do rem[#rem + 1] = ARGV[j] end
for i = 1, #KEYS do
  local n = redis.call('SCARD', KEYS[i])
  for _, t in ipairs(rem) do n = n - redis.call('SISMEMBER', KEYS[i], t) end
  for _, t in ipairs(add) do n = n + 1 - redis.call('SISMEMBER', KEYS[i], t) end
  if n > most then
    return i
  end
end
for i = 1, #KEYS do
  local device = ARGV[first + i - 1]
  for _, t in ipairs(rem) do
    redis.call('SREM', KEYS[i], t)
    redis.call('SREM', prefix .. t, device)
  end
  for _, t in ipairs(add) do
    redis.call('SADD', KEYS[i], t)
    redis.call('SADD', prefix .. t, device)
  end
end
return 0
`)

// Tag implements store.Store.
func (s *Store) Tag(ctx context.Context, app string, devices, add, remove []string) error {
	keys := make([]string, len(devices))
	for i, d := range devices {
		keys[i] = s.key(app, "g", d)
	}
	args := append([]string{s.key(app, "t", ""), strconv.Itoa(protocol.MaxTags), strconv.Itoa(len(add)), strconv.Itoa(len(remove))}, add...)
	args = append(append(args, remove...), devices...)
	ctx, cancel := s.call(ctx)
	defer cancel()
	over, err := tagScript.Exec(ctx, s.client, keys, args).AsInt64()
	if err != nil {
		return fmt.Errorf("store tag: %w", err)
	}
	if over > 0 {
		return store.ErrTooManyTags
	}
	return nil
}

// TagDevices implements store.Store: the union of Any's sets, intersected
// with All's, less Not's, each one round trip.
func (s *Store) TagDevices(ctx context.Context, app string, q store.TagQuery) ([]string, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	read := func(tags []string, cmd func(keys ...string) rueidis.Completed) (map[string]bool, error) {
		keys := make([]string, len(tags))
		for i, t := range tags {
			keys[i] = s.key(app, "t", t)
		}
		members, err := s.client.Do(ctx, cmd(keys...)).AsStrSlice()
		if err != nil {
			return nil, fmt.Errorf("store tag devices: %w", err)
		}
		set := make(map[string]bool, len(members))
		for _, m := range members {
			set[m] = true
		}
		return set, nil
	}
	union := func(keys ...string) rueidis.Completed { return s.client.B().Sunion().Key(keys...).Build() }
	inter := func(keys ...string) rueidis.Completed { return s.client.B().Sinter().Key(keys...).Build() }
	var sel map[string]bool
	var err error
	if len(q.Any) > 0 {
		if sel, err = read(q.Any, union); err != nil {
			return nil, err
		}
	}
	if len(q.All) > 0 {
		all, err := read(q.All, inter)
		if err != nil {
			return nil, err
		}
		if sel == nil {
			sel = all
		} else {
			maps.DeleteFunc(sel, func(d string, _ bool) bool { return !all[d] })
		}
	}
	if len(q.Not) > 0 {
		not, err := read(q.Not, union)
		if err != nil {
			return nil, err
		}
		maps.DeleteFunc(sel, func(d string, _ bool) bool { return not[d] })
	}
	return slices.Sorted(maps.Keys(sel)), nil
}
