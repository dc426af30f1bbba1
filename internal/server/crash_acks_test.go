package server_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// handled is what the devices of one life of the server handled: each
// copy ("device/id"), and when.
type handled struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (h *handled) add(device, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.at[device+"/"+id]; !ok {
		h.at[device+"/"+id] = time.Now()
	}
}

func (h *handled) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.at)
}

// TestKillDuringAcking: a server killed (kill -9) while its devices ack a
// stream of stored messages loses none that got a 200, and hands over again
// only what was acked in its last moments. An ack is not synced on its own:
// it rides the next commit that syncs (the next push's), so what a crash
// can lose is the acks that came after the last synced commit, and their
// messages come again (at least once; the SDKs drop them by id). The test
// counts them (go test -v prints it) and holds them to that bound: each
// was handled less than a second before the last push answered before the
// kill.
func TestKillDuringAcking(t *testing.T) {
	testengine.Long(t, "kills a server under load and starts it again")
	dataDir := t.TempDir()
	ops := "ops: {token: " + opsToken + "}"
	srv := startChild(t, dataDir, ops)
	const devices = 20
	names := make([]string, devices)
	for i := range names {
		names[i] = fmt.Sprint("d", i)
	}
	first := &handled{at: map[string]time.Time{}}
	var clients []*client.Client
	for _, d := range names {
		c, err := client.Dial(context.Background(), client.Config{Addr: srv.gateway, Token: testserver.MintToken(t, testserver.Demo, d, ""),
			OnPush: func(p client.Push) { first.add(d, p.ID) }, MinBackoff: time.Hour, MaxBackoff: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}

	// One pusher, each call to every device, until the server is gone.
	var answered sync.Map // id -> true
	var lastAnswer atomic.Int64
	pushing := make(chan struct{})
	go func() {
		defer close(pushing)
		for i := 0; ; i++ {
			status, out := testserver.TryAPI(context.Background(), "http://"+srv.api, http.MethodPost, "/v1/push", testserver.Demo.APIKey,
				map[string]any{"app": "demo", "devices": names, "data": fmt.Sprint("m", i), "ttl": 3600})
			if status != http.StatusOK {
				return
			}
			lastAnswer.Store(time.Now().UnixNano())
			answered.Store(out["id"].(string), true)
		}
	}()
	testwait.Eventually(t, "10,000 copies handled and acked", func() bool { return first.len() >= 10_000 })
	srv.kill9(t)
	<-pushing
	last := time.Unix(0, lastAnswer.Load())
	for _, c := range clients {
		c.Close()
	}

	// A new process of each device knows nothing: it resumes from the server's acks.
	again := startChild(t, dataDir, ops)
	second := &handled{at: map[string]time.Time{}}
	for _, d := range names {
		c, err := client.Dial(context.Background(), client.Config{Addr: again.gateway, Token: testserver.MintToken(t, testserver.Demo, d, ""),
			OnPush: func(p client.Push) { second.add(d, p.ID) }})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for _, d := range names {
		testwait.Eventually(t, d+"'s mailbox emptied", func() bool {
			status, out := testserver.TryAPI(context.Background(), "http://"+again.api, http.MethodGet, "/v1/admin/devices/demo/"+d, opsToken, nil)
			return status == http.StatusOK && out["stored_waiting"] == 0.0
		})
	}

	first.mu.Lock()
	second.mu.Lock()
	defer first.mu.Unlock()
	defer second.mu.Unlock()
	lost, total := 0, 0
	answered.Range(func(id, _ any) bool {
		for _, d := range names {
			total++
			_, a := first.at[d+"/"+id.(string)]
			_, b := second.at[d+"/"+id.(string)]
			if !a && !b {
				lost++
			}
		}
		return true
	})
	if lost > 0 {
		t.Errorf("%d of the %d copies answered 200 never came", lost, total)
	}
	repeated, late := 0, 0
	for copy := range second.at {
		at, ok := first.at[copy]
		if !ok {
			continue
		}
		repeated++
		if at.Before(last.Add(-time.Second)) {
			late++
		}
	}
	if late > 0 {
		t.Errorf("%d copies handled more than a second before the last answered push came again", late)
	}
	t.Logf("%d copies answered 200; %d handled before the kill, %d of them handed over again after it", total, len(first.at), repeated)
}
