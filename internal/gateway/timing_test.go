package gateway_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/protocol"
)

// These tests run a gateway in a testing/synctest bubble (in-process
// connections, no epoll), where time moves only when every goroutine
// waits: timers fire at their exact time, and waiting an hour takes none.

func noEpoll(o *gateway.Options) { o.NoEpoll = true }

// A session ends with 4011 when its token expires, not before; a device
// whose token has longer goes on.
func TestTokenExpiryOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, noEpoll, func(o *gateway.Options) { o.Config.Heartbeat, o.Config.HeartbeatMax = 2*time.Hour, 2*time.Hour })
		h.patience = 2 * time.Hour
		start := time.Now()
		short := h.login("short")
		time.Sleep(time.Minute)
		h.login("long") // an hour too, a minute later
		short.closedWith(protocol.CodeTokenExpired)
		if took := time.Since(start); took < time.Hour || took > time.Hour+time.Second {
			t.Fatalf("a token of an hour expired after %v", took)
		}
		if !h.g.Online(app, "long") {
			t.Fatal("the other device's session ended too")
		}
	})
}

// A drain spreads its moves over the period: the k-th device is sent away
// by (k+1)/n of it, and none more than a tick early.
func TestDrainPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, noEpoll)
		h.patience = time.Minute
		const n, period, tick = 10, 10 * time.Second, 10 * time.Millisecond
		moved := make(chan time.Duration, n)
		start := time.Now()
		for i := range n {
			d := h.login(fmt.Sprint("d", i))
			go func() {
				d.expect(protocol.OpRedirect)
				moved <- time.Since(start)
			}()
		}
		if err := h.g.Drain(context.Background(), period, nil); err != nil {
			t.Fatal(err)
		}
		var at []time.Duration
		for range n {
			at = append(at, <-moved)
		}
		slices.Sort(at)
		for k, a := range at {
			due := time.Duration(k+1) * period / n
			if a > due || a < due-period/n-tick {
				t.Errorf("move %d at %v, due by %v", k, a, due)
			}
		}
	})
}
