package server_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// metricValue returns the value of the first sample of /metrics that
// matches pattern (a regexp of its name and labels), or -1.
func metricValue(ts *testserver.TS, pattern string) float64 {
	return sampleValue(ts.Metrics(), pattern)
}

// sampleValue is metricValue on a /metrics page already read.
func sampleValue(page, pattern string) float64 {
	m := regexp.MustCompile(`(?m)^` + pattern + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// The SDK measures ping round trips and its connect time and sends them in
// stats ops, labelled with the network the app reports; they land in
// /metrics by app, transport and network.
func TestClientQualityStats(t *testing.T) {
	testengine.Long(t, "waits for the SDK to measure pings")
	ts := testserver.Start(t, func(c *config.Config) { c.Gateway.HeartbeatMin, c.Gateway.Heartbeat = time.Second, time.Second })
	connect(t, ts, client.WebSocket, ts.Token("d1", ""), func(c *client.Config) {
		c.Heartbeat, c.StatsInterval = time.Second, 1500*time.Millisecond
		c.Network = func() string { return "wifi" }
	})
	labels := `\{app="demo",network="wifi",transport="ws"\}`
	testwait.Eventually(t, "the SDK's stats in /metrics", func() bool {
		return metricValue(ts, `longlink_client_rtt_seconds_count`+labels) >= 1 &&
			metricValue(ts, `longlink_client_connect_seconds_count`+labels) == 1
	})
}

// Stats values a server cannot trust are dropped and counted; the rest of
// the op is kept.
func TestClientQualityStatsChecked(t *testing.T) {
	ts := testserver.Start(t)
	c := rawLogin(t, ts, client.WebSocketJSON, ts.Token("d1", ""), 0, 0)
	for _, frame := range []string{
		`{"op":"stats","network":"cellular","transport":"tcp","rtt_ms":[20,999999,40],"connect_ms":300,"connect_failures":2}`,
		`{"op":"stats","network":"satellite","rtt_ms":[10]}`,
		`{"op":"stats","network":"wifi","transport":"pigeon","rtt_ms":[10]}`,
		`{"op":"stats","network":"wifi","connect_ms":99999999,"connect_failures":100000000}`,
		`{"op":"stats","rtt_ms":[` + strings.Repeat("1,", 69) + `1]}`, // 70 samples: 64 kept
		`{"op":"ping","ref":"done"}`,
	} {
		c.writeRaw(t, []byte(frame))
	}
	readUntil(t, c, 6) // the pong: every stats op before it was served
	labels := `\{app="demo",network="cellular",transport="tcp"\}`
	for pattern, want := range map[string]float64{
		`longlink_client_rtt_seconds_count` + labels:                                            2,
		`longlink_client_rtt_seconds_sum` + labels:                                              0.06,
		`longlink_client_connect_seconds_count` + labels:                                        1,
		`longlink_client_connect_failures_total` + labels:                                       2,
		`longlink_client_stats_dropped_total\{reason="rtt"\}`:                                   7,
		`longlink_client_rtt_seconds_count\{app="demo",network="unknown",transport="ws_json"\}`: 64,
		`longlink_client_stats_dropped_total\{reason="network"\}`:                               1,
		`longlink_client_stats_dropped_total\{reason="transport"\}`:                             1,
		`longlink_client_stats_dropped_total\{reason="connect"\}`:                               1,
		`longlink_client_stats_dropped_total\{reason="failures"\}`:                              1,
		`longlink_client_rtt_seconds_count\{app="demo",network="wifi",.*\}`:                     -1, // none: both wifi ops were refused whole, or had no rtt
	} {
		if got := metricValue(ts, pattern); got != want {
			t.Errorf("%s = %v, want %v", pattern, got, want)
		}
	}
}
