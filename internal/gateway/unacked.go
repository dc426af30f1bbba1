package gateway

import "github.com/longlink/longlink/internal/store"

// In a cluster a session keeps the seq and id of each mailbox message it
// was sent and that its device has not acked. An ack of them needs no
// read of the mailbox in Redis: the Router deletes each by its seq and
// counts it in its report (Router.Acked), where the store's ack would read
// the device's seq counter (to clamp the ack) and every message up to it
// (for their ids). That holds because a session is sent its mailbox in seq
// order, skipping nothing but what expired: every message the mailbox
// holds after the last ack up to the last one sent was sent to the
// session, so is listed here, but for one that expired unsent. That one
// can only sit in a gap of seqs between two messages sent, so an ack
// across such a gap also deletes every message up to its seq. An ack the
// list cannot vouch for (of a seq before the first listed, or past the
// last, which is not the last sent once the list stopped at maxUnacked)
// is the store's, as on a single node.

// maxUnacked bounds the messages a session lists, and so what a device
// that does not ack costs its node (2–3 KB, with the ids): past it, the
// session lists no more until an ack of every message it was sent.
const maxUnacked = 64

// unacked lists, in seq order, the mailbox messages a session was sent and
// whose ack it has not passed on, since every message before them was
// acked (a nil list: every message sent was). Once stopped, it lists no
// more: the messages sent after its last are not listed.
type unacked struct {
	msgs    []listed
	stopped bool
}

// listed is a message of an unacked list; gap says that its seq is not the
// one after that of the message sent before it (the mailbox may hold one
// in between that expired unsent).
type listed struct {
	store.Sent
	gap bool
}

// listLocked lists m, just queued for s after the message s.sentSeq, in a
// cluster. c.mu must be held.
func (c *conn) listLocked(s *session, m store.Sent) {
	prev := s.sentSeq
	l := listed{m, m.Seq != prev+1}
	switch u := s.unacked; {
	case c.gw.router == nil:
	case u == nil:
		s.unacked = &unacked{msgs: []listed{l}}
	case !u.stopped && len(u.msgs) < maxUnacked && u.msgs[len(u.msgs)-1].Seq == prev:
		u.msgs = append(u.msgs, l)
	default:
		u.stopped = true
	}
}

// ackSeq deletes s's mailbox messages up to seq, which the device acked:
// in a cluster, those the session lists, through the Router; else (or when
// the list cannot vouch for seq) through the store, which reads the
// mailbox and clamps seq to the last seq it gave the device.
func (c *conn) ackSeq(s *session, seq uint64) {
	if c.gw.router == nil {
		c.gw.mailboxes.Ack(s.app, c.device, seq)
		return
	}
	c.mu.Lock()
	var acked []store.Sent
	vouched, gap := false, false
	if u := s.unacked; u != nil {
		acked, gap, vouched = u.take(seq)
		if len(u.msgs) == 0 && (!u.stopped || seq >= s.sentSeq) {
			s.unacked = nil // every message sent is acked
		}
	}
	c.mu.Unlock()
	if !vouched {
		c.gw.mailboxes.Ack(s.app, c.device, seq)
		return
	}
	sweep := uint64(0) // up to seq too, across a gap
	if gap {
		sweep = seq
	}
	c.gw.router.Acked(s.app, c.device, acked, sweep)
}

// take removes the messages up to seq from the list; it vouches for them
// when seq lies between the first listed and the last, and then returns
// them, and whether one of them follows a gap: they are every message the
// mailbox may hold up to seq after the last ack, but for those in the gaps
// (the session was sent its mailbox in seq order).
func (u *unacked) take(seq uint64) (acked []store.Sent, gap, vouched bool) {
	n := len(u.msgs)
	vouched = n > 0 && seq >= u.msgs[0].Seq && seq <= u.msgs[n-1].Seq
	i := 0
	for ; i < n && u.msgs[i].Seq <= seq; i++ {
		if vouched {
			acked = append(acked, u.msgs[i].Sent)
			gap = gap || u.msgs[i].gap
		}
	}
	u.msgs = append(u.msgs[:0], u.msgs[i:]...)
	return acked, gap, vouched
}
