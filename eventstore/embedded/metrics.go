package embedded

import "github.com/prometheus/client_golang/prometheus"

// metrics are the store's Prometheus metrics, one collector so a store can
// register and unregister them together.
type metrics struct {
	appends, events, conflicts, reads prometheus.Counter
	latency                           prometheus.Histogram
	streams, head, rounds, fsync      *prometheus.Desc
	prealloc, preallocFailures        *prometheus.Desc
	indexSaves, indexSaved            *prometheus.Desc
	s                                 *Store
}

func newMetrics(s *Store) *metrics {
	return &metrics{
		s: s,
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_eventstore_appends_total", Help: "Appends acknowledged (one per single- or multi-stream append).",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_eventstore_appended_events_total", Help: "Events appended.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_eventstore_conflicts_total", Help: "Appends and deletes refused for a wrong expected version.",
		}),
		reads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_eventstore_stream_reads_total", Help: "Stream reads served.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herald_eventstore_append_seconds", Help: "Append latency, durable.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		streams: prometheus.NewDesc("herald_eventstore_streams", "Streams known to the index.", nil, nil),
		head:    prometheus.NewDesc("herald_eventstore_head_position", "Position after the last durable record of $all.", nil, nil),
		rounds: prometheus.NewDesc("herald_eventstore_sync_rounds_total",
			"Group commit rounds of the log: one fsync each, shared by every append written before it started; appends per fsync = appends / rounds.", nil, nil),
		fsync: prometheus.NewDesc("herald_eventstore_fsync_seconds_total", "Time spent in the log's fsyncs.", nil, nil),
		prealloc: prometheus.NewDesc("herald_eventstore_preallocated_bytes_total",
			"Zeros written ahead of the log's last event, so that appends' fsyncs write data only (Config.Preallocate).", nil, nil),
		preallocFailures: prometheus.NewDesc("herald_eventstore_preallocate_failures_total",
			"Preallocations that failed (a full disk); the segment goes on without.", nil, nil),
		indexSaves: prometheus.NewDesc("herald_eventstore_index_saves_total",
			"Saves of the stream index to the index file while open (as the log grows, and before compaction).", nil, nil),
		indexSaved: prometheus.NewDesc("herald_eventstore_index_saved_position",
			"Position the index file covers (-1: none); an open after a crash scans the log from there to the head.", nil, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range []prometheus.Collector{m.appends, m.events, m.conflicts, m.reads, m.latency} {
		c.Describe(ch)
	}
	ch <- m.streams
	ch <- m.head
	ch <- m.rounds
	ch <- m.fsync
	ch <- m.prealloc
	ch <- m.preallocFailures
	ch <- m.indexSaves
	ch <- m.indexSaved
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range []prometheus.Collector{m.appends, m.events, m.conflicts, m.reads, m.latency} {
		c.Collect(ch)
	}
	m.s.mu.RLock()
	n := len(m.s.streams)
	m.s.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(m.streams, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(m.head, prometheus.GaugeValue, float64(m.s.log.HighWatermark()))
	st := m.s.SyncStats()
	ch <- prometheus.MustNewConstMetric(m.rounds, prometheus.CounterValue, float64(st.Rounds))
	ch <- prometheus.MustNewConstMetric(m.fsync, prometheus.CounterValue, st.FsyncSeconds)
	ch <- prometheus.MustNewConstMetric(m.prealloc, prometheus.CounterValue, float64(st.PreallocatedBytes))
	ch <- prometheus.MustNewConstMetric(m.preallocFailures, prometheus.CounterValue, float64(st.PreallocateFailures))
	ch <- prometheus.MustNewConstMetric(m.indexSaves, prometheus.CounterValue, float64(m.s.ckCount.Load()))
	ch <- prometheus.MustNewConstMetric(m.indexSaved, prometheus.GaugeValue, float64(m.s.ckPos.Load()))
}

// SyncStats describes the group commit of a store's log since it opened.
type SyncStats struct {
	// Rounds is the number of flush rounds: each writes nothing itself and
	// fsyncs once for every append written since the previous round.
	Rounds int64
	// FsyncSeconds is the time spent in those rounds' fsyncs.
	FsyncSeconds float64
	// PreallocatedBytes is the zeros written ahead of the last event
	// (Config.Preallocate); PreallocateFailures counts those that failed.
	PreallocatedBytes, PreallocateFailures int64
}

// SyncStats reports the log's flush rounds, fsync time and preallocation,
// so a caller can tell how many appends share an fsync (appends / Rounds).
func (s *Store) SyncStats() SyncStats {
	var st SyncStats
	mfs, err := s.logReg.Gather()
	if err != nil {
		return st
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "herald_commitlog_sync_rounds_total":
				st.Rounds += int64(m.GetCounter().GetValue())
			case "herald_commitlog_fsync_seconds":
				st.FsyncSeconds += m.GetHistogram().GetSampleSum()
			case "herald_commitlog_preallocated_bytes_total":
				st.PreallocatedBytes += int64(m.GetCounter().GetValue())
			case "herald_commitlog_preallocate_failures_total":
				st.PreallocateFailures += int64(m.GetCounter().GetValue())
			}
		}
	}
	return st
}
