package embedded

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/store/storetest"
)

var payload = []byte(strings.Repeat("x", 256))

// BenchmarkAppend64Pushers: 64 goroutines each store one 256-byte message
// per call, cycling over 150 devices of their own (9,600 in all); every call
// returns only once durable.
func BenchmarkAppend64Pushers(b *testing.B) { benchAppend(b, 150) }

// BenchmarkAppend64PushersFullMailboxes: the same with one device per
// pusher, whose mailbox fills up, so every append also drops the oldest.
func BenchmarkAppend64PushersFullMailboxes(b *testing.B) { benchAppend(b, 1) }

func benchAppend(b *testing.B, devicesPerPusher int) {
	clk := storetest.NewClock()
	s := open(b, b.TempDir(), clk, func(o *store.Options) { o.MailboxLimit = 100 })
	var next atomic.Int64
	b.SetParallelism(64 / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		pusher := next.Add(1)
		m := store.Message{App: "demo", ID: "m", Data: payload, Expires: clk.In(time.Hour)}
		for i := 0; pb.Next(); i++ {
			device := []string{fmt.Sprint("d", pusher, "-", i%devicesPerPusher)}
			if _, err := s.Append(ctx, device, m, ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkReplay1000 reads a 1,000-message mailbox, as a login replays it.
func BenchmarkReplay1000(b *testing.B) {
	clk := storetest.NewClock()
	s := open(b, b.TempDir(), clk, func(o *store.Options) { o.MailboxLimit = 1000 })
	m := store.Message{App: "demo", ID: "m", Data: payload, Expires: clk.In(time.Hour)}
	for i := 0; i < 1000; i++ {
		s.Append(ctx, []string{"d1"}, m, "")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got, err := s.Since(ctx, "demo", "d1", 0, 1000)
		if err != nil || len(got) != 1000 {
			b.Fatalf("%d messages, %v", len(got), err)
		}
	}
}

// BenchmarkBroadcastWithTTL: the cost of a stored broadcast does not depend
// on how many devices the app has.
func BenchmarkBroadcastWithTTL(b *testing.B) {
	for _, devices := range []int{10, 100000} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			clk := storetest.NewClock()
			s := open(b, b.TempDir(), clk)
			m := store.Message{App: "demo", ID: "m", Data: payload, Expires: clk.In(time.Hour)}
			for i := 0; i < devices; i += 1000 {
				batch := make([]string, 0, 1000)
				for j := i; j < min(i+1000, devices); j++ {
					batch = append(batch, fmt.Sprint("d", j))
				}
				s.Append(ctx, batch, m, "")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.AppendBroadcast(ctx, m, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReconnectStorm: 10,000 devices with a stored message each log in
// at once: each acks what it had and catches up with the broadcast log, so
// the committer's batches mix many acks with reads.
func BenchmarkReconnectStorm(b *testing.B) {
	const devices = 10000
	clk := storetest.NewClock()
	s := open(b, b.TempDir(), clk)
	m := store.Message{App: "demo", ID: "m", Data: payload, Expires: clk.In(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		seqs := make([]uint64, devices)
		for i := range devices {
			r, err := s.Append(ctx, []string{fmt.Sprint("d", i)}, m, "")
			if err != nil {
				b.Fatal(err)
			}
			seqs[i] = r.Seqs[0]
		}
		b.StartTimer()
		var wg sync.WaitGroup
		for i := range devices {
			wg.Add(1)
			go func() {
				defer wg.Done()
				device := fmt.Sprint("d", i)
				s.Ack("demo", device, seqs[i])
				if _, err := s.CatchUp(ctx, "demo", device); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(b.N*devices)/b.Elapsed().Seconds(), "logins/s")
}
