package commitlog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetentionBySize(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	l := openTestLog(t, st, "p", Options{SegmentBytes: 4 << 10, RetentionBytes: 16 << 10})
	for i := 0; i < 100; i++ {
		mustAppend(t, l, makeBatch(t, "r", 4, 100, 1))
	}
	before := l.Segments()
	rep, err := l.Clean(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rep.DeletedSegments == 0 || l.Segments() != before-rep.DeletedSegments {
		t.Fatalf("report %+v; segments %d -> %d", rep, before, l.Segments())
	}
	if size := l.Size(); size > 16<<10+4<<10 || size < 16<<10-4<<10 {
		t.Fatalf("log is %d bytes after size retention of 16 KiB", size)
	}
	start := l.StartOffset()
	if start == 0 {
		t.Fatal("start offset did not move")
	}
	if _, err := l.Read(context.Background(), start-1, 100, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	got := readAll(t, l, start)
	if int64(len(got)) != l.HighWatermark()-start || got[0].off != start {
		t.Fatalf("read %d records from %d, want %d", len(got), start, l.HighWatermark()-start)
	}
	// The deleted files are gone from disk.
	names, _ := os.ReadDir(l.dir)
	logs := 0
	for _, n := range names {
		if _, suf, ok := parseSegmentName(n.Name()); ok && suf == segSuffix {
			logs++
		}
	}
	if logs != l.Segments() {
		t.Fatalf("%d segment files on disk, %d in the log", logs, l.Segments())
	}
}

func TestRetentionByAge(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	l := openTestLog(t, st, "p", Options{SegmentBytes: 4 << 10, RetentionAge: time.Hour})
	now := time.Now()
	old := now.Add(-2 * time.Hour).UnixMilli()
	for i := 0; i < 40; i++ {
		mustAppend(t, l, makeBatch(t, "old", 4, 100, old))
	}
	oldEnd := l.HighWatermark()
	for i := 0; i < 40; i++ {
		mustAppend(t, l, makeBatch(t, "new", 4, 100, now.UnixMilli()))
	}
	if _, err := l.Clean(now); err != nil {
		t.Fatal(err)
	}
	// Every segment holding only old records is gone; no new record is.
	start := l.StartOffset()
	if start > oldEnd || start < oldEnd-40 {
		t.Fatalf("start offset %d; old records end at %d", start, oldEnd)
	}
	for _, r := range readAll(t, l, start) {
		if r.off >= oldEnd && r.ts != now.UnixMilli() {
			t.Fatalf("record %+v", r)
		}
	}

	// A log whose every record expired rolls its active segment and empties.
	l2 := openTestLog(t, st, "q", Options{RetentionAge: time.Hour})
	for i := 0; i < 5; i++ {
		mustAppend(t, l2, makeBatch(t, "old", 2, 10, old))
	}
	if _, err := l2.Clean(now); err != nil {
		t.Fatal(err)
	}
	if l2.StartOffset() != 10 || l2.HighWatermark() != 10 || len(readAll(t, l2, 10)) != 0 {
		t.Fatalf("expired log: start %d hwm %d", l2.StartOffset(), l2.HighWatermark())
	}
	if off := mustAppend(t, l2, makeBatch(t, "x", 1, 10, now.UnixMilli())); off != 10 {
		t.Fatalf("append after expiry at %d, want 10", off)
	}
}

// latestByKey replays records into the state compaction must preserve.
func latestByKey(rs []rec) map[string]rec {
	m := map[string]rec{}
	for _, r := range rs {
		m[r.key] = r
	}
	return m
}

func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	st := openTestStore(t, dir)
	o := Options{SegmentBytes: 4 << 10, Cleanup: CleanupCompact, DeleteRetention: time.Hour}
	l := openTestLog(t, st, "c", o)
	now := time.Now()
	oldTs := now.Add(-2 * time.Hour).UnixMilli()
	var written []rec
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("key-%d", i%20)
		v := fmt.Sprintf("v%d", i)
		ts := now.UnixMilli()
		var b []byte
		switch {
		case i%20 == 3 && i > 250:
			b = keyed(t, oldTs, k, nil) // an old tombstone: removable
			ts = oldTs
		case i%20 == 4 && i > 250:
			b = keyed(t, ts, k, nil) // a fresh tombstone: kept
		default:
			b = keyed(t, ts, k, v)
		}
		off := mustAppend(t, l, b)
		written = append(written, rec{off: off, key: k, value: v, ts: ts, null: b != nil && i > 250 && (i%20 == 3 || i%20 == 4)})
	}
	// Roll so that the last records sit in a sealed segment too.
	rollAndSettle(t, l)
	before := readAll(t, l, 0)
	rep, err := l.Clean(now)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CompactedSegments == 0 || rep.RemovedRecords == 0 || rep.ReclaimedBytes <= 0 {
		t.Fatalf("nothing compacted: %+v", rep)
	}
	check := func(l *Log) {
		after := readAll(t, l, 0)
		want := latestByKey(before)
		delete(want, "key-3") // its newest record is a tombstone past retention
		got := map[string]rec{}
		prev := int64(-1)
		for _, r := range after {
			if r.off <= prev {
				t.Fatalf("offsets not increasing: %d after %d", r.off, prev)
			}
			prev = r.off
			if _, dup := got[r.key]; dup {
				t.Fatalf("key %s appears twice after compaction", r.key)
			}
			got[r.key] = r
		}
		if len(got) != len(want) {
			t.Fatalf("%d keys after compaction, want %d", len(got), len(want))
		}
		for k, w := range want {
			if got[k] != w {
				t.Fatalf("key %s: got %+v, want %+v", k, got[k], w)
			}
		}
		if !got["key-4"].null {
			t.Fatal("a tombstone inside its retention was removed")
		}
		// Offsets are kept: the log end does not move and appends continue.
		if l.HighWatermark() != 300 {
			t.Fatalf("hwm %d after compaction", l.HighWatermark())
		}
	}
	check(l)
	// A second pass has nothing left to do.
	if rep, err := l.Clean(now); err != nil || rep.RemovedRecords != 0 {
		t.Fatalf("second pass: %+v, %v", rep, err)
	}
	st.Close()
	st = openTestStore(t, dir)
	defer st.Close()
	l = openTestLog(t, st, "c", o)
	check(l)
	if off := mustAppend(t, l, keyed(t, now.UnixMilli(), "key-0", "again")); off != 300 {
		t.Fatalf("append after compaction at %d", off)
	}
}

func TestCompactionWhileAppendingAndReading(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	l := openTestLog(t, st, "c", Options{SegmentBytes: 4 << 10, Cleanup: CleanupCompact, Durability: DurabilityInterval(5 * time.Millisecond)})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	last := map[string]string{}
	const total = 1500
	var removedLive atomic.Int64
	wg.Add(1)
	go func() { // appender
		defer wg.Done()
		defer cancel()
		// NB: keep appending until compaction has removed something while
		// appends run: on a loaded machine sealed segments may take a while
		// to be synced and so eligible.
		for i := 0; i < total || (removedLive.Load() == 0 && i < 50*total); i++ {
			k, v := fmt.Sprintf("k%d", rand.IntN(30)), fmt.Sprintf("v%d", i)
			b := keyed(t, time.Now().UnixMilli(), k, v)
			mu.Lock()
			if _, err := l.Append(context.Background(), b); err != nil {
				mu.Unlock()
				t.Error(err)
				return
			}
			last[k] = v
			mu.Unlock()
		}
	}()
	for r := 0; r < 2; r++ { // readers tail the log from the start, over and over
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				prev := int64(-1)
				for _, rc := range readAllErr(t, l) {
					if rc.off <= prev {
						t.Errorf("reader saw offset %d after %d", rc.off, prev)
						return
					}
					prev = rc.off
				}
			}
		}()
	}
	passes, removed := 0, 0
	for ctx.Err() == nil {
		rep, err := l.Clean(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		passes++
		removed += rep.RemovedRecords
		removedLive.Add(int64(rep.RemovedRecords))
	}
	wg.Wait()
	if _, err := l.Clean(time.Now()); err != nil {
		t.Fatal(err)
	}
	if removed == 0 {
		t.Fatalf("%d passes removed nothing", passes)
	}
	got := latestByKey(readAll(t, l, 0))
	for k, v := range last {
		if got[k].value != v {
			t.Fatalf("key %s: got %q, want %q", k, got[k].value, v)
		}
	}
}

// readAllErr is readAll for concurrent readers: it reports errors instead of
// failing from a goroutine.
func readAllErr(t *testing.T, l *Log) []rec {
	var out []rec
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("reader panicked: %v", r)
		}
	}()
	ctx := context.Background()
	off := l.StartOffset()
	for off < l.HighWatermark() {
		b, err := l.Read(ctx, off, 4<<10, nil)
		if errors.Is(err, ErrOffsetOutOfRange) {
			return out
		}
		if err != nil {
			t.Errorf("read at %d: %v", off, err)
			return out
		}
		if len(b) == 0 {
			return out
		}
		recs, next := decodeAll(b, off)
		out = append(out, recs...)
		off = next
	}
	return out
}

// TestCompactionCrash kills a process at every step of a segment rewrite and
// checks that the reopened log has every key's newest record, intact.
func TestCompactionCrash(t *testing.T) {
	if dir := os.Getenv("HERALD_COMPACT_CRASH_DIR"); dir != "" {
		compactCrashChild(dir, os.Getenv("HERALD_COMPACT_CRASH_STEP"))
		return
	}
	for _, step := range []string{"cleaned-written", "indexes-removed", "renamed"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			st := openTestStore(t, dir)
			l := openTestLog(t, st, "c", compactCrashOpts)
			for i := 0; i < 200; i++ {
				mustAppend(t, l, keyed(t, 1, fmt.Sprintf("k%d", i%10), fmt.Sprintf("v%d", i)))
			}
			want := latestByKey(readAll(t, l, 0))
			st.Close()

			cmd := exec.Command(os.Args[0], "-test.run=^TestCompactionCrash$")
			cmd.Env = append(os.Environ(), "HERALD_COMPACT_CRASH_DIR="+dir, "HERALD_COMPACT_CRASH_STEP="+step)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("child did not die at %s: %v\n%s", step, err, out)
			}

			st = openTestStore(t, dir)
			defer st.Close()
			l = openTestLog(t, st, "c", compactCrashOpts)
			got := latestByKey(readAll(t, l, 0))
			for k, w := range want {
				if got[k] != w {
					t.Fatalf("after crash at %s: key %s = %+v, want %+v", step, k, got[k], w)
				}
			}
			for _, n := range mustReadDir(t, l.dir) {
				if hasSuffix(n, cleanedSuffix) || hasSuffix(n, tmpSuffix) {
					t.Fatalf("leftover %s after reopen", n)
				}
			}
			// Compaction completes after the crash (of sealed segments: roll
			// so that every record is in one).
			rollAndSettle(t, l)
			if _, err := l.Clean(time.Now()); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, l, 0); len(latestByKey(got)) != len(got) {
				t.Fatalf("after a finished compaction %d records for %d keys", len(got), len(latestByKey(got)))
			}
		})
	}
}

var compactCrashOpts = Options{SegmentBytes: 4 << 10, Cleanup: CleanupCompact}

func compactCrashChild(dir, step string) {
	compactHook = func(s string) {
		if s == step {
			os.Exit(3)
		}
	}
	st, err := OpenStore(dir, StoreOptions{CleanInterval: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	l, err := st.OpenLog("c", compactCrashOpts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := l.Clean(time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "compaction finished without reaching step", step)
	os.Exit(1)
}

func TestBackgroundCleaner(t *testing.T) {
	st := openTestStore(t, t.TempDir(), func(o *StoreOptions) { o.CleanInterval = 20 * time.Millisecond })
	defer st.Close()
	l := openTestLog(t, st, "p", Options{SegmentBytes: 4 << 10, RetentionBytes: 8 << 10})
	for i := 0; i < 60; i++ {
		mustAppend(t, l, makeBatch(t, "r", 4, 100, 1))
	}
	waitFor(t, 5*time.Second, "background retention", func() bool { return l.Size() <= 12<<10 })
}

// rollAndSettle seals the active segment and waits until the flusher has
// synced it, so that cleaning may touch it.
func rollAndSettle(t testing.TB, l *Log) {
	t.Helper()
	l.mu.Lock()
	if err := l.rollLocked(); err != nil {
		t.Fatal(err)
	}
	l.mu.Unlock()
	waitFor(t, 5*time.Second, "sealed segments settled", func() bool {
		segs := *l.segs.Load()
		for _, s := range segs[:len(segs)-1] {
			if !s.settled.Load() {
				return false
			}
		}
		return true
	})
}
