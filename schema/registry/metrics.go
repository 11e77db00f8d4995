package registry

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	byStatus     sync.Map // int -> prometheus.Counter, for requests
	ops          *prometheus.CounterVec
	incompatible prometheus.Counter
	storeErrors  prometheus.Counter
	corrupt      prometheus.Counter
	requests     *prometheus.CounterVec
	// fast counts fast-path answers by route: an atomic add is all the
	// fast path spends on metrics.
	fast [numRoutes]atomic.Uint64
	// handoffs counts connections of a Server passed to net/http.
	handoffs atomic.Uint64
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_schema_registry_operations_total",
			Help: "Schema registry writes by operation and outcome (ok or the error code).",
		}, []string{"op", "result"}),
		incompatible: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_schema_registry_incompatible_total",
			Help: "Registrations refused as incompatible with earlier versions.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_schema_registry_store_errors_total",
			Help: "Failed writes to the registry's topic.",
		}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_schema_registry_corrupt_records_total",
			Help: "Records of the registry's topic skipped on load because they do not decode.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_schema_registry_http_requests_total",
			Help: "Schema registry HTTP requests the general path answered, by status code (fast-path lookups are in herald_schema_registry_fast_path_requests_total).",
		}, []string{"code"}),
	}
	if reg != nil {
		reg.MustRegister(m.ops, m.incompatible, m.storeErrors, m.corrupt, m.requests)
		for i, name := range routeNames {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "herald_schema_registry_fast_path_requests_total",
				Help:        "Schema registry lookups answered by the fast path from pre-rendered responses, by route (all 200).",
				ConstLabels: prometheus.Labels{"route": name},
			}, func() float64 { return float64(m.fast[i].Load()) }))
		}
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "herald_schema_registry_handoffs_total",
			Help: "Connections of the registry's own listener handed to net/http because they asked for more than a fast-path lookup.",
		}, func() float64 { return float64(m.handoffs.Load()) }))
	}
	return m
}

// status counts a response by its status code.
func (m *metrics) status(code int) {
	c, ok := m.byStatus.Load(code)
	if !ok {
		c, _ = m.byStatus.LoadOrStore(code, m.requests.WithLabelValues(strconv.Itoa(code)))
	}
	c.(prometheus.Counter).Inc()
}

func (m *metrics) op(op string, err error) {
	res := "ok"
	if err != nil {
		res = "error"
		if e, ok := err.(*Error); ok {
			res = strconv.Itoa(e.Code)
		}
	}
	m.ops.WithLabelValues(op, res).Inc()
}
