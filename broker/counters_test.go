package broker

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gatherBroker returns the broker's labelled series as "name{topic}" ->
// value, for the metrics that carry only a topic label.
func gatherBroker(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "topic" {
				continue
			}
			out[mf.GetName()+"{"+m.GetLabel()[0].GetValue()+"}"] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestRecordCountersAndDLQDepth(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b := openBroker(t, t.TempDir(), func(c *Config) { c.Registerer = reg })
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic(ctx, "orders", 2, nil)
	b.CreateTopic(ctx, "orders.dlq", 1, nil)
	b.CreateTopic(ctx, "ordersdlq", 1, nil) // no separator: not a DLQ
	for _, p := range []struct {
		topic string
		part  int32
		n     int
	}{{"orders", 0, 3}, {"orders", 1, 2}, {"orders.dlq", 0, 4}, {"ordersdlq", 0, 1}} {
		recs := make([]recSpec, p.n)
		for i := range recs {
			recs[i] = recSpec{value: "v"}
		}
		if _, err := b.Produce(ctx, p.topic, p.part, encode(t, batch.BuildOptions{}, recs...), AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	// A refused produce counts nothing.
	if _, err := b.Produce(ctx, "orders", 0, []byte("garbage"), AcksAll); err == nil {
		t.Fatal("garbage produce accepted")
	}
	// Fetches: all of partition 0 (3), from offset 1 of partition 1 (1),
	// and read-committed from offset 2 of partition 0 (1).
	if _, err := b.Fetch(ctx, "orders", 0, 0, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Fetch(ctx, "orders", 1, 1, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.FetchCommitted(ctx, "orders", 0, 2, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	// A zero-copy fetch (as the Kafka listener does) from offset 1: 2.
	if _, span, ok, err := b.FetchSpan(ctx, "orders", 0, 1, 1<<20, false); err != nil || !ok {
		t.Fatalf("FetchSpan: %v %v", ok, err)
	} else {
		span.Release()
	}
	got := gatherBroker(t, reg)
	for k, want := range map[string]float64{
		"herald_broker_records_appended_total{orders}":     5,
		"herald_broker_records_appended_total{orders.dlq}": 4,
		"herald_broker_records_fetched_total{orders}":      3 + 1 + 1 + 2,
		"herald_broker_records_fetched_total{orders.dlq}":  0,
		"herald_broker_dlq_records{orders.dlq}":            4,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
	for _, k := range []string{"herald_broker_dlq_records{orders}", "herald_broker_dlq_records{ordersdlq}"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s reported for a topic that is not a DLQ", k)
		}
	}
}

func TestIsDeadLetterTopic(t *testing.T) {
	for name, want := range map[string]bool{
		"orders.dlq": true, "orders-DLQ": true, "orders_dlq": true, "billing.dead-letter": true,
		"billing-deadletter": true, "x.dead_letter": true,
		"orders": false, "ordersdlq": false, "dlq": false, ".dlq": true, "dlq.orders": false, "": false,
	} {
		if got := IsDeadLetterTopic(name); got != want {
			t.Errorf("IsDeadLetterTopic(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRecordTimestamp(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic(ctx, "t", 1, nil)
	// One batch of three records (1000, 2000, 3000 ms), then one at 9000.
	b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{}, recSpec{value: "a", ts: 1000}, recSpec{value: "b", ts: 2000}, recSpec{value: "c", ts: 3000}), AcksAll)
	b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{}, recSpec{value: "d", ts: 9000}), AcksAll)
	for off, want := range map[int64]int64{0: 1000, 1: 2000, 2: 3000, 3: 9000} {
		if ts, ok := b.RecordTimestamp("t", 0, off); !ok || ts != want {
			t.Errorf("RecordTimestamp(%d) = %d, %v; want %d", off, ts, ok, want)
		}
	}
	if _, ok := b.RecordTimestamp("t", 0, 4); ok {
		t.Error("a timestamp at the high-water mark")
	}
	if _, ok := b.RecordTimestamp("nope", 0, 0); ok {
		t.Error("a timestamp for a missing topic")
	}
}
