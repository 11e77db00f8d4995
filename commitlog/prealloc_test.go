package commitlog

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/vfs"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// checkSegmentFiles checks every segment file's length: a sealed one ends
// at its last batch; the active one may have up to ahead bytes of zeros
// after it, but not past the segment size.
func checkSegmentFiles(t *testing.T, l *Log, ahead int64) {
	t.Helper()
	segs := *l.segs.Load()
	for i, s := range segs {
		got, end := fileSize(t, s.path), s.size.Load()
		hi := end
		if i == len(segs)-1 {
			hi = max(min(end+ahead, l.opts.SegmentBytes), end)
			b, err := os.ReadFile(s.path)
			if err != nil {
				t.Fatal(err)
			}
			if ok, _ := zeroFilled(fileReaderAt(b), end, int64(len(b))); !ok {
				t.Fatalf("active segment %s: bytes after its last batch (at %d) are not all zero", s.path, end)
			}
		}
		if got < end || got > hi {
			t.Fatalf("segment %d of %d (%s): file is %d bytes, want %d to %d (last batch ends at %d)", i+1, len(segs), s.path, got, end, hi, end)
		}
	}
}

type fileReaderAt []byte

func (b fileReaderAt) ReadAt(p []byte, off int64) (int, error) { return copy(p, b[off:]), nil }

func TestPreallocate(t *testing.T) {
	const ahead = 20 << 10
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10, IndexIntervalBytes: 1 << 10, Preallocate: ahead}
	st := openTestStore(t, dir, func(o *StoreOptions) { o.CheckpointInterval = time.Hour })
	l := openTestLog(t, st, "p", opts)
	checkSegmentFiles(t, l, ahead)
	for i := range 400 {
		mustAppend(t, l, makeBatch(t, fmt.Sprintf("b%d", i), 1+i%5, 50+i*7%300, int64(1000+i)))
		checkSegmentFiles(t, l, ahead)
	}
	if n := l.Segments(); n < 3 {
		t.Fatalf("%d segments; want at least 3 (the test must seal segments)", n)
	}
	if got := testutil.ToFloat64(st.m.preallocBytes); got < 3*ahead {
		t.Fatalf("preallocated %v bytes in all; want at least %d", got, 3*ahead)
	}
	want := readAll(t, l, 0)

	// A crash: the active segment keeps its zeros, which are not a loss,
	// whether or not the reopened log preallocates.
	for _, pre := range []int64{ahead, 0} {
		active := l.mu.active
		zeros := fileSize(t, active.path) - active.size.Load()
		if zeros == 0 {
			t.Fatal("the active segment has no zeros ahead of its last batch")
		}
		abandon(st)
		st = openTestStore(t, dir, func(o *StoreOptions) { o.CheckpointInterval = time.Hour })
		o := opts
		o.Preallocate = pre
		l = openTestLog(t, st, "p", o)
		if r := l.Recovery(); r.Lost() || r.UnwrittenBytes != zeros {
			t.Fatalf("preallocate=%d: recovery %+v; want no loss and %d unwritten bytes", pre, r, zeros)
		}
		sameRecs(t, "after a crash", readAll(t, l, 0), want)
		for i := range 20 {
			mustAppend(t, l, makeBatch(t, fmt.Sprintf("c%d-%d", pre, i), 2, 200, int64(5000+i)))
		}
		want = readAll(t, l, 0)
		if pre > 0 {
			checkSegmentFiles(t, l, ahead)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openTestStore(t, dir)
	defer st.Close()
	l = openTestLog(t, st, "p", opts)
	if r := l.Recovery(); r.Lost() {
		t.Fatalf("reopen after close: recovery %+v", r)
	}
	sameRecs(t, "after close", readAll(t, l, 0), want)
}

// A failed preallocation (a full disk) fails nothing: the append is
// acknowledged and the segment goes on without zeros ahead.
func TestPreallocateFailure(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default, nil)
	st := openTestStore(t, dir, func(o *StoreOptions) { o.FS = efs })
	defer st.Close()
	l := openTestLog(t, st, "p", Options{SegmentBytes: 64 << 10, Preallocate: 8 << 10})
	mustAppend(t, l, makeBatch(t, "a", 1, 100, 1)) // preallocates
	for i := range 60 {
		// Fail every other write: the first of an append (its batch)
		// succeeds, the second (zeros) fails.
		writes := 0
		efs.Set(func(op vfs.Op, name string) error {
			if op == vfs.OpWrite {
				writes++
				if writes%2 == 0 {
					return vfs.ErrInjected
				}
			}
			return nil
		})
		mustAppend(t, l, makeBatch(t, fmt.Sprintf("b%d", i), 2, 200, int64(10+i)))
		efs.Set(nil)
	}
	if got := testutil.ToFloat64(st.m.preallocFailures); got < 1 {
		t.Fatalf("%v preallocation failures counted; want at least 1", got)
	}
	if n := l.Segments(); n != 1 {
		t.Fatalf("%d segments; the test expects no roll (a roll writes a header too)", n)
	}
	if n := len(readAll(t, l, 0)); n != 121 {
		t.Fatalf("read %d records, want 121", n)
	}
}
