package pgstore

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	appends, events, conflicts, reads prometheus.Counter
	latency                           prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_eventstore_pg_appends_total", Help: "Appends committed to PostgreSQL.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_eventstore_pg_appended_events_total", Help: "Events committed to PostgreSQL.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_eventstore_pg_conflicts_total", Help: "Appends and deletes refused for a wrong expected version.",
		}),
		reads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_eventstore_pg_stream_reads_total", Help: "Stream reads served.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herald_eventstore_pg_append_seconds", Help: "Append latency, committed.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16),
		}),
	}
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.appends, m.events, m.conflicts, m.reads, m.latency}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all() {
		c.Describe(ch)
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all() {
		c.Collect(ch)
	}
}
