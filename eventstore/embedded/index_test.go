package embedded

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/heraldhq/herald/eventstore"
)

func indexState(t *testing.T, s *Store) map[string]stream {
	t.Helper()
	out := map[string]stream{}
	for name, st := range s.streams {
		out[name] = *st
	}
	return out
}

func TestIndexFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: 256 << 10, MaxAppendBytes: 128 << 10}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		st := []string{"a", "b", "c", "d"}[i%4]
		if _, err := s.Append(ctx, st, eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: make([]byte, 300)}); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetMetadata(ctx, "a", eventstore.StreamMetadata{MaxCount: 5, MaxAge: 3600e9}))
	must(s.Delete(ctx, "b", eventstore.Any, false))
	must(s.Delete(ctx, "c", eventstore.Any, true))
	if _, err := s.Scavenge(ctx); err != nil {
		t.Fatal(err)
	}
	want := indexState(t, s)
	must(s.Close())
	if _, err := os.Stat(filepath.Join(dir, indexFile)); err != nil {
		t.Fatalf("no index file after a clean close: %v", err)
	}

	// Loaded from the file, identical to what was in memory, and consumed.
	s, err = Open(cfg)
	must(err)
	if !s.indexLoaded || !reflect.DeepEqual(indexState(t, s), want) {
		t.Fatalf("loaded index differs (loaded from file: %v)", s.indexLoaded)
	}
	if _, err := os.Stat(filepath.Join(dir, indexFile)); !os.IsNotExist(err) {
		t.Fatalf("index file still there after open: %v", err)
	}
	// And identical to a scan of the log.
	must(s.Close())
	must(os.Remove(filepath.Join(dir, indexFile)))
	s, err = Open(cfg)
	must(err)
	if s.indexLoaded || !reflect.DeepEqual(indexState(t, s), want) {
		t.Fatalf("scanned index differs from the saved one")
	}
	must(s.Close())

	// A stale file (the log moved on after it was written) is not used.
	stale, err := os.ReadFile(filepath.Join(dir, indexFile))
	must(err)
	s, err = Open(cfg)
	must(err)
	if _, err := s.Append(ctx, "d", eventstore.Any, eventstore.EventData{ID: "late", Type: "E"}); err != nil {
		t.Fatal(err)
	}
	must(s.Close())
	must(os.WriteFile(filepath.Join(dir, indexFile), stale, 0o644))
	s, err = Open(cfg)
	must(err)
	if s.indexLoaded {
		t.Fatal("a stale index file was used")
	}
	evs, err := s.ReadStream(ctx, "d", eventstore.ReadStreamOptions{From: eventstore.End, Backwards: true, Max: 1})
	if err != nil || evs[0].ID != "late" {
		t.Fatalf("after a stale index: %+v %v", evs, err)
	}
	must(s.Close())

	// A damaged file is not used either.
	b, err := os.ReadFile(filepath.Join(dir, indexFile))
	must(err)
	b[len(b)/2] ^= 0x40
	must(os.WriteFile(filepath.Join(dir, indexFile), b, 0o644))
	s, err = Open(cfg)
	must(err)
	defer s.Close()
	if s.indexLoaded {
		t.Fatal("a damaged index file was used")
	}
	if got := indexState(t, s)["d"]; len(got.pos) != 76 {
		t.Fatalf("d has %d versions after a rebuild, want 76", len(got.pos))
	}
}

// TestRetryAfterRestart: a retry of an append that another process made
// before it stopped (the client never saw the answer) is recognised,
// whether the index comes from that process's index file or from a scan
// of the log: nothing is appended twice. Once, the index file held
// event-ID hashes seeded per process, and such a retry appended
// duplicates.
func TestRetryAfterRestart(t *testing.T) {
	ctx := context.Background()
	evs := []eventstore.EventData{{ID: "id-1", Type: "E"}, {ID: "id-2", Type: "E"}}
	cfg := Config{SegmentBytes: 256 << 10, MaxAppendBytes: 128 << 10}
	if dir := os.Getenv(retryDirEnv); dir != "" { // the child: append, close
		cfg.Dir = dir
		s, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(ctx, "s", eventstore.NoStream, evs...); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	cfg.Dir = t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRetryAfterRestart$", "-test.count=1")
	cmd.Env = append(os.Environ(), retryDirEnv+"="+cfg.Dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, fromFile := range []bool{true, false} {
		if !fromFile {
			if err := os.Remove(filepath.Join(cfg.Dir, indexFile)); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if s.indexLoaded != fromFile {
			t.Fatalf("index loaded from the file: %v, want %v", s.indexLoaded, fromFile)
		}
		for _, exp := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Any} {
			r, err := s.Append(ctx, "s", exp, evs...)
			if err != nil || r.Version != 1 || r.Position != 1 {
				t.Fatalf("index from the file %v: retry with expected version %v: %+v, %v; want version 1 at position 1", fromFile, exp, r, err)
			}
		}
		got, err := s.ReadStream(ctx, "s", eventstore.ReadStreamOptions{Max: 10})
		if err != nil || len(got) != 2 {
			t.Fatalf("index from the file %v: %d events after the retries (%v), want 2", fromFile, len(got), err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

const retryDirEnv = "HERALD_TEST_RETRY_DIR"

// FuzzDecodeIndex feeds arbitrary bytes to the index file decoder: it must
// never panic, and what it accepts must re-encode to the same bytes' meaning.
func FuzzDecodeIndex(f *testing.F) {
	f.Add(encodeIndex(0, map[string]*stream{}))
	f.Add(encodeIndex(10, map[string]*stream{
		"a": {pos: []int64{1, 3, 5}, idh: []uint64{7, 8, 9}, first: 1, meta: eventstore.StreamMetadata{MaxCount: 2}},
		"b": {pos: []int64{-1, 6}, idh: []uint64{0, 4}, deleted: true, truncateBefore: 1},
		"c": {tombstoned: true},
	}))
	f.Add([]byte("HERALDSI"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pos, streams, err := decodeIndex(b)
		if err != nil {
			return
		}
		pos2, streams2, err := decodeIndex(encodeIndex(pos, streams))
		if err != nil || pos2 != pos || !reflect.DeepEqual(streams, streams2) {
			t.Fatalf("re-encoded index differs: %v", err)
		}
	})
}
