package saga

import "github.com/prometheus/client_golang/prometheus"

// metrics are the engine's Prometheus metrics; a nil *metrics counts
// nothing.
type metrics struct {
	sagas    *prometheus.CounterVec   // definition, outcome
	steps    *prometheus.HistogramVec // definition, step
	ignored  *prometheus.CounterVec   // reason
	txns     *prometheus.CounterVec   // result
	restored prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		sagas: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_saga_transitions_total",
			Help: "Sagas by outcome: started, completed, failed (forward path failed or aborted), compensated, parked.",
		}, []string{"definition", "outcome"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_saga_step_seconds",
			Help:    "Time from a step's first command to its success reply.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"definition", "step"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_saga_inputs_ignored_total",
			Help: "Inbox events that changed nothing but the history: duplicate, late or unexpected replies, replies for unknown sagas, malformed events.",
		}, []string{"reason"}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_saga_transactions_total",
			Help: "Engine transactions (state changes, commands and input offsets together) by result.",
		}, []string{"result"}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_saga_instances_restored_total",
			Help: "Instances loaded from the state topic when partitions were assigned.",
		}),
	}
	reg.MustRegister(m.sagas, m.steps, m.ignored, m.txns, m.restored)
	return m
}

func (m *metrics) apply(def string, effs []effect) {
	if m == nil {
		return
	}
	for _, e := range effs {
		switch e.kind {
		case "step":
			m.steps.WithLabelValues(def, e.step).Observe(e.dur.Seconds())
		case "ignored":
			m.ignored.WithLabelValues(e.step).Inc()
		default:
			m.sagas.WithLabelValues(def, e.kind).Inc()
		}
	}
}

func (m *metrics) ignore(reason string) {
	if m != nil {
		m.ignored.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) txn(result string) {
	if m != nil {
		m.txns.WithLabelValues(result).Inc()
	}
}
