package redis

import (
	"context"
	"fmt"
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

// TagDevices implements store.Store: each of Any's, All's and Not's sets
// is one round trip (SUNION, SINTER).
func (s *Store) TagDevices(ctx context.Context, app string, q store.TagQuery) ([]string, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	devices, err := q.Select(func(tags []string, all bool) (map[string]bool, error) {
		keys := make([]string, len(tags))
		for i, t := range tags {
			keys[i] = s.key(app, "t", t)
		}
		var cmd rueidis.Completed
		if all {
			cmd = s.client.B().Sinter().Key(keys...).Build()
		} else {
			cmd = s.client.B().Sunion().Key(keys...).Build()
		}
		members, err := s.client.Do(ctx, cmd).AsStrSlice()
		if err != nil {
			return nil, err
		}
		set := make(map[string]bool, len(members))
		for _, m := range members {
			set[m] = true
		}
		return set, nil
	})
	if err != nil {
		return nil, fmt.Errorf("store tag devices: %w", err)
	}
	return devices, nil
}
