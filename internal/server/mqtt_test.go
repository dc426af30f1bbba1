package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// mqttTransports are the ways an MQTT device reaches the gateway port: MQTT
// on TCP, and MQTT in WebSocket messages at /mqtt.
var mqttTransports = []string{"tcp", "ws"}

// eachMQTT runs body for each MQTT transport against a server of its own.
func eachMQTT(t *testing.T, body func(t *testing.T, ts *testserver.TS, tr string), edit ...func(*config.Config)) {
	for _, tr := range mqttTransports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			body(t, testserver.Start(t, edit...), tr)
		})
	}
}

// mqttBroker is the paho broker URL of ts's gateway for transport tr.
func mqttBroker(ts *testserver.TS, tr string) string {
	if tr == "ws" {
		return "ws://" + ts.GatewayAddr() + "/mqtt"
	}
	return "tcp://" + ts.GatewayAddr()
}

// mqttDevice is a paho client that collects the messages it receives, and
// acks them only when told (auto-ack is off).
type mqttDevice struct {
	paho.Client
	msgs chan paho.Message
	lost chan error
}

// mqttOptions are a test device's options: client id device, user name
// demo, password token, no automatic reconnect or ack.
func mqttOptions(broker, device, token string) *paho.ClientOptions {
	return paho.NewClientOptions().AddBroker(broker).SetClientID(device).SetUsername("demo").SetPassword(token).
		SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).SetAutoAckDisabled(true).SetConnectTimeout(5 * time.Second)
}

// dialMQTT connects a device with opts; it fails the test if the
// connection is refused.
func dialMQTT(t *testing.T, opts *paho.ClientOptions) *mqttDevice {
	t.Helper()
	d, err := tryMQTT(t, opts)
	if err != nil {
		t.Fatalf("MQTT connect: %v", err)
	}
	return d
}

func tryMQTT(t *testing.T, opts *paho.ClientOptions) (*mqttDevice, error) {
	d := &mqttDevice{msgs: make(chan paho.Message, 64), lost: make(chan error, 1)}
	opts.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { d.msgs <- m })
	opts.SetConnectionLostHandler(func(_ paho.Client, err error) { d.lost <- err })
	d.Client = paho.NewClient(opts)
	tok := d.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("CONNECT timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { d.Disconnect(0) })
	return d, nil
}

// next waits for the next message, which must carry payload on topic.
func (d *mqttDevice) next(t *testing.T, topic, payload string) paho.Message {
	t.Helper()
	select {
	case m := <-d.msgs:
		if m.Topic() != topic || string(m.Payload()) != payload {
			t.Fatalf("got %q on %s, want %q on %s", m.Payload(), m.Topic(), payload, topic)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("no message %q on %s", payload, topic)
	}
	return nil
}

// wait waits for tok and fails the test on its error.
func wait(t *testing.T, what string, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: %v", what, tok.Error())
	}
}

const pushTopic = "longlink/demo/push"

// Stored messages reach an MQTT device at QoS 1, in seq order; those it
// did not PUBACK come again, with DUP, on its next connection; those it
// acked never do, and its acks count in the delivery report. An
// online-only push comes at QoS 0; a stored one pushed while it is
// connected comes at once, without DUP.
func TestMQTTStoredReplayAndAck(t *testing.T) {
	eachMQTT(t, func(t *testing.T, ts *testserver.TS, tr string) {
		var ids []string
		for _, data := range []string{"one", "two", "three"} {
			ids = append(ids, ts.Push(stored([]string{"m1"}, data))["id"].(string))
		}
		opts := mqttOptions(mqttBroker(ts, tr), "m1", ts.Token("m1", ""))
		d := dialMQTT(t, opts)
		for _, data := range []string{"one", "two", "three"} {
			if m := d.next(t, pushTopic, data); m.Qos() != 1 || !m.Duplicate() {
				t.Fatalf("replayed %q at QoS %d, dup %v; want QoS 1 with DUP", data, m.Qos(), m.Duplicate())
			}
		} // and none acked
		d.Disconnect(0)

		d = dialMQTT(t, opts)
		for _, data := range []string{"one", "two", "three"} {
			m := d.next(t, pushTopic, data)
			if m.Qos() != 1 || !m.Duplicate() {
				t.Fatalf("redelivered %q at QoS %d, dup %v", data, m.Qos(), m.Duplicate())
			}
			m.Ack()
		}
		report(t, ts, ids[2], map[string]any{"acked": 1.0})
		out := ts.Push(stored([]string{"m1"}, "live"))
		if out["online"] != 1.0 {
			t.Fatalf("push to a connected MQTT device: %v", out)
		}
		if m := d.next(t, pushTopic, "live"); m.Qos() != 1 || m.Duplicate() {
			t.Fatalf("a live stored push at QoS %d, dup %v; want QoS 1 without DUP", m.Qos(), m.Duplicate())
		}
		ts.Push(map[string]any{"devices": []string{"m1"}, "data": "now only"})
		if m := d.next(t, pushTopic, "now only"); m.Qos() != 0 {
			t.Fatalf("an online-only push at QoS %d", m.Qos())
		}
		d.Disconnect(0)

		// Acked: gone. The unacked "live" alone comes again, before anything new.
		d = dialMQTT(t, opts.SetCleanSession(true)) // stored messages belong to the device, not the session
		d.next(t, pushTopic, "live").Ack()
		ts.Push(stored([]string{"m1"}, "after"))
		d.next(t, pushTopic, "after")
	})
}

// One stored broadcast reaches an MQTT device, a native TCP device and a
// WebSocket device of one app; the MQTT device's PUBACK moves its cursor
// in the broadcast log, so a reconnect does not bring it again.
func TestMQTTBroadcastWithOtherTransports(t *testing.T) {
	ts := testserver.Start(t, withOpsToken)
	m := dialMQTT(t, mqttOptions(mqttBroker(ts, "tcp"), "m1", ts.Token("m1", "")))
	tcp := connect(t, ts, client.TCP, ts.Token("t1", ""))
	ws := connect(t, ts, client.WebSocket, ts.Token("w1", ""))
	out := ts.Push(map[string]any{"broadcast": true, "data": "to all", "ttl": 600})
	if out["online"] != 3.0 {
		t.Fatalf("broadcast answer %v", out)
	}
	tcp.expect(t, "to all")
	ws.expect(t, "to all")
	msg := m.next(t, pushTopic, "to all")
	if msg.Qos() != 1 {
		t.Fatalf("stored broadcast at QoS %d", msg.Qos())
	}
	msg.Ack()
	testwait.Eventually(t, "the PUBACK to move the cursor", func() bool {
		_, d := admin(t, ts, "/v1/admin/devices/demo/m1")
		return d["broadcasts_waiting"] == 0.0
	})
	m.Disconnect(0)
	m = dialMQTT(t, mqttOptions(mqttBroker(ts, "tcp"), "m1", ts.Token("m1", "")))
	ts.Push(map[string]any{"broadcast": true, "data": "online only"})
	if got := m.next(t, pushTopic, "online only"); got.Qos() != 0 {
		t.Fatalf("online broadcast at QoS %d", got.Qos())
	}
}

// SUBSCRIBE to longlink/<app>/group/<g> joins g if the token allows it,
// else the SUBACK refuses it (0x80) and the connection stays; group pushes
// come on the group's topic; UNSUBSCRIBE leaves.
func TestMQTTGroups(t *testing.T) {
	eachMQTT(t, func(t *testing.T, ts *testserver.TS, tr string) {
		tok, err := auth.MintClaims(testserver.Demo.Secret,
			auth.Claims{App: "demo", Device: "m1", Groups: []string{"room-*"}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		d := dialMQTT(t, mqttOptions(mqttBroker(ts, tr), "m1", tok))
		sub := d.SubscribeMultiple(map[string]byte{"longlink/demo/group/room-1": 1, "longlink/demo/group/staff": 1,
			"longlink/other/group/room-1": 0, "longlink/demo/group/room-+": 0, pushTopic: 1, "longlink/demo/up_reply/#": 2}, nil)
		wait(t, "subscribe", sub)
		want := map[string]byte{"longlink/demo/group/room-1": 0, "longlink/demo/group/staff": 0x80,
			"longlink/other/group/room-1": 0x80, "longlink/demo/group/room-+": 0x80, pushTopic: 1,
			"longlink/demo/up_reply/#": 1} // QoS 2 asked, 1 granted
		got := sub.(*paho.SubscribeToken).Result()
		if len(got) != len(want) {
			t.Fatalf("SUBACK codes %v, want one for each of %v", got, want)
		}
		for topic, code := range got {
			if want[topic] != code {
				t.Fatalf("SUBACK for %s: %#x, want %#x", topic, code, want[topic])
			}
		}
		_, out := ts.Call("POST", "/v1/push", testserver.Demo.APIKey, map[string]any{"app": "demo", "group": "room-1", "data": "hi room"})
		if out["online"] != 1.0 {
			t.Fatalf("group push: %v", out)
		}
		if m := d.next(t, "longlink/demo/group/room-1", "hi room"); m.Qos() != 0 {
			t.Fatalf("group push at QoS %d", m.Qos())
		}
		wait(t, "unsubscribe", d.Unsubscribe("longlink/demo/group/room-1"))
		if _, out = ts.Call("POST", "/v1/push", testserver.Demo.APIKey, map[string]any{"app": "demo", "group": "room-1", "data": "gone"}); out["online"] != 0.0 {
			t.Fatalf("group push after UNSUBSCRIBE: %v", out)
		}
		ts.Push(map[string]any{"devices": []string{"m1"}, "data": "still up"})
		d.next(t, pushTopic, "still up")
	})
}

// A PUBLISH to longlink/<app>/up/<biz> goes to the app's backend; its
// answer comes back on up_reply/<biz>; an unknown biz is told on
// up_error/<biz>; a PUBLISH to any other topic closes the connection.
func TestMQTTUpstream(t *testing.T) {
	for _, tr := range mqttTransports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t)
			ts := testserver.Start(t, withWebhooks(b))
			d := dialMQTT(t, mqttOptions(mqttBroker(ts, tr), "m1", ts.Token("m1", "u1")))
			wait(t, "publish up", d.Publish("longlink/demo/up/chat", 1, false, "hello"))
			d.next(t, "longlink/demo/up_reply/chat", "echo: hello")
			b.mu.Lock()
			call := b.ups[0]
			b.mu.Unlock()
			if call["device"] != "m1" || call["user"] != "u1" || call["biz"] != "chat" {
				t.Fatalf("backend got %v", call)
			}
			wait(t, "publish up at QoS 2", d.Publish("longlink/demo/up/chat", 2, false, "twice sure")) // PUBREC, PUBREL, PUBCOMP
			d.next(t, "longlink/demo/up_reply/chat", "echo: twice sure")
			wait(t, "publish up at QoS 0", d.Publish("longlink/demo/up/nope", 0, false, "x"))
			m := d.next(t, "longlink/demo/up_error/nope", `{"code":4000,"reason":"unknown biz nope"}`)
			var e struct{ Code int }
			if json.Unmarshal(m.Payload(), &e); e.Code != 4000 {
				t.Fatalf("up_error %s", m.Payload())
			}
			// Refused publishes close the connection: to a topic that is not
			// up/<biz>, or retained.
			for _, pub := range []struct {
				topic    string
				retained bool
			}{{"longlink/demo/push", false}, {"longlink/demo/up/chat", true}} {
				d.Publish(pub.topic, 1, pub.retained, "refused")
				select {
				case <-d.lost:
				case <-time.After(5 * time.Second):
					t.Fatalf("a PUBLISH to %s (retained %v) did not close the connection", pub.topic, pub.retained)
				}
				d = dialMQTT(t, mqttOptions(mqttBroker(ts, tr), "m1", ts.Token("m1", "u1")))
			}
		})
	}
}

// CONNECT is refused with the return code that says why: a bad password
// (0x04), a client id other than the token's device (0x02), a user name
// other than its app (0x04), another protocol level (0x01).
func TestMQTTConnectRefused(t *testing.T) {
	ts := testserver.Start(t)
	broker := mqttBroker(ts, "tcp")
	good := ts.Token("m1", "")
	for _, tc := range []struct {
		name string
		opts *paho.ClientOptions
		want error
	}{
		{"bad password", mqttOptions(broker, "m1", "not-a-token"), packets.ErrorRefusedBadUsernameOrPassword},
		{"other device", mqttOptions(broker, "m2", good), packets.ErrorRefusedIDRejected},
		{"other app", mqttOptions(broker, "m1", good).SetUsername("other"), packets.ErrorRefusedBadUsernameOrPassword},
		{"MQTT 3.1", mqttOptions(broker, "m1", good).SetProtocolVersion(3), packets.ErrorRefusedBadProtocolVersion},
	} {
		if _, err := tryMQTT(t, tc.opts); !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// MQTT 5 (protocol level 5): CONNACK 0x01, then the close.
	c, err := net.Dial("tcp", ts.GatewayAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 0, 0, 0})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "\x20\x02\x00\x01" {
		t.Fatalf("MQTT 5 CONNECT: % x, %v; want CONNACK 0x01", got, err)
	}
	// Without client id, the device is the token's; /ws serves MQTT too,
	// by its subprotocol.
	for _, broker := range []string{broker, "ws://" + ts.GatewayAddr() + "/ws"} {
		d := dialMQTT(t, mqttOptions(broker, "", good).SetCleanSession(true))
		ts.Push(map[string]any{"devices": []string{"m1"}, "data": "for m1"})
		d.next(t, pushTopic, "for m1")
	}
}

// Keep alive k maps onto a heartbeat of k/2: a device silent for 1.5 k is
// closed; one that pings stays.
func TestMQTTKeepAlive(t *testing.T) {
	testengine.Long(t, "waits out keep alives")
	ts := testserver.Start(t, func(c *config.Config) { c.Gateway.HeartbeatMin = time.Second })
	connectRaw := func(keepAlive uint16) net.Conn {
		c, err := net.Dial("tcp", ts.GatewayAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		p := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
		p.ProtocolName, p.ProtocolVersion, p.ClientIdentifier, p.Keepalive = "MQTT", 4, "m1", keepAlive
		p.UsernameFlag, p.Username, p.PasswordFlag, p.Password = true, "demo", true, []byte(ts.Token("m1", ""))
		if err := p.Write(c); err != nil {
			t.Fatal(err)
		}
		ack := make([]byte, 4)
		if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
			t.Fatalf("CONNACK % x, %v", ack, err)
		}
		return c
	}
	silent := connectRaw(2) // heartbeat 1 s: closed after 3 s of silence
	start := time.Now()
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a silent device: %v, want the connection closed", err)
	}
	if took := time.Since(start); took < 2500*time.Millisecond || took > 6*time.Second {
		t.Fatalf("closed after %v; want about 1.5 keep alives (3 s)", took)
	}

	pinging := connectRaw(2)
	pingreq := packets.NewControlPacket(packets.Pingreq)
	for range 6 { // 4.5 s: past 1.5 keep alives, answered each time
		time.Sleep(750 * time.Millisecond)
		if err := pingreq.Write(pinging); err != nil {
			t.Fatal(err)
		}
		resp := make([]byte, 2)
		pinging.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(pinging, resp); err != nil || resp[0] != 0xd0 {
			t.Fatalf("PINGRESP % x, %v", resp, err)
		}
	}
}

// Debian's mosquitto_sub receives a stored push at QoS 1 and acks it;
// mosquitto_pub publishes upstream.
func TestMQTTMosquittoClients(t *testing.T) {
	testengine.Need(t, "mosquitto_sub")
	b := newBackend(t)
	ts := testserver.Start(t, withWebhooks(b))
	host, port, _ := net.SplitHostPort(ts.GatewayAddr())
	id := ts.Push(stored([]string{"m1"}, "for mosquitto"))["id"].(string)
	login := []string{"-h", host, "-p", port, "-i", "m1", "-u", "demo", "-P", ts.Token("m1", "")}
	out := run(t, "mosquitto_sub", append(login, "-q", "1", "-c", "-t", pushTopic, "-C", "1", "-v", "-W", "10")...)
	if strings.TrimSpace(out) != pushTopic+" for mosquitto" {
		t.Fatalf("mosquitto_sub printed %q", out)
	}
	report(t, ts, id, map[string]any{"acked": 1.0})

	run(t, "mosquitto_pub", append(login, "-q", "1", "-t", "longlink/demo/up/chat", "-m", "from mosquitto")...)
	testwait.Eventually(t, "the backend to get the up", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.ups) == 1 && b.ups[0]["device"] == "m1"
	})
}

// run runs a command for at most 20 s and returns what it printed; it
// fails the test if the command fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testengine.Need(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	return string(out)
}

// In a cluster, an MQTT device is reached through any node's API: a
// stored push and a group push through node 0 reach it on node 1, and its
// PUBACK holds when it reconnects to node 2.
func TestMQTTCluster(t *testing.T) {
	nodes := testserver.StartCluster(t, 3)
	opts := func(n *testserver.TS) *paho.ClientOptions {
		return mqttOptions(mqttBroker(n, "tcp"), "m1", n.Token("m1", ""))
	}
	d := dialMQTT(t, opts(nodes[1]))
	wait(t, "subscribe", d.Subscribe("longlink/demo/group/g1", 0, nil))
	testwait.Eventually(t, "m1 routed", func() bool { return presentIn(t, nodes[0], "m1") })
	id := nodes[0].Push(stored([]string{"m1"}, "across"))["id"].(string)
	d.next(t, pushTopic, "across").Ack()
	report(t, nodes[0], id, map[string]any{"acked": 1.0})
	_, out := nodes[0].Call("POST", "/v1/push", testserver.Demo.APIKey, map[string]any{"app": "demo", "group": "g1", "data": "to g1"})
	if out["online"] != 1.0 {
		t.Fatalf("group push through node 0: %v", out)
	}
	d.next(t, "longlink/demo/group/g1", "to g1")
	d.Disconnect(0)

	d = dialMQTT(t, opts(nodes[2]))
	nodes[0].Push(stored([]string{"m1"}, "next"))
	d.next(t, pushTopic, "next") // and not "across" again
}

// MQTT over TLS (ssl:// and wss://…/mqtt) where TLS is required: a long
// replay and a push larger than a TLS record arrive; plaintext MQTT gets
// CONNACK 0x05.
func TestMQTTOverTLS(t *testing.T) {
	ts := testserver.Start(t, testserver.WithTLS(t, true), func(c *config.Config) {
		c.Gateway.MaxFrameBytes, c.API.MaxDataBytes = 64<<10, 60000
	})
	for _, broker := range []string{"ssl://" + ts.GatewayAddr(), "wss://" + ts.GatewayAddr() + "/mqtt"} {
		device := "m-" + broker[:3]
		for i := range 300 {
			ts.Push(stored([]string{device}, fmt.Sprint("stored ", i)))
		}
		d := dialMQTT(t, mqttOptions(broker, device, ts.Token(device, "")).SetTLSConfig(ts.TLS))
		for i := range 300 {
			d.next(t, pushTopic, fmt.Sprint("stored ", i)).Ack()
		}
		big := strings.Repeat("b", 40000)
		ts.Push(map[string]any{"devices": []string{device}, "data": big})
		d.next(t, pushTopic, big)
	}
	if _, err := tryMQTT(t, mqttOptions(mqttBroker(ts, "tcp"), "m1", ts.Token("m1", ""))); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("plaintext MQTT where TLS is required: %v", err)
	}
}

// One live connection per device across transports, with the same status
// events: a native login replaces the device's MQTT connection (closed),
// a kick closes it, and DISCONNECT is a clean close; the backend hears
// each, in order.
func TestMQTTReplacedKickedAndEvents(t *testing.T) {
	b := newBackend(t)
	ts := testserver.Start(t, withWebhooks(b))
	broker := mqttBroker(ts, "tcp")
	m := dialMQTT(t, mqttOptions(broker, "m1", ts.Token("m1", "")))
	native := connect(t, ts, client.TCP, ts.Token("m1", ""))
	select {
	case <-m.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("a native login did not replace the MQTT connection")
	}
	ts.Push(map[string]any{"devices": []string{"m1"}, "data": "to the newer"})
	native.expect(t, "to the newer")
	native.Close()
	testwait.Eventually(t, "m1 offline", func() bool { return !online(t, ts, "m1") })

	m = dialMQTT(t, mqttOptions(broker, "m1", ts.Token("m1", "")))
	ts.Call("POST", "/v1/kick", testserver.Demo.APIKey, map[string]any{"app": "demo", "devices": []string{"m1"}})
	select {
	case <-m.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("a kick did not close the MQTT connection")
	}
	m = dialMQTT(t, mqttOptions(broker, "m1", ts.Token("m1", "")))
	m.Disconnect(0)
	want := []string{"online:login", "offline:replaced", "online:login", "offline:closed",
		"online:login", "offline:kicked", "online:login", "offline:closed"}
	testwait.Eventually(t, "the status events", func() bool { return slices.Equal(b.eventsOf("m1"), want) })
}

// Garbage after a good CONNECT (random packets of every type, well framed
// or not) closes only that connection: the server stays up and another
// device is served throughout.
func TestMQTTGarbageAffectsOnlyItsConnection(t *testing.T) {
	ts := testserver.Start(t)
	other := dialMQTT(t, mqttOptions(mqttBroker(ts, "tcp"), "other", ts.Token("other", "")))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		c, err := net.Dial("tcp", ts.GatewayAddr())
		if err != nil {
			t.Fatal(err)
		}
		p := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
		p.ProtocolName, p.ProtocolVersion, p.ClientIdentifier, p.Keepalive = "MQTT", 4, "g1", 30
		p.UsernameFlag, p.Username, p.PasswordFlag, p.Password = true, "demo", true, []byte(ts.Token("g1", ""))
		p.Write(c)
		junk := make([]byte, 1+rng.IntN(64))
		for j := range junk {
			junk[j] = byte(rng.IntN(256))
		}
		junk[0] = byte(rng.IntN(16)) << 4 // a packet type, any flags in the rest
		if rng.IntN(2) == 0 && len(junk) > 1 {
			junk[1] = byte(len(junk) - 2) // well framed, when it fits
		}
		c.Write(junk)
		c.Close()
		if i%100 == 0 {
			ts.Push(map[string]any{"devices": []string{"other"}, "data": fmt.Sprint("still here ", i)})
			other.next(t, pushTopic, fmt.Sprint("still here ", i))
		}
	}
	ts.Push(map[string]any{"devices": []string{"other"}, "data": "at the end"})
	other.next(t, pushTopic, "at the end")
}

// TestMQTTDocsTryIt runs docs/mqtt.md's "Try it" as written, against a
// server of this test: the subscriber gets its stored push, and the
// publisher, a device of its own, replaces nobody.
func TestMQTTDocsTryIt(t *testing.T) {
	testengine.Need(t, "mosquitto_sub")
	page, err := os.ReadFile("../../docs/mqtt.md")
	if err != nil {
		t.Fatal(err)
	}
	tryIt := string(page[bytes.Index(page, []byte("## Try it")):])
	ts := testserver.Start(t)
	_, port, _ := net.SplitHostPort(ts.GatewayAddr())
	tokens := map[string]string{}
	for _, m := range regexp.MustCompile(`(\w+)=\$\(go run ./cmd/longlink token --device (\w+)\)`).FindAllStringSubmatch(tryIt, -1) {
		tokens[m[1]] = ts.Token(m[2], "")
	}
	command := func(name string) []string {
		line := regexp.MustCompile(`(?m)^` + name + ` .*$`).FindString(tryIt)
		if line == "" {
			t.Fatalf("no %s in the docs' Try it", name)
		}
		args := strings.Fields(strings.Replace(line, "-p 7070", "-p "+port, 1))
		for i, a := range args {
			if v, ok := strings.CutPrefix(strings.Trim(a, `"`), "$"); ok {
				args[i] = tokens[v]
			}
		}
		return args[1:]
	}
	ts.Push(stored([]string{"d1"}, "kept for d1"))
	sub := exec.Command(testengine.Need(t, "mosquitto_sub"), append(command("mosquitto_sub"), "-C", "2", "-W", "20")...)
	var subOut bytes.Buffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer sub.Process.Kill()
	testwait.Eventually(t, "mosquitto_sub online", func() bool { return online(t, ts, "d1") })
	run(t, "mosquitto_pub", command("mosquitto_pub")...)
	ts.Push(map[string]any{"devices": []string{"d1"}, "data": "after the pub"})
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, subOut.String())
	}
	if want := "longlink/demo/push kept for d1\nlonglink/demo/push after the pub\n"; subOut.String() != want {
		t.Fatalf("mosquitto_sub printed %q, want %q", subOut.String(), want)
	}
	if n := metricValue(ts, `longlink_disconnects_total\{reason="replaced"\}`); n > 0 {
		t.Fatalf("%v connections replaced: mosquitto_pub took the subscriber's device", n)
	}
}
