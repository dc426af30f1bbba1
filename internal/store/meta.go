package store

import (
	"encoding/binary"

	"github.com/cockroachdb/pebble"
)

// metaCache holds the committer's bookkeeping (each device's last seq, each
// mailbox's count and lowest seq) in memory, written through to the batch.
// The committer is the only writer, so the cache is right as long as it is
// dropped whenever a batch is discarded. It is cleared when it grows past
// metaCacheLimit entries and refills from the database.
// Owned by the committer goroutine.
type metaCache struct {
	last      map[string]uint64
	mailboxes map[string]mailbox // key: device \0 app
}

const metaCacheLimit = 100000

func (c *metaCache) reset() {
	c.last = make(map[string]uint64)
	c.mailboxes = make(map[string]mailbox)
}

func (c *metaCache) lastSeq(b *pebble.Batch, device string) (uint64, error) {
	if seq, ok := c.last[device]; ok {
		return seq, nil
	}
	seq, err := getUint(b, key(prefixDevice, device))
	if err == nil {
		c.remember(func() { c.last[device] = seq })
	}
	return seq, err
}

func (c *metaCache) setLastSeq(b *pebble.Batch, device string, seq uint64) {
	b.Set(key(prefixDevice, device), binary.AppendUvarint(nil, seq), nil)
	c.remember(func() { c.last[device] = seq })
}

func (c *metaCache) mailbox(b *pebble.Batch, device, app string) (mailbox, error) {
	k := key(prefixCount, device, app)
	if mb, ok := c.mailboxes[string(k)]; ok {
		return mb, nil
	}
	v, _, err := get(b, k)
	if err != nil {
		return mailbox{}, err
	}
	var mb mailbox
	if count, n := binary.Uvarint(v); n > 0 {
		first, _ := binary.Uvarint(v[n:])
		mb = mailbox{count: count, first: first}
	}
	c.remember(func() { c.mailboxes[string(k)] = mb })
	return mb, nil
}

func (c *metaCache) setMailbox(b *pebble.Batch, device, app string, mb mailbox) {
	k := key(prefixCount, device, app)
	v := binary.AppendUvarint(nil, mb.count)
	b.Set(k, binary.AppendUvarint(v, mb.first), nil)
	c.remember(func() { c.mailboxes[string(k)] = mb })
}

// remember runs set, first clearing the cache if it is full.
func (c *metaCache) remember(set func()) {
	if c.last == nil || len(c.last)+len(c.mailboxes) >= metaCacheLimit {
		c.reset()
	}
	set()
}

// mailbox is the bookkeeping of one (device, app) mailbox: how many
// messages it holds, and a seq at or below its oldest. Iterators start at
// first, so the tombstones of dropped and acked messages are never walked.
type mailbox struct {
	count uint64
	first uint64
}

// oldest returns the seq of the mailbox's oldest message, 0 if it is empty.
func (mb mailbox) oldest(b *pebble.Batch, device, app string) (uint64, error) {
	it, err := b.NewIter(&pebble.IterOptions{
		LowerBound: messageKey(device, app, mb.first),
		UpperBound: prefixEnd(mailboxPrefix(device, app)),
	})
	if err != nil {
		return 0, err
	}
	var seq uint64
	if it.First() {
		seq = seqOf(it.Key())
	}
	return seq, it.Close()
}
