package kafkalog_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/kafkalog"
	"github.com/heraldhq/herald/eventlog/logtest"
	"github.com/heraldhq/herald/server"
)

// heraldServer starts Herald's Kafka listener in-process on 127.0.0.1:0,
// over a broker in a temporary directory and a coordinator whose minimum
// session timeout is short enough for fast group tests.
func heraldServer(t *testing.T) string {
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: t.TempDir()},
		Groups: groups.Config{MinSessionTimeout: 100 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
	})
	return srv.KafkaAddr()
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
