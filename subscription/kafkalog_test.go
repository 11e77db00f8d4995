package subscription

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/kafkalog"
	"github.com/heraldhq/herald/server"
)

// TestOverKafkaProtocol runs subscriptions on eventlog/kafkalog, through
// Herald's Kafka listener as any Kafka cluster would be used: pull, ack,
// redelivery, a dead letter and a restart of the Manager.
func TestOverKafkaProtocol(t *testing.T) {
	ctx := context.Background()
	srv, err := server.Start(ctx, server.Config{Broker: broker.Config{DataDir: t.TempDir()}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	log, err := kafkalog.New(kafkalog.Config{Brokers: []string{srv.KafkaAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for _, tp := range []string{"t", "dlq"} {
		if err := log.CreateTopic(ctx, tp, 2, nil); err != nil {
			t.Fatal(err)
		}
	}
	open := func() *Manager {
		m, err := Open(ctx, Config{Log: log, Logger: quietLogger(), CheckpointInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	if _, err := m.Create(ctx, "s", Subscription{Topic: "t", DeadLetterPolicy: &DeadLetterPolicy{DeadLetterTopic: "dlq", MaxDeliveryAttempts: 5}}); err != nil {
		t.Fatal(err)
	}
	prod := eventlog.NewProducer(log)
	var recs []eventlog.Record
	for i := range 20 {
		recs = append(recs, eventlog.Record{Key: []byte{byte(i)}, Value: []byte{byte(i)}, Headers: []eventlog.Header{{Key: "kind", Value: []byte("plain")}}})
	}
	if _, err := prod.Append(ctx, "t", recs...); err != nil {
		t.Fatal(err)
	}
	pullN := func(m *Manager, n int) []Received {
		var out []Received
		deadline := time.Now().Add(15 * time.Second)
		for len(out) < n && time.Now().Before(deadline) {
			rs, err := m.Pull(ctx, "s", n-len(out), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rs...)
		}
		if len(out) != n {
			t.Fatalf("pulled %d, want %d", len(out), n)
		}
		return out
	}
	got := pullN(m, 20)
	if got[0].Message.Attributes["kind"] != "plain" {
		t.Fatalf("plain record attributes: %v", got[0].Message.Attributes)
	}
	if inv, err := m.Acknowledge(ctx, "s", ackIDs(got[:15])); err != nil || len(inv) != 0 {
		t.Fatal(inv, err)
	}
	if _, err := m.ModifyAckDeadline(ctx, "s", ackIDs(got[15:]), 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = open()
	defer m.Close()
	again := pullN(m, 5)
	if d, w := datas(again), datas(got[15:]); !sameSet(d, w) {
		t.Fatalf("after restart %v, want %v", d, w)
	}
	for _, r := range again {
		if r.DeliveryAttempt != 2 {
			t.Fatalf("attempt %d", r.DeliveryAttempt)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
