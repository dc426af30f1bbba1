package gateway

import (
	"encoding/binary"
	"sync"

	"github.com/gobwas/ws"

	"github.com/longlink/longlink/protocol"
)

// wireKind is how frames are put on one connection's wire.
type wireKind uint8

const (
	wireTCP      wireKind = iota // native binary frames on TCP
	wireWSBinary                 // WebSocket, subprotocol longlink.v1
	wireWSJSON                   // WebSocket, subprotocol longlink.json
	numWireKinds
)

// Subprotocol names of the WebSocket transports.
const (
	SubprotocolBinary = "longlink.v1"
	SubprotocolJSON   = "longlink.json"
)

func (k wireKind) String() string {
	switch k {
	case wireTCP:
		return "tcp"
	case wireWSBinary:
		return "ws"
	default:
		return "ws_json"
	}
}

// encode appends f as it goes on a wire of kind k: a binary frame, or a
// binary frame or a JSON object inside one unmasked WebSocket message.
func (k wireKind) encode(dst []byte, f *protocol.Frame) []byte {
	switch k {
	case wireTCP:
		return protocol.AppendBinary(dst, f)
	case wireWSBinary:
		return appendWSMessage(dst, ws.OpBinary, func(b []byte) []byte { return protocol.AppendBinary(b, f) })
	default:
		return appendWSMessage(dst, ws.OpText, func(b []byte) []byte { return protocol.AppendJSON(b, f) })
	}
}

// appendWSMessage appends one server-to-client WebSocket frame whose payload
// is written by payload. The header is sized after the payload is known, by
// reserving the largest header and moving the payload down when it is smaller.
func appendWSMessage(dst []byte, op ws.OpCode, payload func([]byte) []byte) []byte {
	const maxHeader = 10
	start := len(dst)
	dst = payload(append(dst, make([]byte, maxHeader)...))
	n := len(dst) - start - maxHeader
	var hdr [maxHeader]byte
	hdr[0] = 0x80 | byte(op) // FIN
	h := 2
	switch {
	case n < 126:
		hdr[1] = byte(n)
	case n <= 0xffff:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
		h = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		h = 10
	}
	copy(dst[start+maxHeader-h:], hdr[:h])
	return append(dst[:start], dst[start+maxHeader-h:]...)
}

// wsClose returns a WebSocket close frame with code and reason.
func wsClose(code protocol.Code, reason string) []byte {
	if len(reason) > 123 { // control frames carry at most 125 bytes
		reason = reason[:123]
	}
	return appendWSMessage(nil, ws.OpClose, func(b []byte) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(code))
		return append(b, reason...)
	})
}

// Message is one frame on its way to many connections. It is encoded at most
// once per wire kind, the first time a connection of that kind needs it, and
// the bytes are shared by every receiver. Safe for concurrent use.
type Message struct {
	frame protocol.Frame
	once  [numWireKinds]sync.Once
	enc   [numWireKinds][]byte
}

// NewMessage returns a Message for f. f must not change afterwards.
func NewMessage(f *protocol.Frame) *Message { return &Message{frame: *f} }

// Frame returns the frame m carries.
func (m *Message) Frame() *protocol.Frame { return &m.frame }

func (m *Message) bytes(k wireKind) []byte {
	m.once[k].Do(func() { m.enc[k] = k.encode(nil, &m.frame) })
	return m.enc[k]
}
