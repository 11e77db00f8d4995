package cqrs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/cqrs"
	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/embedded"
	"github.com/heraldhq/herald/eventstore/pgstore/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// emails is a query-side view: user id -> current email, and a count of
// changes.
type emails struct {
	ByUser  map[string]string
	Changes int
}

func newEmails() emails { return emails{ByUser: map[string]string{}} }

func applyEmails(v *emails, ev eventstore.RecordedEvent) error {
	u, err := applyUser(User{Email: v.ByUser[ev.Stream]}, ev)
	if err != nil {
		return err
	}
	v.ByUser[ev.Stream] = u.Email
	if ev.Type == "UserEmailChanged" {
		v.Changes++
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendUsers(t *testing.T, s eventstore.Store, from, to int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < to; i++ {
		id := fmt.Sprint(i)
		_, err := s.AppendMulti(ctx, []eventstore.StreamAppend{
			{Stream: "user-" + id, Expected: eventstore.NoStream, Events: []eventstore.EventData{
				{ID: eventstore.NewID(), Type: "UserRegistered", Data: mustJSON(userRegistered{id, id + "@a", "h"})},
				{ID: eventstore.NewID(), Type: "UserEmailChanged", Data: mustJSON(userEmailChanged{id + "@b"})},
			}},
			{Stream: "audit-" + id, Expected: eventstore.Any, Events: []eventstore.EventData{{ID: eventstore.NewID(), Type: "Noise", Data: []byte("{}")}}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

func snapshotOf(m *cqrs.MemoryModel[emails]) emails {
	var out emails
	m.Read(func(s *emails) { out = emails{ByUser: maps.Clone(s.ByUser), Changes: s.Changes} })
	return out
}

func TestMemoryProjectionLiveAndRebuild(t *testing.T) {
	for name, store := range backends(t) {
		t.Run(name, func(t *testing.T) {
			appendUsers(t, store, 0, 30)
			live := cqrs.NewMemoryModel(newEmails, applyEmails)
			p := cqrs.NewProjection("emails", store, eventstore.Category("user"), live)
			p.BatchSize = 7
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Errorf("Run returned %v", err)
				}
			}()
			waitFor(t, "catch-up", func() bool { return len(snapshotOf(live).ByUser) == 30 })
			appendUsers(t, store, 30, 40) // live
			waitFor(t, "live events", func() bool { return snapshotOf(live).Changes == 40 })
			head, _ := store.Head(context.Background())
			waitFor(t, "status", func() bool { st := p.Status(); return st.Position == head && st.Lag == 0 })
			got := snapshotOf(live)
			if got.ByUser["user-7"] != "7@b" {
				t.Fatalf("user-7 email %q", got.ByUser["user-7"])
			}

			// Rebuild into a fresh model while the live one keeps serving.
			fresh := cqrs.NewMemoryModel(newEmails, applyEmails)
			if err := p.Rebuild(context.Background(), fresh); err != nil {
				t.Fatal(err)
			}
			if p.Model() != cqrs.ReadModel(fresh) {
				t.Fatal("the rebuilt model is not served")
			}
			appendUsers(t, store, 40, 45) // Run continues with the new model
			waitFor(t, "rebuilt model live", func() bool { return snapshotOf(fresh).Changes == 45 })
			// A full replay from zero equals the live projection.
			replay := cqrs.NewMemoryModel(newEmails, applyEmails)
			if err := cqrs.NewProjection("replay", store, eventstore.Category("user"), replay).CatchUp(context.Background()); err != nil {
				t.Fatal(err)
			}
			a, b := snapshotOf(replay), snapshotOf(fresh)
			if !maps.Equal(a.ByUser, b.ByUser) || a.Changes != b.Changes {
				t.Fatalf("replay %v differs from live %v", a, b)
			}
		})
	}
}

// A PostgreSQL read model with non-idempotent updates (counters): failed
// applies and a restarted runner must neither lose nor repeat an event.
func TestPGProjectionExactlyOnce(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	schema := pgtest.Schema()
	if _, err := pool.Exec(ctx, `CREATE SCHEMA `+schema+`; CREATE TABLE `+schema+`.user_counts (stream text PRIMARY KEY, events int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	es, err := embedded.Open(embedded.Config{Dir: t.TempDir(), SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	appendUsers(t, es, 0, 50)

	var handled, failures atomic.Int64
	model := func() *cqrs.PGModel {
		return &cqrs.PGModel{
			Pool: pool, Name: "user_counts", Schema: schema,
			Handle: func(ctx context.Context, tx pgx.Tx, ev eventstore.RecordedEvent) error {
				// Every 13th event fails once, after the others in its
				// batch were written in the same transaction.
				if n := handled.Add(1); n%13 == 0 && failures.Load() < 5 {
					failures.Add(1)
					return errors.New("injected failure")
				}
				_, err := tx.Exec(ctx, `INSERT INTO `+schema+`.user_counts VALUES ($1, 1)
					ON CONFLICT (stream) DO UPDATE SET events = user_counts.events + 1`, ev.Stream)
				return err
			},
			Truncate: func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `TRUNCATE `+schema+`.user_counts`)
				return err
			},
		}
	}
	check := func(users int) {
		t.Helper()
		var n, total int
		if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(events), 0) FROM `+schema+`.user_counts`).Scan(&n, &total); err != nil {
			t.Fatal(err)
		}
		if n != users || total != 2*users {
			t.Fatalf("read model has %d users and %d events, want %d and %d", n, total, users, 2*users)
		}
	}
	// First runner: stopped part-way, like a crash between batches.
	p1 := cqrs.NewProjection("counts", es, eventstore.Category("user"), model())
	p1.BatchSize = 10
	run1, stop1 := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p1.Run(run1) }()
	waitFor(t, "some progress", func() bool { return p1.Status().Position > 20 })
	stop1()
	<-done
	// Second runner, new model object: resumes from the committed
	// checkpoint.
	appendUsers(t, es, 50, 60)
	m2 := model()
	p2 := cqrs.NewProjection("counts", es, eventstore.Category("user"), m2)
	p2.BatchSize = 10
	run2, stop2 := context.WithCancel(ctx)
	go func() { done <- p2.Run(run2) }()
	head, _ := es.Head(ctx)
	waitFor(t, "catch-up", func() bool { cp, _ := m2.Checkpoint(ctx); return cp >= head })
	stop2()
	<-done
	if failures.Load() == 0 {
		t.Fatal("no failure was injected")
	}
	check(60)
	// Reset and rebuild from zero gives the same table.
	if err := cqrs.NewProjection("counts", es, eventstore.Category("user"), m2).Rebuild(ctx, model()); err != nil {
		t.Fatal(err)
	}
	check(60)
}

// A read model persisted in the embedded event store itself survives a
// restart of the store and resumes from its saved checkpoint.
func TestStoreModelSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() *embedded.Store {
		es, err := embedded.Open(embedded.Config{Dir: dir, SegmentBytes: 32 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	ctx := context.Background()
	es := open()
	appendUsers(t, es, 0, 20)
	m := cqrs.NewStoreModel(es, "emails", newEmails, applyEmails)
	if err := cqrs.NewProjection("emails", es, eventstore.Category("user"), m).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	es.Close()

	es = open()
	defer es.Close()
	appendUsers(t, es, 20, 25)
	m2 := cqrs.NewStoreModel(es, "emails", newEmails, applyEmails)
	if err := m2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	m2.Read(func(s *emails) { n = len(s.ByUser) })
	if n != 20 {
		t.Fatalf("restored model has %d users, want 20", n)
	}
	if err := cqrs.NewProjection("emails", es, eventstore.Category("user"), m2).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	var got emails
	m2.Read(func(s *emails) { got = emails{ByUser: maps.Clone(s.ByUser), Changes: s.Changes} })
	if len(got.ByUser) != 25 || got.Changes != 25 {
		t.Fatalf("after resume: %d users, %d changes; want 25 and 25", len(got.ByUser), got.Changes)
	}
}

// An unfiltered projection into a StoreModel does not feed on its own
// saves: it goes idle once caught up.
func TestStoreModelUnfilteredGoesIdle(t *testing.T) {
	es, err := embedded.Open(embedded.Config{Dir: t.TempDir(), SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	appendUsers(t, es, 0, 3)
	m := cqrs.NewStoreModel(es, "all", func() map[string]int { return map[string]int{} }, func(s *map[string]int, ev eventstore.RecordedEvent) error {
		(*s)[ev.Type]++
		return nil
	})
	p := cqrs.NewProjection("all", es, eventstore.Filter{}, m)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	p.Run(ctx)
	head, _ := es.Head(context.Background())
	if head > 12 { // 9 events, the first save, its max-count metadata record
		t.Fatalf("head %d: the projection kept saving", head)
	}
	var n int
	m.Read(func(s *map[string]int) { n = (*s)["UserRegistered"] })
	if n != 3 {
		t.Fatalf("counted %d registrations", n)
	}
}
