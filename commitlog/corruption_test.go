package commitlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/internal/vfs"
)

// Corruption tests: every kind of damage a disk, a crash or an operator can
// do to a log's files, each with the precise outcome the design promises.

const corruptLog = "orders/0"

// corruptOptions make small segments with dense indexes, so a few dozen
// batches give several sealed segments and an active one with many index
// entries.
var corruptOptions = Options{SegmentBytes: 4 << 10, IndexIntervalBytes: 256}

// fixture is a log written by a test, and what it holds.
type fixture struct {
	dir    string
	logDir string
	want   []rec
	ts     []int64 // timestamp of each batch
	first  []int64 // first offset of each batch
}

// buildFixture appends batches batches to a new log. The last tail of them
// are appended after a checkpoint and the store is then abandoned as if the
// process died, so that they lie after the recovery point; with tail 0 the
// store is closed cleanly and the whole log is below the recovery point.
func buildFixture(t *testing.T, batches, tail int) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	f.logDir = filepath.Join(f.dir, "logs", corruptLog)
	st := openTestStore(t, f.dir, func(o *StoreOptions) { o.CheckpointInterval = time.Hour })
	l := openTestLog(t, st, corruptLog, corruptOptions)
	for i := range batches {
		if i == batches-tail {
			if err := st.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
		ts := int64(1000 + 10*i)
		off := mustAppend(t, l, makeBatch(t, fmt.Sprintf("b%d", i), 3, 60, ts))
		f.ts = append(f.ts, ts)
		f.first = append(f.first, off)
		for j := range 3 {
			f.want = append(f.want, rec{off: off + int64(j), ts: ts, key: fmt.Sprintf("k%d", j), value: string(padValue(fmt.Sprintf("b%d-%d", i, j), 60))})
		}
	}
	if tail > 0 {
		abandon(st)
	} else if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if segs := f.segments(t); len(segs) < 4 {
		t.Fatalf("fixture has %d segments, want at least 4", len(segs))
	}
	return f
}

// open opens the fixture's store and log; the store is closed at cleanup.
func (f *fixture) open(t *testing.T) (*Store, *Log) {
	t.Helper()
	st := openTestStore(t, f.dir)
	t.Cleanup(func() { st.Close() })
	return st, openTestLog(t, st, corruptLog, corruptOptions)
}

// segments returns the paths of the log's segment files, oldest first.
func (f *fixture) segments(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(f.logDir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// wantBelow returns the records at offsets below off.
func (f *fixture) wantBelow(off int64) []rec {
	i := 0
	for i < len(f.want) && f.want[i].off < off {
		i++
	}
	return f.want[:i]
}

// batchLoc is where a batch lies in a segment file.
type batchLoc struct {
	pos, size int64
	base      int64
	last      int64
}

// segmentBatches walks a segment file's batch headers.
func segmentBatches(t *testing.T, path string) []batchLoc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []batchLoc
	for p := segHeaderSize; p < len(b); {
		h, err := batch.ParseHeader(b[p:])
		if err != nil {
			t.Fatalf("%s at %d: %v", path, p, err)
		}
		out = append(out, batchLoc{pos: int64(p), size: int64(h.Size()), base: h.BaseOffset, last: h.LastOffset()})
		p += h.Size()
	}
	return out
}

func flipByte(t *testing.T, path string, pos int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[pos] ^= 0x5a
	writeFile(t, path, b)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// readRange decodes the records in [from, to), reading as a consumer does.
func readRange(l *Log, from, to int64, maxBytes int) ([]rec, error) {
	var out []rec
	var it batch.Iter
	for off := from; off < to; {
		b, err := l.Read(context.Background(), off, maxBytes, nil)
		if err != nil {
			return out, err
		}
		if len(b) == 0 {
			return out, fmt.Errorf("Read(%d) returned nothing below %d", off, to)
		}
		for p := 0; p < len(b) && off < to; {
			h, err := batch.ParseHeader(b[p:])
			if err != nil {
				return out, err
			}
			if err := it.Reset(b[p : p+h.Size()]); err != nil {
				return out, err
			}
			for it.Next() {
				if it.Offset() >= off && it.Offset() < to {
					r := it.Record()
					out = append(out, rec{off: it.Offset(), ts: it.Timestamp(), key: string(r.Key), value: string(r.Value), null: r.Value == nil})
				}
			}
			if err := it.Err(); err != nil {
				return out, err
			}
			off = h.LastOffset() + 1
			p += h.Size()
		}
	}
	return out, nil
}

func sameRecs(t *testing.T, what string, got, want []rec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: record %d is %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

// wantCorruption asserts that err is a *CorruptionError about path at pos
// (pos < 0: any position).
func wantCorruption(t *testing.T, what string, err error, path string, pos int64) *CorruptionError {
	t.Helper()
	var ce *CorruptionError
	if !errors.Is(err, ErrCorrupt) || !IsCorruption(err) || !errors.As(err, &ce) {
		t.Fatalf("%s: %v, want a *CorruptionError", what, err)
	}
	if ce.Path != path || (pos >= 0 && ce.Pos != pos) {
		t.Fatalf("%s: corruption reported in %s at %d, want %s at %d (%v)", what, ce.Path, ce.Pos, path, pos, err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("%s: error %q does not name the file", what, err)
	}
	return ce
}

// checkAppendContinues appends one batch, checks it lands at the high-water
// mark, and that a clean reopen keeps everything.
func checkAppendContinues(t *testing.T, f *fixture, st *Store, l *Log, want []rec) {
	t.Helper()
	next := l.HighWatermark()
	if off := mustAppend(t, l, makeBatch(t, "after", 2, 10, 9999)); off != next {
		t.Fatalf("append after recovery got offset %d, want %d", off, next)
	}
	want = append(slices.Clone(want),
		rec{off: next, ts: 9999, key: "k0", value: string(padValue("after-0", 10))},
		rec{off: next + 1, ts: 9999, key: "k1", value: string(padValue("after-1", 10))})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_, l = f.open(t)
	if r := l.Recovery(); r.Lost() {
		t.Fatalf("second reopen lost data: %+v", r)
	}
	sameRecs(t, "after second reopen", readAll(t, l, 0), want)
}

func TestCorruptTailIsTruncated(t *testing.T) {
	const batches, tail = 60, 3
	for _, tc := range []struct {
		name    string
		victim  int // index in the tail
		at      func(b batchLoc) int64
		reason  string
		dropped int
	}{
		{"record byte of last batch", 2, func(b batchLoc) int64 { return b.pos + batch.HeaderSize + 10 }, "checksum", 1},
		{"CRC of last batch", 2, func(b batchLoc) int64 { return b.pos + 17 }, "checksum", 1},
		{"magic of last batch", 2, func(b batchLoc) int64 { return b.pos + 16 }, "bad batch header", 1},
		{"length of last batch", 2, func(b batchLoc) int64 { return b.pos + 8 }, "", 1},
		{"record byte of first tail batch", 0, func(b batchLoc) int64 { return b.pos + b.size - 3 }, "checksum", 3},
		{"offset of middle tail batch", 1, func(b batchLoc) int64 { return b.pos + 7 }, "batch offset", 2},
		{"leader epoch of last batch", 2, func(b batchLoc) int64 { return b.pos + 15 }, "leader epoch", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := buildFixture(t, batches, tail)
			segs := f.segments(t)
			active := segs[len(segs)-1]
			locs := segmentBatches(t, active)
			if len(locs) < tail+1 {
				t.Fatalf("active segment has %d batches, want more than %d", len(locs), tail)
			}
			tl := locs[len(locs)-tail:]
			v := tl[tc.victim]
			flipByte(t, active, tc.at(v))

			st, l := f.open(t)
			r := l.Recovery()
			var truncated int64
			for _, b := range tl[tc.victim:] {
				truncated += b.size
			}
			if !r.Lost() || r.Segment != active || r.Position != v.pos || r.TruncatedBytes != truncated || r.DroppedBatches != tc.dropped {
				t.Fatalf("recovery %+v; want %d bytes and %d batches truncated from %s at %d", r, truncated, tc.dropped, active, v.pos)
			}
			if scanned := v.pos - tl[0].pos; r.ScannedBytes != scanned {
				t.Fatalf("recovery scanned %d bytes, want %d (the tail before the bad batch)", r.ScannedBytes, scanned)
			}
			if !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("recovery reason %q, want it to mention %q", r.Reason, tc.reason)
			}
			if got := fileSize(t, active); got != v.pos {
				t.Fatalf("active segment is %d bytes after recovery, want %d", got, v.pos)
			}
			if l.HighWatermark() != v.base || l.EndOffset() != v.base {
				t.Fatalf("high-water mark %d, end %d; want %d", l.HighWatermark(), l.EndOffset(), v.base)
			}
			want := f.wantBelow(v.base)
			sameRecs(t, "after recovery", readAll(t, l, 0), want)
			checkAppendContinues(t, f, st, l, want)
		})
	}
}

func TestCorruptSealedSegmentIsReportedOnRead(t *testing.T) {
	f := buildFixture(t, 60, 0)
	segs := f.segments(t)
	victimSeg := segs[1]
	locs := segmentBatches(t, victimSeg)
	v := locs[len(locs)/2]
	flipByte(t, victimSeg, v.pos+batch.HeaderSize+20)

	_, l := f.open(t)
	if r := l.Recovery(); r.Lost() || r.ScannedBytes != 0 {
		t.Fatalf("recovery %+v; a clean reopen must not scan or truncate sealed segments", r)
	}
	_, err := l.Read(context.Background(), v.base, 1<<20, nil)
	wantCorruption(t, "Read of the damaged batch", err, victimSeg, v.pos)
	if _, err := l.Read(context.Background(), v.last, 1, nil); !IsCorruption(err) {
		t.Fatalf("Read of the damaged batch's last offset: %v, want corruption", err)
	}
	if l.Recovery().Lost() || l.HighWatermark() != int64(len(f.want)) {
		t.Fatalf("a read error changed the log: %+v, hwm %d", l.Recovery(), l.HighWatermark())
	}
	// The batches before it in the same segment, one at a time, and every
	// other segment stay readable.
	got, err := readRange(l, locs[0].base, v.base, 1)
	if err != nil {
		t.Fatalf("batches before the damaged one: %v", err)
	}
	sameRecs(t, "batches before the damaged one", got, f.want[locs[0].base:v.base])
	got, err = readRange(l, 0, locs[0].base, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	sameRecs(t, "earlier segment", got, f.want[:locs[0].base])
	next := segmentBatches(t, segs[2])[0].base
	got, err = readRange(l, next, l.HighWatermark(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	sameRecs(t, "later segments", got, f.want[next:])
	// Time lookups outside the damaged segment still work.
	if off, err := l.OffsetForTime(context.Background(), f.ts[len(f.ts)-1]); err != nil || off != f.first[len(f.first)-1] {
		t.Fatalf("OffsetForTime in the active segment: %d, %v", off, err)
	}
	// Reopening neither hides nor "repairs" the damage.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptBelowRecoveryPoint(t *testing.T) {
	// After a clean close the whole active segment is below the recovery
	// point. Recovery re-validates only from the last offset index entry
	// before the recovery point, so damage there fails OpenLog; damage
	// further back is found by the read that reaches it.
	t.Run("at or after the last index entry fails OpenLog", func(t *testing.T) {
		f := buildFixture(t, 60, 0)
		segs := f.segments(t)
		active := segs[len(segs)-1]
		locs := segmentBatches(t, active)
		v := locs[len(locs)-1]
		flipByte(t, active, v.pos+batch.HeaderSize+5)
		st := openTestStore(t, f.dir)
		defer st.Close()
		_, err := st.OpenLog(corruptLog, corruptOptions)
		ce := wantCorruption(t, "OpenLog", err, active, v.pos)
		if !strings.Contains(ce.Reason, "below the recovery point") {
			t.Fatalf("reason %q should say the bytes were below the recovery point", ce.Reason)
		}
		if got := fileSize(t, active); got != v.pos+v.size {
			t.Fatalf("a failed open changed the segment: %d bytes, want %d", got, v.pos+v.size)
		}
		// The failure is not sticky in memory: the next open reports it again.
		_, err = st.OpenLog(corruptLog, corruptOptions)
		wantCorruption(t, "second OpenLog", err, active, v.pos)
	})
	t.Run("before the last index entry fails the read", func(t *testing.T) {
		f := buildFixture(t, 60, 0)
		segs := f.segments(t)
		active := segs[len(segs)-1]
		locs := segmentBatches(t, active)
		idx := readFile(t, strings.TrimSuffix(active, segSuffix)+offIdxSuffix)
		if len(idx) < segHeaderSize+offIdxEntrySize {
			t.Fatalf("active segment's index has no entries")
		}
		lastEntry := int64(binary.BigEndian.Uint32(idx[len(idx)-4:]))
		v := locs[0]
		if v.pos >= lastEntry {
			t.Fatalf("fixture: first batch at %d is not before the last index entry %d", v.pos, lastEntry)
		}
		flipByte(t, active, v.pos+batch.HeaderSize+5)
		_, l := f.open(t)
		if r := l.Recovery(); r.Lost() {
			t.Fatalf("recovery %+v truncated bytes below the recovery point", r)
		}
		_, err := l.Read(context.Background(), v.base, 1, nil)
		wantCorruption(t, "Read", err, active, v.pos)
		got, err := readRange(l, locs[1].base, l.HighWatermark(), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		sameRecs(t, "batches after the damaged one", got, f.want[locs[1].base:])
	})
}

func TestTruncatedSegment(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keep   int64 // bytes of the victim batch left
		reason string
	}{
		{"mid-batch", 100, "only"},
		{"mid-header", 30, "shorter than a batch header"},
	} {
		t.Run("tail/"+tc.name, func(t *testing.T) {
			f := buildFixture(t, 60, 3)
			segs := f.segments(t)
			active := segs[len(segs)-1]
			locs := segmentBatches(t, active)
			v := locs[len(locs)-1]
			if err := os.Truncate(active, v.pos+tc.keep); err != nil {
				t.Fatal(err)
			}
			st, l := f.open(t)
			r := l.Recovery()
			if !r.Lost() || r.Segment != active || r.Position != v.pos || r.TruncatedBytes != tc.keep || r.DroppedBatches != 1 || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("recovery %+v; want %d bytes (1 batch) truncated at %d because %q", r, tc.keep, v.pos, tc.reason)
			}
			want := f.wantBelow(v.base)
			sameRecs(t, "after recovery", readAll(t, l, 0), want)
			checkAppendContinues(t, f, st, l, want)
		})
	}
	t.Run("below the recovery point", func(t *testing.T) {
		// The file is shorter than the recovery point says: the point is
		// not trusted, the last two segments are validated and the cut
		// batch dropped.
		f := buildFixture(t, 60, 0)
		segs := f.segments(t)
		active := segs[len(segs)-1]
		locs := segmentBatches(t, active)
		v := locs[len(locs)-2]
		if err := os.Truncate(active, v.pos+100); err != nil {
			t.Fatal(err)
		}
		st, l := f.open(t)
		r := l.Recovery()
		if !r.Lost() || r.Position != v.pos || r.TruncatedBytes != 100 || r.DroppedBatches != 1 {
			t.Fatalf("recovery %+v; want 100 bytes truncated at %d", r, v.pos)
		}
		total := lastTwoSegmentsBytes(t, segs) - (fileSize(t, active) - v.pos - 100) - 100
		if r.ScannedBytes != total {
			t.Fatalf("scanned %d bytes, want the last two segments' %d (the recovery point no longer matches)", r.ScannedBytes, total)
		}
		want := f.wantBelow(v.base)
		sameRecs(t, "after recovery", readAll(t, l, 0), want)
		checkAppendContinues(t, f, st, l, want)
	})
	t.Run("sealed segment", func(t *testing.T) {
		// A sealed segment never has a torn tail: a short one is damage, and
		// reads of the missing range must say so rather than skip it.
		f := buildFixture(t, 60, 0)
		segs := f.segments(t)
		locs := segmentBatches(t, segs[1])
		v := locs[len(locs)-1]
		if err := os.Truncate(segs[1], v.pos+100); err != nil {
			t.Fatal(err)
		}
		_, l := f.open(t)
		_, err := l.Read(context.Background(), v.base, 1<<20, nil)
		wantCorruption(t, "Read of the cut batch", err, segs[1], v.pos)
		got, err := readRange(l, 0, v.base, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		sameRecs(t, "before the cut", got, f.want[:v.base])
	})
}

// A zero-filled tail is space no batch was written to (preallocated, or an
// append none of whose bytes reached the disk): not a loss, and appends
// overwrite it. A torn batch before zeros is still a torn tail.
func TestZeroFilledTail(t *testing.T) {
	for _, tail := range []int{0, 3} {
		for _, torn := range []bool{false, true} {
			t.Run(fmt.Sprintf("tail=%d/torn=%v", tail, torn), func(t *testing.T) {
				f := buildFixture(t, 60, tail)
				segs := f.segments(t)
				active := segs[len(segs)-1]
				size := fileSize(t, active)
				fh, err := os.OpenFile(active, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				junk := make([]byte, 4096)
				if torn {
					// The first bytes of a batch header: a length and a base offset.
					copy(junk, []byte{0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 80})
				}
				if _, err := fh.Write(junk); err != nil {
					t.Fatal(err)
				}
				fh.Close()
				st, l := f.open(t)
				r := l.Recovery()
				if torn {
					if !r.Lost() || r.Segment != active || r.Position != size || r.TruncatedBytes != 4096 || r.DroppedBatches != 1 || r.UnwrittenBytes != 0 {
						t.Fatalf("recovery %+v; want 4096 bytes truncated at %d", r, size)
					}
					if got := fileSize(t, active); got != size {
						t.Fatalf("segment is %d bytes, want %d", got, size)
					}
				} else {
					if r.Lost() || r.UnwrittenBytes != 4096 {
						t.Fatalf("recovery %+v; want no loss and 4096 unwritten bytes", r)
					}
					if got := fileSize(t, active); got != size+4096 {
						t.Fatalf("segment is %d bytes, want its zeros kept: %d", got, size+4096)
					}
				}
				sameRecs(t, "after recovery", readAll(t, l, 0), f.want)
				checkAppendContinues(t, f, st, l, f.want)
			})
		}
	}
}

// A sealed segment with a zero-filled tail (one sealed by a version that
// did not trim, or whose trim a crash undid) is trimmed at open.
func TestZeroFilledSealedTail(t *testing.T) {
	f := buildFixture(t, 60, 0)
	segs := f.segments(t)
	sealed := segs[len(segs)-2]
	size := fileSize(t, sealed)
	fh, err := os.OpenFile(sealed, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Write(make([]byte, 10000)); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	// Without recovery points, so that the sealed segment is validated.
	if err := os.Remove(filepath.Join(f.dir, checkpointFile)); err != nil {
		t.Fatal(err)
	}
	st, l := f.open(t)
	if r := l.Recovery(); r.Lost() || r.UnwrittenBytes != 10000 {
		t.Fatalf("recovery %+v; want no loss and 10000 unwritten bytes", r)
	}
	if got := fileSize(t, sealed); got != size {
		t.Fatalf("sealed segment is %d bytes, want it trimmed to %d", got, size)
	}
	sameRecs(t, "after recovery", readAll(t, l, 0), f.want)
	checkAppendContinues(t, f, st, l, f.want)
}

// lookups records what a log answers, to compare before and after damage to
// its indexes.
type lookups struct {
	recs  []rec
	times []int64
}

func takeLookups(t *testing.T, f *fixture, l *Log) lookups {
	t.Helper()
	var lk lookups
	lk.recs = readAll(t, l, 0)
	// One Read per offset, so that every index entry gets used.
	for off := range int64(len(f.want)) {
		got, err := readRange(l, off, off+1, 1)
		if err != nil || len(got) != 1 {
			t.Fatalf("Read(%d): %v %v", off, got, err)
		}
		lk.recs = append(lk.recs, got...)
	}
	for _, ts := range append(slices.Clone(f.ts), 0, 5, 99999) {
		for _, q := range []int64{ts - 5, ts, ts + 1} {
			off, err := l.OffsetForTime(context.Background(), q)
			if err != nil {
				t.Fatalf("OffsetForTime(%d): %v", q, err)
			}
			lk.times = append(lk.times, off)
		}
	}
	return lk
}

func (a lookups) check(t *testing.T, b lookups) {
	t.Helper()
	sameRecs(t, "reads", b.recs, a.recs)
	if !slices.Equal(a.times, b.times) {
		t.Fatalf("OffsetForTime answers changed:\n%v\nwant\n%v", b.times, a.times)
	}
}

// editIndexEntry adds drel and dpos to the relative offset and position of
// the middle entry of an offset index, keeping the entries increasing.
func editIndexEntry(t *testing.T, path string, drel, dpos int) {
	t.Helper()
	b := readFile(t, path)
	n := (len(b) - segHeaderSize) / offIdxEntrySize
	if n < 3 {
		t.Fatalf("%s has %d entries, want at least 3", path, n)
	}
	e := b[segHeaderSize+n/2*offIdxEntrySize:]
	binary.BigEndian.PutUint32(e, uint32(int(binary.BigEndian.Uint32(e))+drel))
	binary.BigEndian.PutUint32(e[4:], uint32(int(binary.BigEndian.Uint32(e[4:]))+dpos))
	writeFile(t, path, b)
}

// indexFiles returns the index paths of a segment path.
func indexFiles(seg string) (idx, tix string) {
	stem := strings.TrimSuffix(seg, segSuffix)
	return stem + offIdxSuffix, stem + timeIdxSuffix
}

func TestDamagedIndexesAreRebuilt(t *testing.T) {
	type damage func(t *testing.T, segs []string)
	remove := func(which func(segs []string) []string) damage {
		return func(t *testing.T, segs []string) {
			for _, p := range which(segs) {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	garbage := func(which func(segs []string) []string) damage {
		return func(t *testing.T, segs []string) {
			rng := rand.New(rand.NewPCG(1, 2))
			for _, p := range which(segs) {
				b := make([]byte, fileSize(t, p)+int64(rng.IntN(64)))
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				writeFile(t, p, b)
			}
		}
	}
	// copyFrom copies another segment's index over the victim's.
	copyFrom := func(which func(segs []string) (from, to []string)) damage {
		return func(t *testing.T, segs []string) {
			from, to := which(segs)
			for i := range from {
				writeFile(t, to[i], readFile(t, from[i]))
			}
		}
	}
	sealedIdx := func(segs []string) []string { p, _ := indexFiles(segs[1]); return []string{p} }
	sealedTix := func(segs []string) []string { _, p := indexFiles(segs[1]); return []string{p} }
	activeIdx := func(segs []string) []string { p, _ := indexFiles(segs[len(segs)-1]); return []string{p} }
	activeTix := func(segs []string) []string { _, p := indexFiles(segs[len(segs)-1]); return []string{p} }
	all := func(segs []string) []string {
		var out []string
		for _, s := range segs {
			a, b := indexFiles(s)
			out = append(out, a, b)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		d    damage
	}{
		{"deleted/sealed idx", remove(sealedIdx)},
		{"deleted/sealed tix", remove(sealedTix)},
		{"deleted/active idx", remove(activeIdx)},
		{"deleted/active tix", remove(activeTix)},
		{"deleted/all", remove(all)},
		{"garbage/sealed idx", garbage(sealedIdx)},
		{"garbage/sealed tix", garbage(sealedTix)},
		{"garbage/active idx", garbage(activeIdx)},
		{"garbage/active tix", garbage(activeTix)},
		{"garbage/all", garbage(all)},
		{"other segment's/sealed", copyFrom(func(segs []string) ([]string, []string) {
			a0, t0 := indexFiles(segs[0])
			a1, t1 := indexFiles(segs[1])
			return []string{a0, t0}, []string{a1, t1}
		})},
		{"other segment's/active", copyFrom(func(segs []string) ([]string, []string) {
			a0, t0 := indexFiles(segs[len(segs)-2])
			a1, t1 := indexFiles(segs[len(segs)-1])
			return []string{a0, t0}, []string{a1, t1}
		})},
		{"truncated/sealed idx", func(t *testing.T, segs []string) {
			p, _ := indexFiles(segs[1])
			writeFile(t, p, readFile(t, p)[:segHeaderSize+offIdxEntrySize+3])
		}},
		// A damaged entry (its checksum no longer matches) must not send a
		// reader to the wrong place.
		{"bad entry/sealed idx position", func(t *testing.T, segs []string) {
			p, _ := indexFiles(segs[1])
			editIndexEntry(t, p, 0, 1)
		}},
		{"bad entry/sealed idx offset", func(t *testing.T, segs []string) {
			p, _ := indexFiles(segs[1])
			editIndexEntry(t, p, -1, 0)
		}},
		{"bad entry/active idx position", func(t *testing.T, segs []string) {
			p, _ := indexFiles(segs[len(segs)-1])
			editIndexEntry(t, p, 0, 1)
		}},
		{"bad entry/active idx offset", func(t *testing.T, segs []string) {
			p, _ := indexFiles(segs[len(segs)-1])
			editIndexEntry(t, p, -1, 0)
		}},
		{"empty/active tix", func(t *testing.T, segs []string) {
			_, p := indexFiles(segs[len(segs)-1])
			writeFile(t, p, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := buildFixture(t, 60, 0)
			segs := f.segments(t)
			before := map[string][]byte{}
			for _, p := range all(segs) {
				before[p] = readFile(t, p)
			}
			st, l := f.open(t)
			want := takeLookups(t, f, l)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			tc.d(t, segs)
			st, l = f.open(t)
			if r := l.Recovery(); r.Lost() {
				t.Fatalf("damaged index made recovery drop data: %+v", r)
			}
			want.check(t, takeLookups(t, f, l))
			// Every index file exists again and is one a fresh open accepts:
			// the right magic, base and file id.
			for _, p := range all(segs) {
				b := readFile(t, p)
				magic := offIdxMagic
				if strings.HasSuffix(p, timeIdxSuffix) {
					magic = timeIdxMagic
				}
				h, err := decodeFileHeader(b, magic, p)
				if err != nil {
					t.Fatalf("index %s after reads: %v", filepath.Base(p), err)
				}
				base, _, _ := parseSegmentName(filepath.Base(p))
				if h.base != base {
					t.Fatalf("index %s has base %d", filepath.Base(p), h.base)
				}
				// Indexes of sealed segments are a function of the segment.
				// (A truncated index leaves a usable prefix, which is kept.)
				if !strings.HasPrefix(tc.name, "truncated/") && p < segs[len(segs)-1] && !bytes.Equal(b, before[p]) {
					t.Fatalf("rebuilt index %s differs from the original", filepath.Base(p))
				}
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			_, l = f.open(t)
			want.check(t, takeLookups(t, f, l))
		})
	}
}

func TestDuplicatedSegment(t *testing.T) {
	t.Run("copy past the end", func(t *testing.T) {
		f := buildFixture(t, 60, 0)
		segs := f.segments(t)
		dup := filepath.Join(f.logDir, segmentName(int64(len(f.want))+1000)+segSuffix)
		writeFile(t, dup, readFile(t, segs[1]))
		st := openTestStore(t, f.dir)
		defer st.Close()
		_, err := st.OpenLog(corruptLog, corruptOptions)
		wantCorruption(t, "OpenLog", err, dup, 0)
	})
	t.Run("copy between sealed segments", func(t *testing.T) {
		f := buildFixture(t, 60, 0)
		segs := f.segments(t)
		locs := segmentBatches(t, segs[1])
		dupBase := locs[len(locs)/2].base + 1
		dup := filepath.Join(f.logDir, segmentName(dupBase)+segSuffix)
		writeFile(t, dup, readFile(t, segs[0]))
		_, l := f.open(t)
		// Everything below the copy reads as before; the copy's range is a
		// typed error naming it, never a second copy of the records.
		got, err := readRange(l, 0, dupBase, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		sameRecs(t, "below the copy", got, f.want[:dupBase])
		_, err = l.Read(context.Background(), dupBase, 1<<20, nil)
		wantCorruption(t, "Read of the copy", err, dup, 0)
	})
	t.Run("copy with a matching header", func(t *testing.T) {
		// Even a copy whose header agrees with its name holds offsets that
		// belong to another segment.
		f := buildFixture(t, 60, 0)
		segs := f.segments(t)
		locs := segmentBatches(t, segs[1])
		dupBase := locs[len(locs)/2].base + 1
		dup := filepath.Join(f.logDir, segmentName(dupBase)+segSuffix)
		b := readFile(t, segs[1])
		copy(b, fileHeader{magic: segMagic, version: formatVersion, base: dupBase, fileID: 42}.encode())
		writeFile(t, dup, b)
		_, l := f.open(t)
		_, err := l.Read(context.Background(), dupBase, 1<<20, nil)
		wantCorruption(t, "Read of the copy", err, dup, segHeaderSize)
	})
}

func TestCorruptSegmentHeader(t *testing.T) {
	t.Run("sealed", func(t *testing.T) {
		f := buildFixture(t, 60, 0)
		segs := f.segments(t)
		flipByte(t, segs[1], 13)
		_, l := f.open(t)
		locs := segmentBatches(t, segs[1])
		_, err := l.Read(context.Background(), locs[0].base, 1<<20, nil)
		wantCorruption(t, "Read", err, segs[1], 0)
		got, err := readRange(l, 0, locs[0].base, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		sameRecs(t, "first segment", got, f.want[:locs[0].base])
	})
	t.Run("active", func(t *testing.T) {
		f := buildFixture(t, 60, 0)
		segs := f.segments(t)
		flipByte(t, segs[len(segs)-1], 3)
		st := openTestStore(t, f.dir)
		defer st.Close()
		_, err := st.OpenLog(corruptLog, corruptOptions)
		wantCorruption(t, "OpenLog", err, segs[len(segs)-1], 0)
	})
	t.Run("unsupported version", func(t *testing.T) {
		f := buildFixture(t, 60, 0)
		segs := f.segments(t)
		active := segs[len(segs)-1]
		b := readFile(t, active)
		h, err := decodeFileHeader(b, segMagic, active)
		if err != nil {
			t.Fatal(err)
		}
		h.version = 99
		copy(b, h.encode())
		writeFile(t, active, b)
		st := openTestStore(t, f.dir)
		defer st.Close()
		_, err = st.OpenLog(corruptLog, corruptOptions)
		var fe *FormatVersionError
		if !errors.Is(err, ErrUnsupportedFormat) || !errors.As(err, &fe) || fe.Found != 99 || fe.Path != active {
			t.Fatalf("OpenLog: %v, want a *FormatVersionError for %s", err, active)
		}
	})
}

// lockedBuffer is a log sink for a store's logger.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func TestDamagedRecoveryPoints(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
		warn   bool
	}{
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }, true},
		{"flipped checksum", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, true},
		{"truncated", func(b []byte) []byte { return b[:len(b)-7] }, true},
		{"header only", func(b []byte) []byte { return b[:10] }, true},
		{"empty", func(b []byte) []byte { return nil }, true},
		{"garbage", func(b []byte) []byte { return bytes.Repeat([]byte{0xa5}, len(b)) }, true},
		{"deleted", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := buildFixture(t, 60, 0)
			path := filepath.Join(f.dir, checkpointFile)
			if tc.damage == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				writeFile(t, path, tc.damage(readFile(t, path)))
			}
			var logs lockedBuffer
			st := openTestStore(t, f.dir, func(o *StoreOptions) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
			defer st.Close()
			if got := strings.Contains(logs.String(), "unreadable recovery points"); got != tc.warn {
				t.Fatalf("warning logged: %v, want %v; log:\n%s", got, tc.warn, logs.String())
			}
			l := openTestLog(t, st, corruptLog, corruptOptions)
			r := l.Recovery()
			// Without a recovery point the last two segments are validated;
			// older ones were synced when sealed and are checked by reads.
			total := lastTwoSegmentsBytes(t, f.segments(t))
			if r.Lost() || r.ScannedBytes != total {
				t.Fatalf("recovery %+v; want the last two segments' %d bytes validated and nothing lost", r, total)
			}
			sameRecs(t, "after recovery", readAll(t, l, 0), f.want)
			// The next checkpoint is good again.
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := readCheckpoint(vfs.Default, path); err != nil {
				t.Fatalf("recovery points after close: %v", err)
			}
		})
	}
}

func TestLeftoverFilesAreRemoved(t *testing.T) {
	f := buildFixture(t, 60, 0)
	segs := f.segments(t)
	leftovers := []string{
		segs[1] + cleanedSuffix, // an interrupted compaction's copy
		strings.TrimSuffix(segs[2], segSuffix) + ".idx" + tmpSuffix, // an interrupted index write
		segs[len(segs)-1] + tmpSuffix,
	}
	for i, p := range leftovers {
		b := readFile(t, segs[1])
		b[100+i] ^= 0xff // not even a valid copy
		writeFile(t, p, b)
	}
	rootTmp := filepath.Join(f.dir, checkpointFile+tmpSuffix)
	writeFile(t, rootTmp, []byte("half-written"))
	before := map[string][]byte{}
	for _, s := range segs {
		before[s] = readFile(t, s)
	}

	st, l := f.open(t)
	for _, p := range leftovers {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("leftover %s still there after open: %v", filepath.Base(p), err)
		}
	}
	if r := l.Recovery(); r.Lost() {
		t.Fatalf("recovery %+v", r)
	}
	sameRecs(t, "after open", readAll(t, l, 0), f.want)
	for _, s := range segs {
		if !bytes.Equal(readFile(t, s), before[s]) {
			t.Fatalf("segment %s changed", filepath.Base(s))
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(rootTmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover %s still there after a checkpoint: %v", rootTmp, err)
	}
}

// lastTwoSegmentsBytes is the batch bytes of the last two segment files.
func lastTwoSegmentsBytes(t *testing.T, segs []string) int64 {
	t.Helper()
	var total int64
	for _, s := range segs[max(0, len(segs)-2):] {
		total += fileSize(t, s) - segHeaderSize
	}
	return total
}
