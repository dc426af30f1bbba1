package metrics

import (
	"maps"
	"math"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// Sample is one value of a metric, as the dashboard and the admin API read
// them: a counter's or a gauge's value, or one series of a histogram or
// summary (name_count, name_sum, name_bucket with "le", name with
// "quantile").
type Sample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
}

// snapshotRuntime are the Go runtime's series a snapshot keeps, beside
// longlink's own and the process's.
var snapshotRuntime = map[string]bool{
	"go_goroutines":                       true,
	"go_memstats_heap_alloc_bytes":        true,
	"go_sched_pauses_total_gc_seconds":    true,
	"go_gc_duration_seconds":              true,
	"go_memstats_next_gc_bytes":           true,
	"go_memstats_sys_bytes":               true,
	"go_sched_pauses_stopping_gc_seconds": true,
}

// Snapshot returns the current values of longlink's metrics, the process's
// and the runtime's that operators watch (goroutines, heap, GC pauses): a
// read model for the dashboard, the same figures as /metrics. Histogram
// buckets are given where they count something only.
func (m *Metrics) Snapshot() []Sample {
	families, err := m.registry.Gather()
	if err != nil && len(families) == 0 {
		return nil
	}
	var out []Sample
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "longlink_") && !strings.HasPrefix(name, "process_") && !snapshotRuntime[name] {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := labelsOf(mt)
			add := func(suffix string, v float64, extra ...string) {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return
				}
				l := labels
				if len(extra) == 2 {
					l = make(map[string]string, len(labels)+1)
					maps.Copy(l, labels)
					l[extra[0]] = extra[1]
				}
				out = append(out, Sample{Name: name + suffix, Labels: l, Value: v})
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add("", mt.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add("", mt.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add("", mt.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := mt.GetHistogram()
				add("_count", float64(h.GetSampleCount()))
				add("_sum", h.GetSampleSum())
				for _, b := range h.GetBucket() {
					if b.GetCumulativeCount() > 0 {
						add("_bucket", float64(b.GetCumulativeCount()), "le", strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64))
					}
				}
			case dto.MetricType_SUMMARY:
				s := mt.GetSummary()
				add("_count", float64(s.GetSampleCount()))
				add("_sum", s.GetSampleSum())
				for _, q := range s.GetQuantile() {
					add("", q.GetValue(), "quantile", strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64))
				}
			}
		}
	}
	return out
}

func labelsOf(mt *dto.Metric) map[string]string {
	if len(mt.GetLabel()) == 0 {
		return nil
	}
	l := make(map[string]string, len(mt.GetLabel()))
	for _, p := range mt.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}
