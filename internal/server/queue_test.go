package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// TestSlowReaderClosedWith4004: a device that stops reading is closed with
// 4004 once its send queue is full, while the API keeps answering at once
// and other devices keep receiving.
func TestSlowReaderClosedWith4004(t *testing.T) {
	testengine.Long(t, "fills socket buffers")
	ts := testserver.Start(t, func(c *config.Config) {
		c.Gateway.SendQueue = 8
		c.Gateway.WriteTimeout = 30 * time.Second // the queue, not the write timeout, must trip
	})
	fast := connect(t, ts, client.TCP, ts.Token("fast", ""))

	slow := rawDial(t, ts, client.TCP)
	if err := slow.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(ts.Token("slow", ""))}, time.Second); err != nil {
		t.Fatal(err)
	}

	data := strings.Repeat("x", 16000)
	closed := false
	for i := 0; i < 5000 && !closed; i++ {
		_, out := ts.Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "devices": []string{"slow"}, "data": data})
		closed = out["online"] == 0.0
	}
	if !closed {
		t.Fatal("a device that never reads was not dropped")
	}
	ts.Push(map[string]any{"devices": []string{"fast"}, "data": "unaffected"})
	fast.expect(t, "unaffected")

	// What the slow device was sent ends with 4004.
	if f := readUntilError(t, slow); f.Code != protocol.CodeTooSlow {
		t.Fatalf("closed with %d (%s), want 4004", f.Code, f.Reason)
	}
	// Counted when the socket closes: when the device closes its side, or a
	// second after the final frames (this one does not close).
	testwait.Eventually(t, "the too_slow disconnect counted", func() bool {
		return strings.Contains(ts.Metrics(), `longlink_disconnects_total{reason="too_slow"} 1`)
	})
}

// neverReads logs a device of the demo app in and never reads again, with
// a small receive buffer so that the kernel holds little of what the
// server sends.
func neverReads(t *testing.T, ts *testserver.TS, device string) {
	neverReadsIn(t, ts, testserver.Demo, device)
}

// neverReadsIn is neverReads for a device of app.
func neverReadsIn(t *testing.T, ts *testserver.TS, app config.App, device string) {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := client.DialConn(context.Background(), client.TCP, ts.Addr(client.TCP), d, ts.TLS) // TLS when the server has it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(testserver.MintToken(t, app, device, ""))}, time.Second); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, device+" online", func() bool {
		_, out := ts.Call(http.MethodGet, "/v1/presence?app="+app.ID+"&device="+device, app.APIKey, nil)
		return out["devices"].(map[string]any)[device].(map[string]any)["online"] == true
	})
}

// pushUntilDropped pushes 16,000-byte online messages to devices, at most
// max times, until none of them takes one; it returns how many pushes that
// took, or fails.
func pushUntilDropped(t *testing.T, ts *testserver.TS, devices []string, max int) int {
	t.Helper()
	data := strings.Repeat("x", 16000)
	for i := 1; i <= max; i++ {
		_, out := ts.Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "devices": devices, "data": data})
		if out["online"] == 0.0 {
			return i
		}
	}
	t.Fatalf("devices that never read still took pushes after %d of 16,000 bytes", max)
	return 0
}

// The repro: the send queue was bounded in frames only, and 50
// devices that never read held 1.05 GB of 16 KiB pushes. Now a connection
// with more than limits.queue_bytes waiting is closed with 4004, long
// before its 1024 frames.
func TestSlowReaderBoundedInBytes(t *testing.T) {
	testengine.Long(t, "fills socket buffers")
	ts := testserver.Start(t, func(c *config.Config) {
		c.Limits.QueueBytes = 256 << 10
		c.Gateway.WriteTimeout = 30 * time.Second // the bytes, not the write timeout, must trip
	})
	neverReads(t, ts, "slow")
	pushUntilDropped(t, ts, []string{"slow"}, 1000) // 16 MB in fewer than 1024 frames
	testwait.Eventually(t, "too_slow counted", func() bool {
		return strings.Contains(ts.Metrics(), `longlink_disconnects_total{reason="too_slow"} 1`)
	})
	expectQueuesEmpty(t, ts)
}

// Over TLS 1.3 the same holds, and what sealing adds to the frames (record
// headers and tags, counted while a write waits for the socket) is let go
// with them: nothing stays counted once the connection is gone.
func TestSlowTLSReaderBoundedInBytes(t *testing.T) {
	testengine.Long(t, "fills socket buffers")
	ts := testserver.Start(t, testserver.WithTLS(t, false), func(c *config.Config) {
		c.Limits.QueueBytes = 256 << 10
		c.Gateway.WriteTimeout = 30 * time.Second
	})
	neverReads(t, ts, "slow")
	pushUntilDropped(t, ts, []string{"slow"}, 1000)
	testwait.Eventually(t, "too_slow counted", func() bool {
		return strings.Contains(ts.Metrics(), `longlink_disconnects_total{reason="too_slow"} 1`)
	})
	expectQueuesEmpty(t, ts)
}

// Past limits.queue_bytes_total for the whole process, connections with
// bytes waiting are closed with 4004 though each is under its own bound;
// a device that reads is served on.
func TestSlowReadersBoundedOverTheProcess(t *testing.T) {
	testengine.Long(t, "fills socket buffers")
	ts := testserver.Start(t, func(c *config.Config) {
		c.Limits.QueueBytesTotal = 1 << 20 // each connection may hold 4 MiB; together, 1 MiB
		c.Gateway.WriteTimeout = 30 * time.Second
	})
	fast := connect(t, ts, client.TCP, ts.Token("fast", ""))
	slow := []string{"slow1", "slow2", "slow3", "slow4"}
	for _, d := range slow {
		neverReads(t, ts, d)
	}
	// 250 pushes of 16 KB to each: 4 MB each, under its own 4 MiB bound
	// once the kernel holds its part.
	pushUntilDropped(t, ts, slow, 250)
	testwait.Eventually(t, "four too_slow counted", func() bool {
		return strings.Contains(ts.Metrics(), `longlink_disconnects_total{reason="too_slow"} 4`)
	})
	ts.Push(map[string]any{"devices": []string{"fast"}, "data": "unaffected"})
	fast.expect(t, "unaffected")
	expectQueuesEmpty(t, ts)
}

// One app's devices that do not read cannot get another app's devices
// closed: past limits.queue_bytes_total, the connections whose sockets
// take nothing and hold the most are closed (4004), while 20 devices of
// another app that read everything they get are served on, none closed.
func TestQueueBytesTotalClosesTheOffenders(t *testing.T) {
	testengine.Long(t, "fills socket buffers")
	ts := testserver.Start(t, func(c *config.Config) {
		c.Limits.QueueBytesTotal = 1 << 20
		c.Gateway.WriteTimeout = 30 * time.Second
	})
	var got atomic.Int64
	healthy := make([]string, 20)
	for i := range healthy {
		healthy[i] = fmt.Sprint("healthy-", i)
		c, err := client.Dial(context.Background(), client.Config{Addr: ts.GatewayAddr(), Token: ts.Token(healthy[i], ""),
			OnPush: func(client.Push) { got.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	slow := []string{"slow1", "slow2", "slow3", "slow4"}
	for _, d := range slow {
		neverReadsIn(t, ts, testserver.Other, d)
	}
	data := strings.Repeat("x", 16000)
	sent := int64(0)
	for i := 0; ; i++ {
		if i == 400 {
			t.Fatal("the devices that never read still took pushes after 400 of 16,000 bytes")
		}
		_, out := ts.Call(http.MethodPost, "/v1/push", testserver.Other.APIKey, map[string]any{"app": "other", "devices": slow, "data": data})
		_, mine := ts.Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey, map[string]any{"app": "demo", "devices": healthy, "data": data})
		if mine["online"] != 20.0 {
			t.Fatalf("push %d: %v of the 20 devices that read were online", i, mine["online"])
		}

		if sent += 20; out["online"] == 0.0 {
			break
		}
	}
	testwait.Eventually(t, "every push taken by the devices that read", func() bool { return got.Load() == sent })
	testwait.Eventually(t, "the 4 that never read closed", func() bool {
		return metricValue(ts, `longlink_disconnects_total\{reason="too_slow"\}`) == 4
	})
	expectQueuesEmpty(t, ts)
	if n := metricValue(ts, `longlink_disconnects_total\{reason="too_slow"\}`); n != 4 {
		t.Fatalf("%v connections closed as too slow, want the 4 that never read", n)
	}
}

// expectQueuesEmpty checks that every byte counted in the send queues was
// let go once the connections that held them are gone.
func expectQueuesEmpty(t *testing.T, ts *testserver.TS) {
	t.Helper()
	testwait.Eventually(t, "send queues empty", func() bool {
		return strings.Contains(ts.Metrics(), "\nlonglink_send_queue_bytes 0\n")
	})
}

// A stored push that would write more than limits.push_bytes (data times
// its devices) is refused with 413 and stores nothing: before, one call of
// 10,000 devices x 16 KiB held ~258 MB in memory until flushed.
func TestStoredPushBoundedInBytes(t *testing.T) {
	ts := testserver.Start(t, func(c *config.Config) { c.Limits.PushBytes = 64 << 10 })
	devices := []string{"d1", "d2", "d3", "d4", "d5"}
	status, out := ts.Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey,
		map[string]any{"app": "demo", "devices": devices, "data": strings.Repeat("x", 16000), "ttl": 60})
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(out["error"].(string), "limits.push_bytes") {
		t.Fatalf("80 KB stored push: %d %v", status, out)
	}
	ts.Push(stored([]string{"d1"}, "small"))
	connect(t, ts, client.TCP, ts.Token("d1", "")).expect(t, "small") // and nothing before it
}
