package bench

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
)

// Server is what a run saw of one server, from its /metrics.
type Server struct {
	API          string  `json:"api"`
	Connections  float64 `json:"connections"`         // longlink_connections, summed over apps
	RSSBefore    float64 `json:"rss_before_bytes"`    // before the devices connected
	RSSConnected float64 `json:"rss_connected_bytes"` // once they all had
	RSSAfter     float64 `json:"rss_after_bytes"`     // at the end
	// BytesPerConn is the RSS the run's connections added, per connection,
	// measured once they all had connected; omitted when the server's RSS
	// did not grow (it reused memory an earlier load had left it).
	BytesPerConn float64 `json:"rss_bytes_per_connection,omitempty"`
	CPUSeconds   float64 `json:"cpu_seconds"`     // spent during the run
	GCMaxPauseMs float64 `json:"gc_max_pause_ms"` // longest recent stop-the-world pause
	Goroutines   float64 `json:"goroutines"`
}

// metrics is one scrape: series name (labels dropped, values summed) or
// name{quantile="1"} for the summary's maximum.
type metrics map[string]float64

func scrapeAll(hc *http.Client, apis []string) []metrics {
	out := make([]metrics, len(apis))
	for i, api := range apis {
		out[i] = scrape(hc, api)
	}
	return out
}

func scrape(hc *http.Client, api string) metrics {
	m := metrics{}
	resp, err := hc.Get(api + "/metrics")
	if err != nil {
		return m
	}
	defer resp.Body.Close()
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
		if strings.HasPrefix(name, "go_gc_duration_seconds{") {
			m[name] = v // keep the quantiles apart
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		m[name] += v
	}
	return m
}

// serverStats compares the scrapes of each server before the devices
// connected, once they had, and after the run.
func serverStats(apis []string, before, connected, after []metrics) []Server {
	out := make([]Server, len(apis))
	for i, api := range apis {
		b, c, a := before[i], connected[i], after[i]
		s := Server{API: api, Connections: a["longlink_connections"], RSSBefore: b["process_resident_memory_bytes"],
			RSSConnected: c["process_resident_memory_bytes"], RSSAfter: a["process_resident_memory_bytes"],
			CPUSeconds:   a["process_cpu_seconds_total"] - b["process_cpu_seconds_total"],
			GCMaxPauseMs: a[`go_gc_duration_seconds{quantile="1"}`] * 1000, Goroutines: a["go_goroutines"]}
		if added := c["longlink_connections"] - b["longlink_connections"]; added > 0 && s.RSSConnected > s.RSSBefore {
			s.BytesPerConn = (s.RSSConnected - s.RSSBefore) / added
		}
		out[i] = s
	}
	return out
}
