package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/auth"
	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/kafka"
)

// TestDialInternal: with SASL required on the network listener, the
// in-process listener still serves the server's own clients without it,
// and the network one still refuses a client without credentials.
func TestDialInternal(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	if _, err := auth.AddUser(users, "alice", "pw", auth.MinIterations); err != nil {
		t.Fatal(err)
	}
	store, err := auth.OpenStore(users, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(context.Background(), Config{
		Broker: broker.Config{DataDir: filepath.Join(dir, "data")}, Kafka: kafka.Config{Auth: store}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Broker.CreateTopic(context.Background(), "t", 1, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddr()), kgo.Dialer(s.DialInternal))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := in.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("in-process produce: %v", err)
	}
	out, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddr()), kgo.RetryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := out.Request(ctx, kmsg.NewPtrMetadataRequest()); err == nil {
		t.Fatal("a network client without credentials was answered")
	}
}
