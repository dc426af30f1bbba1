package storetest

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/store"
)

// Bench runs the store benchmarks against backend.
func Bench(b *testing.B, backend Backend) {
	for _, bm := range []struct {
		name string
		fn   func(*testing.B, Backend)
	}{
		{"Append64Pushers", benchAppend64Pushers},
		{"Append64PushersNoReports", benchAppend64PushersNoReports},
		{"Append64PushersFullMailboxes", benchAppend64PushersFullMailboxes},
		{"Replay1000", benchReplay1000},
		{"BroadcastWithTTL", benchBroadcastWithTTL},
		{"ReconnectStorm", benchReconnectStorm},
		{"PushToTag100000", benchPushToTag},
		{"BroadcastTo10000/copy", benchBroadcastCopy},
		{"BroadcastTo10000/cursor", benchBroadcastCursor},
		{"Ack10000", benchAck},
		{"StoredDelivery", benchStoredDelivery},
		{"ReportRead", benchReportRead},
	} {
		b.Run(bm.name, func(b *testing.B) { bm.fn(b, backend) })
	}
}

// benchStore opens a store on a fresh place of backend; mailboxLimit 0
// keeps the default.
func benchStore(b *testing.B, backend Backend, clk *Clock, mailboxLimit int) store.Store {
	return backend(b)(store.Options{Metrics: metrics.New(), Now: clk.Now, SweepInterval: time.Hour, MailboxLimit: mailboxLimit})
}

var payload = []byte(strings.Repeat("x", 256))

// benchAppend64Pushers: 64 goroutines each store one 256-byte message
// per call, with its delivery report (as the API does), cycling over 150
// devices of their own (9,600 in all); every call returns only once durable.
func benchAppend64Pushers(b *testing.B, backend Backend) {
	benchAppend(b, backend, 150, store.TargetDevices)
}

// benchAppend64PushersNoReports: the same without delivery reports, to
// show what they cost.
func benchAppend64PushersNoReports(b *testing.B, backend Backend) { benchAppend(b, backend, 150, "") }

// benchAppend64PushersFullMailboxes: the same with one device per
// pusher, whose mailbox fills up, so every append also drops the oldest.
func benchAppend64PushersFullMailboxes(b *testing.B, backend Backend) {
	benchAppend(b, backend, 1, store.TargetDevices)
}

func benchAppend(b *testing.B, backend Backend, devicesPerPusher int, target store.Target) {
	clk := NewClock()
	s := benchStore(b, backend, clk, 100)
	var next atomic.Int64
	b.SetParallelism(64 / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		pusher := next.Add(1)
		m := store.Message{App: "demo", Data: payload, Expires: clk.In(time.Hour), Target: target}
		for i := 0; pb.Next(); i++ {
			device := []string{fmt.Sprint("d", pusher, "-", i%devicesPerPusher)}
			m.ID = fmt.Sprint("m", pusher, "-", i) // each its own report
			if _, err := s.Append(ctx, device, m, ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// benchReplay1000 reads a 1,000-message mailbox, as a login replays it.
func benchReplay1000(b *testing.B, backend Backend) {
	clk := NewClock()
	s := benchStore(b, backend, clk, 1000)
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

// benchBroadcastWithTTL: the cost of a stored broadcast does not depend
// on how many devices the app has.
func benchBroadcastWithTTL(b *testing.B, backend Backend) {
	for _, devices := range []int{10, 100000} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			clk := NewClock()
			s := benchStore(b, backend, clk, 0)
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

// benchReconnectStorm: 10,000 devices with a stored message each log in
// at once: each acks what it had and catches up with the broadcast log, so
// the committer's batches mix many acks with reads.
func benchReconnectStorm(b *testing.B, backend Backend) {
	const devices = 10000
	clk := NewClock()
	s := benchStore(b, backend, clk, 0)
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

// broadcastDevices is how many devices each stored broadcast reaches in
// the BroadcastTo10000 benchmarks.
const broadcastDevices = 10000

// benchBroadcastCopy: one stored broadcast to 10,000 live devices that take
// broadcasts by seq (v1 clients): each device's sync copies it into its
// mailbox (a durable write), reads it, and acks it.
func benchBroadcastCopy(b *testing.B, backend Backend) {
	benchBroadcastTo(b, backend, func(s store.Store, device string) error {
		if _, err := s.CatchUp(ctx, "demo", device); err != nil {
			return err
		}
		got, err := s.Since(ctx, "demo", device, 0, 10)
		if err == nil && len(got) > 0 {
			s.Ack("demo", device, got[len(got)-1].Seq)
		}
		return err
	})
}

// benchBroadcastCursor: the same 10,000 devices take broadcasts by bseq:
// each reads the log after its cursor and acks, which moves the cursor
// (no durable write per device). A live device whose next entry it is
// does not even read: the push hands it the frame.
func benchBroadcastCursor(b *testing.B, backend Backend) {
	benchBroadcastTo(b, backend, func(s store.Store, device string) error {
		got, _, err := s.Broadcasts(ctx, "demo", device, 0, 10)
		if err == nil && len(got) > 0 {
			s.AckBroadcast("demo", device, got[len(got)-1].Seq)
		}
		return err
	})
}

// benchBroadcastTo stores a broadcast, then has 10,000 devices (64 at a
// time) take it with deliver, per iteration; it reports devices served per
// second and the store commits (fsyncs, for Pebble) per device.
func benchBroadcastTo(b *testing.B, backend Backend, deliver func(s store.Store, device string) error) {
	clk := NewClock()
	m := metrics.New()
	s := backend(b)(store.Options{Metrics: m, Now: clk.Now, SweepInterval: time.Hour})
	msg := store.Message{App: "demo", ID: "b", Data: payload, Expires: clk.In(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AppendBroadcast(ctx, msg, ""); err != nil {
			b.Fatal(err)
		}
		parallel(b, broadcastDevices, func(i int) error { return deliver(s, fmt.Sprint("d", i+1)) })
	}
	b.ReportMetric(float64(b.N*broadcastDevices)/b.Elapsed().Seconds(), "devices/s")
	b.ReportMetric(testutil.ToFloat64(m.StoreCommits)/float64(b.N*broadcastDevices), "commits/device")
}

// benchPushToTag: a stored push to a tag of 100,000 devices (of 200,000
// tagged): the tag query, then one append to every mailbox, durable.
func benchPushToTag(b *testing.B, backend Backend) {
	const tagged = 100000
	clk := NewClock()
	s := benchStore(b, backend, clk, 0)
	for from := 0; from < 2*tagged; from += 10000 {
		devices := make([]string, 10000)
		for i := range devices {
			devices[i] = fmt.Sprint("d", from+i)
		}
		tags := []string{"even"}
		if from >= tagged {
			tags = []string{"odd"}
		}
		if err := s.Tag(ctx, "demo", devices, tags, nil); err != nil {
			b.Fatal(err)
		}
	}
	m := store.Message{App: "demo", ID: "m", Data: payload, Expires: clk.In(time.Hour), Target: store.TargetTags}
	var query time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		devices, err := s.TagDevices(ctx, "demo", store.TagQuery{Any: []string{"even"}})
		query += time.Since(start)
		if err != nil || len(devices) != tagged {
			b.Fatal(len(devices), err)
		}
		if _, err := s.Append(ctx, devices, m, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(query.Milliseconds())/float64(b.N), "query-ms/op")
}

// benchAck: 10,000 devices (64 at a time) ack a stored message each, until
// every ack is written, with and without delivery reports: "unicast", each
// its own message (with reports, every ack counts in a report of its own,
// the worst case); "one-push", one message to all of them (one report).
func benchAck(b *testing.B, backend Backend) {
	const devices = 10000
	for _, shape := range []string{"unicast", "one-push"} {
		for _, target := range []store.Target{"", store.TargetDevices} {
			b.Run(fmt.Sprintf("%s/reports=%v", shape, target != ""), func(b *testing.B) {
				clk := NewClock()
				s := benchStore(b, backend, clk, 0)
				names := make([]string, devices)
				for i := range names {
					names[i] = fmt.Sprint("d", i)
				}
				seqs := make([]uint64, devices)
				b.ReportAllocs()
				for round := 0; b.Loop(); round++ {
					b.StopTimer()
					m := store.Message{App: "demo", ID: fmt.Sprint("m", round), Data: payload, Expires: clk.In(time.Hour), Target: target}
					if shape == "one-push" {
						res, err := s.Append(ctx, names, m, "")
						if err != nil {
							b.Fatal(err)
						}
						copy(seqs, res.Seqs)
					} else {
						parallel(b, devices, func(i int) error {
							m := m
							m.ID = fmt.Sprint(m.ID, "-", i)
							res, err := s.Append(ctx, names[i:i+1], m, "")
							if err == nil {
								seqs[i] = res.Seqs[0]
							}
							return err
						})
					}
					b.StartTimer()
					parallel(b, devices, func(i int) error {
						s.Ack("demo", names[i], seqs[i])
						return nil
					})
					written(b, s) // the acks, and their counts
				}
				b.ReportMetric(float64(b.N*devices)/b.Elapsed().Seconds(), "acks/s")
			})
		}
	}
}

// parallel runs f(0) ... f(n-1) on 64 goroutines, and fails b on an error.
// benchStoredDelivery is the store's part of the server's stored path
// (longlink bench batch): 16 pushers each store a 256-byte message with
// its report for 100 of 19,000 devices, and once it is durable each copy
// is acked on its own, as the devices do. It reports the process's CPU
// time per delivered message (cpu-µs/msg, from getrusage): the committer's
// work and Pebble's flushes and compactions, which a wall-clock ns/op of
// durable calls hides behind fsyncs.
func benchStoredDelivery(b *testing.B, backend Backend) {
	const devices, perPush = 19000, 100
	clk := NewClock()
	s := benchStore(b, backend, clk, 0)
	names := make([]string, devices)
	for i := range names {
		names[i] = fmt.Sprint("device-", i)
	}
	var next atomic.Int64
	b.SetParallelism(16 / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	before := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		to := make([]string, perPush)
		for pb.Next() {
			n := next.Add(1)
			for i := range to { // spread over all devices, as a bench's batches are
				to[i] = names[(int(n)*perPush+i*191)%devices]
			}
			m := store.Message{App: "demo", ID: fmt.Sprint("m", n), Data: payload, Expires: clk.In(10 * time.Minute), Target: store.TargetDevices}
			res, err := s.Append(ctx, to, m, "")
			if err != nil {
				b.Error(err)
				return
			}
			for i, d := range to {
				s.Ack("demo", d, res.Seqs[i])
			}
		}
	})
	written(b, s)
	b.StopTimer()
	b.ReportMetric((cpuTime(b)-before).Seconds()*1e6/float64(b.N*perPush), "cpu-µs/msg")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func parallel(b *testing.B, n int, f func(i int) error) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if err := f(int(i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// written waits until the writes that do not wait (acks, bindings, sent
// reports) queued before it are written: UserDevices is served after them.
func written(b *testing.B, s store.Store) {
	if _, err := s.UserDevices(ctx, "demo", []string{"nobody"}); err != nil {
		b.Fatal(err)
	}
}

// benchReportRead: reading a delivery report costs the same whatever its
// count: after no ack, and after 1,000,000 devices acked a stored broadcast.
func benchReportRead(b *testing.B, backend Backend) {
	for _, acks := range []int{0, 1000000} {
		b.Run(fmt.Sprintf("acks=%d", acks), func(b *testing.B) {
			clk := NewClock()
			s := benchStore(b, backend, clk, 0)
			m := store.Message{App: "demo", ID: "b", Data: payload, Expires: clk.In(time.Hour), Target: store.TargetBroadcast}
			if _, err := s.AppendBroadcast(ctx, m, ""); err != nil {
				b.Fatal(err)
			}
			const chunk = 50000 // within the Redis writer's queue
			for from := 0; from < acks; from += chunk {
				parallel(b, min(chunk, acks-from), func(i int) error {
					s.AckBroadcast("demo", fmt.Sprint("d", from+i), 1)
					return nil
				})
				written(b, s)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r, ok, err := s.Report(ctx, "demo", "b")
				if err != nil || !ok || r.Acked != acks {
					b.Fatalf("report: %+v %v %v, want %d acks", r, ok, err, acks)
				}
			}
		})
	}
}
