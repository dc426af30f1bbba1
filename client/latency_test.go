package client_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/testserver"
)

// BenchmarkPushToHandler is the time from a push API call to the SDK's
// OnPush, one push at a time, over TCP on loopback: the figure
// docs/benchmarks.md sets beside the Java SDK's (clients/java, Bench
// latency).
func BenchmarkPushToHandler(b *testing.B) {
	ts := testserver.Start(b)
	got := make(chan time.Time, 1)
	c, err := client.Dial(context.Background(), client.Config{Addr: ts.GatewayAddr(), Token: ts.Token("d1", ""),
		OnPush: func(client.Push) { got <- time.Now() }})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	took := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "m"})
		took = append(took, (<-got).Sub(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
}
