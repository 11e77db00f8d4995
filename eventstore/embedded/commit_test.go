package embedded

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/internal/vfs"
)

// Concurrent appends share fsyncs, and the expected versions stay exact:
// 16 writers, each on a stream of its own with exact versions, plus all of
// them racing on one shared stream where exactly one wins each version.
func TestGroupCommitSharesFsyncs(t *testing.T) {
	s := openT(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const writers, each = 16, 40
	before := s.SyncStats()
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := map[int64]int{} // shared stream version -> winners
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := fmt.Sprintf("own-%d", w)
			for i := 0; i < each; i++ {
				exp := eventstore.Exact(int64(i) - 1)
				if i == 0 {
					exp = eventstore.NoStream
				}
				r, err := s.Append(ctx, own, exp, eventstore.EventData{ID: eventstore.NewID(), Type: "T", Data: []byte("{}")})
				if err != nil || r.Version != int64(i) {
					errs <- fmt.Errorf("%s append %d: version %d, %v", own, i, r.Version, err)
					return
				}
				info, err := s.StreamInfo(ctx, "shared")
				if err != nil {
					errs <- err
					return
				}
				exp = eventstore.Exact(info.Version)
				if info.Version < 0 {
					exp = eventstore.NoStream
				}
				r, err = s.Append(ctx, "shared", exp, eventstore.EventData{ID: eventstore.NewID(), Type: "T", Data: []byte("{}")})
				var we *eventstore.WrongExpectedVersionError
				switch {
				case err == nil:
					mu.Lock()
					won[r.Version]++
					mu.Unlock()
				case errors.As(err, &we):
				default:
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	shared := readStream(t, s, "shared")
	if len(shared) != len(won) {
		t.Fatalf("shared stream has %d events, %d appends won", len(shared), len(won))
	}
	for v, n := range won {
		if n != 1 {
			t.Fatalf("version %d of the shared stream won by %d appends", v, n)
		}
	}
	for w := 0; w < writers; w++ {
		if got := readStream(t, s, fmt.Sprintf("own-%d", w)); len(got) != each {
			t.Fatalf("own-%d has %d events, want %d", w, len(got), each)
		}
	}
	appends := int64(writers*each + len(won))
	after := s.SyncStats()
	rounds := after.Rounds - before.Rounds
	mean := time.Duration((after.FsyncSeconds - before.FsyncSeconds) / float64(max(rounds, 1)) * 1e9)
	t.Logf("%d appends in %d fsync rounds, mean fsync %v", appends, rounds, mean)
	if rounds <= 0 {
		t.Fatal("no fsync rounds counted")
	}
	// Sharing is certain only when an fsync takes long enough for other
	// writers to arrive during it (not on tmpfs, say).
	if mean >= 200*time.Microsecond && rounds > appends*3/4 {
		t.Fatalf("%d appends took %d fsync rounds: concurrent appends do not share fsyncs", appends, rounds)
	}
}

func readStream(t *testing.T, s *Store, name string) []eventstore.RecordedEvent {
	t.Helper()
	evs, err := s.ReadStream(context.Background(), name, eventstore.ReadStreamOptions{Max: 100000})
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return evs
}

// Close while appends are in flight: each append either succeeds, and its
// event is there after reopening, or fails with ErrClosed; none hangs.
func TestCloseDuringAppends(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]int64{} // event id -> version
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				r, err := s.Append(ctx, fmt.Sprintf("c-%d", w), eventstore.Any, eventstore.EventData{ID: id, Type: "T", Data: []byte("{}")})
				if errors.Is(err, eventstore.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				acked[id] = r.Version
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("appends made no progress")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s2 := openT(t, dir)
	found := map[string]int64{}
	for w := 0; w < 8; w++ {
		for _, ev := range readStream(t, s2, fmt.Sprintf("c-%d", w)) {
			found[ev.ID] = ev.Version
		}
	}
	for id, v := range acked {
		if fv, ok := found[id]; !ok || fv != v {
			t.Fatalf("acknowledged event %s (version %d) after reopen: present %v, version %d", id, v, ok, fv)
		}
	}
}

// An fsync failure under concurrent appends fails every append of its
// group and the store (no waiter hangs); later writes are refused until
// the store is reopened, and then every acknowledged event is there.
func TestSyncFailureFailsStore(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default, nil)
	s, err := Open(Config{Dir: dir, SegmentBytes: 32 << 20, fs: efs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	acked := map[string]bool{}
	failed := 0
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				_, err := s.Append(ctx, fmt.Sprintf("f-%d", w), eventstore.Any, eventstore.EventData{ID: id, Type: "T", Data: []byte("{}")})
				mu.Lock()
				if err != nil {
					failed++
					mu.Unlock()
					if ctx.Err() != nil {
						t.Errorf("append %s waited until the test's deadline: %v", id, err)
					}
					return
				}
				acked[id] = true
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 100 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("appends made no progress")
		}
		time.Sleep(time.Millisecond)
	}
	efs.Set(func(op vfs.Op, name string) error {
		if op == vfs.OpSync {
			return vfs.ErrInjected
		}
		return nil
	})
	wg.Wait()
	if failed != 8 {
		t.Fatalf("%d writers saw the failure, want all 8", failed)
	}
	_, err = s.Append(ctx, "after", eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "T", Data: []byte("{}")})
	if err == nil || !strings.Contains(err.Error(), "reopen") {
		t.Fatalf("append after the failure: %v, want the store failed", err)
	}
	s.Close()

	s2 := openT(t, dir)
	found := map[string]bool{}
	for w := 0; w < 8; w++ {
		for _, ev := range readStream(t, s2, fmt.Sprintf("f-%d", w)) {
			found[ev.ID] = true
		}
	}
	for id := range acked {
		if !found[id] {
			t.Fatalf("acknowledged event %s lost", id)
		}
	}
	if _, err := s2.Append(ctx, "after", eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "T", Data: []byte("{}")}); err != nil {
		t.Fatalf("append after reopening: %v", err)
	}
}

// With durability always the log preallocates by default; its zeros are
// never read as events, across a reopen; other durabilities do not.
func TestPreallocation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  Config
		want bool
	}{
		{"default", Config{}, true},
		{"off", Config{Preallocate: -1}, false},
		{"interval", Config{Durability: commitlog.DurabilityInterval(time.Millisecond)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tc.cfg
			cfg.Dir = dir
			s, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				if _, err := s.Append(ctx, "s", eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "T", Data: fmt.Appendf(nil, `{"i":%d}`, i)}); err != nil {
					t.Fatal(err)
				}
			}
			st := s.SyncStats()
			if got := st.PreallocatedBytes > 0; got != tc.want {
				t.Fatalf("preallocated %d bytes; want preallocation %v", st.PreallocatedBytes, tc.want)
			}
			if tc.want && st.PreallocatedBytes < DefaultPreallocate-4096 {
				t.Fatalf("preallocated %d bytes; want about %d", st.PreallocatedBytes, DefaultPreallocate)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			evs, err := s.ReadStream(ctx, "s", eventstore.ReadStreamOptions{Max: 100})
			if err != nil || len(evs) != 10 {
				t.Fatalf("read %d events after reopen, want 10: %v", len(evs), err)
			}
			r, err := s.Append(ctx, "s", eventstore.Exact(9), eventstore.EventData{ID: eventstore.NewID(), Type: "T", Data: []byte("{}")})
			if err != nil || r.Version != 10 {
				t.Fatalf("append after reopen: version %d, %v; want 10", r.Version, err)
			}
		})
	}
}
