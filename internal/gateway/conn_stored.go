package gateway

import (
	"context"
	"time"

	"github.com/longlink/longlink/protocol"
)

// replayChunk is how many stored messages one mailbox read returns.
const replayChunk = 256

// sendStored hands a connection the stored message seq, encoded in b. It
// goes straight to the queue when it is the very next seq and no sync runs;
// otherwise the sync loop delivers it from the mailbox, in order. It reports
// whether the connection is live to take it.
func (c *conn) sendStored(app string, seq uint64, b []byte) bool {
	c.mu.Lock()
	if c.state != stateLive {
		c.mu.Unlock()
		return false
	}
	if c.syncing || seq != c.sentSeq+1 {
		if seq > c.sentSeq {
			c.dirty = true
			c.startSyncLocked(0)
		}
		c.mu.Unlock()
		return true
	}
	ok, full := c.enqueueLocked(b)
	if ok {
		c.sentSeq = seq
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

// notifyBroadcast tells a connection that its app's broadcast log grew: the
// sync loop copies the new entries into the device's mailbox and delivers
// them like any stored message.
func (c *conn) notifyBroadcast() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateLive {
		return false
	}
	c.catchUp = true
	c.startSyncLocked(0)
	return true
}

// startSyncLocked starts the sync loop unless it runs; ack, when not 0, is
// the login's last_seq, acked first. c.mu must be held.
func (c *conn) startSyncLocked(ack uint64) {
	if !c.syncing {
		c.syncing = true
		c.gw.track(func() { c.syncMailbox(ack) })
	}
}

// syncMailbox delivers the device's mailbox after the last seq sent, in seq
// order, until nothing new came meanwhile: at login (replay, after acking
// the client's last_seq and copying unseen broadcasts), and whenever a
// stored message could not go straight to the queue.
func (c *conn) syncMailbox(ack uint64) {
	mb := c.gw.mailboxes
	ctx := context.Background()
	if ack > 0 {
		mb.Ack(c.device, c.apps, ack)
	}
	for {
		c.mu.Lock()
		if c.state != stateLive {
			c.syncing = false
			c.mu.Unlock()
			return
		}
		catchUp, after := c.catchUp, c.sentSeq
		c.catchUp, c.dirty = false, false
		c.mu.Unlock()

		if catchUp {
			for _, app := range c.apps {
				if _, err := mb.CatchUp(ctx, app, c.device); err != nil {
					c.storeFailed(err)
					return
				}
			}
		}
		msgs, err := mb.Since(c.device, c.apps, after, replayChunk)
		if err != nil {
			c.storeFailed(err)
			return
		}
		for _, m := range msgs {
			if !c.waitForRoom() {
				return
			}
			b := c.kind.encode(nil, &protocol.Frame{Op: protocol.OpPush, App: []byte(m.App),
				ID: []byte(m.ID), Seq: m.Seq, Data: m.Data})
			c.mu.Lock()
			queued, full := false, false
			if m.Seq > c.sentSeq { // else a fast-path push got there first
				if queued, full = c.enqueueLocked(b); queued {
					c.sentSeq = m.Seq
				}
			}
			live := c.state == stateLive
			c.mu.Unlock()
			if full {
				c.closeTooSlow()
			}
			if !live || full {
				return
			}
			if queued {
				c.gw.delivered(m.App, 1)
			}
		}
		c.mu.Lock()
		if len(msgs) < replayChunk && !c.dirty && !c.catchUp {
			c.syncing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}

// waitForRoom paces a replay: it waits while the send queue is over half
// full, so that a long mailbox does not overflow it. It reports whether the
// connection is still live.
func (c *conn) waitForRoom() bool {
	for {
		c.mu.Lock()
		live, busy := c.state == stateLive, len(c.queue) > c.gw.cfg.SendQueue/2
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
func (c *conn) storeFailed(err error) {
	c.gw.log.Error("mailbox", "device", c.device, "err", err)
	c.mu.Lock()
	c.syncing = false
	c.mu.Unlock()
	c.close(protocol.CodeGoingAway, "stored messages unavailable; reconnect")
}
