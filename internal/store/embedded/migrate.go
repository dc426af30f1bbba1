package embedded

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/longlink/longlink/internal/store"
)

// formatVersion is the version of the key space that keys.go describes.
const formatVersion = 5

// migrate brings a store written by an older longlink to formatVersion, a
// synced batch per version: each step is either all done or not at all.
func migrate(db *pebble.DB, log *slog.Logger) error {
	version := uint64(1) // a store with no version key is of format 1, or new
	v, closer, err := db.Get([]byte(keyVersion))
	if err == nil {
		version = uvarint(v)
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}
	if version > formatVersion {
		return fmt.Errorf("the data was written by a newer longlink (store format %d; this one reads %d)", version, formatVersion)
	}
	for _, step := range []func(*pebble.DB, *pebble.Batch, *slog.Logger) error{migrate2, migrate3, migrate4, migrate5}[version-1:] {
		b := db.NewBatch()
		err := step(db, b, log)
		if err == nil {
			version++
			b.Set([]byte(keyVersion), binary.AppendUvarint(nil, version), nil)
			err = b.Commit(pebble.Sync)
		}
		b.Close()
		if err != nil {
			return fmt.Errorf("migrate to store format %d: %w", version, err)
		}
	}
	return nil
}

// migrate2 moves a store of format 1 to format 2.
//
// Format 1 keyed a device's seq counter, mailboxes and broadcast cursors by
// device first (d/<device>, m/<device>\0<app>\0<seq>, n/<device>\0<app>,
// c/<device>\0<app>), with one seq sequence shared by the device's apps.
// Format 2 puts the app first and gives each (app, device) its own
// sequence. Stored messages keep their seqs, and each app of a device starts
// its own sequence at the device's old counter, so a client's last_seq
// still means what it meant.
func migrate2(db *pebble.DB, b *pebble.Batch, log *slog.Logger) error {
	moved := 0
	// m/<device>\0<app>\0<seq:8> -> m/<app>\0<device>\0<seq:8>, and the
	// expiry index entries that name them.
	err := eachKey(db, prefixMessage, func(k, v []byte) error {
		device, app, ok := splitPair(k[len(prefixMessage) : len(k)-9])
		if !ok {
			return fmt.Errorf("format 1 message key %q", k)
		}
		b.Delete(k, nil)
		b.Set(messageKey(app, device, seqOf(k)), v, nil)
		moved++
		return nil
	})
	if err != nil {
		return err
	}
	err = eachKey(db, prefixExpiry, func(k, _ []byte) error {
		target := k[len(prefixExpiry)+8:]
		if !bytes.HasPrefix(target, []byte(prefixMessage)) {
			return nil
		}
		device, app, ok := splitPair(target[len(prefixMessage) : len(target)-9])
		if !ok {
			return fmt.Errorf("format 1 expiry key %q", k)
		}
		b.Delete(k, nil)
		nk := append([]byte(prefixExpiry), k[len(prefixExpiry):len(prefixExpiry)+8]...)
		b.Set(append(nk, messageKey(app, device, seqOf(target))...), nil, nil)
		return nil
	})
	if err != nil {
		return err
	}
	// The device's counter goes to each app it has a mailbox in (n/), and
	// the mailbox bookkeeping and broadcast cursors swap their parts.
	counters := make(map[string]uint64)
	err = eachKey(db, prefixDevice, func(k, v []byte) error {
		counters[string(k[len(prefixDevice):])] = uvarint(v)
		b.Delete(k, nil)
		return nil
	})
	if err != nil {
		return err
	}
	for _, prefix := range []string{prefixCount, prefixCursor} {
		err = eachKey(db, prefix, func(k, v []byte) error {
			device, app, ok := splitPair(k[len(prefix):])
			if !ok {
				return fmt.Errorf("format 1 key %q", k)
			}
			b.Delete(k, nil)
			b.Set(key(prefix, app, device), v, nil)
			if prefix == prefixCount {
				b.Set(key(prefixDevice, app, device), binary.AppendUvarint(nil, counters[device]), nil)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if moved > 0 || len(counters) > 0 {
		log.Info("store migrated to per-app keys", "format", 2, "messages", moved, "devices", len(counters))
	}
	return nil
}

// migrate3 moves a store of format 2 to format 3.
//
// In format 2 a report was indexed by the expiry entry of its message's
// first copy (or log entry), whose value was the report key: the sweep
// indexed the report when it deleted the message. In format 3 every
// report has its own expiry entry from the start, so that a message's
// entry can go with the message when it is acked (dropMessage). The old
// entries keep their values, which the sweep ignores: rewriting them would
// make them keys written twice, which a single delete must not meet.
func migrate3(db *pebble.DB, b *pebble.Batch, log *slog.Logger) error {
	n := 0
	err := eachKey(db, prefixExpiry, func(k, rk []byte) error {
		if len(rk) == 0 {
			return nil
		}
		when := time.UnixMilli(int64(binary.BigEndian.Uint64(k[len(prefixExpiry):])))
		b.Set(expiryKey(when.Add(store.ReportKept), rk), nil, nil)
		n++
		return nil
	})
	if err == nil && n > 0 {
		log.Info("store migrated to reports indexed by their own expiry", "format", 3, "reports", n)
	}
	return err
}

// migrate4 moves a store of format 3 to format 4: each device's last seq
// (d/) goes into its mailbox's bookkeeping (n/), so that an append writes
// one key of bookkeeping, not two.
func migrate4(db *pebble.DB, b *pebble.Batch, log *slog.Logger) error {
	n := 0
	err := eachKey(db, prefixDevice, func(k, v []byte) error {
		nk := append([]byte(prefixCount), k[len(prefixDevice):]...)
		old, _, err := get(db, nk)
		if err != nil {
			return err
		}
		mb := decodeMailbox(old)
		mb.last = uvarint(v)
		b.Set(nk, mb.appendTo(nil), nil)
		b.Delete(k, nil)
		n++
		return nil
	})
	if err == nil && n > 0 {
		log.Info("store migrated to one key of bookkeeping per mailbox", "format", 4, "devices", n)
	}
	return err
}

// migrate5 moves a store of format 4 to format 5: the expiry entries of
// mailbox messages, one per message, become one per mailbox, at the
// earliest of them (the index is in time order).
func migrate5(db *pebble.DB, b *pebble.Batch, log *slog.Logger) error {
	mailboxes := make(map[string]bool)
	err := eachKey(db, prefixExpiry, func(k, _ []byte) error {
		target := k[len(prefixExpiry)+8:]
		if !bytes.HasPrefix(target, []byte(prefixMessage)) {
			return nil
		}
		b.Delete(k, nil)
		nk := append([]byte(prefixCount), target[len(prefixMessage):len(target)-9]...)
		if !mailboxes[string(nk)] {
			mailboxes[string(nk)] = true
			b.Set(append(k[:len(prefixExpiry)+8:len(prefixExpiry)+8], nk...), nil, nil)
		}
		return nil
	})
	if err == nil && len(mailboxes) > 0 {
		log.Info("store migrated to an expiry entry per mailbox", "format", 5, "mailboxes", len(mailboxes))
	}
	return err
}

// eachKey calls fn for every key with prefix, in order. k and v are valid
// only during the call.
func eachKey(db *pebble.DB, prefix string, fn func(k, v []byte) error) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd([]byte(prefix))})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(bytes.Clone(it.Key()), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// splitPair splits "<a>\0<b>".
func splitPair(p []byte) (a, b string, ok bool) {
	x, y, ok := bytes.Cut(p, []byte{0})
	return string(x), string(y), ok
}
