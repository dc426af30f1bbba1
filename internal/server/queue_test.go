package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/protocol"
)

// TestSlowReaderClosedWith4004: a device that stops reading is closed with
// 4004 once its send queue is full, while the API keeps answering at once
// and other devices keep receiving.
func TestSlowReaderClosedWith4004(t *testing.T) {
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
	if !strings.Contains(ts.Metrics(), `longlink_disconnects_total{reason="too_slow"} 1`) {
		t.Error("too_slow disconnect not counted")
	}
}
