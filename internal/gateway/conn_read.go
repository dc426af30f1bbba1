package gateway

import (
	"errors"
	"io"

	"github.com/gobwas/ws"

	"github.com/longlink/longlink/internal/bufpool"
	"github.com/longlink/longlink/protocol"
)

// readMessage reads the peer's next message: a frame of the connection's
// codec, or (MQTT over WebSocket) one or more whole packets. The caller
// gives the buffer back with putBuf once done with it.
func (c *conn) readMessage() (*[]byte, error) { return wires[c.kind].read(c) }

// maxMessage is the largest frame body the peer may send now: before its
// login is accepted, gateway.max_login_bytes bounds it too, so that a
// connection nobody vouched for holds little.
func (c *conn) maxMessage() int {
	if c.sessions == nil {
		return min(c.gw.cfg.MaxLoginBytes, c.gw.cfg.MaxFrameBytes)
	}
	return c.gw.cfg.MaxFrameBytes
}

// readAhead is the most one read of a connection served by the poller
// asks the socket for.
const readAhead = 2048

// aheadReader reads a plaintext connection's socket ahead of its messages,
// once the poller serves it: one read takes a small message whole (its
// header and body came together), where reading it piece by piece took
// two reads (three for a WebSocket frame). What it read past the message
// stays in ahead, to be read before the socket, and the poller's turn goes
// on until it is used up (idle): epoll knows only of what waits in the
// socket. A connection between messages holds no buffer. A read that got
// less than it asked for found the socket empty after it (drained).
type aheadReader conn

func (r *aheadReader) Read(p []byte) (int, error) {
	c := (*conn)(r)
	if len(c.ahead) == 0 {
		if len(p) >= readAhead { // a large body: straight into it
			n, err := c.nc.Read(p)
			c.drained = n < len(p)
			return n, err
		}
		c.aheadBuf = bufpool.Get(readAhead)
		n, err := c.nc.Read(*c.aheadBuf)
		if n == 0 {
			bufpool.Put(c.aheadBuf)
			c.aheadBuf = nil
			return 0, err
		}
		c.ahead, c.drained = (*c.aheadBuf)[:n], n < readAhead // an error with data comes again at the next read
	}
	n := copy(p, c.ahead)
	c.ahead = c.ahead[n:]
	if len(c.ahead) == 0 {
		bufpool.Put(c.aheadBuf)
		c.ahead, c.aheadBuf = nil, nil
	}
	return n, nil
}

// readWS reads the next WebSocket data message.
func (c *conn) readWS() (*[]byte, error) { return c.readWSMessage(nil) }

// readNative reads one native frame, length prefix included, from the
// stream.
func (c *conn) readNative() (*[]byte, error) {
	if c.sniffed == 0 {
		if _, err := io.ReadFull(c.input(), c.hdr[:protocol.LengthSize]); err != nil {
			return nil, err
		}
	}
	c.sniffed = 0
	n, err := protocol.BodyLength([protocol.LengthSize]byte(c.hdr[:protocol.LengthSize]), c.maxMessage())
	if err != nil {
		return nil, err
	}
	buf := bufpool.Get(protocol.LengthSize + n)
	copy(*buf, c.hdr[:protocol.LengthSize])
	if _, err := io.ReadFull(c.input(), (*buf)[protocol.LengthSize:]); err != nil {
		return buf, err
	}
	return buf, nil
}

// errControlFrame reports that a WebSocket control frame was read (and
// answered) and no data message: it counts as input, but there is no op.
var errControlFrame = errors.New("websocket control frame")

// maxFragments bounds the frames one WebSocket data message may come in.
// Clients fragment rarely (browsers never split what they send); a flood of
// tiny fragments only costs the server headers and reads.
const maxFragments = 64

// readWSMessage reads one whole data message, answering pings and
// reassembling fragments on the way, and appends it to msg (nil: a new
// buffer). A control frame before anything was read ends the read with
// errControlFrame. The payload is unmasked in place. Fragments are gathered
// in one buffer that grows geometrically, so a message costs time linear in
// its size however it is cut; msg, with what it held, stays within the
// frame limit.
func (c *conn) readWSMessage(msg *[]byte) (*[]byte, error) {
	max := c.maxMessage() + protocol.LengthSize
	fragments := 0
	for {
		h, err := ws.ReadHeaderBuffer(c.input(), c.hdr[:])
		if err != nil {
			return msg, err
		}
		if !h.Masked || h.Rsv != 0 {
			return msg, protocol.Errorf(protocol.CodeBadFrame, "client frames must be masked and use no extensions")
		}
		if h.OpCode.IsControl() {
			if err := c.wsControl(h); err != nil {
				return msg, err
			}
			if msg == nil { // between messages: a frame, for the heartbeat
				return nil, errControlFrame
			}
			continue
		}
		have := 0
		if msg != nil {
			have = len(*msg)
		}
		if (h.OpCode == ws.OpContinuation) != (fragments > 0) {
			return msg, protocol.Errorf(protocol.CodeBadFrame, "bad WebSocket fragment sequence")
		}
		if h.Length > int64(max-have) {
			return msg, protocol.Errorf(protocol.CodeFrameTooLarge, "message exceeds the limit of %d bytes", max)
		}
		if fragments++; fragments > maxFragments {
			return msg, protocol.Errorf(protocol.CodeBadFrame, "message in more than %d WebSocket fragments", maxFragments)
		}
		msg = bufpool.Grow(msg, have+int(h.Length), max)
		part := (*msg)[have:]
		if _, err := io.ReadFull(c.input(), part); err != nil {
			return msg, err
		}
		ws.Cipher(part, h.Mask, 0)
		if h.Fin {
			return msg, nil
		}
	}
}

// wsControl answers a ping, ignores a pong, and ends the read on a close.
func (c *conn) wsControl(h ws.Header) error {
	if h.Length > 125 || !h.Fin {
		return protocol.Errorf(protocol.CodeBadFrame, "bad WebSocket control frame")
	}
	var payload [125]byte
	p := payload[:h.Length]
	if _, err := io.ReadFull(c.input(), p); err != nil {
		return err
	}
	ws.Cipher(p, h.Mask, 0)
	switch h.OpCode {
	case ws.OpClose:
		return errPeerClosed
	case ws.OpPing:
		c.send(appendWSMessage(nil, ws.OpPong, func(b []byte) []byte { return append(b, p...) }))
	}
	return nil
}
