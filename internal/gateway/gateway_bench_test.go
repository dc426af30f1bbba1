package gateway_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/protocol"
)

func startGateway(b *testing.B) (*gateway.Gateway, *pipeListener) {
	h := newHarness(b, func(o *gateway.Options) { o.Config.SendQueue = 64 })
	return h.g, h.ln
}

// benchDevice logs in over the native protocol and counts pushes, reading
// into one reused buffer so that the benchmark counts the gateway's
// allocations, not its own.
func benchDevice(b *testing.B, nc net.Conn, device string, got *sync.WaitGroup) {
	tok, err := auth.Mint(app, secret, device, "", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := nc.Write(protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpLogin, Token: []byte(tok)})); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1024)
	read := func() (protocol.Op, error) {
		if _, err := io.ReadFull(nc, buf[:4]); err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint32(buf)
		if _, err := io.ReadFull(nc, buf[:n]); err != nil {
			return 0, err
		}
		return protocol.Op(buf[0]), nil
	}
	if op, err := read(); err != nil || op != protocol.OpWelcome {
		b.Fatalf("login: %v %v", op, err)
	}
	go func() {
		for {
			op, err := read()
			if err != nil {
				return
			}
			if op == protocol.OpPush {
				got.Done()
			}
		}
	}()
}

// BenchmarkBroadcast10k measures one 256-byte broadcast reaching 10,000
// in-process connections: encode once, queue to each, write, read.
func BenchmarkBroadcast10k(b *testing.B) {
	benchFanout(b, func(g *gateway.Gateway, m *gateway.Message) int { return g.Broadcast(app, m) }, nil)
}

// BenchmarkGroupPush10k measures one 256-byte push reaching a group of
// 10,000 in-process connections.
func BenchmarkGroupPush10k(b *testing.B) {
	benchFanout(b, func(g *gateway.Gateway, m *gateway.Message) int { n, _ := g.PushGroup(app, "room", m); return n },
		func(g *gateway.Gateway, devices []string) {
			if n := g.Join(app, "room", devices); n != len(devices) {
				b.Fatalf("%d of %d joined", n, len(devices))
			}
		})
}

// benchFanout connects 10,000 in-process devices, runs setup, then times
// push until every device has read the message.
func benchFanout(b *testing.B, push func(*gateway.Gateway, *gateway.Message) int, setup func(*gateway.Gateway, []string)) {
	const n = 10000
	g, ln := startGateway(b)
	defer ln.Close()
	var got sync.WaitGroup
	conns := make([]net.Conn, n)
	devices := make([]string, n)
	for i := range conns {
		devices[i] = fmt.Sprintf("d%d", i)
		conns[i] = ln.dial()
		benchDevice(b, conns[i], devices[i], &got)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if setup != nil {
		setup(g, devices)
	}
	data := []byte(strings.Repeat("x", 256))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got.Add(n)
		m := gateway.NewMessage(&protocol.Frame{Op: protocol.OpPush, App: []byte(app), ID: []byte("m"), Data: data})
		if sent := push(g, m); sent != n {
			b.Fatalf("push reached %d of %d", sent, n)
		}
		got.Wait()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/delivery")
}
