package gateway

import (
	"time"

	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/protocol"
)

// replayChunk is how many stored messages one mailbox read returns.
const replayChunk = 256

// liveInLocked reports whether the connection is live and its session in
// app too. c.mu must be held.
func (c *conn) liveInLocked(app string) bool {
	_, ok := c.session(app)
	return ok && c.state == stateLive
}

// sendNext hands a connection stored message n of app (id), encoded in b:
// n is a seq of the device's mailbox, or with broadcast a bseq of the
// app's broadcast log. It goes straight to the queue when it is the very
// next of that stream for this connection and no sync runs; otherwise the
// sync loop delivers it, in order (for a client that takes broadcasts by
// seq, copied into its mailbox first). took reports that the connection is
// live in app to take it; now, that it was queued here.
func (c *conn) sendNext(app, id string, n uint64, broadcast bool, b []byte) (took, now bool) {
	c.mu.Lock()
	s, ok := c.session(app)
	if !ok || c.state != stateLive {
		c.mu.Unlock()
		return false, false
	}
	sent := s.lastSent(broadcast)
	if c.syncing || n != sent+1 || broadcast && !s.byBSeq {
		switch {
		case broadcast:
			c.catchUpLocked(s)
		case n > sent:
			c.dirty = true
			c.startSyncLocked(nil)
		}
		c.mu.Unlock()
		return true, false
	}
	now, full := c.enqueueLocked(b)
	if now {
		c.queuedLocked(s, broadcast, store.Sent{Seq: n, ID: id})
	}
	c.mu.Unlock()
	c.enqueued(now, full)
	return now, now
}

// lastSent is the last bseq of the app's broadcast log queued for s with
// broadcast, else the last seq of its mailbox. c.mu must be held.
func (s *session) lastSent(broadcast bool) uint64 {
	if broadcast {
		return s.sentBSeq
	}
	return s.sentSeq
}

// queuedLocked records that stored message m was queued for s: a bseq
// of the app's broadcast log with broadcast, else a mailbox message, which
// the session also lists for its ack (unacked.go). The next of its stream
// follows it. c.mu must be held.
func (c *conn) queuedLocked(s *session, broadcast bool, m store.Sent) {
	if broadcast {
		s.sentBSeq = m.Seq
		return
	}
	c.listLocked(s, m)
	s.sentSeq = m.Seq
}

// loginAck is what a login's last_seq and last_bseq ack in one app, and
// the tags its token adds.
type loginAck struct {
	seq, bseq uint64
	tags      []string
}

// startSyncLocked starts the sync loop unless it runs; at login (acks,
// one per session), it first acks each session's last_seq and last_bseq
// and adds its token's tags. c.mu must be held.
func (c *conn) startSyncLocked(acks []loginAck) {
	if !c.syncing {
		c.syncing = true
		c.gw.track(func() { c.syncMailbox(acks) })
	}
}

// syncMailbox delivers each session's broadcasts and mailbox after what was
// sent, in order, until nothing new came meanwhile: at login (replay, after
// acking the client's last_seqs and last_bseqs and adding its token's
// tags), when the app's broadcast log grew, and whenever a stored message
// could not go straight to the queue.
func (c *conn) syncMailbox(acks []loginAck) {
	for i, a := range acks {
		if a.seq > 0 {
			c.gw.mailboxes.Ack(c.sessions[i].app, c.device, a.seq)
		}
		if a.bseq > 0 {
			c.ackLoginBSeq(&c.sessions[i], a.bseq)
		}
		if len(a.tags) > 0 {
			if err := c.tag(c.sessions[i].app, a.tags); err != nil {
				c.gw.warn.Warn("tags of the token not kept", "app", c.sessions[i].app, "device", c.device, "err", err)
			}
		}
	}
	for {
		c.mu.Lock()
		c.dirty = false
		c.mu.Unlock()
		more := false
		for i := range c.sessions {
			full, ok := c.syncSession(&c.sessions[i])
			if !ok {
				c.mu.Lock()
				c.syncing = false
				c.mu.Unlock()
				return
			}
			more = more || full
		}
		c.mu.Lock()
		if !more && !c.dirty {
			c.syncing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}

// tag gives the device the tags of its token in app.
func (c *conn) tag(app string, tags []string) error {
	return c.gw.mailboxes.Tag(c.gw.storeCall(), app, []string{c.device}, tags, nil)
}

// syncSession queues one chunk of s's broadcast log after the last bseq
// sent if the log grew (or copies the log into the mailbox, for a client
// that takes broadcasts by seq), then one chunk of its mailbox after the
// last seq sent. full reports a whole chunk (there may be more); ok is
// false when the connection is no longer live or its store failed. The
// first round after a claim (in a cluster) uses what the claim read: the
// device's cursor, against the broadcast head this node knows, and the
// first chunk of its mailbox.
func (c *conn) syncSession(s *session) (full, ok bool) {
	mb := c.gw.mailboxes
	c.mu.Lock()
	if c.state != stateLive {
		c.mu.Unlock()
		return false, false
	}
	if s.over.Load() {
		c.mu.Unlock()
		return false, true
	}
	catchUp, after, afterB, cursor, first := s.catchUp, s.sentSeq, s.sentBSeq, s.cursor, s.first
	s.catchUp, s.first = false, nil
	c.mu.Unlock()
	ctx := c.gw.storeCall() // one round: at most two reads

	if catchUp && first != nil {
		head, err := c.gw.router.BroadcastHead(ctx, s.app)
		if err != nil {
			c.storeFailed(s.app, err)
			return false, false
		}
		switch {
		case s.byBSeq && max(cursor, afterB) >= head:
			c.readBroadcasts(s, afterB, head, 0)
			catchUp = false
		case !s.byBSeq && cursor >= head:
			catchUp = false
		case !s.byBSeq: // the log is copied into the mailbox: read it after
			first = nil
		}
	}
	switch {
	case catchUp && s.byBSeq:
		entries, last, err := mb.Broadcasts(ctx, s.app, c.device, max(afterB, cursor), replayChunk)
		if err != nil {
			c.storeFailed(s.app, err)
			return false, false
		}
		if !c.deliver(s, entries, true) {
			return false, false
		}
		full = c.readBroadcasts(s, afterB, last, len(entries))
	case catchUp:
		if _, err := mb.CatchUp(ctx, s.app, c.device); err != nil {
			c.storeFailed(s.app, err)
			return false, false
		}
	}
	var msgs []store.Stored
	more := false
	if first != nil {
		msgs, more = first.Waiting, first.More
	} else {
		var err error
		if msgs, err = mb.Since(ctx, s.app, c.device, after, replayChunk); err != nil {
			c.storeFailed(s.app, err)
			return false, false
		}
		more = len(msgs) == replayChunk
	}
	if !c.deliver(s, msgs, false) {
		return false, false
	}
	return full || more, true
}

// readBroadcasts records that s's broadcast log was read after afterB (n
// entries, delivered) with last its last bseq then, and reports whether
// there may be more to read.
func (c *conn) readBroadcasts(s *session, afterB, last uint64, n int) (more bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case afterB > last: // a login's last_bseq beyond the log: never trusted
		s.sentBSeq = last
		c.gw.metrics.SeqClamped.WithLabelValues(s.app, "login_bseq").Inc()
	case n == replayChunk: // more: read on in the next round
		s.catchUp = true
		return true
	default: // read to the end: what was not sent was acked or expired,
		// so the next broadcast can go straight to the queue (an entry
		// appended during the read may have been sent already: max)
		s.sentBSeq = max(s.sentBSeq, last)
	}
	return false
}

// deliver queues stored messages of s in order: mailbox messages with
// their seq, or broadcast log entries with their bseq. It reports whether
// the connection is still live.
func (c *conn) deliver(s *session, msgs []store.Stored, bseq bool) bool {
	for _, m := range msgs {
		if !c.waitForRoom() {
			return false
		}
		f := protocol.Frame{Op: protocol.OpPush, App: []byte(m.App), ID: []byte(m.ID), Data: m.Data}
		if bseq {
			f.BSeq = m.Seq
		} else {
			f.Seq = m.Seq
		}
		b := c.kind.encodeReplay(nil, &f)
		c.mu.Lock()
		queued, full := false, false
		if m.Seq > s.lastSent(bseq) && !s.over.Load() { // else a fast-path push got there first
			if queued, full = c.enqueueLocked(b); queued {
				c.queuedLocked(s, bseq, store.Sent{Seq: m.Seq, ID: m.ID})
			}
		}
		live := c.state == stateLive
		c.mu.Unlock()
		c.enqueued(queued, full)
		if !live || full {
			return false
		}
		if queued {
			c.gw.delivered(m.App, 1)
		}
	}
	return true
}

// waitForRoom paces a replay: it waits while the send queue is over half
// full (in frames or bytes), so that a long mailbox does not overflow it. It reports whether the
// connection is still live.
func (c *conn) waitForRoom() bool {
	for {
		c.mu.Lock()
		live := c.state == stateLive
		busy := len(c.queue) > c.gw.cfg.SendQueue/2 || c.pending > c.gw.limits.QueueBytes/2
		c.mu.Unlock()
		if !live {
			return false
		}
		if !busy {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// storeFailed ends a connection whose mailbox cannot be read: the device
// reconnects (4009) and is served once the store answers again.
func (c *conn) storeFailed(app string, err error) {
	c.gw.warn.Error("mailbox", "app", app, "device", c.device, "err", err)
	c.close(errStoreUnavailable)
}
