package broker

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	b                            *Broker
	produceRecords, produceBytes prometheus.Counter
	produceErrors, fetchBytes    prometheus.Counter
	partHWM, partStart, partSize *prometheus.Desc
	topics                       *prometheus.Desc
	appended, fetched, dlqDepth  *prometheus.Desc
	schemaErrors                 *prometheus.CounterVec
}

func newMetrics(b *Broker) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "herald", Subsystem: "broker", Name: name, Help: help})
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("herald_broker_"+name, help, labels, nil)
	}
	return &metrics{
		b:              b,
		produceRecords: c("produce_records_total", "Records appended by producers."),
		produceBytes:   c("produce_bytes_total", "Bytes of record batches appended by producers."),
		produceErrors:  c("produce_errors_total", "Produce requests refused."),
		fetchBytes:     c("fetch_bytes_total", "Bytes of record batches returned to fetches."),
		partHWM:        d("partition_high_watermark", "High-water mark of a partition.", "topic", "partition"),
		partStart:      d("partition_start_offset", "First offset of a partition.", "topic", "partition"),
		partSize:       d("partition_size_bytes", "Bytes stored for a partition.", "topic", "partition"),
		topics:         d("topics", "Topics."),
		appended:       d("records_appended_total", "Records appended by producers (Kafka and HTTP), per topic.", "topic"),
		fetched:        d("records_fetched_total", "Records (offsets) returned to fetches, per topic.", "topic"),
		dlqDepth:       d("dlq_records", "Records kept in dead-letter topics (named *.dlq, *-dlq, *_dlq, *.dead-letter, ...).", "topic"),
		schemaErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "herald", Name: "schema_validation_errors_total",
			Help: "Records refused on produce because they do not match their schema, by topic."}, []string{"topic"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.produceRecords, m.produceBytes, m.produceErrors, m.fetchBytes, m.schemaErrors, m}
}

func (m *metrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range m.collectors() {
		errs = append(errs, r.Register(c))
	}
	return errors.Join(errs...)
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.partHWM
	ch <- m.partStart
	ch <- m.partSize
	ch <- m.topics
	ch <- m.appended
	ch <- m.fetched
	ch <- m.dlqDepth
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ts := m.b.Topics()
	ch <- prometheus.MustNewConstMetric(m.topics, prometheus.GaugeValue, float64(len(ts)))
	m.collectCounters(ch)
	for _, t := range ts {
		parts, err := m.b.Partitions(t.Name)
		if err != nil {
			continue
		}
		for _, p := range parts {
			idx := itoa(p.Partition)
			ch <- prometheus.MustNewConstMetric(m.partHWM, prometheus.GaugeValue, float64(p.HighWatermark), t.Name, idx)
			ch <- prometheus.MustNewConstMetric(m.partStart, prometheus.GaugeValue, float64(p.StartOffset), t.Name, idx)
			ch <- prometheus.MustNewConstMetric(m.partSize, prometheus.GaugeValue, float64(p.Size), t.Name, idx)
		}
	}
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }

// collectCounters sums the partitions' record counters per topic, and
// reports the depth of dead-letter topics.
func (m *metrics) collectCounters(ch chan<- prometheus.Metric) {
	type sums struct {
		name              string
		appended, fetched int64
		depth             int64
		dlq               bool
	}
	var out []sums
	m.b.mu.RLock()
	for _, t := range m.b.mu.topics {
		if t.internal {
			continue
		}
		s := sums{name: t.name, dlq: IsDeadLetterTopic(t.name)}
		for _, p := range t.parts {
			s.appended += p.counters.appended.Load()
			s.fetched += p.counters.fetched.Load()
		}
		out = append(out, s)
	}
	m.b.mu.RUnlock()
	for _, s := range out {
		ch <- prometheus.MustNewConstMetric(m.appended, prometheus.CounterValue, float64(s.appended), s.name)
		ch <- prometheus.MustNewConstMetric(m.fetched, prometheus.CounterValue, float64(s.fetched), s.name)
		if !s.dlq {
			continue
		}
		parts, err := m.b.Partitions(s.name)
		if err != nil {
			continue
		}
		for _, p := range parts {
			s.depth += max(p.HighWatermark-p.StartOffset, 0)
		}
		ch <- prometheus.MustNewConstMetric(m.dlqDepth, prometheus.GaugeValue, float64(s.depth), s.name)
	}
}
