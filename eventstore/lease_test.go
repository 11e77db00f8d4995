package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/embedded"
)

// unreachable fails appends to the lease stream while down is set, as a
// shared store the host can no longer reach would.
type unreachable struct {
	eventstore.Store
	down atomic.Bool
}

func (u *unreachable) Append(ctx context.Context, stream string, exp eventstore.ExpectedVersion, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	if u.down.Load() && stream == eventstore.GroupsLeaseStream {
		return eventstore.AppendResult{}, errors.New("connection refused")
	}
	return u.Store.Append(ctx, stream, exp, evs...)
}

// A host that cannot renew its lease stops its groups before the lease
// can lapse (so no other process can be running them yet), and hosts
// again once the store is back.
func TestGroupsHostStopsBeforeItsLeaseLapses(t *testing.T) {
	ctx := context.Background()
	es, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	s := &unreachable{Store: es}
	const ttl = 900 * time.Millisecond
	g, err := eventstore.OpenGroups(ctx, s, eventstore.GroupsConfig{LeaseTTL: ttl, Owner: "host-a", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	p, _, err := g.Define(ctx, eventstore.GroupDefinition{Group: "jobs", Stream: "jobs"})
	if err != nil {
		t.Fatal(err)
	}
	s.down.Store(true)
	for deadline, hosting := time.Now().Add(5*ttl), true; hosting; hosting, _ = g.Hosting() {
		if time.Now().After(deadline) {
			t.Fatal("the groups still run with the store unreachable")
		}
		time.Sleep(5 * time.Millisecond)
	}
	evs, err := s.ReadStream(ctx, eventstore.GroupsLeaseStream, eventstore.ReadStreamOptions{From: eventstore.End, Backwards: true, Max: 1})
	if err != nil || len(evs) != 1 {
		t.Fatalf("read the lease: %v %v", evs, err)
	}
	var lease struct{ ExpiresMs int64 }
	if err := json.Unmarshal(evs[0].Data, &lease); err != nil {
		t.Fatal(err)
	}
	if left := time.Until(time.UnixMilli(lease.ExpiresMs)); left <= 0 {
		t.Fatalf("the groups stopped %v after the lease lapsed; they must stop before", -left)
	}
	if _, err := p.Receive(ctx); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("receive from a stopped group: %v, want ErrClosed", err)
	}
	if _, _, err := g.Get("jobs"); !errors.Is(err, eventstore.ErrNotHost) {
		t.Fatalf("get while standing by: %v, want ErrNotHost", err)
	}
	s.down.Store(false)
	deadline := time.Now().Add(5 * ttl)
	for hosting, _ := g.Hosting(); !hosting; hosting, _ = g.Hosting() {
		if time.Now().After(deadline) {
			t.Fatal("the groups did not come back after the store did")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, _, err := g.Get("jobs"); err != nil {
		t.Fatalf("get after hosting again: %v", err)
	}
}
