package pgstore_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/pgstore"
	"github.com/heraldhq/herald/eventstore/pgstore/pgtest"
)

// Live subscriptions wake on NOTIFY, not on polling: with a poll interval
// of an hour, a live event still arrives at once.
func TestNotifyWakesSubscribers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := pgstore.Open(ctx, pgstore.Config{DSN: pgtest.DSN(t), Schema: pgtest.Schema(), PollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub, err := eventstore.Subscribe(s, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Duration, 1)
	go func() {
		ev, err := sub.Next(ctx)
		if err != nil || ev.Type != "Ping" {
			t.Errorf("live event %+v %v", ev, err)
		}
		got <- 0
	}()
	time.Sleep(200 * time.Millisecond) // the subscriber is waiting
	start := time.Now()
	if _, err := s.Append(ctx, "ping-1", eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "Ping"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
		t.Logf("delivered %v after the append", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("no NOTIFY wake-up within 10s (poll interval is an hour)")
	}
}

// A schema migrated by a newer build is refused, not used half-understood.
func TestRefusesNewerSchema(t *testing.T) {
	schema := pgtest.Schema()
	s := pgtest.Open(t, schema)
	if _, err := s.Pool().Exec(context.Background(), `INSERT INTO "`+schema+`".schema_migrations (version) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := pgstore.Open(context.Background(), pgstore.Config{DSN: pgtest.DSN(t), Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "migration 99") {
		t.Fatalf("open of a newer schema: %v", err)
	}
	if _, err := pgstore.Open(context.Background(), pgstore.Config{DSN: pgtest.DSN(t), Schema: "Bad-Name"}); err == nil || !strings.Contains(err.Error(), "schema") {
		t.Fatalf("bad schema name: %v", err)
	}
}
