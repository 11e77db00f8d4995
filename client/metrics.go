package client

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of publishers, subscribers and their
// middleware. One Metrics may be shared by many of them; a nil *Metrics
// records nothing.
type Metrics struct {
	handled      *prometheus.CounterVec
	failed       *prometheus.CounterVec
	retries      *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	duplicates   *prometheus.CounterVec
	published    *prometheus.CounterVec
	breakerState *prometheus.GaugeVec
	dlqDepth     *prometheus.GaugeVec
	latency      *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered). Metrics already registered on reg by another NewMetrics are
// reused, so several subscribers can share one registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	gt := []string{"group", "topic"}
	m := &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_client_handled_total",
			Help: "Events whose handler succeeded (after retries)."}, gt),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_client_failed_total",
			Help: "Handler attempts that returned an error or panicked."}, gt),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_client_retries_total",
			Help: "Handler attempts repeated by the Retry middleware."}, gt),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_client_dead_lettered_total",
			Help: "Events forwarded to a dead-letter topic, by reason (failed, malformed)."}, []string{"group", "topic", "reason"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_client_duplicates_skipped_total",
			Help: "Events skipped because their id was already handled."}, gt),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_client_published_total",
			Help: "Events written, by topic."}, []string{"topic"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herald_client_breaker_state",
			Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open."}, []string{"breaker"}),
		dlqDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herald_client_dlq_depth",
			Help: "Records in a subscriber's dead-letter topic (high watermark minus log start offset, summed over partitions)."}, []string{"topic"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_client_handler_seconds",
			Help:    "Time to handle one event, all attempts included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, gt),
	}
	if reg != nil {
		m.handled = register(reg, m.handled)
		m.failed = register(reg, m.failed)
		m.retries = register(reg, m.retries)
		m.deadLettered = register(reg, m.deadLettered)
		m.duplicates = register(reg, m.duplicates)
		m.published = register(reg, m.published)
		m.breakerState = register(reg, m.breakerState)
		m.dlqDepth = register(reg, m.dlqDepth)
		m.latency = register(reg, m.latency)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a clash with a foreign metric of the same name is a programming error
	}
	return c
}

type counter int

const (
	cHandled counter = iota
	cFailed
	cRetries
	cDeadLettered
	cDuplicates
	cPublished
)

// count increments a counter; it does nothing on a nil *Metrics.
func (m *Metrics) count(c counter, labels ...string) {
	if m == nil {
		return
	}
	v := [...]*prometheus.CounterVec{m.handled, m.failed, m.retries, m.deadLettered, m.duplicates, m.published}[c]
	v.WithLabelValues(labels...).Inc()
}
