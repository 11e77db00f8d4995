package kafka

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	errors      *prometheus.CounterVec
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	sendfile    prometheus.Counter
	connections prometheus.Gauge
	accepted    prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_kafka_requests_total", Help: "Kafka requests handled, by API.",
		}, []string{"api"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_kafka_request_duration_seconds", Help: "Time from reading a Kafka request to its response being ready, by API.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"api"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_kafka_connection_errors_total", Help: "Connections closed for a protocol error, by reason.",
		}, []string{"reason"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_kafka_received_bytes_total", Help: "Bytes of Kafka request frames received.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_kafka_sent_bytes_total", Help: "Bytes of Kafka response frames sent.",
		}),
		sendfile: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_kafka_sendfile_bytes_total", Help: "Record bytes of fetch responses sent straight from segment files (sendfile), part of the sent bytes.",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_kafka_connections", Help: "Open Kafka client connections.",
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_kafka_connections_accepted_total", Help: "Kafka client connections accepted.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.latency, m.errors, m.bytesIn, m.bytesOut, m.sendfile, m.connections, m.accepted}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for i, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			for _, d := range m.collectors()[:i] {
				r.Unregister(d)
			}
			return err
		}
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}
