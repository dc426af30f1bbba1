package embedded

import (
	"context"
	"maps"

	"github.com/cockroachdb/pebble"

	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/protocol"
)

// Tag adds and removes tags of devices in app, once durable, all or
// nothing.
func (s *Store) Tag(ctx context.Context, app string, devices, add, remove []string) error {
	return s.do(ctx, &op{kind: opTag, msg: store.Message{App: app}, devices: devices, add: add, remove: remove})
}

// TagDevices returns the devices of app that q selects. It is served by
// the committer, after every Tag queued before it.
func (s *Store) TagDevices(ctx context.Context, app string, q store.TagQuery) ([]string, error) {
	o := &op{kind: opTagDevices, msg: store.Message{App: app}, query: q}
	err := s.do(ctx, o)
	return o.devices, err
}

// applyTag changes each device's tags, both ways: tag -> devices for
// queries, device -> tags for its count. A device over protocol.MaxTags fails
// the op, and the committer leaves it out of the batch: nothing changes.
// Only a change waits for an fsync: a login whose token's tags the device
// has already (most logins) writes nothing.
func (s *Store) applyTag(b *pebble.Batch, o *op) error {
	app := o.msg.App
	for _, d := range o.devices {
		have, err := scanNames(b, append(key(prefixTagsOf, app, d), 0))
		if err != nil {
			return err
		}
		for _, t := range o.remove {
			if have[t] {
				delete(have, t)
				o.durable = true
				b.Delete(key(prefixTagsOf, app, d, t), nil)
				b.Delete(key(prefixTag, app, t, d), nil)
			}
		}
		for _, t := range o.add {
			if !have[t] {
				have[t] = true
				o.durable = true
				b.Set(key(prefixTagsOf, app, d, t), nil, nil)
				b.Set(key(prefixTag, app, t, d), nil, nil)
			}
		}
		if len(have) > protocol.MaxTags {
			return store.ErrTooManyTags
		}
	}
	return nil
}

// applyTagDevices answers a tag query from the tag -> devices index, one
// scan per tag.
func (s *Store) applyTagDevices(b *pebble.Batch, o *op) error {
	var err error
	o.devices, err = o.query.Select(func(tags []string, all bool) (map[string]bool, error) {
		var set map[string]bool
		for _, t := range tags {
			ds, err := scanNames(b, append(key(prefixTag, o.msg.App, t), 0))
			switch {
			case err != nil:
				return nil, err
			case set == nil:
				set = ds
			case all:
				maps.DeleteFunc(set, func(d string, _ bool) bool { return !ds[d] })
			default:
				maps.Copy(set, ds)
			}
		}
		return set, nil
	})
	return err
}

// scanNames returns the last parts of the keys under prefix p (a set kept
// as keys: a tag's devices, a device's tags).
func scanNames(b *pebble.Batch, p []byte) (map[string]bool, error) {
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	names := make(map[string]bool)
	for it.First(); it.Valid(); it.Next() {
		names[string(it.Key()[len(p):])] = true
	}
	return names, it.Close()
}
