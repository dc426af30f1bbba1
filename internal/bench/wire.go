// Package bench is longlink's load tool: it drives a running server with
// many devices (over the public Go SDK) and with pushes through the API, and
// measures reach and end-to-end latency. Devices live in worker processes
// (this binary, re-executed), at most PerWorker each, because one process may
// hold only so many open files; the coordinator merges their results.
package bench

import (
	"strconv"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// command goes from the coordinator to a worker, one JSON object per line.
type command struct {
	Cmd  string  `json:"cmd"`            // connect, reset, report, drop, reconnect, quit
	Rate float64 `json:"rate,omitempty"` // connect: logins per second for this worker
}

// event goes from a worker to the coordinator, one JSON object per line.
type event struct {
	Type      string                 `json:"type"` // progress, connected, report, dropped, back, error
	Connected int                    `json:"connected"`
	Errors    int                    `json:"errors"`
	Delivered int64                  `json:"delivered"`         // pushes received since the last reset
	Stored    int64                  `json:"stored"`            // of which stored messages (seq > 0)
	Connect   *hdrhistogram.Snapshot `json:"connect,omitempty"` // connect+login latency, µs
	Latency   *hdrhistogram.Snapshot `json:"latency,omitempty"` // push latency, µs
	Took      float64                `json:"took,omitempty"`    // seconds (connected, back)
	Err       string                 `json:"err,omitempty"`     // the first login error (report)
}

// workerConfig tells a worker which devices it runs; it travels in the
// environment variable WorkerEnv.
type workerConfig struct {
	Gateways  []string `json:"gateways"` // device i connects to Gateways[i%len]
	Transport string   `json:"transport"`
	App       string   `json:"app"`
	Secret    string   `json:"secret"`
	Run       string   `json:"run"`  // this run's id: its devices' namespace
	From      int      `json:"from"` // device indexes [From, To)
	To        int      `json:"to"`
	Heartbeat int      `json:"heartbeat"` // seconds
	Broker    bool     `json:"broker"`    // Options.Broker
	Yield     bool     `json:"yield"`     // run at idle CPU priority (Options.Yield)
	TLS       bool     `json:"tls"`       // Options.TLS, CAPEM, Insecure
	CAPEM     string   `json:"ca_pem"`
	Insecure  bool     `json:"insecure"`
}

// WorkerEnv is the environment variable that makes `longlink bench-worker`
// a worker of a coordinator.
const WorkerEnv = "LONGLINK_BENCH_WORKER"

// deviceID names device i of bench run run: every run has devices of its
// own, never the app's real ones, nor an earlier run's (with their
// stored messages).
func deviceID(run string, i int) string { return "bench-" + run + "-" + strconv.Itoa(i) }

// latencies records microseconds into a few histograms, so that many
// goroutines recording at once rarely wait for each other. Safe for
// concurrent use.
type latencies struct {
	shards [16]struct {
		sync.Mutex
		h *hdrhistogram.Histogram
	}
}

// Latencies from 1µs to 10 minutes, 3 significant digits.
func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
}

func newLatencies() *latencies {
	l := &latencies{}
	for i := range l.shards {
		l.shards[i].h = newHistogram()
	}
	return l
}

func (l *latencies) record(shard int, d time.Duration) {
	s := &l.shards[shard%len(l.shards)]
	s.Lock()
	s.h.RecordValue(max(int64(d/time.Microsecond), 1))
	s.Unlock()
}

// snapshot merges the shards; with reset, it also empties them.
func (l *latencies) snapshot(reset bool) *hdrhistogram.Snapshot {
	all := newHistogram()
	for i := range l.shards {
		s := &l.shards[i]
		s.Lock()
		all.Merge(s.h)
		if reset {
			s.h.Reset()
		}
		s.Unlock()
	}
	return all.Export()
}

// payload is size bytes that start with the send time, for latency.
func payload(sent time.Time, size int) []byte {
	b := strconv.AppendInt(nil, sent.UnixNano(), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// sentAt reads the send time back out of a payload, without allocating.
func sentAt(data []byte) (time.Time, bool) {
	var ns int64
	i := 0
	for ; i < len(data) && data[i] != ' '; i++ {
		if data[i] < '0' || data[i] > '9' || i >= 19 {
			return time.Time{}, false
		}
		ns = ns*10 + int64(data[i]-'0')
	}
	if i == 0 || i == len(data) {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}
