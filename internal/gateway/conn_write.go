package gateway

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/longlink/longlink/protocol"
)

// closeGrace bounds how long the final frames of a closing connection may
// take to write.
const closeGrace = time.Second

// send queues an encoded frame and never blocks. It reports whether the frame
// was queued: false when the connection is not live, or when its queue is full,
// in which case the connection is closed as too slow (4004).
func (c *conn) send(b []byte) bool {
	c.mu.Lock()
	ok, full := c.enqueueLocked(b)
	c.mu.Unlock()
	if full {
		c.closeTooSlow()
	}
	return ok
}

// enqueueLocked queues b if the connection is live and its queue has room;
// full reports that it had none, and the caller must then closeTooSlow
// (without c.mu). c.mu must be held.
func (c *conn) enqueueLocked(b []byte) (ok, full bool) {
	if c.state != stateLive {
		return false, false
	}
	if len(c.queue) >= c.gw.cfg.SendQueue {
		return false, true
	}
	c.queue = append(c.queue, b)
	c.startWriterLocked()
	return true, false
}

func (c *conn) closeTooSlow() { c.close(protocol.CodeTooSlow, "too slow to read: send queue full") }

// startWriterLocked starts the writer unless it runs. c.mu must be held.
func (c *conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		c.gw.track(c.writeLoop)
	}
}

// writeLoop writes whatever is queued, every queued frame in one writev, until
// the queue is empty; then it exits, or closes the socket if the connection is
// closing.
func (c *conn) writeLoop() {
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		closing := c.state == stateClosing
		if len(batch) == 0 {
			c.writing = false
			if closing {
				c.state = stateClosed
			}
			c.mu.Unlock()
			if closing {
				c.nc.Close()
			}
			return
		}
		c.mu.Unlock()

		timeout := c.gw.cfg.WriteTimeout
		if closing {
			timeout = min(timeout, closeGrace)
		}
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
		bufs := net.Buffers(batch)
		if _, err := bufs.WriteTo(c.nc); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.close(protocol.CodeTooSlow, "too slow to read: write timed out")
			} else {
				c.close(0, "closed")
			}
			c.mu.Lock()
			c.queue, c.writing, c.state = nil, false, stateClosed
			c.mu.Unlock()
			c.nc.Close()
			return
		}
	}
}

// close decides to end the connection with code (0 when the peer went away)
// and queues the final frames: an error frame with the code and reason, and
// for WebSocket a close frame. The first decision wins; later calls do nothing.
func (c *conn) close(code protocol.Code, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state >= stateClosing {
		return
	}
	c.state = stateClosing
	c.reason = reasonLabel(code)
	if code == protocol.CodeTooSlow {
		c.queue = nil // it could not take them; stored messages are replayed later
	}
	if code != 0 {
		c.queue = append(c.queue, c.kind.encode(nil, protocol.ErrorFrame(&protocol.Error{Code: code, Reason: reason})))
	}
	if c.kind != wireTCP {
		wsCode := code
		if wsCode == 0 {
			wsCode = 1000 // normal closure
		}
		c.queue = append(c.queue, wsClose(wsCode, reason))
	}
	c.startWriterLocked()
}
