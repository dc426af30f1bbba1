package mqtt

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// wire encodes a packet with paho's codec, as an MQTT client library sends
// it.
func wire(t testing.TB, p packets.ControlPacket) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func connect(edit func(*packets.ConnectPacket)) packets.ControlPacket {
	c := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	c.ProtocolName, c.ProtocolVersion, c.Keepalive = "MQTT", 4, 60
	c.ClientIdentifier, c.CleanSession = "d1", true
	c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, "demo", true, []byte("a.jwt.token")
	if edit != nil {
		edit(c)
	}
	return c
}

// What a real client library sends decodes to what it meant.
func TestDecodeClientPackets(t *testing.T) {
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.TopicName, pub.Qos, pub.MessageID, pub.Payload = "longlink/demo/up/chat", 1, 7, []byte("hi")
	pub0 := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub0.TopicName, pub0.Retain, pub0.Payload = "longlink/demo/up/chat", true, []byte{}
	sub := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sub.MessageID, sub.Topics, sub.Qoss = 9, []string{"longlink/demo/group/room-1", "a/b"}, []byte{1, 2}
	unsub := packets.NewControlPacket(packets.Unsubscribe).(*packets.UnsubscribePacket)
	unsub.MessageID, unsub.Topics = 10, []string{"longlink/demo/group/room-1"}
	puback := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
	puback.MessageID = 65535
	will := connect(func(c *packets.ConnectPacket) {
		c.CleanSession, c.WillFlag, c.WillQos, c.WillRetain = false, true, 1, true
		c.WillTopic, c.WillMessage = "longlink/demo/will", []byte("gone")
		c.PasswordFlag, c.Password = false, nil
	})
	for _, tc := range []struct {
		name string
		in   packets.ControlPacket
		want Packet
	}{
		{"connect", connect(nil), Packet{Type: Connect, Level: 4, ConnectFlags: 0xc2, KeepAlive: 60,
			ClientID: []byte("d1"), Username: []byte("demo"), Password: []byte("a.jwt.token")}},
		{"connect with a will", will, Packet{Type: Connect, Level: 4, ConnectFlags: 0x80 | 0x20 | 0x08 | 0x04, KeepAlive: 60,
			ClientID: []byte("d1"), WillTopic: []byte("longlink/demo/will"), WillMessage: []byte("gone"), Username: []byte("demo")}},
		{"publish qos 1", pub, Packet{Type: Publish, Flags: 2, Topic: []byte("longlink/demo/up/chat"), PacketID: 7, Payload: []byte("hi")}},
		{"publish qos 0, retained, empty", pub0, Packet{Type: Publish, Flags: 1, Topic: []byte("longlink/demo/up/chat"), Payload: []byte{}}},
		{"subscribe", sub, Packet{Type: Subscribe, Flags: 2, PacketID: 9, Filters: []Filter{
			{Topic: []byte("longlink/demo/group/room-1"), QoS: 1}, {Topic: []byte("a/b"), QoS: 2}}}},
		{"unsubscribe", unsub, Packet{Type: Unsubscribe, Flags: 2, PacketID: 10, Filters: []Filter{{Topic: []byte("longlink/demo/group/room-1")}}}},
		{"puback", puback, Packet{Type: Puback, PacketID: 65535}},
		{"pingreq", packets.NewControlPacket(packets.Pingreq), Packet{Type: Pingreq}},
		{"disconnect", packets.NewControlPacket(packets.Disconnect), Packet{Type: Disconnect}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Packet
			if err := Decode(wire(t, tc.in), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	var p Packet
	Decode(wire(t, connect(nil)), &p)
	if !p.CleanSession() || p.HasWill() || !p.HasUsername() || !p.HasPassword() {
		t.Fatalf("connect flags read wrong: %+v", p)
	}
	Decode(wire(t, pub), &p)
	if p.QoS() != 1 || p.Retain() || p.Dup() {
		t.Fatalf("publish flags read wrong: %+v", p)
	}
}

// Another protocol level (MQTT 5, MQTT 3.1) is ErrVersion: the server
// answers CONNACK 0x01.
func TestDecodeOtherVersions(t *testing.T) {
	for _, c := range []packets.ControlPacket{
		connect(func(c *packets.ConnectPacket) { c.ProtocolVersion = 5 }),
		connect(func(c *packets.ConnectPacket) { c.ProtocolName, c.ProtocolVersion = "MQIsdp", 3 }),
	} {
		var p Packet
		if err := Decode(wire(t, c), &p); !errors.Is(err, ErrVersion) {
			t.Errorf("%v: %v, want ErrVersion", c, err)
		}
	}
}

// What the server sends decodes, with a real client library, to what it
// meant.
func TestEncodeServerPackets(t *testing.T) {
	read := func(b []byte) packets.ControlPacket {
		t.Helper()
		p, err := packets.ReadPacket(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("% x: %v", b, err)
		}
		return p
	}
	if p := read(AppendConnack(nil, true, RefusedBadCredentials)).(*packets.ConnackPacket); !p.SessionPresent || p.ReturnCode != 4 {
		t.Fatalf("connack: %v", p)
	}
	big := bytes.Repeat([]byte("x"), 200000) // a remaining length of 3 bytes
	for _, tc := range []struct {
		qos  byte
		dup  bool
		data []byte
	}{{0, false, []byte("online")}, {1, true, big}, {1, false, nil}} {
		p := read(AppendPublish(nil, []byte("longlink/demo/push"), tc.qos, tc.dup, 513, tc.data)).(*packets.PublishPacket)
		wantID := uint16(0)
		if tc.qos == 1 {
			wantID = 513
		}
		if p.TopicName != "longlink/demo/push" || p.Qos != tc.qos || p.Dup != tc.dup || p.MessageID != wantID || !bytes.Equal(p.Payload, tc.data) {
			t.Fatalf("publish qos %d: %v", tc.qos, p)
		}
	}
	if p := read(AppendAck(nil, Puback, 77)).(*packets.PubackPacket); p.MessageID != 77 {
		t.Fatalf("puback: %v", p)
	}
	if p := read(AppendAck(nil, Unsuback, 78)).(*packets.UnsubackPacket); p.MessageID != 78 {
		t.Fatalf("unsuback: %v", p)
	}
	if p := read(AppendSuback(nil, 79, []byte{1, SubackFailure})).(*packets.SubackPacket); p.MessageID != 79 || !bytes.Equal(p.ReturnCodes, []byte{1, 0x80}) {
		t.Fatalf("suback: %v", p)
	}
	if _, ok := read(AppendPingresp(nil)).(*packets.PingrespPacket); !ok {
		t.Fatal("pingresp")
	}
}

// Malformed packets are an *Error (the server closes without a reply), each
// for its reason; none panics.
func TestDecodeMalformed(t *testing.T) {
	good := wire(t, connect(nil))
	withFlags := func(b []byte, first byte) []byte { return append([]byte{first}, b[1:]...) }
	for name, b := range map[string][]byte{
		"empty":                     {},
		"truncated header":          {0x30},
		"length over 4 bytes":       {0x30, 0xff, 0xff, 0xff, 0xff, 0x01},
		"length beyond the data":    {0x30, 0x05, 0x00},
		"data beyond the length":    {0xc0, 0x00, 0x00},
		"server packet":             {0x20, 0x02, 0x00, 0x00},
		"reserved type":             {0xf0, 0x00},
		"connect flags in header":   withFlags(good, 0x12),
		"connect reserved bit":      reserved(good),
		"password without user":     wire(t, connect(func(c *packets.ConnectPacket) { c.UsernameFlag, c.Username = false, "" })),
		"will qos without will":     wire(t, connect(func(c *packets.ConnectPacket) { c.WillQos = 1 })),
		"connect truncated":         append([]byte{0x10, byte(len(good) - 3)}, good[2:len(good)-1]...),
		"client id not utf-8":       wire(t, connect(func(c *packets.ConnectPacket) { c.ClientIdentifier = "\xff" })),
		"client id with nul":        wire(t, connect(func(c *packets.ConnectPacket) { c.ClientIdentifier = "a\x00b" })),
		"publish qos 3":             {0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01},
		"publish dup at qos 0":      {0x38, 0x03, 0x00, 0x01, 'a'},
		"publish to a wildcard":     {0x30, 0x03, 0x00, 0x01, '#'},
		"publish to no topic":       {0x30, 0x02, 0x00, 0x00},
		"publish packet id 0":       {0x32, 0x05, 0x00, 0x01, 'a', 0x00, 0x00},
		"puback short":              {0x40, 0x01, 0x00},
		"puback with flags":         {0x42, 0x02, 0x00, 0x01},
		"subscribe without filters": {0x82, 0x02, 0x00, 0x01},
		"subscribe wrong flags":     {0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00},
		"subscribe qos 3":           {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x03},
		"subscribe empty filter":    {0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00},
		"unsubscribe no filters":    {0xa2, 0x02, 0x00, 0x01},
		"pingreq with a body":       {0xc0, 0x01, 0x00},
		"disconnect with flags":     {0xe1, 0x00},
	} {
		var p Packet
		var me *Error
		if err := Decode(b, &p); !errors.As(err, &me) {
			t.Errorf("%s: %v, want a malformed packet", name, err)
		}
	}
}

// reserved sets the reserved bit of the CONNECT c's flags (a one-byte
// remaining length, then "MQTT" and the level, then the flags).
func reserved(c []byte) []byte {
	b := bytes.Clone(c)
	b[9] |= 1
	return b
}

func TestHeader(t *testing.T) {
	for _, n := range []int{0, 127, 128, 16383, 16384, 2097151, 2097152, MaxRemaining} {
		b := appendHeader(nil, Publish, 0, n)
		first, remaining, size, err := Header(b)
		if err != nil || first != 0x30 || remaining != n || size != len(b) {
			t.Errorf("%d: %#x %d %d %v", n, first, remaining, size, err)
		}
		if _, _, _, err := Header(b[:len(b)-1]); err != ErrIncomplete {
			t.Errorf("%d cut short: %v", n, err)
		}
	}
}

// Decode never panics, and a PUBLISH it accepts encodes back to itself.
func FuzzDecode(f *testing.F) {
	f.Add(wire(f, connect(nil)))
	f.Add([]byte{0x32, 0x07, 0x00, 0x01, 'a', 0x00, 0x05, 'h', 'i'})
	f.Add([]byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x01})
	f.Add([]byte{0xc0, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if Decode(b, &p) != nil || p.Type != Publish || p.QoS() > 1 || p.Retain() {
			return
		}
		again := AppendPublish(nil, p.Topic, p.QoS(), p.Dup(), p.PacketID, p.Payload)
		var q Packet
		if err := Decode(again, &q); err != nil || !bytes.Equal(again, b) && !reflect.DeepEqual(p, q) {
			t.Fatalf("% x re-encoded as % x: %v", b, again, err)
		}
	})
}
