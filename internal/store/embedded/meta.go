package embedded

import (
	"encoding/binary"

	"github.com/cockroachdb/pebble"

	"github.com/longlink/longlink/internal/store"
)

// metaCache holds the committer's bookkeeping (each (app, device)'s last seq
// and its mailbox's count and lowest seq, recent delivery reports, and which
// messages have none, and the headers of recent mailbox messages) in
// memory, written through to the batch.
// The committer is the only writer, so the cache is right as long as it is
// dropped whenever a batch is discarded. It is cleared when it grows past
// metaCacheLimit entries (the reports past reportCacheLimit) and refills
// from the database.
// Owned by the committer goroutine.
type metaCache struct {
	mailboxes map[string]*mailbox // key: the n/ key
	reports   map[string]*report  // key: the r/ key; nil: the message has none
	// headers are recent mailbox messages' records without their data
	// (expiry and id: what an ack needs), by m/ key, from their append
	// until their delete: an ack, soon after, reads no key.
	headers map[string][]byte

	key, value []byte // scratch: an n/ key and value being read or written
}

const (
	metaCacheLimit   = 100000
	reportCacheLimit = 50000
	headerCacheLimit = 100000
)

func (c *metaCache) reset() {
	c.mailboxes = make(map[string]*mailbox)
	c.reports = nil
	c.headers = nil
}

// appended remembers the header of the mailbox message just written at mk
// (first clearing the headers if there are headerCacheLimit: those of
// messages that wait long, for devices away, are read again when acked).
func (c *metaCache) appended(mk []byte, header []byte) {
	if c.headers == nil || len(c.headers) >= headerCacheLimit {
		c.headers = make(map[string][]byte)
	}
	c.headers[string(mk)] = header
}

// message reads the mailbox message at mk: its header alone if the cache
// has it, else its record.
func (c *metaCache) message(b *pebble.Batch, mk []byte) ([]byte, bool, error) {
	if h, ok := c.headers[string(mk)]; ok {
		return h, true, nil
	}
	return get(b, mk)
}

// deleted forgets the mailbox message at mk, deleted. Every delete of a
// mailbox message must call it: a header left behind would make a later
// ack delete and count a message that is gone.
func (c *metaCache) deleted(mk []byte) { delete(c.headers, string(mk)) }

func (c *metaCache) mailbox(b *pebble.Batch, app, device string) (mailbox, error) {
	k := c.countKey(app, device)
	mb, cached, err := c.read(b, k)
	if err == nil && !cached {
		c.keep(k, mb)
	}
	return mb, err
}

// read returns the mailbox of n/ key k, and whether the cache had it; one
// it had not, read from n/, is not cached (mailbox caches it). A read from
// n/ gives its reserve as the last seq, which the next append, reading n/
// too, goes on after: so a login's LastSeq, which only reads, needs not
// crowd the mailboxes being written out of the cache.
func (c *metaCache) read(b *pebble.Batch, k []byte) (mailbox, bool, error) {
	if mb := c.mailboxes[string(k)]; mb != nil {
		return *mb, true, nil
	}
	v, _, err := get(b, k)
	return decodeMailbox(v), false, err
}

func (c *metaCache) setMailbox(b *pebble.Batch, app, device string, mb mailbox) {
	k := c.countKey(app, device)
	c.value = mb.appendTo(c.value[:0])
	b.Set(k, c.value, nil) // the batch copies both
	c.keep(k, mb)
}

// keepMailbox caches mb, the mailbox of (app, device) after an ack or an
// append within its seqs reserved, without writing it (see mailbox).
func (c *metaCache) keepMailbox(app, device string, mb mailbox) {
	c.keep(c.countKey(app, device), mb)
}

// countKey returns the n/ key of (app, device), valid until the next call.
func (c *metaCache) countKey(app, device string) []byte {
	c.key = append(append(append(append(c.key[:0], prefixCount...), app...), 0), device...)
	return c.key
}

// keep caches mb as the mailbox of n/ key k (in place if it has it).
func (c *metaCache) keep(k []byte, mb mailbox) {
	if p := c.mailboxes[string(k)]; p != nil {
		*p = mb
		return
	}
	c.makeRoom()
	p := new(mailbox)
	*p = mb
	c.mailboxes[string(k)] = p
}

// report reads the report at rk (of message id), if there is one: acks
// come soon after their message, whose report the cache then has.
func (c *metaCache) report(b *pebble.Batch, rk, id string) (report, bool, error) {
	r, err := c.cachedReport(b, rk)
	if err != nil || r == nil {
		return report{}, false, err
	}
	out := *r
	out.ID = id
	return out, true, nil
}

// cachedReport returns the cache's report at rk (nil: none), reading it
// first if the cache does not know it. The caller may change it only as
// it writes it.
func (c *metaCache) cachedReport(b *pebble.Batch, rk string) (*report, error) {
	if r, ok := c.reports[rk]; ok {
		return r, nil
	}
	v, ok, err := get(b, []byte(rk))
	if err != nil {
		return nil, err
	}
	var r *report
	if ok {
		dr, err := decodeReport("", v)
		if err != nil {
			return nil, err
		}
		r = &dr
	}
	c.rememberReport(rk, r)
	return r, nil
}

// addAcked adds n acks to the report at rk, if there is one.
func (c *metaCache) addAcked(b *pebble.Batch, rk string, n int) error {
	r, err := c.cachedReport(b, rk)
	if err != nil || r == nil {
		return err
	}
	r.Acked += n
	b.Set([]byte(rk), r.encode(), nil)
	return nil
}

// setReport writes r under rk, and if index the expiry index entry that
// deletes it ReportKept after its message expires.
func (c *metaCache) setReport(b *pebble.Batch, rk string, r report, index bool) {
	b.Set([]byte(rk), r.encode(), nil)
	if index {
		b.Set(expiryKey(r.Expires.Add(store.ReportKept), []byte(rk)), nil, nil)
	}
	r.Audience = nil // Recall's answer, not kept
	c.rememberReport(rk, &r)
}

// rememberReport caches r (nil: none) for rk, first clearing the reports
// (only: the bookkeeping stays) if there are reportCacheLimit.
func (c *metaCache) rememberReport(rk string, r *report) {
	if c.reports == nil || len(c.reports) >= reportCacheLimit {
		c.reports = make(map[string]*report)
	}
	c.reports[rk] = r
}

// forget drops what the cache holds for the key k, deleted by the sweep.
func (c *metaCache) forget(k []byte) { delete(c.reports, string(k)) }

// makeRoom clears the cache if it is full.
func (c *metaCache) makeRoom() {
	if c.mailboxes == nil || len(c.mailboxes) >= metaCacheLimit {
		c.reset()
	}
}

// mailbox is the bookkeeping of one (app, device) mailbox: how many
// messages it holds, a seq at or below its oldest, and the last seq given.
// Iterators start at first, so the tombstones of dropped and acked messages
// are never walked.
//
// An ack changes the cache's count and first, not the n/ key's: acks only
// delete a mailbox's oldest messages, so a count read from the key is at
// least the mailbox's (exact: it is known to be the mailbox's) and a first
// at or below its oldest; a count that would make the mailbox drop a
// message is counted again first (recount).
//
// Nor does every append write n/: its last seq is a reserve (reserved),
// written once per seqBlock seqs, and its count is raised by the seqs of
// the reserve not given yet, so that it stays at least the mailbox's
// until the next write. A mailbox read from n/ (after a restart, or once
// the cache let it go) goes on after the reserve: the seqs of it that were
// not given never are, and its last seq is the reserve's.
//
// due, kept in memory only, is the time of an expiry entry of the mailbox
// known to be in the index (unix ms; 0: none known).
type mailbox struct {
	count    uint64
	first    uint64
	last     uint64
	reserved uint64 // the last seq n/ holds: seqs up to it may be given without writing it
	due      int64
	exact    bool
}

// seqBlock is how many seqs an append that writes n/ reserves.
const seqBlock = 64

// appendTo appends mb as its n/ key holds it to v: count (raised by the
// seqs reserved and not given), first and the last seq reserved
// (uvarints). A last seq past the reserve (migrate4 sets it) is written as
// it is.
func (mb mailbox) appendTo(v []byte) []byte {
	reserve := mb.reserved - min(mb.reserved, mb.last)
	return binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(v, mb.count+reserve), mb.first), max(mb.reserved, mb.last))
}

// decodeMailbox reads an n/ value (none: an empty mailbox, no seq given).
func decodeMailbox(v []byte) mailbox {
	var mb mailbox
	var n int
	mb.count, n = binary.Uvarint(v)
	v = v[max(n, 0):]
	mb.first, n = binary.Uvarint(v)
	mb.last, _ = binary.Uvarint(v[max(n, 0):])
	mb.reserved = mb.last
	mb.exact = mb.count == 0 // acks can only have made it lower
	return mb
}

// recount counts the mailbox's messages, from first on, and moves first to
// the oldest.
func (mb mailbox) recount(b *pebble.Batch, app, device string) (mailbox, error) {
	mb.count, mb.exact = 0, true
	err := eachRecord(b, messageKey(app, device, mb.first), prefixEnd(mailboxPrefix(app, device)), func(k, _ []byte) error {
		if mb.count == 0 {
			mb.first = seqOf(k)
		}
		mb.count++
		return nil
	})
	return mb, err
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
