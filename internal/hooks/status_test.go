package hooks

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/testwait"
)

// TestStatusBufferDropsOldest: while the backend is down, the events waiting
// are bounded by status_buffer; the oldest are dropped and counted, and the
// rest arrive in order once it is back.
func TestStatusBufferDropsOldest(t *testing.T) {
	var up atomic.Bool
	var attempts atomic.Int64
	var mu sync.Mutex
	var got []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var batch struct{ Events []Event }
		json.NewDecoder(r.Body).Decode(&batch)
		mu.Lock()
		for _, e := range batch.Events {
			got = append(got, e.Device)
		}
		mu.Unlock()
	}))
	defer backend.Close()

	cfg := config.Default().Hooks
	cfg.StatusBatch, cfg.StatusBuffer, cfg.StatusLinger = 2, 3, time.Millisecond
	m := metrics.New()
	apps := config.NewLiveApps([]config.App{{ID: "demo", Webhooks: config.Webhooks{Status: backend.URL}}})
	s := NewStatus(Options{Config: cfg, Apps: apps, Node: "n1", Metrics: m})
	defer s.Close()

	s.Online("demo", "e1", "", 1)
	testwait.Eventually(t, "e1 in flight, being retried", func() bool { return attempts.Load() > 0 })
	for _, d := range []string{"e2", "e3", "e4", "e5", "e6", "e7", "e8"} {
		s.Online("demo", d, "", 1)
	}
	if n := testutil.ToFloat64(m.StatusEvents.WithLabelValues("demo", "dropped")); n != 4 {
		t.Fatalf("dropped %v events, want 4 (e2-e5)", n)
	}
	up.Store(true)
	want := []string{"e1", "e6", "e7", "e8"}
	testwait.EventuallyNil(t, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(got, want) {
			return fmt.Errorf("backend got %v, want %v", got, want)
		}
		return nil
	})
	// Counted once the backend's answer is back, a moment after it got them.
	testwait.EventuallyNil(t, func() error {
		if n := testutil.ToFloat64(m.StatusEvents.WithLabelValues("demo", "sent")); n != 4 {
			return fmt.Errorf("sent counted %v, want 4", n)
		}
		return nil
	})
}

// TestStatusWithoutWebhook: an app without a status webhook queues nothing.
func TestStatusWithoutWebhook(t *testing.T) {
	m := metrics.New()
	s := NewStatus(Options{Config: config.Default().Hooks, Apps: config.NewLiveApps([]config.App{{ID: "demo"}}), Metrics: m})
	defer s.Close()
	s.Offline("demo", "d1", "", "closed", 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queues) != 0 {
		t.Fatal("events queued for an app with no webhook")
	}
}

// TestStatusNoEmptyBatches: a burst of events goes out in full batches and
// nothing follows (before, a wake-up left over from the burst posted
// {"events":null} one linger later).
func TestStatusNoEmptyBatches(t *testing.T) {
	var calls, empty atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch struct{ Events []Event }
		json.NewDecoder(r.Body).Decode(&batch)
		calls.Add(1)
		if len(batch.Events) == 0 {
			empty.Add(1)
		}
	}))
	defer backend.Close()
	cfg := config.Default().Hooks
	cfg.StatusBatch, cfg.StatusLinger = 2, 20*time.Millisecond
	apps := config.NewLiveApps([]config.App{{ID: "demo", Webhooks: config.Webhooks{Status: backend.URL}}})
	s := NewStatus(Options{Config: cfg, Apps: apps, Node: "n1", Metrics: metrics.New()})
	defer s.Close()
	for _, d := range []string{"e1", "e2", "e3", "e4"} {
		s.Online("demo", d, "", 1)
	}
	time.Sleep(10 * cfg.StatusLinger) // time for a stray batch to be posted
	if calls.Load() == 0 || empty.Load() > 0 {
		t.Fatalf("%d calls, %d of them empty", calls.Load(), empty.Load())
	}
}
