// Package metrics defines longlink's Prometheus metrics on a registry of its
// own, so that several servers in one process (tests) do not collide.
package metrics

import (
	"net/http"
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/longlink/longlink/internal/version"
)

// Metrics holds every metric of one server. Safe for concurrent use.
type Metrics struct {
	registry *prometheus.Registry

	Connections   *prometheus.GaugeVec   // app, transport: live logged-in connections
	Connects      *prometheus.CounterVec // transport: logins accepted
	Disconnects   *prometheus.CounterVec // reason: connections closed after login
	Rejected      *prometheus.CounterVec // reason: connections closed before login
	Pushed        *prometheus.CounterVec // app, target: messages accepted by the push API
	Delivered     *prometheus.CounterVec // app: frames handed to connections' send queues
	Stored        *prometheus.CounterVec // app: stored messages written (a copy per mailbox; one per broadcast log entry)
	Acks          *prometheus.CounterVec // app: acks received from devices
	Escalations   *prometheus.CounterVec // app, vendor, outcome: notifications sent through the OS push channels
	VendorRecalls *prometheus.CounterVec // app, vendor, outcome: recalls of escalated notifications

	MailboxDropped *prometheus.CounterVec // app: stored messages dropped from full mailboxes
	Limited        *prometheus.CounterVec // limit: connections, logins and calls refused by a limit
	SeqClamped     *prometheus.CounterVec // app, op: acks and last_seqs above the last seq given, clamped
	StoreCommits   prometheus.Counter     // store batches committed
	StoreBatchOps  prometheus.Histogram   // operations per committed batch

	Upstream        *prometheus.CounterVec   // app, result: upstream calls
	UpstreamSeconds *prometheus.HistogramVec // app: how long upstream calls took, answered or failed
	StatusEvents    *prometheus.CounterVec   // app, result: status events

	// What devices measured (stats op), per app, transport and network.
	ClientRTT      *prometheus.HistogramVec
	ClientConnect  *prometheus.HistogramVec
	ClientFailures *prometheus.CounterVec
	ClientDropped  *prometheus.CounterVec // reason: stats values refused
}

// New creates the metrics and registers them with the Go runtime and process
// collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "longlink_connections", Help: "Live logged-in connections, per app and transport.",
		}, []string{"app", "transport"}),
		Connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_connects_total", Help: "Logins accepted, per transport.",
		}, []string{"transport"}),
		Disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_disconnects_total", Help: "Logged-in connections closed, per reason.",
		}, []string{"reason"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_rejected_total", Help: "Connections closed before a login succeeded, per reason.",
		}, []string{"reason"}),
		Pushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_messages_pushed_total", Help: "Messages accepted by the push API, per app and target.",
		}, []string{"app", "target"}),
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_messages_delivered_total", Help: "Message frames handed to device connections, per app.",
		}, []string{"app"}),
		Stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_stored_total", Help: "Stored messages written, per app: one per target mailbox, one per broadcast log entry.",
		}, []string{"app"}),
		Escalations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_escalations_total", Help: "Stored messages not acked in time sent through a device's OS push channel, per app, vendor and outcome (accepted, dead token, retry, quota exceeded, refused, error).",
		}, []string{"app", "vendor", "outcome"}),
		VendorRecalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_vendor_recalls_total", Help: "Recalls of escalated notifications sent through the OS push channels, per app, vendor and outcome (as longlink_escalations_total's).",
		}, []string{"app", "vendor", "outcome"}),
		Acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_acks_total", Help: "Acks of stored messages received from devices, per app.",
		}, []string{"app"}),
		MailboxDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_mailbox_dropped_total", Help: "Stored messages dropped because a mailbox was full, per app.",
		}, []string{"app"}),
		Limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_limited_total",
			Help: "Refused by a limit, per limit: conns_per_ip, conn_rate_per_ip, logins_per_second (4005), push_per_second (429).",
		}, []string{"limit"}),
		SeqClamped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_seq_clamped_total",
			Help: "Acks (op=ack) and login last_seqs (op=login) above the last seq given to the device in that app, clamped to it, per app.",
		}, []string{"app", "op"}),
		StoreCommits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "longlink_store_commits_total", Help: "Store batches committed.",
		}),
		StoreBatchOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "longlink_store_batch_ops", Help: "Operations sharing one store commit.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
		Upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_upstream_calls_total",
			Help: "Upstream calls to app backends, per app and result: answered, unreachable, too_large, redirect (a 3xx: not followed), busy (queue full), rate_limited, unknown_biz.",
		}, []string{"app", "result"}),
		UpstreamSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longlink_upstream_seconds", Help: "How long upstream calls took, answered or failed, per app.",
			Buckets: clientBuckets,
		}, []string{"app"}),
		StatusEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_status_events_total",
			Help: "Status events, per app and result: sent, retried (counted per failed attempt), dropped (buffer full).",
		}, []string{"app", "result"}),
		ClientRTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longlink_client_rtt_seconds", Help: "Ping round trips measured by devices, per app, transport and network.",
			Buckets: clientBuckets,
		}, []string{"app", "transport", "network"}),
		ClientConnect: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longlink_client_connect_seconds", Help: "Connect and login times measured by devices, per app, transport and network.",
			Buckets: clientBuckets,
		}, []string{"app", "transport", "network"}),
		ClientFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_client_connect_failures_total", Help: "Failed connects reported by devices, per app, transport and network.",
		}, []string{"app", "transport", "network"}),
		ClientDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longlink_client_stats_dropped_total",
			Help: "Stats ops or their values refused, per reason: app, network, transport (unknown: the op is dropped), rtt, connect, failures (out of range: that value is).",
		}, []string{"reason"}),
	}
	v := version.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "longlink_build_info",
		Help:        "Always 1; the labels say which longlink this is.",
		ConstLabels: prometheus.Labels{"version": v.Version, "revision": v.Revision, "goversion": v.Go}})
	build.Set(1)
	m.registry.MustRegister(
		build,
		// Each stop-the-world pause and the part of it spent waiting for
		// every thread to stop: they tell a busy box's scheduling from the
		// collector's own cost.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/pauses/`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Connections, m.Connects, m.Disconnects, m.Rejected, m.Pushed, m.Delivered, m.Stored, m.Acks, m.Escalations, m.VendorRecalls,
		m.MailboxDropped, m.Limited, m.SeqClamped, m.StoreCommits, m.StoreBatchOps, m.Upstream, m.UpstreamSeconds, m.StatusEvents,
		m.ClientRTT, m.ClientConnect, m.ClientFailures, m.ClientDropped,
	)
	return m
}

// clientBuckets are the buckets of what devices measure: 5 ms to 20 s.
var clientBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20}

// GaugeFunc registers a gauge whose value fn reads at each scrape.
func (m *Metrics) GaugeFunc(name, help string, fn func() float64) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// Handler serves the metrics in Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
