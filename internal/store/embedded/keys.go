package embedded

import (
	"encoding/binary"
	"errors"
	"time"
)

// The key space (format 5). Everything of a device is keyed by (app, device):
// apps never share a device's seqs, mailboxes or bindings. Device ids are
// printable ASCII and app ids [a-z0-9_-], so 0x00 separates parts
// unambiguously; numbers are big-endian so that keys sort by them.
//
//	m/<app>\0<device>\0<seq:8>        a stored message: record
//	n/<app>\0<device>                 that mailbox's count and lowest seq, and a reserve of seqs at or above
//	                                  the last given (uvarints; an ack does not write it, nor an append
//	                                  within the reserve: the count is at least the mailbox's, the lowest
//	                                  seq at most its oldest's; see mailbox)
//	b/<app>\0<bseq:8>                 the app's broadcast log: record
//	h/<app>                           last bseq of the app's log (uvarint)
//	c/<app>\0<device>                 highest bseq copied into the device's mailbox (uvarint)
//	u/<app>\0<user>\0<device>         the user's devices (empty value)
//	w/<app>\0<device>                 the device's current user
//	k/<app>\0<device>\0<collapse>      the last message with that collapse key: seq, expiry (unix ms) (uvarints)
//	l/<app>\0<collapse>                the last broadcast with that collapse key: bseq, expiry (uvarints)
//	t/<app>\0<tag>\0<device>          the tag's devices (empty value)
//	g/<app>\0<device>\0<tag>          the device's tags (empty value)
//	s/<app>\0<id>                     a scheduled push: when it is due or its claim ends (uvarint, unix ms), its request
//	z/<when:8><app>\0<id>             the schedule's index by time (empty value)
//	r/<app>\0<id>                     a message's delivery report, with its copies if few (report.go)
//	o/<app>\0<id>                     where its mailbox copies are, if many: device, seq, ... (uvarint length, bytes, uvarint)
//	i/<app>\0<key>                    idempotency key: record (id and time; no data)
//	p/<app>\0<device>\0<vendor>        the device's OS push token of that vendor
//	e/<app>\0<id>\0<device>\0<vendor>   an escalated copy's outcome (1 byte: store.VendorOutcome); deleted with the report
//	y/<app>\0<id>                     a schedule claimed by this process: its due time before the claim (uvarint ms)
//	x/<when:8><key>                   expiry index: delete <key> at <when> (unix ms) (empty value); for
//	                                  an n/ key, sweep that mailbox (below)
//	v                                 the key format's version (uvarint; absent = 1)
//
// A message's m/ key is written once (a seq is never given again), so an
// ack or a recall deletes it with a single delete (dropMessage). A mailbox,
// not each message, has an x/ entry: one at or before the expiry of its
// oldest message, written when an append finds it empty (and no such entry
// known). The sweep, when it comes, deletes the mailbox's messages that
// expired, oldest first, up to the first that has not, and gives the
// mailbox an entry at that one's expiry. So an append writes the message
// (and n/ once per 64 seqs), an ack one single delete (see mailbox), and
// a message that expires behind an older one that has not is deleted with
// it (no read returns it after its expiry: reads skip what expired).
//
// Format 1 keyed d/, m/, n/ and c/ by device first, with one seq per device
// shared by its apps; format 2 indexed a report by its first copy's x/
// entry (the entry's value); formats 1 to 3 kept the last seq in a key of
// its own, d/<app>\0<device> (an append wrote it and n/); formats 1 to 4
// gave each mailbox message an x/ entry of its own. Open migrates them all
// (migrate.go).
const (
	prefixDevice    = "d/" // formats 1 to 3 only
	prefixMessage   = "m/"
	prefixCount     = "n/"
	prefixBroadcast = "b/"
	prefixHead      = "h/"
	prefixCursor    = "c/"
	prefixUser      = "u/"
	prefixWho       = "w/"
	prefixCollapse  = "k/"
	prefixLogKey    = "l/"
	prefixTag       = "t/"
	prefixTagsOf    = "g/"
	prefixSchedule  = "s/"
	prefixDue       = "z/"
	prefixReport    = "r/"
	prefixCopies    = "o/"
	prefixIdem      = "i/"
	prefixVendor    = "p/"
	prefixEscalated = "e/"
	prefixClaimed   = "y/"
	prefixExpiry    = "x/"
	keyVersion      = "v"
)

// key joins prefix and parts with 0x00 between parts, with room for a
// 0x00 and an 8-byte number after them (a mailbox's message key), so that
// building a key allocates once.
func key(prefix string, parts ...string) []byte {
	n := len(prefix) + len(parts) + 9
	for _, p := range parts {
		n += len(p)
	}
	k := append(make([]byte, 0, n), prefix...)
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

// mailboxPrefix is the prefix of every message in one (app, device) mailbox.
func mailboxPrefix(app, device string) []byte { return append(key(prefixMessage, app, device), 0) }

func messageKey(app, device string, seq uint64) []byte {
	return appendMessageKey(make([]byte, 0, len(prefixMessage)+len(app)+len(device)+10), app, device, seq)
}

// appendMessageKey appends the m/ key of (app, device, seq) to k.
func appendMessageKey(k []byte, app, device string, seq uint64) []byte {
	k = append(append(append(append(append(k, prefixMessage...), app...), 0), device...), 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func logPrefix(app string) []byte { return append(key(prefixBroadcast, app), 0) }

func logKey(app string, bseq uint64) []byte {
	return binary.BigEndian.AppendUint64(logPrefix(app), bseq)
}

func expiryKey(when time.Time, target []byte) []byte {
	k := append(make([]byte, 0, len(prefixExpiry)+8+len(target)), prefixExpiry...)
	return append(binary.BigEndian.AppendUint64(k, uint64(when.UnixMilli())), target...)
}

// seqOf reads the trailing 8-byte number of a message or log key.
func seqOf(k []byte) uint64 { return binary.BigEndian.Uint64(k[len(k)-8:]) }

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// record is the value of a message, a log entry or an idempotency key:
// expires (unix ms), id, data.
type record struct {
	expires int64
	id      string
	data    []byte
}

func (r record) encode() []byte { return r.appendTo(nil) }

// appendTo appends the encoded r to b.
func (r record) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(r.expires))
	b = binary.AppendUvarint(b, uint64(len(r.id)))
	b = append(b, r.id...)
	return append(b, r.data...)
}

var errCorrupt = errors.New("store: corrupt record")

func decodeRecord(b []byte) (record, error) {
	exp, n := binary.Uvarint(b)
	if n <= 0 {
		return record{}, errCorrupt
	}
	b = b[n:]
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return record{}, errCorrupt
	}
	b = b[n:]
	return record{expires: int64(exp), id: string(b[:l]), data: append([]byte(nil), b[l:]...)}, nil
}

// recordID returns the id of the encoded record b (in b's memory), without
// decoding its data.
func recordID(b []byte) ([]byte, error) {
	_, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, errCorrupt
	}
	l, m := binary.Uvarint(b[n:])
	if m <= 0 || l > uint64(len(b)-n-m) {
		return nil, errCorrupt
	}
	return b[n+m : n+m+int(l)], nil
}

func uvarint(b []byte) uint64 {
	v, _ := binary.Uvarint(b)
	return v
}
