package embedded

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/storetest"
)

func openT(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) eventstore.Store { return openT(t, t.TempDir()) },
		Reopen: func(t *testing.T, s eventstore.Store) eventstore.Store {
			es := s.(*Store)
			if err := es.Close(); err != nil {
				t.Fatal(err)
			}
			return openT(t, es.cfg.Dir)
		},
	})
}

// TestQueuedEventsAreIndexed: an append's events are in the index before
// its batch is queued, so a reader that sees the high-water mark pass them
// finds them. Once the index was updated after queueing: a commit that came
// first let a stream subscription read the new mark, find no new event, and
// wait past it for good (the conformance suite's SubscribeStream hung in
// CI).
func TestQueuedEventsAreIndexed(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir())
	checked := 0
	s.testHookQueued = func(end int64) {
		// The writer is held here, between queueing and returning; the
		// flusher commits without it.
		if err := s.log.Wait(ctx, end-1); err != nil {
			t.Error(err)
			return
		}
		evs, err := s.ReadStream(ctx, "s", eventstore.ReadStreamOptions{From: eventstore.End, Backwards: true, Max: 1})
		if err != nil || len(evs) != 1 || evs[0].Position != end-1 {
			t.Errorf("head at %d, the stream's last event: %+v, %v", end, evs, err)
		}
		checked++
	}
	for i := 0; i < 20; i++ {
		if _, err := s.Append(ctx, "s", eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "E"}); err != nil {
			t.Fatal(err)
		}
	}
	if checked != 20 {
		t.Fatalf("the hook ran %d times, want 20", checked)
	}
}
