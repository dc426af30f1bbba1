package redis

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/redisclient"
)

// A device's OS push tokens are one hash in its partition,
// <app>:vt:<device>, vendor -> token. Apps register a device's token when
// the OS gives them one (at each start, and when it changes), so with
// cluster.device_expiry the hash lives that long after the last
// registration, as the seq counter does after the last login.

// vendorScript sets, removes or drops a token of the hash KEYS[1].
//
//	ARGV[1]  the vendor
//	ARGV[2]  the token: set it ("" removes the vendor's)
//	ARGV[3]  "drop": remove the vendor's only if it is ARGV[2]
//	ARGV[4]  device_expiry in ms (0: none)
var vendorScript = redisclient.NewScript(shebang + longerLua + `
if ARGV[3] == 'drop' then
  if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    redis.call('HDEL', KEYS[1], ARGV[1])
  end
elseif ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  if tonumber(ARGV[4]) > 0 then
    longer(KEYS[1], tonumber(ARGV[4]), true)
  end
end
return 0
`)

// SetVendorToken implements store.Store.
func (s *Store) SetVendorToken(ctx context.Context, app, device, vendor, token string) error {
	return s.vendorToken(ctx, app, device, vendor, token, "set")
}

// DropVendorToken implements store.Store.
func (s *Store) DropVendorToken(ctx context.Context, app, device, vendor, token string) error {
	return s.vendorToken(ctx, app, device, vendor, token, "drop")
}

func (s *Store) vendorToken(ctx context.Context, app, device, vendor, token, mode string) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	err := vendorScript.Exec(ctx, s.client, []string{s.key(app, "vt", device)}, []string{vendor, token, mode, s.unused}).Error()
	return wrap("store vendor token", err)
}

// VendorTokens implements store.Store.
func (s *Store) VendorTokens(ctx context.Context, app string, devices []string) ([]map[string]string, error) {
	if len(devices) == 0 {
		return nil, nil
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	cmds := make(rueidis.Commands, len(devices))
	for i, d := range devices {
		cmds[i] = s.client.B().Hgetall().Key(s.key(app, "vt", d)).Build()
	}
	out := make([]map[string]string, len(devices))
	for i, res := range s.client.DoMulti(ctx, cmds...) { // pipelined
		tokens, err := res.AsStrMap()
		if err != nil {
			return nil, fmt.Errorf("store vendor tokens: %w", err)
		}
		out[i] = tokens
	}
	return out, nil
}
