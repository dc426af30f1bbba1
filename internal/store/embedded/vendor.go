package embedded

import (
	"context"

	"github.com/cockroachdb/pebble"

	"github.com/longlink/longlink/internal/store"
)

// SetVendorToken keeps token as device's token of vendor in app (empty:
// removes it), once durable.
func (s *Store) SetVendorToken(ctx context.Context, app, device, vendor, token string) error {
	return s.do(ctx, &op{kind: opVendorToken, msg: store.Message{App: app}, device: device, vendor: vendorToken{vendor, token, false}})
}

// DropVendorToken removes device's token of vendor in app if it is still
// token, once durable.
func (s *Store) DropVendorToken(ctx context.Context, app, device, vendor, token string) error {
	return s.do(ctx, &op{kind: opVendorToken, msg: store.Message{App: app}, device: device, vendor: vendorToken{vendor, token, true}})
}

// VendorTokens returns device's tokens in app, by vendor. A SetVendorToken
// returns once its batch is visible, so a read of the database sees it.
func (s *Store) VendorTokens(_ context.Context, app string, devices []string) ([]map[string]string, error) {
	out := make([]map[string]string, len(devices))
	for i, d := range devices {
		p := append(key(prefixVendor, app, d), 0)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return nil, err
		}
		out[i] = make(map[string]string)
		for it.First(); it.Valid(); it.Next() {
			out[i][string(it.Key()[len(p):])] = string(it.Value())
		}
		if err := it.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// vendorToken is what an opVendorToken writes: vendor's token of a device
// (empty: none), or with drop the removal of token if it is the device's.
type vendorToken struct {
	vendor, token string
	drop          bool
}

func (s *Store) applyVendorToken(b *pebble.Batch, o *op) error {
	k, token := key(prefixVendor, o.msg.App, o.device, o.vendor.vendor), o.vendor.token
	if o.vendor.drop {
		v, ok, err := get(b, k)
		if err != nil || !ok || string(v) != token {
			return err
		}
		token = ""
	}
	o.durable = true
	if token == "" {
		return b.Delete(k, nil)
	}
	return b.Set(k, []byte(token), nil)
}
