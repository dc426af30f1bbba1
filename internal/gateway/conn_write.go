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

// startWriterLocked makes sure the queued frames get written: it puts the
// connection in the writer pool's FIFO unless it is there or being written.
// c.mu must be held.
func (c *conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		c.gw.writers.schedule(c)
	}
}

// flush is one turn of a pool worker: it writes every frame queued so far in
// one writev, without waiting. A socket that cannot take them at once gets
// the rest written by a goroutine of its own (writeSlow).
func (c *conn) flush() {
	c.mu.Lock()
	batch := c.queue
	c.queue = nil
	closing := c.state == stateClosing
	c.mu.Unlock()
	if len(batch) > 0 {
		bufs := net.Buffers(batch)
		blocked, err := c.writeNow(&bufs)
		switch {
		case err != nil:
			c.writeFailed(err)
			return
		case blocked:
			c.gw.track(func() { c.writeSlow(bufs, closing) })
			return
		}
	}
	c.afterWrite()
}

// writeNow writes what the socket takes at once and reports whether some of
// bufs is left (blocked). With the socket's descriptor at hand that is one
// non-blocking writev (no deadline, so no timer per write); without, a
// write under the short poolWriteTimeout.
func (c *conn) writeNow(bufs *net.Buffers) (blocked bool, err error) {
	if c.raw != nil {
		return writeNonBlocking(c.raw, bufs)
	}
	c.nc.SetWriteDeadline(time.Now().Add(poolWriteTimeout))
	if _, err := bufs.WriteTo(c.nc); err != nil && len(*bufs) > 0 {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// writeSlow finishes a write the pool could not, with the full write
// timeout (closeGrace for a closing connection).
func (c *conn) writeSlow(bufs net.Buffers, closing bool) {
	timeout := c.gw.cfg.WriteTimeout
	if closing {
		timeout = min(timeout, closeGrace)
	}
	c.nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := bufs.WriteTo(c.nc); err != nil && len(bufs) > 0 {
		c.writeFailed(err)
		return
	}
	c.afterWrite()
}

// afterWrite decides what follows a write: more frames came meanwhile, so
// back to the end of the FIFO; or the connection is closing and all is
// written, so close the socket; or nothing, so the writer is done.
func (c *conn) afterWrite() {
	c.mu.Lock()
	switch {
	case len(c.queue) > 0:
		c.mu.Unlock()
		c.gw.writers.schedule(c)
	case c.state == stateClosing:
		c.state, c.writing = stateClosed, false
		c.mu.Unlock()
		c.closeSocket()
	default:
		c.writing = false
		c.mu.Unlock()
	}
}

// writeFailed ends a connection whose socket took no more: too slow (4004)
// when the write timed out, else gone.
func (c *conn) writeFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.close(protocol.CodeTooSlow, "too slow to read: write timed out")
	} else {
		c.close(0, "closed")
	}
	c.mu.Lock()
	c.queue, c.writing, c.state = nil, false, stateClosed
	c.mu.Unlock()
	c.closeSocket()
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
