package hooks

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/metrics"
)

// roundTrip is a backend in memory: inside a synctest bubble, the time of
// each call is the bubble's, exact.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func answer(status int) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(""))}
}

// A partial batch of status events waits status_linger for more; a
// backend that fails is tried again after 100 ms, then twice as long each
// time (up to 30 s), with the same events; the next batch follows.
func TestStatusLingerAndBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var at []time.Duration // when each call came, from start
		var sent [][]string    // the devices of each call
		backend := roundTrip(func(r *http.Request) (*http.Response, error) {
			var batch struct{ Events []Event }
			if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
				return nil, err
			}
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Since(start))
			var devices []string
			for _, e := range batch.Events {
				devices = append(devices, e.Device)
			}
			sent = append(sent, devices)
			if len(at) <= 3 { // the first batch fails three times
				return answer(http.StatusServiceUnavailable), nil
			}
			return answer(http.StatusOK), nil
		})
		cfg := config.Default().Hooks
		cfg.StatusBatch, cfg.StatusLinger = 3, 200*time.Millisecond
		apps := config.NewLiveApps([]config.App{{ID: "demo", Webhooks: config.Webhooks{Status: "http://backend.test/status"}}})
		s := NewStatus(Options{Config: cfg, Apps: apps, Node: "n1", Metrics: metrics.New(), Transport: backend})
		defer s.Close()

		s.Online("demo", "b1", "", 1) // a partial batch: after the linger
		time.Sleep(time.Minute)
		s.Online("demo", "c1", "", 1)
		time.Sleep(time.Minute)
		synctest.Wait()

		mu.Lock()
		defer mu.Unlock()
		ms := time.Millisecond
		if want := []time.Duration{200 * ms, 300 * ms, 500 * ms, 900 * ms, time.Minute + 200*ms}; !slices.Equal(at, want) {
			t.Errorf("calls at %v, want %v", at, want)
		}
		b := []string{"b1"}
		if want := [][]string{b, b, b, b, {"c1"}}; !slices.EqualFunc(sent, want, slices.Equal) {
			t.Errorf("batches %v, want %v", sent, want)
		}
	})
}
