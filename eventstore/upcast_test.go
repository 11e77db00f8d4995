package eventstore_test

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/cqrs"
	logembedded "github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/embedded"
	"github.com/heraldhq/herald/schema/registry"
	"github.com/heraldhq/herald/schema/typed"
)

// registryClient is a client of a real Herald schema registry.
func registryClient(t *testing.T) *sr.Client {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	b, err := broker.Open(broker.Config{DataDir: t.TempDir(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	l, err := logembedded.New(logembedded.Config{Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(context.Background(), registry.Config{Log: l, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// Version 1 of the event, as the first release of a service wrote it.
type userRegisteredV1 struct {
	User  string `json:"user"`
	Email string `json:"email"`
}

// UserRegistered is version 2: a plan, which every v1 user had as "free".
type UserRegistered struct {
	User  string  `json:"user"`
	Email string  `json:"email"`
	Plan  *string `json:"plan"`
}

type account struct {
	Email, Plan string
	Events      int
}

// A v1 event stored by an old release is read back as v2 through the
// schema/typed codec's upcasters: by ReadStream, ReadAll, a catch-up
// subscription, a persistent subscription, time travel and a cqrs
// repository rebuilding the aggregate. The stored bytes stay v1.
func TestStoreUpcastsThroughSchemaCodec(t *testing.T) {
	for _, format := range []typed.Format{typed.JSON, typed.Avro} {
		t.Run(map[typed.Format]string{typed.JSON: "json", typed.Avro: "avro"}[format], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cl := registryClient(t)
			const subject = "user-registered-value"
			base, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()

			// The old release writes v1.
			c1, err := typed.New[userRegisteredV1](ctx, cl, subject, format)
			if err != nil {
				t.Fatal(err)
			}
			old, err := c1.Encode(userRegisteredV1{User: "1", Email: "ada@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := base.Append(ctx, "user-1", eventstore.NoStream, eventstore.EventData{ID: eventstore.NewID(), Type: "UserRegistered", Data: old}); err != nil {
				t.Fatal(err)
			}

			// The new release registers v2 with its upcaster and reads
			// through it.
			c2, err := typed.New[UserRegistered](ctx, cl, subject, format, typed.Upcaster{From: 1, Fn: func(m map[string]any) (map[string]any, error) {
				m["plan"] = "free"
				return m, nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			if c2.Version() != 2 || c2.ID() == c1.ID() {
				t.Fatalf("v2 codec: version %d id %d (v1 id %d)", c2.Version(), c2.ID(), c1.ID())
			}
			pro := "pro"
			cur, err := c2.Encode(UserRegistered{User: "2", Email: "bob@example.com", Plan: &pro})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := base.Append(ctx, "user-2", eventstore.NoStream, eventstore.EventData{ID: eventstore.NewID(), Type: "UserRegistered", Data: cur}); err != nil {
				t.Fatal(err)
			}
			s := eventstore.WithUpcaster(base, eventstore.Upcasters{"UserRegistered": eventstore.SchemaUpcaster[UserRegistered](c2)})
			if _, ok := s.(eventstore.Scavenger); !ok {
				t.Fatal("the upcasting store hides the embedded store's Scavenge")
			}

			// want checks one event is v2 in the current schema.
			want := func(where string, ev eventstore.RecordedEvent, user, plan string) {
				t.Helper()
				if id := binary.BigEndian.Uint32(ev.Data[1:5]); int(id) != c2.ID() {
					t.Fatalf("%s: event of %s has schema id %d, want the current %d", where, ev.Stream, id, c2.ID())
				}
				v, err := c2.Decode(ctx, ev.Data)
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				if v.User != user || v.Plan == nil || *v.Plan != plan {
					t.Fatalf("%s: got %+v (plan %v), want user %s on plan %s", where, v, v.Plan, user, plan)
				}
			}

			evs, err := s.ReadStream(ctx, "user-1", eventstore.ReadStreamOptions{})
			if err != nil || len(evs) != 1 {
				t.Fatalf("read user-1: %d events, %v", len(evs), err)
			}
			want("ReadStream", evs[0], "1", "free")
			page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{Filter: eventstore.Category("user")})
			if err != nil || len(page.Events) != 2 {
				t.Fatalf("read $all: %d events, %v", len(page.Events), err)
			}
			want("ReadAll", page.Events[0], "1", "free")
			want("ReadAll", page.Events[1], "2", "pro")
			past, err := eventstore.ReadStreamAsOf(ctx, s, "user-1", 0, time.Time{}, 0)
			if err != nil || len(past) != 1 {
				t.Fatalf("time travel: %d events, %v", len(past), err)
			}
			want("ReadStreamAsOf", past[0], "1", "free")

			sub, err := eventstore.Subscribe(s, eventstore.SubscribeOptions{Filter: eventstore.Category("user")})
			if err != nil {
				t.Fatal(err)
			}
			ev, err := sub.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want("catch-up subscription", ev, "1", "free")

			p, err := eventstore.NewPersistent(ctx, s, eventstore.PersistentConfig{Group: "mailer", Stream: "user-1", Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			d, err := p.Receive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want("persistent subscription", d.Event, "1", "free")
			d.Ack()
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}

			repo := &cqrs.Repository[account]{Store: s, Type: cqrs.AggregateType[account]{
				Category: "user",
				Initial:  func() account { return account{} },
				Apply: func(a account, ev eventstore.RecordedEvent) (account, error) {
					v, err := c2.Decode(ctx, ev.Data)
					if err != nil {
						return a, err
					}
					a.Email, a.Events = v.Email, a.Events+1
					if v.Plan != nil {
						a.Plan = *v.Plan
					}
					return a, nil
				},
			}}
			l, err := repo.Load(ctx, "1")
			if err != nil {
				t.Fatal(err)
			}
			if l.State != (account{Email: "ada@example.com", Plan: "free", Events: 1}) {
				t.Fatalf("aggregate rebuilt as %+v", l.State)
			}

			// Nothing was rewritten: the store still holds v1.
			raw, err := base.ReadStream(ctx, "user-1", eventstore.ReadStreamOptions{})
			if err != nil || string(raw[0].Data) != string(old) {
				t.Fatalf("stored event changed: %v", err)
			}
			// Data not in the wire format is an error naming the event.
			if _, err := base.Append(ctx, "user-3", eventstore.NoStream, eventstore.EventData{ID: "bad-1", Type: "UserRegistered", Data: []byte(`{"user":"3"}`)}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.ReadStream(ctx, "user-3", eventstore.ReadStreamOptions{}); err == nil {
				t.Fatal("read an event with no schema id through the schema upcaster")
			}
		})
	}
}

// Upcasters chain by type and stop at a cycle.
func TestUpcastersChain(t *testing.T) {
	u := eventstore.Upcasters{
		"Renamed.v1": eventstore.UpcasterFunc(func(ev eventstore.RecordedEvent) (eventstore.RecordedEvent, error) {
			ev.Type, ev.Data = "Renamed.v2", append(ev.Data, '2')
			return ev, nil
		}),
		"Renamed.v2": eventstore.UpcasterFunc(func(ev eventstore.RecordedEvent) (eventstore.RecordedEvent, error) {
			ev.Type, ev.Data = "Renamed", append(ev.Data, '3')
			return ev, nil
		}),
		"Loop": eventstore.UpcasterFunc(func(ev eventstore.RecordedEvent) (eventstore.RecordedEvent, error) {
			ev.Type = "Loop2"
			return ev, nil
		}),
		"Loop2": eventstore.UpcasterFunc(func(ev eventstore.RecordedEvent) (eventstore.RecordedEvent, error) {
			ev.Type = "Loop"
			return ev, nil
		}),
	}
	ev, err := u.Upcast(eventstore.RecordedEvent{Type: "Renamed.v1", Data: []byte("1")})
	if err != nil || ev.Type != "Renamed" || string(ev.Data) != "123" {
		t.Fatalf("chain: %+v %v", ev, err)
	}
	if _, err := u.Upcast(eventstore.RecordedEvent{Type: "Loop"}); err == nil {
		t.Fatal("a cycle of upcasters was not refused")
	}
}
