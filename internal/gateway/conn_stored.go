package gateway

import (
	"context"
	"time"

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

// sendStored hands a connection the stored message seq of app, encoded in
// b. It goes straight to the queue when it is the very next seq of that app
// and no sync runs; otherwise the sync loop delivers it from the mailbox, in
// order. It reports whether the connection is live in app to take it.
func (c *conn) sendStored(app string, seq uint64, b []byte) bool {
	c.mu.Lock()
	s, ok := c.session(app)
	if !ok || c.state != stateLive {
		c.mu.Unlock()
		return false
	}
	if c.syncing || seq != s.sentSeq+1 {
		if seq > s.sentSeq {
			c.dirty = true
			c.startSyncLocked(false)
		}
		c.mu.Unlock()
		return true
	}
	ok, full := c.enqueueLocked(b)
	if ok {
		s.sentSeq = seq
	}
	c.mu.Unlock()
	if full {
		c.closeTooSlow()
	}
	if ok {
		c.gw.delivered(app, 1)
	}
	return ok
}

// notifyBroadcast tells a connection that app's broadcast log grew: the
// sync loop copies the new entries into the device's mailbox and delivers
// them like any stored message.
func (c *conn) notifyBroadcast(app string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.session(app)
	if !ok || c.state != stateLive {
		return false
	}
	s.catchUp, c.dirty = true, true
	c.startSyncLocked(false)
	return true
}

// startSyncLocked starts the sync loop unless it runs; at login, it first
// acks each session's last_seq. c.mu must be held.
func (c *conn) startSyncLocked(login bool) {
	if !c.syncing {
		c.syncing = true
		var acks []uint64
		if login {
			acks = make([]uint64, len(c.sessions))
			for i := range c.sessions {
				acks[i] = c.sessions[i].sentSeq
			}
		}
		c.gw.track(func() { c.syncMailbox(acks) })
	}
}

// syncMailbox delivers each session's mailbox after the last seq sent, in
// seq order, until nothing new came meanwhile: at login (replay, after
// acking the client's last_seqs and copying unseen broadcasts), and
// whenever a stored message could not go straight to the queue.
func (c *conn) syncMailbox(acks []uint64) {
	for i, seq := range acks {
		if seq > 0 {
			c.gw.mailboxes.Ack(c.sessions[i].app, c.device, seq)
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

// syncSession copies unseen broadcasts into s's mailbox if its log grew,
// and queues one chunk of the mailbox after the last seq sent. full
// reports a whole chunk (there may be more); ok is false when the
// connection is no longer live or its store failed.
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
	catchUp, after := s.catchUp, s.sentSeq
	s.catchUp = false
	c.mu.Unlock()

	if catchUp {
		if _, err := mb.CatchUp(context.Background(), s.app, c.device); err != nil {
			c.storeFailed(s.app, err)
			return false, false
		}
	}
	msgs, err := mb.Since(context.Background(), s.app, c.device, after, replayChunk)
	if err != nil {
		c.storeFailed(s.app, err)
		return false, false
	}
	for _, m := range msgs {
		if !c.waitForRoom() {
			return false, false
		}
		b := c.kind.encode(nil, &protocol.Frame{Op: protocol.OpPush, App: []byte(m.App),
			ID: []byte(m.ID), Seq: m.Seq, Data: m.Data})
		c.mu.Lock()
		queued, full := false, false
		if m.Seq > s.sentSeq && !s.over.Load() { // else a fast-path push got there first
			if queued, full = c.enqueueLocked(b); queued {
				s.sentSeq = m.Seq
			}
		}
		live := c.state == stateLive
		c.mu.Unlock()
		if full {
			c.closeTooSlow()
		}
		if !live || full {
			return false, false
		}
		if queued {
			c.gw.delivered(m.App, 1)
		}
	}
	return len(msgs) == replayChunk, true
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
	c.gw.log.Error("mailbox", "app", app, "device", c.device, "err", err)
	c.close(errStoreUnavailable.Code, errStoreUnavailable.Reason)
}
