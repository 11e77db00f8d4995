package rules

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	matched      *prometheus.CounterVec
	delivered    *prometheus.CounterVec
	failed       *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	malformed    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	rt := []string{"bus", "rule", "target"}
	m := &metrics{
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_rules_matched_total",
			Help: "Events a rule matched (or schedule ticks of a scheduled rule)."}, []string{"bus", "rule"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_rules_delivered_total",
			Help: "Events delivered to a rule's target."}, rt),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_rules_failed_total",
			Help: "Failed delivery attempts to a rule's target."}, rt),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_rules_dead_lettered_total",
			Help: "Events written to a target's dead-letter topic after its retries were exhausted."}, rt),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_rules_dropped_total",
			Help: "Events whose retries were exhausted on a target without a dead-letter topic."}, rt),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_rules_delivery_latency_seconds",
			Help:    "From an event's arrival on its bus to its delivery to a target.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 12)}, rt),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_rules_malformed_total",
			Help: "Records on a bus that are not valid events (skipped)."}, []string{"bus"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.matched, m.delivered, m.failed, m.deadLettered, m.dropped, m.latency, m.malformed} {
			if err := reg.Register(c); err != nil {
				panic(fmt.Sprintf("rules: register metrics: %v", err))
			}
		}
	}
	return m
}

// RuleMetrics are a rule's counters since the Engine started.
type RuleMetrics struct {
	Matched int64                    `json:"matched"`
	Targets map[string]TargetMetrics `json:"targets"`
}

// TargetMetrics are one target's counters.
type TargetMetrics struct {
	Delivered    int64 `json:"delivered"`
	Failed       int64 `json:"failed"`
	DeadLettered int64 `json:"dead_lettered"`
	Dropped      int64 `json:"dropped"`
	Pending      int64 `json:"pending"`
	// MeanLatencyMillis is the mean time from arrival to delivery.
	MeanLatencyMillis float64 `json:"mean_latency_ms"`
}

// Metrics returns a rule's counters.
func (e *Engine) Metrics(bus, name string) (RuleMetrics, error) {
	var out RuleMetrics
	err := e.readRule(bus, name, func(rs *ruleState) {
		out = RuleMetrics{Matched: rs.matched.Load(), Targets: map[string]TargetMetrics{}}
		for id, w := range rs.targets {
			tm := TargetMetrics{Delivered: w.delivered.Load(), Failed: w.failed.Load(),
				DeadLettered: w.deadLettered.Load(), Dropped: w.dropped.Load(), Pending: w.pending()}
			if tm.Delivered > 0 {
				tm.MeanLatencyMillis = float64(w.latencyNanos.Load()) / float64(tm.Delivered) / 1e6
			}
			out.Targets[id] = tm
		}
	})
	return out, err
}
