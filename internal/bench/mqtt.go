package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// pushTopic is where a longlink gateway publishes an app's pushes to its
// MQTT devices, and where, against a plain broker (Options.Broker), the
// devices subscribe and the broadcast is published.
func pushTopic(app string) string { return "longlink/" + app + "/push" }

// mqttDevice is a lean MQTT 3.1.1 device for the load: one socket, a
// reader goroutine, and a goroutine that sends PINGREQ every keep alive.
// Packets are encoded and decoded by paho's packets package. It acks each
// QoS 1 message when it arrives.
type mqttDevice struct {
	conn    net.Conn
	mu      sync.Mutex // serializes writes
	pinger  *time.Ticker
	stopped chan struct{}
}

// dialMQTT connects to addr as clientID (user name and password, if set)
// with keepAlive, subscribes to topic at QoS 0 if one is given, and then
// calls onPublish with each message received.
func dialMQTT(ctx context.Context, dialer *net.Dialer, addr, clientID, user, password, topic string,
	keepAlive time.Duration, onPublish func(payload []byte, qos byte)) (*mqttDevice, error) {
	if dialer == nil {
		dialer = &net.Dialer{}
	}
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	r := bufio.NewReaderSize(conn, 512)
	connect := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	connect.ProtocolName, connect.ProtocolVersion, connect.CleanSession = "MQTT", 4, true
	connect.ClientIdentifier, connect.Keepalive = clientID, uint16(keepAlive/time.Second)
	if user != "" {
		connect.UsernameFlag, connect.Username, connect.PasswordFlag, connect.Password = true, user, true, []byte(password)
	}
	if err := connect.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	p, err := packets.ReadPacket(r)
	if err == nil {
		if ack, ok := p.(*packets.ConnackPacket); !ok || ack.ReturnCode != packets.Accepted {
			err = fmt.Errorf("CONNECT refused: %v", p)
		}
	}
	if err == nil && topic != "" {
		sub := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
		sub.MessageID, sub.Topics, sub.Qoss = 1, []string{topic}, []byte{0}
		if err = sub.Write(conn); err == nil {
			if p, err = packets.ReadPacket(r); err == nil {
				if _, ok := p.(*packets.SubackPacket); !ok {
					err = fmt.Errorf("SUBSCRIBE answered by %v", p)
				}
			}
		}
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	d := &mqttDevice{conn: conn, pinger: time.NewTicker(keepAlive), stopped: make(chan struct{})}
	go d.read(r, onPublish)
	go d.keepAlive()
	return d, nil
}

func (d *mqttDevice) read(r *bufio.Reader, onPublish func([]byte, byte)) {
	defer d.Close()
	for {
		p, err := packets.ReadPacket(r)
		if err != nil {
			return
		}
		if pub, ok := p.(*packets.PublishPacket); ok {
			onPublish(pub.Payload, pub.Qos)
			if pub.Qos == 1 {
				ack := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
				ack.MessageID = pub.MessageID
				d.write(ack)
			}
		}
	}
}

func (d *mqttDevice) keepAlive() {
	for {
		select {
		case <-d.stopped:
			return
		case <-d.pinger.C:
			d.write(packets.NewControlPacket(packets.Pingreq))
		}
	}
}

func (d *mqttDevice) write(p packets.ControlPacket) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return p.Write(d.conn)
}

// Close disconnects, once.
func (d *mqttDevice) Close() error {
	d.mu.Lock()
	select {
	case <-d.stopped:
		d.mu.Unlock()
		return nil
	default:
		close(d.stopped)
	}
	d.mu.Unlock()
	d.pinger.Stop()
	d.write(packets.NewControlPacket(packets.Disconnect))
	return d.conn.Close()
}

// publishMQTT publishes data at QoS 0 to topic on the MQTT broker at addr
// (Options.Broker), from a connection of its own.
func publishMQTT(addr, topic string, data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := dialMQTT(ctx, nil, addr, "bench-publisher", "", "", "", time.Minute, func([]byte, byte) {})
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer d.Close()
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.TopicName, pub.Payload = topic, data
	if err := d.write(pub); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}
