package embedded

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/prometheus/client_golang/prometheus"
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

	// Loaded from the file, identical to what was in memory; it stays (it
	// covers what it covers until the next save).
	s, err = Open(cfg)
	must(err)
	if !s.indexLoaded || s.indexScanned != 0 || !reflect.DeepEqual(indexState(t, s), want) {
		t.Fatalf("loaded index differs (loaded from file: %v, %d records scanned)", s.indexLoaded, s.indexScanned)
	}
	if _, err := os.Stat(filepath.Join(dir, indexFile)); err != nil {
		t.Fatalf("index file gone after open: %v", err)
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

	// An older file (the log moved on after it was written, as after a
	// crash) is loaded and the log after it scanned.
	older, err := os.ReadFile(filepath.Join(dir, indexFile))
	must(err)
	earlier := t.TempDir() // the store as it was then
	must(os.CopyFS(earlier, os.DirFS(dir)))
	s, err = Open(cfg)
	must(err)
	if _, err := s.Append(ctx, "d", eventstore.Any, eventstore.EventData{ID: "late", Type: "E"}); err != nil {
		t.Fatal(err)
	}
	must(s.Close())
	newer, err := os.ReadFile(filepath.Join(dir, indexFile))
	must(err)
	must(os.WriteFile(filepath.Join(dir, indexFile), older, 0o644))
	s, err = Open(cfg)
	must(err)
	if !s.indexLoaded || s.indexScanned != 1 {
		t.Fatalf("an older index file: loaded %v, %d records scanned after it; want true, 1", s.indexLoaded, s.indexScanned)
	}
	evs, err := s.ReadStream(ctx, "d", eventstore.ReadStreamOptions{From: eventstore.End, Backwards: true, Max: 1})
	if err != nil || evs[0].ID != "late" {
		t.Fatalf("after an older index: %+v %v", evs, err)
	}
	must(s.Close())

	// A file that covers more than the log holds is not used, and is
	// removed before anything is appended.
	must(os.WriteFile(filepath.Join(earlier, indexFile), newer, 0o644))
	cfgEarlier := cfg
	cfgEarlier.Dir = earlier
	s, err = Open(cfgEarlier)
	must(err)
	if s.indexLoaded {
		t.Fatal("an index file beyond the log was used")
	}
	if _, err := os.Stat(filepath.Join(earlier, indexFile)); !os.IsNotExist(err) {
		t.Fatalf("an index file beyond the log was kept: %v", err)
	}
	if got := indexState(t, s)["d"]; len(got.pos) != 75 {
		t.Fatalf("d has %d versions, want 75", len(got.pos))
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

// sameIndex reports how a loaded index differs from a scan of the whole
// log ("" if it does not). Below a stream's first readable version the two
// may differ (the loaded one keeps positions of events compaction removed
// since), and so may the versions of a hard-deleted stream (a scan after
// compaction finds none); nothing reads them.
func sameIndex(loaded, scanned map[string]*stream) string {
	norm := func(m map[string]*stream) map[string]stream {
		out := map[string]stream{}
		for name, st := range m {
			c := *st
			if c.tombstoned {
				c.pos, c.idh, c.first = nil, nil, 0
			}
			c.pos, c.idh = slices.Clone(c.pos), slices.Clone(c.idh)
			for v := int64(0); v < min(c.first, int64(len(c.pos))); v++ {
				c.pos[v], c.idh[v] = -1, 0
			}
			out[name] = c
		}
		return out
	}
	a, b := norm(loaded), norm(scanned)
	for name, st := range b {
		if !reflect.DeepEqual(a[name], st) {
			return fmt.Sprintf("stream %q: loaded %+v, scanned %+v", name, a[name], st)
		}
	}
	for name := range a {
		if _, ok := b[name]; !ok {
			return fmt.Sprintf("stream %q: loaded, not in the log", name)
		}
	}
	return ""
}

// scannedIndex scans s's whole log into a new index.
func scannedIndex(t *testing.T, s *Store) map[string]*stream {
	t.Helper()
	m := map[string]*stream{}
	if err := s.scanIndex(m, s.log.StartOffset(), s.log.HighWatermark()); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestIndexCheckpoint: the store saves its index as the log grows and
// before compaction, so an open after a crash loads it and scans only what
// came after; the result equals a scan of the whole log.
func TestIndexCheckpoint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	cfg := Config{Dir: dir, SegmentBytes: 256 << 10, MaxAppendBytes: 128 << 10, Registerer: reg,
		IndexCheckpointRecords: 200, indexCheckEvery: 5 * time.Millisecond}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	appendSome := func(n int) {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("s-%d", i%10)
			_, err := s.Append(ctx, name, eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: make([]byte, 200)})
			must(err)
		}
	}
	appendSome(1000)
	deadline := time.Now().Add(10 * time.Second)
	for s.ckCount.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint in 10 s after 1,000 appends (every 200 asked)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// From here on, saves are the scavenges' only.
	s.ckStop()
	<-s.ckDone
	s.ckStop = nil
	must(s.SetMetadata(ctx, "s-1", eventstore.StreamMetadata{MaxCount: 3}))
	must(s.SetMetadata(ctx, "s-2", eventstore.StreamMetadata{TruncateBefore: 50}))
	must(s.Delete(ctx, "s-3", eventstore.Any, false))
	must(s.Delete(ctx, "s-4", eventstore.Any, true))
	before := s.ckCount.Load()
	rep, err := s.Scavenge(ctx)
	must(err)
	if rep.Events == 0 || rep.ReclaimedBytes == 0 || s.ckCount.Load() == before {
		t.Fatalf("scavenge: %+v, checkpoints %d -> %d; want events marked and reclaimed, and a save before compaction", rep, before, s.ckCount.Load())
	}
	// Enough to seal the segment holding the markers; then a scavenge
	// with nothing new to mark compacts them away (with no save: the last
	// one covers them).
	for i := 0; i < 2000; i++ {
		_, err := s.Append(ctx, fmt.Sprintf("s-%d", 5+i%7), eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: make([]byte, 200)})
		must(err)
	}
	before = s.ckCount.Load()
	if rep, err := s.Scavenge(ctx); err != nil || rep.Events != 0 || rep.ReclaimedBytes == 0 || s.ckCount.Load() != before {
		t.Fatalf("second scavenge: %+v, %v, saves %d -> %d; want nothing marked, the markers reclaimed, no save", rep, err, before, s.ckCount.Load())
	}
	for i := 0; i < 30; i++ { // after the last save: scanned at open
		_, err := s.Append(ctx, fmt.Sprintf("s-%d", 5+i%7), eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "E"})
		must(err)
	}
	if s.ckPos.Load() >= s.log.HighWatermark() {
		t.Fatal("the test needs records after the last save")
	}

	if v := gathered(t, reg, "herald_eventstore_index_saves_total"); v != float64(s.ckCount.Load()) || v < 2 {
		t.Fatalf("herald_eventstore_index_saves_total %v, want %d", v, s.ckCount.Load())
	}
	if v := gathered(t, reg, "herald_eventstore_index_saved_position"); v != float64(s.ckPos.Load()) || v <= 0 {
		t.Fatalf("herald_eventstore_index_saved_position %v, want %d", v, s.ckPos.Load())
	}

	// A crash now: the files as they are (every append above is
	// durable), without Close's save.
	crashed := t.TempDir()
	must(os.CopyFS(crashed, os.DirFS(dir)))
	must(s.Close())
	ccfg := cfg
	ccfg.Dir, ccfg.IndexCheckpointRecords = crashed, -1
	c, err := Open(ccfg)
	must(err)
	if !c.indexLoaded || c.indexScanned < 2000 {
		t.Fatalf("after the crash: index file loaded %v, %d of %d records scanned", c.indexLoaded, c.indexScanned, c.log.HighWatermark())
	}
	if d := sameIndex(c.streams, scannedIndex(t, c)); d != "" {
		t.Fatalf("index from the file and the tail differs from a scan of the log: %s", d)
	}
	// Every stream reads the same as after a scan of the whole log.
	readAll := func(st *Store) string {
		var b strings.Builder
		for i := 0; i < 12; i++ {
			name := fmt.Sprintf("s-%d", i)
			evs, err := st.ReadStream(ctx, name, eventstore.ReadStreamOptions{Max: 1 << 20})
			fmt.Fprintf(&b, "%s %v:", name, err)
			for _, e := range evs {
				fmt.Fprintf(&b, " %d@%d", e.Version, e.Position)
			}
			b.WriteByte('\n')
		}
		return b.String()
	}
	got := readAll(c)
	must(c.Close())
	must(os.Remove(filepath.Join(crashed, indexFile)))
	c, err = Open(ccfg)
	must(err)
	defer c.Close()
	if c.indexLoaded {
		t.Fatal("loaded an index file that was removed")
	}
	if want := readAll(c); got != want {
		t.Fatalf("reads after the crash:\n%s\nafter a scan of the whole log:\n%s", got, want)
	}
}

// gathered is the value of the single-series counter or gauge name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no single-series metric %s", name)
	return 0
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
