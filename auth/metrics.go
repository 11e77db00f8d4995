package auth

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the authentication metrics of one users file, shared by the
// Kafka and HTTP listeners.
type Metrics struct {
	successes      *prometheus.CounterVec
	failures       *prometheus.CounterVec
	reloads        prometheus.Counter
	reloadFailures prometheus.Counter
	users          prometheus.Gauge
	tlsReloads     prometheus.Counter
	tlsFailures    prometheus.Counter
}

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		successes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_auth_successes_total", Help: "Successful authentications, by mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, http-basic).",
		}, []string{"mechanism"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_auth_failures_total", Help: "Failed authentications (wrong user or password, malformed exchange), by mechanism.",
		}, []string{"mechanism"}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_auth_users_reloads_total", Help: "Times the users file was reread after it changed.",
		}),
		reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_auth_users_reload_failures_total", Help: "Times the users file could not be read or was invalid; the users read before stay.",
		}),
		users: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_auth_users", Help: "Users in the users file.",
		}),
		tlsReloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_tls_certificate_reloads_total", Help: "Times the TLS certificate and key were reread after they changed.",
		}),
		tlsFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_tls_certificate_reload_failures_total", Help: "Times a changed TLS certificate or key could not be loaded; the one loaded before stays.",
		}),
	}
}

// Register registers the metrics with r.
func (m *Metrics) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.successes, m.failures, m.reloads, m.reloadFailures, m.users, m.tlsReloads, m.tlsFailures} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
