package embedded

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore"
)

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.HasSuffix(fi.Name(), ".log") {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func TestScavenge(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: 256 << 10, MaxAppendBytes: 128 << 10}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("d", 500))
	streams := []string{"keep", "count", "soft", "hard", "trunc", "old"}
	for round := 0; round < 10; round++ {
		for _, st := range streams {
			evs := make([]eventstore.EventData, 100)
			for i := range evs {
				evs[i] = eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: data}
			}
			if _, err := s.Append(ctx, st, eventstore.Any, evs...); err != nil {
				t.Fatal(err)
			}
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetMetadata(ctx, "count", eventstore.StreamMetadata{MaxCount: 3}))
	must(s.SetMetadata(ctx, "trunc", eventstore.StreamMetadata{TruncateBefore: 500}))
	must(s.SetMetadata(ctx, "old", eventstore.StreamMetadata{MaxAge: 2 * time.Second}))
	must(s.Delete(ctx, "soft", eventstore.Any, false))
	must(s.Delete(ctx, "hard", eventstore.Any, true))
	time.Sleep(2100 * time.Millisecond)
	if _, err := s.Append(ctx, "old", eventstore.Any, eventstore.EventData{ID: "young", Type: "E", Data: data}); err != nil {
		t.Fatal(err)
	}
	before := map[string][]eventstore.RecordedEvent{}
	for _, st := range []string{"keep", "count", "trunc"} { // "old" keeps ageing
		evs, err := s.ReadStream(ctx, st, eventstore.ReadStreamOptions{Max: 100000})
		must(err)
		before[st] = evs
	}
	sizeBefore := dirSize(t, dir)

	// A writer keeps appending and a reader keeps reading during the
	// scavenge: neither may fail or lose anything.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	appended := 0
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Append(ctx, "busy", eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: data}); err != nil {
				t.Error(err)
				return
			}
			appended++
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			evs, err := s.ReadStream(ctx, "keep", eventstore.ReadStreamOptions{Max: 100000})
			if err != nil || len(evs) != 1000 {
				t.Errorf("read during scavenge: %d events, %v", len(evs), err)
				return
			}
		}
	}()
	rep, err := s.Scavenge(ctx)
	close(stop)
	wg.Wait()
	must(err)
	if want := int64((1000 - 3) + 1000 + 1000 + 500 + 1000); rep.Events != want {
		t.Fatalf("marked %d events, want %d", rep.Events, want)
	}
	if rep.ReclaimedBytes < 1<<20 {
		t.Fatalf("reclaimed %d bytes (report %+v)", rep.ReclaimedBytes, rep)
	}
	t.Logf("scavenge: %+v; .log bytes %d -> %d", rep, sizeBefore, dirSize(t, dir))
	check := func(s *Store, when string) {
		t.Helper()
		for st, want := range before {
			got, err := s.ReadStream(ctx, st, eventstore.ReadStreamOptions{Max: 100000})
			must(err)
			if len(got) != len(want) || got[0].ID != want[0].ID || got[len(got)-1].Version != want[len(want)-1].Version {
				t.Fatalf("%s: %s reads %d events, %d before scavenging", when, st, len(got), len(want))
			}
		}
		busy, err := s.ReadStream(ctx, "busy", eventstore.ReadStreamOptions{Max: 100000})
		must(err)
		if len(busy) != appended {
			t.Fatalf("%s: busy has %d events, %d were appended", when, len(busy), appended)
		}
	}
	check(s, "after scavenging")
	must(s.Close())
	s, err = Open(cfg)
	must(err)
	defer s.Close()
	check(s, "after reopen")
	page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{Max: 100000})
	must(err)
	if len(page.Events) >= 6000 {
		t.Fatalf("$all still holds %d events", len(page.Events))
	}
	// Versions continue.
	r, err := s.Append(ctx, "soft", eventstore.NoStream, eventstore.EventData{ID: "again", Type: "E"})
	must(err)
	if r.Version != 1000 {
		t.Fatalf("soft-deleted stream continues at %d, want 1000", r.Version)
	}
	r, err = s.Append(ctx, "count", eventstore.Exact(999), eventstore.EventData{ID: "c", Type: "E"})
	must(err)
	if _, err := s.Append(ctx, "hard", eventstore.Any, eventstore.EventData{ID: "h", Type: "E"}); err == nil {
		t.Fatal("tombstone lost by scavenging")
	}
	// A second scavenge finds only what became hidden since.
	rep, err = s.Scavenge(ctx)
	must(err)
	if rep.Events != 1 {
		t.Fatalf("second scavenge marked %d events, want 1", rep.Events)
	}
}
