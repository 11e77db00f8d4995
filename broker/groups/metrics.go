package groups

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	c                                *Coordinator
	rebalances, commits, replaySkips prometheus.Counter
	removals                         *prometheus.CounterVec
	groupsDesc, membersDesc, lagDesc *prometheus.Desc
	lagSecondsDesc                   *prometheus.Desc
}

func newMetrics(c *Coordinator) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "herald", Subsystem: "group", Name: name, Help: help})
	}
	m := &metrics{
		c:           c,
		rebalances:  counter("rebalances_total", "Rebalances completed (generations started)."),
		commits:     counter("offset_commits_total", "Partition offsets committed durably (commits and resets)."),
		replaySkips: counter("replay_skipped_total", "Stored records skipped on start because they did not decode."),
		removals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "herald", Subsystem: "group",
			Name: "member_removals_total", Help: "Members removed by the coordinator, by reason (not counting leaves)."}, []string{"reason"}),
		groupsDesc:  prometheus.NewDesc("herald_group_groups", "Consumer groups by state.", []string{"state"}, nil),
		membersDesc: prometheus.NewDesc("herald_group_members", "Members of all consumer groups.", nil, nil),
		lagDesc: prometheus.NewDesc("herald_group_lag", "High watermark minus committed offset, per committed partition.",
			[]string{"group", "topic", "partition"}, nil),
		lagSecondsDesc: prometheus.NewDesc("herald_group_lag_seconds",
			"Age of the oldest record not yet consumed (the record at the committed offset), 0 when caught up, per committed partition.",
			[]string{"group", "topic", "partition"}, nil),
	}
	for _, r := range []string{"session_timeout", "rebalance_timeout", "sync_timeout"} {
		m.removals.WithLabelValues(r)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.rebalances, m.commits, m.replaySkips, m.removals, m}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for i, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				r.Unregister(done)
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

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.groupsDesc
	ch <- m.membersDesc
	ch <- m.lagDesc
	ch <- m.lagSecondsDesc
}

// metricsSnapshot is what Collect needs from the actor; lag is computed
// from it outside the actor, so HighWatermark never runs on the actor.
type metricsSnapshot struct {
	states  [len(stateNames)]int
	members int
	offsets map[string]map[TopicPartition]int64
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	snap, err := call(m.c, context.Background(), func() metricsSnapshot {
		var s metricsSnapshot
		s.offsets = map[string]map[TopicPartition]int64{}
		for id, g := range m.c.st.groups {
			s.states[g.state]++
			s.members += len(g.members)
			if m.c.cfg.HighWatermark != nil && len(g.offsets) > 0 {
				offs := make(map[TopicPartition]int64, len(g.offsets))
				for tp, o := range g.offsets {
					offs[tp] = o.Offset
				}
				s.offsets[id] = offs
			}
		}
		return s
	})
	if err != nil {
		return
	}
	for st, n := range snap.states {
		if groupState(st) == stateDead {
			continue
		}
		ch <- prometheus.MustNewConstMetric(m.groupsDesc, prometheus.GaugeValue, float64(n), groupState(st).String())
	}
	ch <- prometheus.MustNewConstMetric(m.membersDesc, prometheus.GaugeValue, float64(snap.members))
	now := time.Now()
	if m.c.cfg.Now != nil {
		now = m.c.cfg.Now()
	}
	for id, offs := range snap.offsets {
		for tp, off := range offs {
			hwm, ok := m.c.cfg.HighWatermark(tp.Topic, tp.Partition)
			if !ok {
				continue
			}
			part := strconv.Itoa(int(tp.Partition))
			ch <- prometheus.MustNewConstMetric(m.lagDesc, prometheus.GaugeValue, float64(max(hwm-off, 0)),
				id, tp.Topic, part)
			if ts := m.c.cfg.RecordTimestamp; ts != nil {
				secs := 0.0
				if off < hwm {
					if at, ok := ts(tp.Topic, tp.Partition, off); ok {
						secs = max(float64(now.UnixMilli()-at)/1000, 0)
					}
				}
				ch <- prometheus.MustNewConstMetric(m.lagSecondsDesc, prometheus.GaugeValue, secs, id, tp.Topic, part)
			}
		}
	}
}
