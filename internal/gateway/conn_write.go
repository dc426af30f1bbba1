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
// in which case the connection is closed as too slow (4004), or when b is
// empty (the frame has no form on the connection's wire).
func (c *conn) send(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	c.mu.Lock()
	ok, full := c.enqueueLocked(b)
	c.mu.Unlock()
	c.enqueued(ok, full)
	return ok
}

// enqueued follows an enqueueLocked (without c.mu): a connection that had no
// room is closed as too slow; a frame queued past limits.queue_bytes_total
// sheds the offenders.
func (c *conn) enqueued(ok, full bool) {
	switch {
	case full:
		c.closeTooSlow()
	case ok && c.gw.queued.Load() > c.gw.limits.QueueBytesTotal:
		c.gw.shed()
	}
}

// enqueueLocked queues b if the connection is live and its queue has room;
// full reports that it had none, and the caller must then closeTooSlow
// (without c.mu). Room is bounded in frames (gateway.send_queue), in bytes
// (limits.queue_bytes), and over the whole process (limits.queue_bytes_total:
// past it, a connection whose socket takes nothing has no more room, and
// the caller sheds the offenders, see shed). c.mu must be held.
func (c *conn) enqueueLocked(b []byte) (ok, full bool) {
	if c.state != stateLive {
		return false, false
	}
	g := c.gw
	if len(c.queue) >= g.cfg.SendQueue || c.pending+len(b) > g.limits.QueueBytes ||
		c.blocked && g.queued.Load()+int64(len(b)) > g.limits.QueueBytesTotal {
		return false, true
	}
	c.pushLocked(b)
	c.startWriterLocked()
	return true, false
}

// pushLocked appends b to the queue and counts its bytes as waiting; an
// empty b (a frame with no form on the connection's wire) is nothing to
// queue. c.mu must be held.
func (c *conn) pushLocked(b []byte) {
	if len(b) == 0 {
		return
	}
	c.queue = append(c.queue, b)
	c.holdLocked(len(b))
}

// holdLocked counts n more bytes as waiting. c.mu must be held.
func (c *conn) holdLocked(n int) {
	c.pending += n
	c.gw.queued.Add(int64(n))
}

// releaseLocked forgets n waiting bytes, written or dropped. c.mu must be held.
func (c *conn) releaseLocked(n int) { c.holdLocked(-n) }

// dropQueueLocked drops the frames not yet taken by the writer.
// c.mu must be held.
func (c *conn) dropQueueLocked() {
	c.releaseLocked(sizeOf(c.queue))
	c.queue = nil
}

func sizeOf(bufs [][]byte) (n int) {
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

func (c *conn) closeTooSlow() { c.close(errQueueFull) }

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
	size := sizeOf(batch)
	bufs := net.Buffers(batch)
	extra := 0 // what sealing added: record headers and tags, records the session wrote by itself
	if c.tls != nil {
		var err error
		if bufs, err = c.tls.Seal(batch, closing); err != nil {
			c.writeFailed(err, size)
			return
		}
		extra = max(sizeOf(bufs)-size, 0)
	}
	if len(bufs) > 0 {
		blocked, err := c.writeNow(&bufs)
		switch {
		case err != nil:
			c.writeFailed(err, size)
			return
		case blocked: // what sealing added waits now too: counted until written
			c.gw.block(c, extra)
			left := bufs // captured: bufs, written through at each flush, stays on the stack
			c.gw.track(func() { c.writeSlow(left, size+extra, closing) })
			return
		}
	}
	c.afterWrite(size)
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
	left := *bufs // a copy escapes here (WriteTo hands it to the net.Conn), not the caller's bufs
	_, err = left.WriteTo(c.nc)
	*bufs = left
	if err != nil && len(*bufs) > 0 {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// writeSlow finishes a write the pool could not (of a batch of size
// bytes), with the full write timeout (closeGrace for a closing connection).
func (c *conn) writeSlow(bufs net.Buffers, size int, closing bool) {
	timeout := c.gw.cfg.WriteTimeout
	if closing {
		timeout = min(timeout, closeGrace)
	}
	c.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := bufs.WriteTo(c.nc)
	c.gw.unblock(c)
	if err != nil && len(bufs) > 0 {
		c.writeFailed(err, size)
		return
	}
	c.afterWrite(size)
}

// afterWrite decides what follows the write of size bytes: more frames came
// meanwhile, so back to the end of the FIFO; or the connection is closing
// and all is written, so close the socket; or nothing, so the writer is done.
func (c *conn) afterWrite(size int) {
	c.mu.Lock()
	c.releaseLocked(size)
	switch {
	case len(c.queue) > 0 || c.tls != nil && c.state < stateClosing && c.tls.Pending():
		c.mu.Unlock()
		c.gw.writers.schedule(c)
	case c.state == stateClosing:
		c.state, c.writing = stateClosed, false
		c.mu.Unlock()
		c.lingerClose()
	default:
		c.writing = false
		c.mu.Unlock()
	}
}

// lingerClose closes the socket once its final frames are written, without
// losing them: closing a socket with unread input (an ack on its way)
// makes the kernel send a reset, which can destroy the frames the peer has
// not read yet (a redirect, the error that says why). So the sending side
// is shut first; the socket is closed when the peer closes its side (the
// reader then ends the connection, see end) or after closeGrace.
func (c *conn) lingerClose() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || c.ended.Load() || cw.CloseWrite() != nil { // ended: the reader is done, nothing to wait for
		c.closeSocket()
		return
	}
	time.AfterFunc(closeGrace, c.closeSocket)
}

// writeFailed ends a connection whose socket took no more of a batch of
// size bytes: too slow (4004) when the write timed out, else gone.
func (c *conn) writeFailed(err error, size int) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.close(errWriteTimedOut)
	} else {
		c.close(nil)
	}
	c.mu.Lock()
	c.releaseLocked(size)
	c.dropQueueLocked()
	c.writing, c.state = false, stateClosed
	c.mu.Unlock()
	c.closeSocket()
}

// close decides to end the connection for why (nil when the peer went
// away) and queues the final frames: an error frame with its code and
// reason (MQTT has none: its peer only sees the socket close), and for
// WebSocket a close frame. The first decision wins; later calls do nothing.
func (c *conn) close(why *protocol.Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state >= stateClosing {
		return
	}
	c.state = stateClosing
	code, reason := closeOf(why)
	c.reason = code.Label()
	if code == protocol.CodeTooSlow {
		c.dropQueueLocked() // it could not take them; stored messages are replayed later
		// A write under way may wait for the write timeout: cut it short,
		// so that what it holds is let go soon.
		c.nc.SetWriteDeadline(time.Now().Add(closeGrace))
	}
	if code == protocol.CodeDraining { // a login refused: say where to go
		if m := c.gw.nextRedirect(); m != nil {
			c.pushLocked(m.bytes(c.kind))
		}
	}
	if why != nil {
		c.pushLocked(c.kind.encode(nil, protocol.ErrorFrame(why)))
	}
	if wires[c.kind].ws {
		wsCode := code
		if wsCode == 0 {
			wsCode = 1000 // normal closure
		}
		c.pushLocked(wsClose(wsCode, reason))
	}
	c.startWriterLocked()
}
