package pgstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/pgstore/pgtest"
)

func evs(n int) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: []byte(fmt.Sprint(i))}
	}
	return out
}

func TestScavenge(t *testing.T) {
	ctx := context.Background()
	s := pgtest.Open(t, "")
	for _, st := range []string{"keep", "count", "soft", "hard", "trunc"} {
		if _, err := s.Append(ctx, st, eventstore.NoStream, evs(10)...); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetMetadata(ctx, "count", eventstore.StreamMetadata{MaxCount: 3}))
	must(s.SetMetadata(ctx, "trunc", eventstore.StreamMetadata{TruncateBefore: 4}))
	must(s.Delete(ctx, "soft", eventstore.Any, false))
	must(s.Delete(ctx, "hard", eventstore.Any, true))
	before := map[string][]eventstore.RecordedEvent{}
	for _, st := range []string{"keep", "count", "trunc"} {
		evs, err := s.ReadStream(ctx, st, eventstore.ReadStreamOptions{})
		must(err)
		before[st] = evs
	}

	// Writers keep appending while scavenging runs: it must not block them
	// or lose their events.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	appended := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Append(ctx, "busy", eventstore.Any, evs(1)...); err != nil {
				t.Error(err)
				return
			}
			appended++
		}
	}()
	time.Sleep(20 * time.Millisecond)
	rep, err := s.Scavenge(ctx)
	n := rep.Events
	close(stop)
	wg.Wait()
	must(err)
	if want := int64(7 + 10 + 10 + 4); n != want {
		t.Fatalf("scavenged %d events, want %d", n, want)
	}
	for st, want := range before {
		got, err := s.ReadStream(ctx, st, eventstore.ReadStreamOptions{})
		must(err)
		if len(got) != len(want) || got[0].ID != want[0].ID {
			t.Fatalf("%s reads %d events after scavenging, %d before", st, len(got), len(want))
		}
	}
	busy, err := s.ReadStream(ctx, "busy", eventstore.ReadStreamOptions{Max: 100000})
	must(err)
	if len(busy) != appended {
		t.Fatalf("busy has %d events, %d were appended", len(busy), appended)
	}
	page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{Max: 100000})
	must(err)
	if want := 10 + 3 + 6 + appended; len(page.Events) != want {
		t.Fatalf("$all has %d events after scavenging, want %d", len(page.Events), want)
	}
	// Versions continue after scavenging a soft-deleted stream.
	r, err := s.Append(ctx, "soft", eventstore.NoStream, evs(1)...)
	must(err)
	if r.Version != 10 {
		t.Fatalf("soft-deleted stream continues at %d, want 10", r.Version)
	}
}
