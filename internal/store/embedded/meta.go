package embedded

import (
	"encoding/binary"

	"github.com/cockroachdb/pebble"
)

// metaCache holds the committer's bookkeeping (each (app, device)'s last seq,
// each mailbox's count and lowest seq) in memory, written through to the batch.
// The committer is the only writer, so the cache is right as long as it is
// dropped whenever a batch is discarded. It is cleared when it grows past
// metaCacheLimit entries and refills from the database.
// Owned by the committer goroutine.
type metaCache struct {
	last      map[string]uint64  // key: the d/ key
	mailboxes map[string]mailbox // key: the n/ key
}

const metaCacheLimit = 100000

func (c *metaCache) reset() {
	c.last = make(map[string]uint64)
	c.mailboxes = make(map[string]mailbox)
}

func (c *metaCache) lastSeq(b *pebble.Batch, app, device string) (uint64, error) {
	k := key(prefixDevice, app, device)
	if seq, ok := c.last[string(k)]; ok {
		return seq, nil
	}
	seq, err := getUint(b, k)
	if err == nil {
		c.remember(func() { c.last[string(k)] = seq })
	}
	return seq, err
}

func (c *metaCache) setLastSeq(b *pebble.Batch, app, device string, seq uint64) {
	k := key(prefixDevice, app, device)
	b.Set(k, binary.AppendUvarint(nil, seq), nil)
	c.remember(func() { c.last[string(k)] = seq })
}

func (c *metaCache) mailbox(b *pebble.Batch, app, device string) (mailbox, error) {
	k := key(prefixCount, app, device)
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

func (c *metaCache) setMailbox(b *pebble.Batch, app, device string, mb mailbox) {
	k := key(prefixCount, app, device)
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

// mailbox is the bookkeeping of one (app, device) mailbox: how many
// messages it holds, and a seq at or below its oldest. Iterators start at
// first, so the tombstones of dropped and acked messages are never walked.
type mailbox struct {
	count uint64
	first uint64
}

// oldest returns the seq of the mailbox's oldest message, 0 if it is empty.
func (mb mailbox) oldest(b *pebble.Batch, app, device string) (uint64, error) {
	it, err := b.NewIter(&pebble.IterOptions{
		LowerBound: messageKey(app, device, mb.first),
		UpperBound: prefixEnd(mailboxPrefix(app, device)),
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
