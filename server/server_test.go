package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/kafka"
)

func start(t *testing.T, dir, addr string) *Server {
	t.Helper()
	s, err := Start(context.Background(), Config{
		Broker: broker.Config{DataDir: dir}, KafkaAddr: addr, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return s
}

func TestStartServeRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := start(t, dir, "")
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddr()), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, kgo.StringRecord("kept")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A transactional producer works: the transaction coordinator is wired.
	tx, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddr()), kgo.TransactionalID("srv"), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, kgo.StringRecord("in a txn")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	cl.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if err := s.ServeErr(); !errors.Is(err, kafka.ErrServerClosed) {
		t.Fatalf("ServeErr after Close: %v", err)
	}

	// The same directory opens again with the data in it.
	s = start(t, dir, "")
	defer s.Close()
	if hwm, ok := s.Broker.HighWatermark("t", 0); !ok || hwm != 3 { // 2 records + a commit marker
		t.Fatalf("after restart the high-water mark is %d, %v; want 3", hwm, ok)
	}
}

func TestStartFailureReleasesEverything(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := Start(context.Background(), Config{
		Broker: broker.Config{DataDir: dir}, KafkaAddr: busy.Addr().String(), Logger: slog.New(slog.DiscardHandler),
	}); err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	// The data directory was closed (its lock released): it opens again.
	s := start(t, dir, "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
