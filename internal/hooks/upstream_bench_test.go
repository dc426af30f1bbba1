package hooks

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/metrics"
)

// BenchmarkUpstreamRoundTrips: up calls through the worker pool to a backend
// on loopback HTTP and back, from 256 concurrent devices.
func BenchmarkUpstreamRoundTrips(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok"))
	}))
	defer backend.Close()
	cfg := config.Default()
	apps := config.NewLiveApps([]config.App{{ID: "demo", Webhooks: config.Webhooks{
		Upstream: map[string]string{"chat": backend.URL}}}})
	u := NewUpstream(Options{Config: cfg.Hooks, Apps: apps, Node: "n1", MaxReplySize: 1024, Metrics: metrics.New()})
	defer u.Close()
	var failed atomic.Int64
	b.SetParallelism(128)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan struct{}, 1)
		call := UpCall{App: "demo", Device: "d1", Biz: "chat", Data: []byte("hello"),
			Reply: func(status int, _ []byte, err error) {
				if err != nil || status != 200 {
					failed.Add(1)
				}
				done <- struct{}{}
			}}
		for pb.Next() {
			for !u.Forward(call) { // the queue is full: a device would get 4010
			}
			<-done
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d calls failed", n)
	}
}
