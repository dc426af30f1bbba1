// Package mqtt decodes and encodes the MQTT 3.1.1 control packets a server
// exchanges with its clients (OASIS MQTT Version 3.1.1, 2014): everything a
// client sends is decoded and checked as the specification requires of a
// server, and what a server sends is encoded. It does no I/O.
//
// Decoded packets alias the buffer they were decoded from: a Packet is
// valid until that buffer is reused, and callers copy what they keep.
package mqtt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Type is a control packet's type (section 2.2.1).
type Type uint8

// The control packet types.
const (
	Connect     Type = 1
	Connack     Type = 2
	Publish     Type = 3
	Puback      Type = 4
	Pubrec      Type = 5
	Pubrel      Type = 6
	Pubcomp     Type = 7
	Subscribe   Type = 8
	Suback      Type = 9
	Unsubscribe Type = 10
	Unsuback    Type = 11
	Pingreq     Type = 12
	Pingresp    Type = 13
	Disconnect  Type = 14
)

var typeNames = [...]string{Connect: "CONNECT", Connack: "CONNACK", Publish: "PUBLISH", Puback: "PUBACK",
	Pubrec: "PUBREC", Pubrel: "PUBREL", Pubcomp: "PUBCOMP", Subscribe: "SUBSCRIBE", Suback: "SUBACK",
	Unsubscribe: "UNSUBSCRIBE", Unsuback: "UNSUBACK", Pingreq: "PINGREQ", Pingresp: "PINGRESP", Disconnect: "DISCONNECT"}

func (t Type) String() string {
	if t >= Connect && t <= Disconnect {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// CONNACK return codes (section 3.2.2.3).
const (
	Accepted              byte = 0x00
	RefusedVersion        byte = 0x01 // unacceptable protocol version
	RefusedIdentifier     byte = 0x02 // identifier rejected
	RefusedUnavailable    byte = 0x03 // server unavailable
	RefusedBadCredentials byte = 0x04 // bad user name or password
	RefusedNotAuthorized  byte = 0x05 // not authorized
)

// SubackFailure is a SUBACK return code: the subscription was refused.
const SubackFailure byte = 0x80

// Level is the protocol level of MQTT 3.1.1.
const Level = 4

// MaxRemaining is the largest remaining length the fixed header can carry.
const MaxRemaining = 268435455

// Packet is a decoded control packet. Only the fields of its type are set.
type Packet struct {
	Type  Type
	Flags byte // the fixed header's low four bits

	// CONNECT
	Level        byte
	ConnectFlags byte
	KeepAlive    uint16 // seconds; 0: none
	ClientID     []byte
	WillTopic    []byte
	WillMessage  []byte
	Username     []byte
	Password     []byte

	// PUBLISH
	Topic   []byte
	Payload []byte

	// PUBLISH at QoS 1 or 2, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE,
	// UNSUBSCRIBE
	PacketID uint16

	// SUBSCRIBE (with the QoS asked for) and UNSUBSCRIBE
	Filters []Filter
}

// Filter is a topic filter of a SUBSCRIBE or UNSUBSCRIBE.
type Filter struct {
	Topic []byte
	QoS   byte // SUBSCRIBE: the maximum QoS asked for
}

// The CONNECT flags (section 3.1.2.3).
const (
	flagCleanSession = 0x02
	flagWill         = 0x04
	flagWillRetain   = 0x20
	flagPassword     = 0x40
	flagUsername     = 0x80
)

// CleanSession reports a CONNECT's clean session flag.
func (p *Packet) CleanSession() bool { return p.ConnectFlags&flagCleanSession != 0 }

// HasWill reports whether a CONNECT carries a will message.
func (p *Packet) HasWill() bool { return p.ConnectFlags&flagWill != 0 }

// HasUsername and HasPassword report a CONNECT's user name and password
// flags.
func (p *Packet) HasUsername() bool { return p.ConnectFlags&flagUsername != 0 }

// HasPassword reports a CONNECT's password flag.
func (p *Packet) HasPassword() bool { return p.ConnectFlags&flagPassword != 0 }

// QoS is a PUBLISH's quality of service.
func (p *Packet) QoS() byte { return p.Flags >> 1 & 3 }

// Retain is a PUBLISH's retain flag.
func (p *Packet) Retain() bool { return p.Flags&1 != 0 }

// Dup is a PUBLISH's duplicate delivery flag.
func (p *Packet) Dup() bool { return p.Flags&8 != 0 }

// ErrIncomplete is returned by Header when b does not hold a whole fixed
// header yet.
var ErrIncomplete = errors.New("mqtt: incomplete fixed header")

// ErrVersion is returned by Decode for a CONNECT of another protocol or
// level than MQTT 3.1.1: the server answers CONNACK RefusedVersion, then
// closes (section 3.1.2.2).
var ErrVersion = errors.New("mqtt: unacceptable protocol version")

// Error is a malformed packet: the server closes the connection without a
// reply (section 4.8).
type Error struct{ Reason string }

func (e *Error) Error() string { return "mqtt: malformed packet: " + e.Reason }

func malformed(format string, a ...any) error { return &Error{Reason: fmt.Sprintf(format, a...)} }

// Header reads the fixed header at the start of b: the packet's first byte,
// its remaining length, and the header's size. It returns ErrIncomplete
// when b ends inside it.
func Header(b []byte) (first byte, remaining, size int, err error) {
	if len(b) < 2 {
		return 0, 0, 0, ErrIncomplete
	}
	mult := 1
	for i := 1; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, 0, ErrIncomplete
		}
		remaining += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return b[0], remaining, i + 1, nil
		}
		mult *= 128
	}
	return 0, 0, 0, malformed("remaining length longer than 4 bytes")
}

// Decode decodes the whole packet b (fixed header included) sent by a
// client into p, and checks it as section 3 requires of a server.
func Decode(b []byte, p *Packet) error {
	first, remaining, size, err := Header(b)
	if err == ErrIncomplete {
		return malformed("truncated fixed header")
	}
	if err != nil {
		return err
	}
	if remaining != len(b)-size {
		return malformed("remaining length %d, but %d bytes follow", remaining, len(b)-size)
	}
	*p = Packet{Type: Type(first >> 4), Flags: first & 0x0f}
	r := reader{b: b[size:]}
	switch p.Type {
	case Connect:
		err = p.decodeConnect(&r)
	case Publish:
		err = p.decodePublish(&r)
	case Puback, Pubrec, Pubrel, Pubcomp:
		err = p.decodeAck(&r)
	case Subscribe, Unsubscribe:
		err = p.decodeSubscribe(&r)
	case Pingreq, Disconnect:
		err = p.flags(0)
		if err == nil && len(r.b) != 0 {
			err = malformed("%s with a body", p.Type)
		}
	default:
		return malformed("%s is not sent by clients", p.Type)
	}
	if err == nil && r.err != nil {
		err = r.err
	}
	if err == nil && len(r.b) != 0 {
		err = malformed("%d bytes after the %s", len(r.b), p.Type)
	}
	return err
}

// flags checks the fixed header's flags of a type that fixes them.
func (p *Packet) flags(want byte) error {
	if p.Flags != want {
		return malformed("%s with flags %#x", p.Type, p.Flags)
	}
	return nil
}

func (p *Packet) decodeConnect(r *reader) error {
	if err := p.flags(0); err != nil {
		return err
	}
	name := r.str()
	p.Level = r.byte()
	if r.err != nil {
		return r.err
	}
	if string(name) != "MQTT" || p.Level != Level {
		return ErrVersion
	}
	p.ConnectFlags = r.byte()
	p.KeepAlive = r.uint16()
	switch f := p.ConnectFlags; {
	case f&1 != 0:
		return malformed("CONNECT with the reserved flag set")
	case f&flagWill == 0 && f&(flagWillRetain|0x18) != 0:
		return malformed("CONNECT with a will QoS or retain but no will")
	case f>>3&3 == 3:
		return malformed("CONNECT with will QoS 3")
	case f&flagUsername == 0 && f&flagPassword != 0:
		return malformed("CONNECT with a password but no user name")
	}
	p.ClientID = r.utf8()
	if p.HasWill() {
		p.WillTopic = r.utf8()
		p.WillMessage = r.str()
	}
	if p.HasUsername() {
		p.Username = r.utf8()
	}
	if p.HasPassword() {
		p.Password = r.str()
	}
	return nil
}

func (p *Packet) decodePublish(r *reader) error {
	if p.QoS() == 3 {
		return malformed("PUBLISH with QoS 3")
	}
	if p.QoS() == 0 && p.Dup() {
		return malformed("PUBLISH at QoS 0 with DUP set")
	}
	p.Topic = r.utf8()
	if r.err == nil && (len(p.Topic) == 0 || bytes.ContainsAny(p.Topic, "+#")) {
		return malformed("PUBLISH to topic %q", p.Topic)
	}
	if p.QoS() > 0 {
		p.PacketID = r.packetID()
	}
	p.Payload, r.b = r.b, nil
	return nil
}

func (p *Packet) decodeAck(r *reader) error {
	want := byte(0)
	if p.Type == Pubrel {
		want = 2
	}
	if err := p.flags(want); err != nil {
		return err
	}
	p.PacketID = r.packetID()
	return nil
}

func (p *Packet) decodeSubscribe(r *reader) error {
	if err := p.flags(2); err != nil {
		return err
	}
	p.PacketID = r.packetID()
	for r.err == nil && len(r.b) > 0 {
		f := Filter{Topic: r.utf8()}
		if p.Type == Subscribe {
			if f.QoS = r.byte(); r.err == nil && f.QoS > 2 {
				return malformed("SUBSCRIBE asks for QoS %d", f.QoS)
			}
		}
		if r.err == nil && len(f.Topic) == 0 {
			return malformed("%s with an empty topic filter", p.Type)
		}
		p.Filters = append(p.Filters, f)
	}
	if r.err == nil && len(p.Filters) == 0 {
		return malformed("%s without a topic filter", p.Type)
	}
	return nil
}

// reader reads a packet's variable header and payload. Its first error
// sticks; reads after it return zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) need(n int, what string) bool {
	if r.err == nil && len(r.b) < n {
		r.err = malformed("truncated %s", what)
	}
	return r.err == nil
}

func (r *reader) byte() byte {
	if !r.need(1, "field") {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uint16() uint16 {
	if !r.need(2, "field") {
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

// packetID reads a packet identifier, which is never 0 (section 2.3.1).
func (r *reader) packetID() uint16 {
	id := r.uint16()
	if r.err == nil && id == 0 {
		r.err = malformed("packet identifier 0")
	}
	return id
}

// str reads length-prefixed binary data.
func (r *reader) str() []byte {
	n := int(r.uint16())
	if !r.need(n, "string") {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// utf8 reads a UTF-8 encoded string, which must be well formed and hold no
// U+0000 (section 1.5.3).
func (r *reader) utf8() []byte {
	v := r.str()
	if r.err == nil && (!utf8.Valid(v) || bytes.IndexByte(v, 0) >= 0) {
		r.err = malformed("a string that is not well-formed UTF-8")
	}
	return v
}

// appendHeader appends a fixed header of type t with flags and a remaining
// length of n.
func appendHeader(dst []byte, t Type, flags byte, n int) []byte {
	dst = append(dst, byte(t)<<4|flags)
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

// AppendConnack appends a CONNACK with the session present flag and a
// return code.
func AppendConnack(dst []byte, sessionPresent bool, code byte) []byte {
	var sp byte
	if sessionPresent {
		sp = 1
	}
	return append(appendHeader(dst, Connack, 0, 2), sp, code)
}

// AppendPublish appends a PUBLISH of payload to topic at qos (0 or 1; id
// is its packet identifier at QoS 1), with the DUP flag for a redelivery.
func AppendPublish(dst []byte, topic []byte, qos byte, dup bool, id uint16, payload []byte) []byte {
	n := 2 + len(topic) + len(payload)
	flags := qos << 1
	if qos > 0 {
		n += 2
	}
	if dup {
		flags |= 8
	}
	dst = appendHeader(dst, Publish, flags, n)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(topic)))
	dst = append(dst, topic...)
	if qos > 0 {
		dst = binary.BigEndian.AppendUint16(dst, id)
	}
	return append(dst, payload...)
}

// AppendAck appends a PUBACK (or UNSUBACK, PUBREC, PUBCOMP) of packet id.
func AppendAck(dst []byte, t Type, id uint16) []byte {
	return binary.BigEndian.AppendUint16(appendHeader(dst, t, 0, 2), id)
}

// AppendSuback appends a SUBACK of packet id with one return code per
// filter (the QoS granted, or SubackFailure).
func AppendSuback(dst []byte, id uint16, codes []byte) []byte {
	dst = binary.BigEndian.AppendUint16(appendHeader(dst, Suback, 0, 2+len(codes)), id)
	return append(dst, codes...)
}

// AppendPingresp appends a PINGRESP.
func AppendPingresp(dst []byte) []byte { return appendHeader(dst, Pingresp, 0, 0) }
