package cqrs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/cqrs"
	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/embedded"
	"github.com/heraldhq/herald/eventstore/pgstore/pgtest"
	"pgregory.net/rapid"
)

// The seed's user account: its state is derived from UserRegistered,
// UserEmailChanged and UserPasswordChanged events.

type User struct {
	ID           string `json:"id"`
	Email        string `json:"email"`
	PasswordHash string `json:"passwordHash"`
	Registered   bool   `json:"registered"`
	EmailChanges int    `json:"emailChanges"`
}

type userRegistered struct {
	ID           string `json:"id"`
	Email        string `json:"email"`
	PasswordHash string `json:"passwordHash"`
}
type userEmailChanged struct {
	Email string `json:"email"`
}
type userPasswordChanged struct {
	PasswordHash string `json:"passwordHash"`
}

func applyUser(u User, ev eventstore.RecordedEvent) (User, error) {
	switch ev.Type {
	case "UserRegistered":
		var e userRegistered
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return u, err
		}
		u.ID, u.Email, u.PasswordHash, u.Registered = e.ID, e.Email, e.PasswordHash, true
	case "UserEmailChanged":
		var e userEmailChanged
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return u, err
		}
		u.Email = e.Email
		u.EmailChanges++
	case "UserPasswordChanged":
		var e userPasswordChanged
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return u, err
		}
		u.PasswordHash = e.PasswordHash
	default:
		return u, fmt.Errorf("unknown event type %q", ev.Type)
	}
	return u, nil
}

func userType(every int64) cqrs.AggregateType[User] {
	return cqrs.AggregateType[User]{
		Category:      "user",
		Initial:       func() User { return User{} },
		Apply:         applyUser,
		SnapshotEvery: every,
		// Version 1 of UserRegistered called the field "mail".
		Upcaster: eventstore.Upcasters{"UserRegistered.v1": eventstore.UpcasterFunc(func(ev eventstore.RecordedEvent) (eventstore.RecordedEvent, error) {
			var old map[string]string
			if err := json.Unmarshal(ev.Data, &old); err != nil {
				return ev, err
			}
			ev.Data, _ = json.Marshal(userRegistered{ID: old["id"], Email: old["mail"], PasswordHash: old["passwordHash"]})
			ev.Type = "UserRegistered"
			return ev, nil
		})},
	}
}

func hash(pw string) string { s := sha256.Sum256([]byte(pw)); return hex.EncodeToString(s[:]) }

func jsonEvent(typ string, v any) eventstore.EventData {
	b, _ := json.Marshal(v)
	return eventstore.EventData{Type: typ, Data: b}
}

// Commands.
type RegisterUser struct{ ID, Email, Password string }
type ChangeEmail struct{ ID, Email string }
type ChangePassword struct{ ID, Password string }

func (RegisterUser) CommandType() string   { return "RegisterUser" }
func (ChangeEmail) CommandType() string    { return "ChangeEmail" }
func (ChangePassword) CommandType() string { return "ChangePassword" }

func (c RegisterUser) Validate() error {
	if !strings.Contains(c.Email, "@") {
		return fmt.Errorf("email %q has no @", c.Email)
	}
	if len(c.Password) < 8 {
		return errors.New("password is shorter than 8 characters")
	}
	return nil
}
func (c ChangeEmail) Validate() error {
	if !strings.Contains(c.Email, "@") {
		return fmt.Errorf("email %q has no @", c.Email)
	}
	return nil
}

var errNotRegistered = errors.New("user is not registered")

// userBus wires the commands to the repository.
func userBus(t *testing.T, repo *cqrs.Repository[User]) *cqrs.Bus {
	var bus cqrs.Bus
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(bus.Register("RegisterUser", func(ctx context.Context, c cqrs.Command) (any, error) {
		cmd := c.(RegisterUser)
		return repo.Execute(ctx, cmd.ID, func(u User, v int64) ([]eventstore.EventData, error) {
			if u.Registered {
				return nil, fmt.Errorf("user %s is already registered", cmd.ID)
			}
			return []eventstore.EventData{jsonEvent("UserRegistered", userRegistered{cmd.ID, cmd.Email, hash(cmd.Password)})}, nil
		})
	}))
	must(bus.Register("ChangeEmail", func(ctx context.Context, c cqrs.Command) (any, error) {
		cmd := c.(ChangeEmail)
		return repo.Execute(ctx, cmd.ID, func(u User, v int64) ([]eventstore.EventData, error) {
			if !u.Registered {
				return nil, errNotRegistered
			}
			if u.Email == cmd.Email {
				return nil, nil
			}
			return []eventstore.EventData{jsonEvent("UserEmailChanged", userEmailChanged{cmd.Email})}, nil
		})
	}))
	must(bus.Register("ChangePassword", func(ctx context.Context, c cqrs.Command) (any, error) {
		cmd := c.(ChangePassword)
		return repo.Execute(ctx, cmd.ID, func(u User, v int64) ([]eventstore.EventData, error) {
			if !u.Registered {
				return nil, errNotRegistered
			}
			return []eventstore.EventData{jsonEvent("UserPasswordChanged", userPasswordChanged{hash(cmd.Password)})}, nil
		})
	}))
	return &bus
}

// backends opens a fresh store of each kind.
func backends(t *testing.T) map[string]eventstore.Store {
	es, err := embedded.Open(embedded.Config{Dir: t.TempDir(), SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { es.Close() })
	return map[string]eventstore.Store{"embedded": es, "postgres": pgtest.Open(t, "")}
}

func TestUserAccount(t *testing.T) {
	for name, store := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			repo := &cqrs.Repository[User]{Store: store, Type: userType(5)}
			bus := userBus(t, repo)

			_, err := bus.Dispatch(ctx, RegisterUser{ID: "u1", Email: "nope", Password: "longenough"})
			if !errors.Is(err, cqrs.ErrValidationFailed) || !strings.Contains(err.Error(), "no @") {
				t.Fatalf("invalid command: %v", err)
			}
			if _, err := bus.Dispatch(ctx, ChangeEmail{ID: "u1", Email: "a@b"}); !errors.Is(err, errNotRegistered) {
				t.Fatalf("change email before register: %v", err)
			}
			if _, err := bus.Dispatch(ctx, RegisterUser{ID: "u1", Email: "ann@example.com", Password: "secret-1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := bus.Dispatch(ctx, RegisterUser{ID: "u1", Email: "ann@example.com", Password: "secret-1"}); err == nil {
				t.Fatal("registered twice")
			}
			for i := 0; i < 6; i++ {
				if _, err := bus.Dispatch(ctx, ChangeEmail{ID: "u1", Email: fmt.Sprintf("ann+%d@example.com", i)}); err != nil {
					t.Fatal(err)
				}
			}
			res, err := bus.Dispatch(ctx, ChangePassword{ID: "u1", Password: "secret-2"})
			if err != nil {
				t.Fatal(err)
			}
			if r := res.(cqrs.ExecuteResult[User]); r.Version != 7 || r.State.PasswordHash != hash("secret-2") {
				t.Fatalf("result %+v", r)
			}
			l, err := repo.Load(ctx, "u1")
			if err != nil {
				t.Fatal(err)
			}
			want := User{ID: "u1", Email: "ann+5@example.com", PasswordHash: hash("secret-2"), Registered: true, EmailChanges: 6}
			if l.State != want || l.Version != 7 {
				t.Fatalf("state %+v v%d, want %+v", l.State, l.Version, want)
			}
			// Snapshots every 5 events: the load started from version 4.
			if l.FromSnapshot != 4 || l.Replayed != 3 {
				t.Fatalf("loaded from snapshot %d replaying %d, want 4 and 3", l.FromSnapshot, l.Replayed)
			}
			// Time travel: as it was at version 2.
			at, err := repo.LoadAt(ctx, "u1", 2)
			if err != nil || at.State.Email != "ann+1@example.com" || at.State.EmailChanges != 2 || at.Version != 2 {
				t.Fatalf("at version 2: %+v %v", at, err)
			}
			past, err := repo.LoadAsOf(ctx, "u1", time.Now().Add(-time.Hour))
			if err != nil || past.Version != -1 || past.State.Registered {
				t.Fatalf("an hour ago: %+v %v", past, err)
			}
			// An old-format event is upcast on read.
			old := eventstore.EventData{ID: eventstore.NewID(), Type: "UserRegistered.v1", Data: []byte(`{"id":"u0","mail":"old@example.com","passwordHash":"h"}`)}
			if _, err := store.Append(ctx, "user-u0", eventstore.NoStream, old); err != nil {
				t.Fatal(err)
			}
			u0, err := repo.Load(ctx, "u0")
			if err != nil || u0.State.Email != "old@example.com" || !u0.State.Registered {
				t.Fatalf("upcast: %+v %v", u0, err)
			}
			if err := bus.Register("ChangeEmail", func(context.Context, cqrs.Command) (any, error) { return nil, nil }); !errors.Is(err, cqrs.ErrHandlerExists) {
				t.Fatalf("second handler: %v", err)
			}
		})
	}
}

// Many concurrent commands on one aggregate: every one lands exactly once
// thanks to optimistic concurrency and retries.
func TestExecuteConcurrentRetries(t *testing.T) {
	for name, store := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			repo := &cqrs.Repository[User]{Store: store, Type: userType(0), MaxRetries: 50}
			bus := userBus(t, repo)
			if _, err := bus.Dispatch(ctx, RegisterUser{ID: "c", Email: "c@x", Password: "12345678"}); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 40)
			for i := 0; i < 40; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := bus.Dispatch(ctx, ChangeEmail{ID: "c", Email: fmt.Sprintf("c%d@x", i)})
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			l, err := repo.Load(ctx, "c")
			if err != nil || l.State.EmailChanges != 40 || l.Version != 40 {
				t.Fatalf("after 40 concurrent changes: %+v %v", l, err)
			}
		})
	}
}

// The state from the latest snapshot plus the tail equals the state from
// the full history, whatever the command sequence and snapshot interval.
func TestSnapshotEqualsFullReplay(t *testing.T) {
	es, err := embedded.Open(embedded.Config{Dir: t.TempDir(), SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		n++
		id := fmt.Sprintf("p%d", n)
		every := rapid.Int64Range(1, 7).Draw(rt, "every")
		snap := &cqrs.Repository[User]{Store: es, Type: userType(every)}
		full := &cqrs.Repository[User]{Store: es, Type: userType(0)}
		bus := userBus(t, snap)
		if _, err := bus.Dispatch(ctx, RegisterUser{ID: id, Email: "r@x", Password: "12345678"}); err != nil {
			rt.Fatal(err)
		}
		steps := rapid.IntRange(0, 15).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			var cmd cqrs.Command = ChangePassword{ID: id, Password: rapid.StringN(1, 8, -1).Draw(rt, "pw")}
			if rapid.Bool().Draw(rt, "email") {
				cmd = ChangeEmail{ID: id, Email: rapid.StringMatching(`[a-c]{1,3}@x`).Draw(rt, "addr")}
			}
			if _, err := bus.Dispatch(ctx, cmd); err != nil {
				rt.Fatal(err)
			}
		}
		a, err := snap.Load(ctx, id)
		if err != nil {
			rt.Fatal(err)
		}
		b, err := full.Load(ctx, id)
		if err != nil {
			rt.Fatal(err)
		}
		if a.State != b.State || a.Version != b.Version {
			rt.Fatalf("snapshot+tail %+v v%d != full %+v v%d", a.State, a.Version, b.State, b.Version)
		}
		if b.Version+1 >= every && a.FromSnapshot < 0 {
			rt.Fatalf("no snapshot used at version %d with every %d", b.Version, every)
		}
	})
}

// Commands sent over the store to a server with competing workers: every
// command is handled once and answered; validation errors and unknown commands come
// back typed.
func TestRemoteCommands(t *testing.T) {
	for name, store := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			repo := &cqrs.Repository[User]{Store: store, Type: userType(0), MaxRetries: 50}
			var wg sync.WaitGroup
			srv := &cqrs.CommandServer{Store: store, Bus: userBus(t, repo), Workers: 4, Decoders: map[string]cqrs.Decoder{
				"RegisterUser": cqrs.JSONDecoder[RegisterUser](),
				"ChangeEmail":  cqrs.JSONDecoder[ChangeEmail](),
			}}
			wg.Add(1)
			go func() { defer wg.Done(); srv.Run(ctx) }()
			defer wg.Wait()
			defer cancel()
			rb, err := cqrs.NewRemoteBus(ctx, store, "test-client")
			if err != nil {
				t.Fatal(err)
			}
			defer rb.Close()
			var res struct{ Version int64 }
			if err := rb.Send(ctx, RegisterUser{ID: "r1", Email: "r@x", Password: "12345678"}, &res); err != nil || res.Version != 0 {
				t.Fatalf("register: %+v %v", res, err)
			}
			err = rb.Send(ctx, RegisterUser{ID: "r2", Email: "bad", Password: "12345678"}, nil)
			if !errors.Is(err, cqrs.ErrValidationFailed) || !strings.Contains(err.Error(), "no @") {
				t.Fatalf("invalid remote command: %v", err)
			}
			if err := rb.Send(ctx, ChangePassword{ID: "r1", Password: "x"}, nil); !errors.Is(err, cqrs.ErrNoHandler) {
				t.Fatalf("command without a remote handler: %v", err)
			}
			var sends sync.WaitGroup
			for i := 0; i < 20; i++ {
				sends.Add(1)
				go func() {
					defer sends.Done()
					if err := rb.Send(ctx, ChangeEmail{ID: "r1", Email: fmt.Sprintf("r%d@x", i)}, nil); err != nil {
						t.Error(err)
					}
				}()
			}
			sends.Wait()
			l, err := repo.Load(ctx, "r1")
			if err != nil || l.State.EmailChanges != 20 {
				t.Fatalf("after 20 remote commands: %+v %v", l.State, err)
			}
		})
	}
}
