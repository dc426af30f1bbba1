package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/bufpool"
	"github.com/longlink/longlink/internal/mqtt"
	"github.com/longlink/longlink/protocol"
)

// MQTT devices (docs/mqtt.md): an MQTT 3.1.1 client is a device like any
// other, on the same sessions, mailboxes and groups; only its wire differs.
// CONNECT is the login (client id = device, user name = app, password =
// token); a push is a PUBLISH on longlink/<app>/push (or on the group's
// topic), at QoS 1 when stored, whose PUBACK is the ack; SUBSCRIBE to
// longlink/<app>/group/<group> joins; a PUBLISH to longlink/<app>/up/<biz>
// goes to the backend, whose answer comes back on longlink/<app>/up_reply/<biz>.

// topicRoot starts every topic of the gateway: longlink/<app>/...
const topicRoot = "longlink/"

// The packet identifier of a stored message is its seq (odd identifiers)
// or its bseq (even ones) modulo idSpan: the device's PUBACK names the
// newest seq sent with that remainder. A device that leaves idSpan
// messages of one stream unacknowledged cannot ack the oldest by its
// identifier (docs/mqtt.md).
const idSpan = 32767

func packetID(n uint64, broadcast bool) uint16 {
	id := 1 + 2*uint16(n%idSpan)
	if broadcast {
		id++
	}
	return id
}

// seqOfID returns the seq (or bseq) that packet identifier id names, given
// the last one sent of its stream; 0 when it names none.
func seqOfID(id uint16, sent uint64) uint64 {
	back := (sent%idSpan + idSpan - uint64(id-1)/2) % idSpan
	if back >= sent {
		return 0
	}
	return sent - back
}

// readMQTT reads one MQTT packet from the stream: its fixed header, a
// byte at a time past the first two, then the rest.
func (c *conn) readMQTT() (*[]byte, error) {
	n := int(c.sniffed)
	c.sniffed = 0
	for want := 2; ; want = n + 1 {
		if n < want {
			if _, err := io.ReadFull(c.input(), c.hdr[n:want]); err != nil {
				return nil, err
			}
			n = want
		}
		_, remaining, size, err := mqtt.Header(c.hdr[:n])
		if errors.Is(err, mqtt.ErrIncomplete) {
			continue
		}
		if err != nil {
			return nil, protocol.Errorf(protocol.CodeBadFrame, "%v", err)
		}
		if limit := c.maxMessage(); remaining > limit {
			return nil, protocol.Errorf(protocol.CodeFrameTooLarge, "packet exceeds the limit of %d bytes", limit)
		}
		if size+remaining < n { // the sniffer read past the end of a packet too short to be a CONNECT
			return nil, protocol.Errorf(protocol.CodeBadFrame, "malformed CONNECT")
		}
		buf := bufpool.Get(size + remaining)
		copy(*buf, c.hdr[:n])
		if _, err := io.ReadFull(c.input(), (*buf)[n:]); err != nil {
			return buf, err
		}
		return buf, nil
	}
}

// readWSMQTT reads WebSocket messages until they end with a whole MQTT
// packet: a message may carry several packets, or part of one (paho sends a
// PUBLISH's payload in a message of its own).
func (c *conn) readWSMQTT() (*[]byte, error) {
	var buf *[]byte
	for {
		var err error
		if buf, err = c.readWSMessage(buf); err != nil || wholePackets(*buf) {
			return buf, err
		}
	}
}

// wholePackets reports whether b ends with the end of a packet (or is
// malformed, for the decoder to refuse).
func wholePackets(b []byte) bool {
	for len(b) > 0 {
		_, remaining, size, err := mqtt.Header(b)
		switch {
		case errors.Is(err, mqtt.ErrIncomplete), err == nil && size+remaining > len(b):
			return false
		case err != nil:
			return true
		}
		b = b[size+remaining:]
	}
	return true
}

// mqttCodec writes frames as MQTT packets and serves the packets of MQTT
// devices.
type mqttCodec struct{}

// appendFrame writes the welcome as CONNACK and a push as PUBLISH: at QoS 1
// with a packet identifier of its seq (or bseq) when stored, with DUP set
// when read back from the store; at QoS 0 when online only. Other frames
// have no MQTT form: an error's code and reason go to the server's log,
// and the device sees the connection close.
func (mqttCodec) appendFrame(dst []byte, f protocol.Frame, replay bool) []byte {
	switch f.Op {
	case protocol.OpWelcome:
		return mqtt.AppendConnack(dst, false, mqtt.Accepted)
	case protocol.OpPush:
		var qos byte
		var id uint16
		switch {
		case f.Seq > 0:
			qos, id = 1, packetID(f.Seq, false)
		case f.BSeq > 0:
			qos, id = 1, packetID(f.BSeq, true)
		}
		var topic [300]byte // room for the longest app and group names (128 bytes each)
		t := append(append(topic[:0], topicRoot...), f.App...)
		if len(f.Group) > 0 {
			t = append(append(t, "/group/"...), f.Group...)
		} else {
			t = append(t, "/push"...)
		}
		return mqtt.AppendPublish(dst, t, qos, replay && qos > 0, id, f.Data)
	}
	return dst
}

// serve handles the packets of one message: on the stream, one packet; in
// WebSocket messages, one or more whole packets.
func (mqttCodec) serve(c *conn, msg []byte) error {
	for len(msg) > 0 {
		_, remaining, size, err := mqtt.Header(msg)
		if err == nil && size+remaining > len(msg) {
			err = errors.New("truncated packet")
		}
		if err != nil {
			return protocol.Errorf(protocol.CodeBadFrame, "malformed MQTT packet: %v", err)
		}
		var p mqtt.Packet
		if err := mqtt.Decode(msg[:size+remaining], &p); err != nil {
			if errors.Is(err, mqtt.ErrVersion) {
				c.refuseConnect(mqtt.RefusedVersion)
				return protocol.Errorf(protocol.CodeBadFrame, "only MQTT 3.1.1 (protocol level 4) is served")
			}
			return protocol.Errorf(protocol.CodeBadFrame, "%v", err)
		}
		if err := c.handlePacket(&p); err != nil {
			return err
		}
		msg = msg[size+remaining:]
	}
	return nil
}

// handlePacket handles one packet from an MQTT device.
func (c *conn) handlePacket(p *mqtt.Packet) error {
	if c.sessions == nil {
		if p.Type != mqtt.Connect {
			return protocol.Errorf(protocol.CodeAuthFailed, "the first packet must be a CONNECT, not %s", p.Type)
		}
		return c.handleConnect(p)
	}
	s := &c.sessions[0] // an MQTT connection is logged into one app
	if s.over.Load() {  // replaced or kicked: the connection is closing
		return nil
	}
	switch p.Type {
	case mqtt.Publish:
		return c.handlePublish(s, p)
	case mqtt.Puback:
		c.handlePuback(s, p.PacketID)
	case mqtt.Pubrel: // the end of a QoS 2 publish from the device
		c.sendAck(mqtt.Pubcomp, p.PacketID)
	case mqtt.Subscribe, mqtt.Unsubscribe:
		c.handleSubscribe(s, p)
	case mqtt.Pingreq:
		c.sendPacket(mqtt.AppendPingresp)
	case mqtt.Disconnect:
		return errPeerClosed
	case mqtt.Connect:
		return protocol.Errorf(protocol.CodeBadFrame, "a second CONNECT")
	default: // PUBREC, PUBCOMP: the gateway never publishes at QoS 2
		return protocol.Errorf(protocol.CodeBadFrame, "%s of a message never sent at QoS 2", p.Type)
	}
	return nil
}

// handleConnect logs the device in: the password is its token, the client id
// (if any) must be the token's device and the user name (if any) its app.
// A refused CONNECT is answered with a CONNACK return code, then closed.
// Keep alive k maps onto a heartbeat of k/2, so that 3 silent heartbeats
// are the 1.5 k after which MQTT closes.
func (c *conn) handleConnect(p *mqtt.Packet) error {
	refuse := byte(0)
	var err error
	switch {
	case len(p.ClientID) == 0 && !p.CleanSession():
		refuse, err = mqtt.RefusedIdentifier, protocol.Errorf(protocol.CodeAuthFailed, "an empty client id needs clean session")
	case !p.HasPassword():
		refuse, err = mqtt.RefusedBadCredentials, protocol.Errorf(protocol.CodeAuthFailed, "the password must be the device's token")
	default:
		login := protocol.Frame{Op: protocol.OpLogin, Token: p.Password, Heartbeat: (uint32(p.KeepAlive) + 1) / 2,
			LastBSeqs: []uint64{0}} // broadcasts from the app's log, after the device's cursor
		err = c.handleLogin(&login, func(claims auth.Claims) error {
			switch {
			case len(p.ClientID) > 0 && string(p.ClientID) != claims.Device:
				refuse = mqtt.RefusedIdentifier
				return protocol.Errorf(protocol.CodeAuthFailed, "client id %q is not the token's device", p.ClientID)
			case p.HasUsername() && string(p.Username) != claims.App:
				refuse = mqtt.RefusedBadCredentials
				return protocol.Errorf(protocol.CodeAuthFailed, "user name %q is not the token's app", p.Username)
			}
			return nil
		})
	}
	if err != nil {
		if refuse == 0 {
			refuse = connackCode(err)
		}
		c.refuseConnect(refuse)
	}
	return err
}

// connackCode is the CONNACK return code of a refused login.
func connackCode(err error) byte {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Code == protocol.CodeAuthFailed {
		return mqtt.RefusedBadCredentials
	}
	return mqtt.RefusedUnavailable // rate limited, draining, going away
}

// refuseConnect queues a CONNACK refusing the connection, ahead of its
// close.
func (c *conn) refuseConnect(code byte) {
	c.mu.Lock()
	if c.state == stateLogin {
		c.pushLocked(c.kind.message(nil, func(b []byte) []byte { return mqtt.AppendConnack(b, false, code) }))
	}
	c.mu.Unlock()
}

// handlePuback acks the stored message of packet identifier id in s's app, and
// every one before it in its stream (mailbox or broadcast log), as an ack
// frame does.
func (c *conn) handlePuback(s *session, id uint16) {
	broadcast := id%2 == 0
	c.mu.Lock()
	sent := s.lastSent(broadcast)
	c.mu.Unlock()
	n := seqOfID(id, sent)
	switch {
	case n == 0:
		return
	case broadcast:
		c.ackBroadcast(s, n)
	default:
		c.ackSeq(s, n)
	}
	c.gw.metrics.Acks.WithLabelValues(s.app).Inc()
}

// handlePublish sends a device's PUBLISH to longlink/<app>/up/<biz> to the
// backend, acknowledged (PUBACK, or PUBREC at QoS 2) once handed over. The
// backend's answer is published to the device on longlink/<app>/up_reply/<biz>;
// when there is none, why is published on longlink/<app>/up_error/<biz>.
// A PUBLISH anywhere else, or retained, closes the connection: MQTT 3.1.1
// has no other way to refuse one.
func (c *conn) handlePublish(s *session, p *mqtt.Packet) error {
	prefix := topicRoot + s.app + "/up/"
	biz, ok := strings.CutPrefix(string(p.Topic), prefix)
	switch {
	case p.Retain():
		return protocol.Errorf(protocol.CodeBadFrame, "retained messages are not supported")
	case !ok:
		return protocol.Errorf(protocol.CodeNotAllowed, "devices publish only to %s<biz>, not to %s", prefix, p.Topic)
	}
	reply := []byte(topicRoot + s.app + "/up_reply/" + biz)
	c.forwardUp(s, biz, p.Payload, func(status int, body []byte, err *protocol.Error) {
		topic := reply
		if err != nil {
			topic = []byte(topicRoot + s.app + "/up_error/" + biz)
			body, _ = json.Marshal(struct {
				Code   protocol.Code `json:"code"`
				Reason string        `json:"reason"`
			}{err.Code, err.Reason})
		}
		c.sendPacket(func(b []byte) []byte { return mqtt.AppendPublish(b, topic, 0, false, 0, body) })
	})
	switch p.QoS() {
	case 1:
		c.sendAck(mqtt.Puback, p.PacketID)
	case 2:
		c.sendAck(mqtt.Pubrec, p.PacketID)
	}
	return nil
}

// handleSubscribe serves SUBSCRIBE and UNSUBSCRIBE. A filter
// longlink/<app>/group/<group> joins (or leaves) the group, granted at
// QoS 0 (group pushes are online only); any other filter under
// longlink/<app>/ (the push and reply topics, wildcards) is granted at up to
// QoS 1 and changes nothing, for the device gets its pushes and replies
// anyway. Filters elsewhere, and joins the token does not allow, are refused
// (0x80).
func (c *conn) handleSubscribe(s *session, p *mqtt.Packet) {
	leave := p.Type == mqtt.Unsubscribe
	codes := make([]byte, len(p.Filters))
	root := []byte(topicRoot + s.app + "/")
	for i, f := range p.Filters {
		rest, ok := bytes.CutPrefix(f.Topic, root)
		group, isGroup := bytes.CutPrefix(rest, []byte("group/"))
		switch {
		case !ok:
			codes[i] = mqtt.SubackFailure
		case isGroup:
			if bytes.ContainsAny(group, "+#") || c.joinGroup(s, string(group), leave) != nil {
				codes[i] = mqtt.SubackFailure
			}
		default:
			codes[i] = min(f.QoS, 1)
		}
	}
	if leave {
		c.sendAck(mqtt.Unsuback, p.PacketID)
		return
	}
	c.sendPacket(func(b []byte) []byte { return mqtt.AppendSuback(b, p.PacketID, codes) })
}

// sendPacket queues the MQTT packet that appendPacket appends.
func (c *conn) sendPacket(appendPacket func([]byte) []byte) {
	c.send(c.kind.message(nil, appendPacket))
}

// sendAck queues a PUBACK, PUBREC, PUBCOMP or UNSUBACK of packet id.
func (c *conn) sendAck(t mqtt.Type, id uint16) {
	c.sendPacket(func(b []byte) []byte { return mqtt.AppendAck(b, t, id) })
}
