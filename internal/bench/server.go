package bench

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Server is what a run saw of one server, from its /metrics: its figures,
// or why there are none (a scrape failed, or the server restarted during
// the run): no figure is given that was not measured.
type Server struct {
	API      string `json:"api"`
	Error    string `json:"error,omitempty"`
	*Figures        // nil with Error
}

// Figures are a server's measured figures.
type Figures struct {
	Connections  float64 `json:"connections"`         // longlink_connections, summed over apps
	RSSBefore    float64 `json:"rss_before_bytes"`    // before the devices connected
	RSSConnected float64 `json:"rss_connected_bytes"` // once they all had
	RSSAfter     float64 `json:"rss_after_bytes"`     // at the end
	// BytesPerConn is the RSS the run's connections added, per connection,
	// measured once they all had connected; omitted when the server's RSS
	// did not grow (it reused memory an earlier load had left it).
	BytesPerConn float64 `json:"rss_bytes_per_connection,omitempty"`
	CPUSeconds   float64 `json:"cpu_seconds"` // spent during the run
	Pushes       float64 `json:"pushes"`      // messages its push API accepted during the run
	// GCMaxPauseMs bounds the longest stop-the-world GC pause of the run
	// (0: no GC ran): the bound of the lowest bucket of the pause histogram
	// that counts all of the run's pauses, or their total if less.
	GCMaxPauseMs float64 `json:"gc_max_pause_ms"`
	// GCs is how many collections ran during the run, and GCMeanPauseMs
	// their mean stop-the-world pause (go_gc_duration_seconds' sum and
	// count).
	GCs           float64 `json:"gcs"`
	GCMeanPauseMs float64 `json:"gc_mean_pause_ms,omitempty"`
	Goroutines    float64 `json:"goroutines"`
}

// metrics is one scrape: series name (labels dropped, values summed), but
// for the GC pause histogram's buckets, kept apart by their bound.
type metrics map[string]float64

// pauseHistogram is the GC pause histogram (stopping the threads
// included), and pauseBucket the prefix of its buckets.
const (
	pauseHistogram = "go_sched_pauses_total_gc_seconds"
	pauseBucket    = pauseHistogram + `_bucket{le="`
)

// scrapes are one scrape of each server, or why it failed.
type scrapes struct {
	m    []metrics
	errs []error
}

func scrapeAll(hc *http.Client, apis []string) scrapes {
	s := scrapes{m: make([]metrics, len(apis)), errs: make([]error, len(apis))}
	for i, api := range apis {
		s.m[i], s.errs[i] = scrape(hc, api)
	}
	return s
}

func scrape(hc *http.Client, api string) (metrics, error) {
	resp, err := hc.Get(api + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s (with ops.listen set, /metrics is on the ops port)", resp.Status)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name := line[:sp]
		if strings.HasPrefix(name, pauseBucket) {
			m[name] = v // keep the buckets apart
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		m[name] += v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// serverStats compares the scrapes of each server before the devices
// connected, once they had, and after the run.
func serverStats(apis []string, before, connected, after scrapes) []Server {
	out := make([]Server, len(apis))
	for i, api := range apis {
		out[i] = Server{API: api}
		if err := errors.Join(before.errs[i], connected.errs[i], after.errs[i]); err != nil {
			out[i].Error = "not measured: " + err.Error()
			continue
		}
		b, c, a := before.m[i], connected.m[i], after.m[i]
		cpu := a["process_cpu_seconds_total"] - b["process_cpu_seconds_total"]
		if cpu < 0 {
			out[i].Error = "not measured: its CPU time went back, so it restarted during the run"
			continue
		}
		f := &Figures{Connections: a["longlink_connections"], RSSBefore: b["process_resident_memory_bytes"],
			RSSConnected: c["process_resident_memory_bytes"], RSSAfter: a["process_resident_memory_bytes"],
			CPUSeconds: cpu, Pushes: a["longlink_messages_pushed_total"] - b["longlink_messages_pushed_total"], GCMaxPauseMs: maxPauseGrown(b, a) * 1000, Goroutines: a["go_goroutines"]}
		if f.GCs = a["go_gc_duration_seconds_count"] - b["go_gc_duration_seconds_count"]; f.GCs > 0 {
			f.GCMeanPauseMs = (a["go_gc_duration_seconds_sum"] - b["go_gc_duration_seconds_sum"]) / f.GCs * 1000
		}
		if added := c["longlink_connections"] - b["longlink_connections"]; added > 0 && f.RSSConnected > f.RSSBefore {
			f.BytesPerConn = (f.RSSConnected - f.RSSBefore) / added
		}
		out[i].Figures = f
	}
	return out
}

// maxPauseGrown returns a bound (seconds) on the longest GC pause from
// before to after, 0 if none came: no pause is longer than all of them
// together, nor than the bound of a bucket that grew by all of them (a
// bucket counts every pause up to its bound: the buckets are cumulative).
func maxPauseGrown(before, after metrics) float64 {
	pauses := after[pauseHistogram+"_count"] - before[pauseHistogram+"_count"]
	if pauses <= 0 {
		return 0
	}
	bound := after[pauseHistogram+"_sum"] - before[pauseHistogram+"_sum"]
	for name, v := range after {
		le, ok := strings.CutPrefix(name, pauseBucket)
		if !ok || v-before[name] < pauses {
			continue
		}
		if le, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64); err == nil {
			bound = min(bound, le)
		}
	}
	return bound
}
