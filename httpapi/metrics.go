package httpapi

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests   *prometheus.CounterVec   // route, code
	latency    *prometheus.HistogramVec // route
	published  prometheus.Counter
	duplicates prometheus.Counter
	read       prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "http", Name: "requests_total",
			Help: "HTTP API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "herald", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "HTTP API request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "http", Name: "published_events_total",
			Help: "Events and records stored by publish requests.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "http", Name: "publish_duplicates_total",
			Help: "Published events acknowledged as duplicates within the deduplication window and not stored again.",
		}),
		read: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "http", Name: "read_events_total",
			Help: "Events and records returned by reads.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.latency, m.published, m.duplicates, m.read}
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, c := range m.collectors() {
		errs = append(errs, r.Register(c))
	}
	return errors.Join(errs...)
}

func (m *metrics) unregister(r prometheus.Registerer) {
	if r == nil {
		return
	}
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}
