package embedded_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/eventlog/logtest"
)

// newLog opens a broker in a temporary directory and a coordinator whose
// minimum session timeout is short enough for fast group tests.
func newLog(t *testing.T) eventlog.Log {
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
	l, err := embedded.New(embedded.Config{Broker: b, Groups: g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close()
		g.Close()
		if err := b.Close(); err != nil {
			t.Errorf("broker Close: %v", err)
		}
	})
	return l
}

func TestConformance(t *testing.T) {
	logtest.Run(t, newLog, logtest.Features{
		TopicConfigs:        true,
		ValidatesTopicNames: true,
		ValidatesConfigs:    true,
		MaxMessageBytes:     true,
		GroupActiveCommits:  true,
		SessionTimeout:      time.Second,
		HeartbeatInterval:   100 * time.Millisecond,
	})
}
