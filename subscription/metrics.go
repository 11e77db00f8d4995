package subscription

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descBacklog      = prometheus.NewDesc("herald_subscription_backlog_messages", "Unacknowledged messages of the subscription, delivered or not.", []string{"subscription"}, nil)
	descOutstanding  = prometheus.NewDesc("herald_subscription_outstanding_messages", "Messages delivered and awaiting an ack.", []string{"subscription"}, nil)
	descOldest       = prometheus.NewDesc("herald_subscription_oldest_unacked_message_age_seconds", "Age of the oldest unacknowledged message.", []string{"subscription"}, nil)
	descDelivered    = prometheus.NewDesc("herald_subscription_delivered_total", "Deliveries, first and repeated.", []string{"subscription"}, nil)
	descAcked        = prometheus.NewDesc("herald_subscription_acked_total", "Messages acknowledged by receivers.", []string{"subscription"}, nil)
	descRedeliveries = prometheus.NewDesc("herald_subscription_redeliveries_total", "Deliveries after the first of a message.", []string{"subscription"}, nil)
	descDLQ          = prometheus.NewDesc("herald_subscription_dead_lettered_total", "Messages moved to the dead-letter topic.", []string{"subscription"}, nil)
	descFiltered     = prometheus.NewDesc("herald_subscription_filtered_total", "Messages acknowledged because the filter did not match.", []string{"subscription"}, nil)
	descPushConc     = prometheus.NewDesc("herald_subscription_push_concurrency", "Current request concurrency of a push subscription (AIMD).", []string{"subscription"}, nil)
)

// collector exports every subscription's stats on scrape.
type collector struct{ m *Manager }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBacklog, descOutstanding, descOldest, descDelivered, descAcked, descRedeliveries, descDLQ, descFiltered, descPushConc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range c.m.list() {
		st := s.stats(ctx)
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, s.name)
		}
		k := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), s.name)
		}
		g(descBacklog, float64(st.Backlog))
		g(descOutstanding, float64(st.Outstanding))
		g(descOldest, st.OldestUnackedAgeSecs)
		k(descDelivered, st.Delivered)
		k(descAcked, st.Acked)
		k(descRedeliveries, st.Redeliveries)
		k(descDLQ, st.DeadLettered)
		k(descFiltered, st.Filtered)
		if st.PushConcurrency > 0 {
			g(descPushConc, float64(st.PushConcurrency))
		}
	}
}
