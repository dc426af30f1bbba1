package gateway

import (
	"encoding/binary"
	"sync"

	"github.com/gobwas/ws"

	"github.com/longlink/longlink/protocol"
)

// wireKind names a connection's wire; it indexes wires and the encodings
// a Message keeps.
type wireKind uint8

const (
	wireTCP      wireKind = iota // native binary frames on TCP
	wireWSBinary                 // WebSocket, subprotocol longlink.v1
	wireWSJSON                   // WebSocket, subprotocol longlink.json
	wireMQTT                     // MQTT 3.1.1 packets on TCP
	wireWSMQTT                   // MQTT packets in WebSocket messages, subprotocol mqtt
	numWireKinds
)

// Subprotocol names of the WebSocket transports.
const (
	SubprotocolBinary = "longlink.v1"
	SubprotocolJSON   = "longlink.json"
	SubprotocolMQTT   = "mqtt"
)

// wire is how one kind of connection carries frames: a codec's messages
// on the byte stream itself (the socket, or its TLS session), or in
// WebSocket messages.
type wire struct {
	name, tlsName string // the transport's name for metrics and logs, in plaintext and under TLS
	codec         codec
	read          func(*conn) (*[]byte, error) // reads the peer's next message
	ws            bool                         // messages travel in WebSocket messages ...
	op            ws.OpCode                    // ... of this opcode
}

var wires [numWireKinds]wire

// The table is filled in init: its readers lead back to it (a reader that
// answers a WebSocket ping may close a connection too slow to take the pong).
func init() {
	wires = [numWireKinds]wire{
		wireTCP:      {name: "tcp", tlsName: "tls", codec: nativeCodec{}, read: (*conn).readNative},
		wireWSBinary: {name: "ws", tlsName: "wss", codec: nativeCodec{}, read: (*conn).readWS, ws: true, op: ws.OpBinary},
		wireWSJSON:   {name: "ws_json", tlsName: "wss_json", codec: jsonCodec{}, read: (*conn).readWS, ws: true, op: ws.OpText},
		wireMQTT:     {name: "mqtt", tlsName: "mqtts", codec: mqttCodec{}, read: (*conn).readMQTT},
		wireWSMQTT:   {name: "ws_mqtt", tlsName: "wss_mqtt", codec: mqttCodec{}, read: (*conn).readWSMQTT, ws: true, op: ws.OpBinary},
	}
}

// codec is one way of writing frames as messages: native binary, JSON or
// MQTT packets.
type codec interface {
	// appendFrame appends f as one message, or nothing when f has no form
	// in this codec (MQTT has no redirect, for one). replay marks a stored
	// message read back from the store, which may have been sent on an
	// earlier connection. f comes by value: a pointer would escape through
	// the interface, and cost each stored message a heap frame.
	appendFrame(dst []byte, f protocol.Frame, replay bool) []byte
	// serve handles one message from the peer; an error it returns is
	// fatal to the connection.
	serve(c *conn, msg []byte) error
}

// nativeCodec is the binary frame layout of docs/protocol.md, length
// prefix included.
type nativeCodec struct{}

func (nativeCodec) appendFrame(dst []byte, f protocol.Frame, _ bool) []byte {
	return protocol.AppendBinary(dst, &f)
}

func (nativeCodec) serve(c *conn, msg []byte) error {
	if len(msg) < protocol.LengthSize || int(binary.BigEndian.Uint32(msg)) != len(msg)-protocol.LengthSize {
		return protocol.Errorf(protocol.CodeBadFrame, "length prefix does not match the message")
	}
	var f protocol.Frame
	if err := protocol.DecodeBinary(msg[protocol.LengthSize:], &f); err != nil {
		return err
	}
	return c.handle(&f)
}

// jsonCodec is the JSON form of frames (subprotocol longlink.json).
type jsonCodec struct{}

func (jsonCodec) appendFrame(dst []byte, f protocol.Frame, _ bool) []byte {
	return protocol.AppendJSON(dst, &f)
}

func (jsonCodec) serve(c *conn, msg []byte) error {
	var f protocol.Frame
	if err := protocol.DecodeJSON(msg, &f); err != nil {
		return err
	}
	return c.handle(&f)
}

// encode appends f as it goes on a wire of kind k: a message of its codec,
// inside one unmasked WebSocket message on a WebSocket. It appends nothing
// when f has no form there.
func (k wireKind) encode(dst []byte, f *protocol.Frame) []byte { return k.appendFrame(dst, f, false) }

// encodeReplay is encode for a stored message read back from the store.
func (k wireKind) encodeReplay(dst []byte, f *protocol.Frame) []byte {
	return k.appendFrame(dst, f, true)
}

func (k wireKind) appendFrame(dst []byte, f *protocol.Frame, replay bool) []byte {
	start := len(dst)
	dst = k.message(dst, func(b []byte) []byte { return wires[k].codec.appendFrame(b, *f, replay) })
	if wires[k].ws && len(dst)-start == 2 { // an empty WebSocket message: f has no form in this codec
		return dst[:start]
	}
	return dst
}

// message appends one message whose bytes payload appends: as they are on
// a stream, in one unmasked WebSocket message on a WebSocket.
func (k wireKind) message(dst []byte, payload func([]byte) []byte) []byte {
	if w := &wires[k]; w.ws {
		return appendWSMessage(dst, w.op, payload)
	}
	return payload(dst)
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
