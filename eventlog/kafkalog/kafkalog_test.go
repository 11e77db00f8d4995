package kafkalog_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/kafkalog"
	"github.com/heraldhq/herald/eventlog/logtest"
	"github.com/heraldhq/herald/kafka"
)

// heraldServer starts Herald's Kafka listener in-process on 127.0.0.1:0,
// over a broker in a temporary directory and a coordinator whose minimum
// session timeout is short enough for fast group tests.
func heraldServer(t *testing.T) string {
	logger := slog.New(slog.DiscardHandler)
	b, err := broker.Open(broker.Config{DataDir: t.TempDir(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	store, err := b.GroupStore()
	if err != nil {
		t.Fatal(err)
	}
	g, err := groups.New(context.Background(), groups.Config{
		Store: store, Logger: logger, MinSessionTimeout: 100 * time.Millisecond,
		TopicExists: b.PartitionExists, HighWatermark: b.HighWatermark,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := kafka.New(kafka.Config{Broker: b, Groups: g, Logger: logger})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, kafka.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		g.Close()
		if err := b.Close(); err != nil {
			t.Errorf("broker Close: %v", err)
		}
	})
	return ln.Addr().String()
}

func newLog(t *testing.T, addr string) eventlog.Log {
	l, err := kafkalog.New(kafkalog.Config{Brokers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestHerald(t *testing.T) {
	addr := heraldServer(t)
	logtest.Run(t, func(t *testing.T) eventlog.Log { return newLog(t, addr) }, logtest.Features{
		TopicConfigs:        true,
		ValidatesTopicNames: true,
		ValidatesConfigs:    true,
		MaxMessageBytes:     true,
		GroupActiveCommits:  true,
		SessionTimeout:      time.Second,
		HeartbeatInterval:   100 * time.Millisecond,
	})
}

// TestPartitionerAgreement checks that a plain kgo producer with its
// default partitioner puts keys where eventlog.PartitionFor says.
func TestPartitionerAgreement(t *testing.T) {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for i := range 2000 {
		key := []byte{byte(i), byte(i >> 8), 'k'}
		for _, n := range []int{1, 3, 7, 16, 100} {
			if got, want := eventlog.PartitionFor(key, n), p.Partition(&kgo.Record{Key: key}, n); int(got) != want {
				t.Fatalf("PartitionFor(%x, %d) = %d, kgo says %d", key, n, got, want)
			}
		}
	}
}
