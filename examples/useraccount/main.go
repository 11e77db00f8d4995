// Command useraccount is the seed's event-sourcing example on Herald's
// event store: a user account whose state is derived from its events
// (UserRegistered, UserEmailChanged, UserPasswordChanged), with a snapshot
// every 3 events and a look back in time.
//
//	go run ./examples/useraccount [-data DIR]
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/heraldhq/herald/cqrs"
	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/embedded"
)

// User is the account's current state.
type User struct {
	ID           string `json:"id"`
	Email        string `json:"email"`
	PasswordHash string `json:"passwordHash"`
	Registered   bool   `json:"registered"`
}

func apply(u User, ev eventstore.RecordedEvent) (User, error) {
	var body map[string]string
	if err := json.Unmarshal(ev.Data, &body); err != nil {
		return u, err
	}
	switch ev.Type {
	case "UserRegistered":
		u = User{ID: body["id"], Email: body["email"], PasswordHash: body["passwordHash"], Registered: true}
	case "UserEmailChanged":
		u.Email = body["email"]
	case "UserPasswordChanged":
		u.PasswordHash = body["passwordHash"]
	default:
		return u, fmt.Errorf("unknown event %s", ev.Type)
	}
	return u, nil
}

func hash(pw string) string { h := sha256.Sum256([]byte(pw)); return hex.EncodeToString(h[:8]) }

func event(typ string, body map[string]string) []eventstore.EventData {
	b, _ := json.Marshal(body)
	return []eventstore.EventData{{Type: typ, Data: b}}
}

func main() {
	data := flag.String("data", "", "data directory (default: a temporary one)")
	flag.Parse()
	dir := *data
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "useraccount"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	store, err := embedded.Open(embedded.Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	users := &cqrs.Repository[User]{Store: store, Type: cqrs.AggregateType[User]{
		Category: "user", Initial: func() User { return User{} }, Apply: apply, SnapshotEvery: 3,
	}}
	id := eventstore.NewID()[:8]
	steps := []struct {
		what   string
		decide cqrs.Decide[User]
	}{
		{"register", func(u User, _ int64) ([]eventstore.EventData, error) {
			return event("UserRegistered", map[string]string{"id": id, "email": "ann@example.com", "passwordHash": hash("first")}), nil
		}},
		{"change email", func(u User, _ int64) ([]eventstore.EventData, error) {
			return event("UserEmailChanged", map[string]string{"email": "ann@work.example"}), nil
		}},
		{"change password", func(u User, _ int64) ([]eventstore.EventData, error) {
			return event("UserPasswordChanged", map[string]string{"passwordHash": hash("second")}), nil
		}},
		{"change email again", func(u User, _ int64) ([]eventstore.EventData, error) {
			return event("UserEmailChanged", map[string]string{"email": "ann@home.example"}), nil
		}},
	}
	for _, s := range steps {
		r, err := users.Execute(ctx, id, s.decide)
		if err != nil {
			log.Fatalf("%s: %v", s.what, err)
		}
		fmt.Printf("%-20s -> version %d, email %s\n", s.what, r.Version, r.State.Email)
	}
	now, err := users.Load(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("current state: %+v (from snapshot at version %d, %d events replayed)\n", now.State, now.FromSnapshot, now.Replayed)
	then, err := users.LoadAt(ctx, id, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("as of version 1: %+v\n", then.State)
	evs, err := store.ReadStream(ctx, users.StreamName(id), eventstore.ReadStreamOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range evs {
		fmt.Printf("  %d %-20s %s\n", e.Version, e.Type, e.Data)
	}
}
