package commitlog

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Store's Prometheus metrics. Per-log gauges are collected at
// scrape time from the open logs, so idle logs cost nothing between scrapes.
type metrics struct {
	st               *Store
	appendRecords    prometheus.Counter
	appendBytes      prometheus.Counter
	fsyncSeconds     prometheus.Histogram
	syncRounds       prometheus.Counter
	truncatedBytes   prometheus.Counter
	corruptions      prometheus.Counter
	failures         prometheus.Counter
	compactions      prometheus.Counter
	deletedSegs      prometheus.Counter
	preallocBytes    prometheus.Counter
	preallocFailures prometheus.Counter

	logSegments, logEnd, openFiles *prometheus.Desc
}

func newMetrics(st *Store) *metrics {
	const ns, sub = "herald", "commitlog"
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	return &metrics{
		st:            st,
		appendRecords: c("append_records_total", "Records appended."),
		appendBytes:   c("append_bytes_total", "Bytes of record batches appended."),
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "fsync_seconds",
			Help: "Duration of flush rounds (fsyncs of segment files, shared by group commit).", Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16)}),
		syncRounds:       c("sync_rounds_total", "Flush rounds; appends per round = appends / rounds."),
		truncatedBytes:   c("recovery_truncated_bytes_total", "Bytes dropped from torn or corrupt tails at open."),
		corruptions:      c("corruption_errors_total", "Reads that found corrupt data."),
		failures:         c("log_failures_total", "Logs that stopped accepting writes after an I/O error."),
		compactions:      c("compactions_total", "Segments rewritten by compaction."),
		deletedSegs:      c("retention_deleted_segments_total", "Segments removed by retention."),
		preallocBytes:    c("preallocated_bytes_total", "Zero bytes written ahead of active segments (Options.Preallocate)."),
		preallocFailures: c("preallocate_failures_total", "Preallocations that failed (appends go on without them)."),
		logSegments:      prometheus.NewDesc(ns+"_"+sub+"_log_segments", "Segment files of a log.", []string{"log"}, nil),
		// NB: a log's size, start offset and high-water mark are the
		// broker's per-partition gauges (herald_broker_partition_*); exporting
		// them here too doubled those series for every partition.
		logEnd:    prometheus.NewDesc(ns+"_"+sub+"_log_end_offset", "Offset the next record of a log gets (ahead of the high-water mark while an fsync is pending).", []string{"log"}, nil),
		openFiles: prometheus.NewDesc(ns+"_"+sub+"_open_files", "Segment files held open.", nil, nil),
	}
}

func (m *metrics) counters() []prometheus.Collector {
	return []prometheus.Collector{m.appendRecords, m.appendBytes, m.fsyncSeconds, m.syncRounds,
		m.truncatedBytes, m.corruptions, m.failures, m.compactions, m.deletedSegs, m.preallocBytes, m.preallocFailures}
}

func (m *metrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range append(m.counters(), m) {
		errs = append(errs, r.Register(c))
	}
	return errors.Join(errs...)
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range append(m.counters(), m) {
		r.Unregister(c)
	}
}

// Describe implements prometheus.Collector for the per-log gauges.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.logSegments, m.logEnd, m.openFiles} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, l := range m.st.openLogs() {
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l.name)
		}
		g(m.logSegments, float64(l.Segments()))
		g(m.logEnd, float64(l.EndOffset()))
	}
	ch <- prometheus.MustNewConstMetric(m.openFiles, prometheus.GaugeValue, float64(m.st.cache.open()))
}
