package commitlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/internal/vfs"
)

var allModes = []Durability{DurabilityAlways, DurabilityInterval(2 * time.Millisecond), DurabilityUnsafeNone}

func TestAppendReadReopen(t *testing.T) {
	for _, d := range allModes {
		t.Run("sync="+d.String(), func(t *testing.T) {
			dir := t.TempDir()
			o := Options{Durability: d, SegmentBytes: 8 << 10, IndexIntervalBytes: 256}
			st := openTestStore(t, dir)
			l := openTestLog(t, st, "orders/0", o)
			var want []rec
			for i := 0; i < 100; i++ {
				n := 1 + i%7
				off := mustAppend(t, l, makeBatch(t, fmt.Sprintf("b%d", i), n, 50, int64(1000+i)))
				for j := 0; j < n; j++ {
					want = append(want, rec{off: off + int64(j), ts: int64(1000 + i), key: fmt.Sprintf("k%d", j), value: string(padValue(fmt.Sprintf("b%d-%d", i, j), 50))})
				}
			}
			if l.Segments() < 3 {
				t.Fatalf("want several segments with 8 KiB segments, got %d", l.Segments())
			}
			if got := int64(len(want)); l.HighWatermark() != got || l.EndOffset() != got {
				t.Fatalf("hwm %d, end %d, want %d", l.HighWatermark(), l.EndOffset(), got)
			}
			check := func(l *Log) {
				got := readAll(t, l, 0)
				if len(got) != len(want) {
					t.Fatalf("read %d records, want %d", len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("record %d: got %+v, want %+v", i, got[i], want[i])
					}
				}
				// Reading from the middle of a batch starts at that batch.
				for _, off := range []int64{1, 37, int64(len(want)) - 1} {
					if got := readAll(t, l, off); len(got) != len(want)-int(off) || got[0] != want[off] {
						t.Fatalf("read from %d: got %d records starting %+v", off, len(got), got[0])
					}
				}
			}
			check(l)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st = openTestStore(t, dir)
			defer st.Close()
			l = openTestLog(t, st, "orders/0", o)
			if r := l.Recovery(); r.Lost() {
				t.Fatalf("clean reopen lost data: %+v", r)
			}
			check(l)
			// Appends continue densely after reopen.
			if off := mustAppend(t, l, makeBatch(t, "after", 2, 10, 5000)); off != int64(len(want)) {
				t.Fatalf("append after reopen got offset %d, want %d", off, len(want))
			}
		})
	}
}

func TestReadBounds(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	l := openTestLog(t, st, "p", Options{})
	ctx := context.Background()
	b, err := l.Read(ctx, 0, 1000, nil)
	if err != nil || len(b) != 0 {
		t.Fatalf("read of empty log at 0: %d bytes, %v", len(b), err)
	}
	if _, err := l.Read(ctx, 1, 1000, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past hwm: %v, want ErrOffsetOutOfRange", err)
	}
	big := makeBatch(t, "x", 10, 1000, 1)
	mustAppend(t, l, big)
	mustAppend(t, l, makeBatch(t, "y", 1, 10, 2))
	// maxBytes smaller than the first batch still returns it whole.
	b, err = l.Read(ctx, 3, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := batch.ParseHeader(b); len(b) != h.Size() || h.BaseOffset != 0 || h.NumRecords != 10 {
		t.Fatalf("got %d bytes, header %+v; want the first batch whole", len(b), h)
	}
	// maxBytes covering both returns both.
	b, _ = l.Read(ctx, 0, 1<<20, nil)
	if h, _ := batch.ParseHeader(b); len(b) <= h.Size() {
		t.Fatalf("got %d bytes; want both batches", len(b))
	}
}

func TestBadInput(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	l := openTestLog(t, st, "p", Options{MaxBatchBytes: 4096})
	ctx := context.Background()
	mustAppend(t, l, makeBatch(t, "ok", 3, 10, 1))

	_, err := l.Append(ctx, makeBatch(t, "big", 10, 1000, 1))
	var tl *batch.TooLargeError
	if !errors.As(err, &tl) || !errors.Is(err, ErrTooLarge) || tl.Limit != 4096 {
		t.Fatalf("oversized batch: %v", err)
	}
	if !strings.Contains(err.Error(), "4096") || !strings.Contains(err.Error(), fmt.Sprint(tl.Size)) {
		t.Fatalf("error %q should name size and limit", err)
	}

	bad := makeBatch(t, "crc", 2, 10, 1)
	bad[len(bad)-1] ^= 0xff
	if _, err := l.Append(ctx, bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad CRC: %v, want ErrCorrupt", err)
	}
	short := makeBatch(t, "short", 2, 10, 1)
	if _, err := l.Append(ctx, short[:len(short)-3]); err == nil {
		t.Fatal("truncated batch accepted")
	}
	lying := makeBatch(t, "lie", 2, 10, 1)
	lying[8] = 0x7f // batchLength far beyond the buffer
	if _, err := l.Append(ctx, lying); err == nil {
		t.Fatal("batch with impossible length accepted")
	}
	if _, err := l.Append(ctx, nil); !errors.Is(err, ErrInvalidBatch) {
		t.Fatalf("empty append: %v", err)
	}
	// Two batches where the second is bad: nothing of either is stored.
	two := append(makeBatch(t, "good", 1, 10, 1), bad...)
	if _, err := l.Append(ctx, two); err == nil {
		t.Fatal("append with a bad second batch accepted")
	}
	if got := readAll(t, l, 0); len(got) != 3 || l.EndOffset() != 3 {
		t.Fatalf("after refusals: %d records, end %d; want the first 3 only", len(got), l.EndOffset())
	}
	l.Close()
	if _, err := l.Append(ctx, makeBatch(t, "late", 1, 10, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}
	if _, err := l.Read(ctx, 0, 100, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v, want ErrClosed", err)
	}
}

func TestWaitWakesOnAppend(t *testing.T) {
	for _, d := range allModes {
		t.Run("sync="+d.String(), func(t *testing.T) {
			st := openTestStore(t, t.TempDir())
			defer st.Close()
			l := openTestLog(t, st, "p", Options{Durability: d})
			ctx := context.Background()
			done := make(chan error, 1)
			go func() { done <- l.Wait(ctx, 0) }()
			select {
			case err := <-done:
				t.Fatalf("Wait returned before any append: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
			mustAppend(t, l, makeBatch(t, "w", 1, 10, 1))
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Wait did not wake")
			}
			tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			if err := l.Wait(tctx, 1); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait past hwm: %v, want deadline", err)
			}
			go func() { done <- l.Wait(ctx, 5) }()
			time.Sleep(10 * time.Millisecond)
			l.Close()
			if err := <-done; !errors.Is(err, ErrClosed) {
				t.Fatalf("Wait across Close: %v, want ErrClosed", err)
			}
		})
	}
}

func TestOffsetForTime(t *testing.T) {
	dir := t.TempDir()
	st := openTestStore(t, dir)
	l := openTestLog(t, st, "p", Options{SegmentBytes: 8 << 10, IndexIntervalBytes: 128})
	// Timestamps rise by 10 per batch, with one out-of-order batch.
	ts := []int64{}
	for i := 0; i < 200; i++ {
		t0 := int64(1000 + 10*i)
		if i == 50 {
			t0 = 500
		}
		mustAppend(t, l, makeBatch(t, "t", 1, 40, t0))
		ts = append(ts, t0)
	}
	first := func(target int64) int64 {
		for i, v := range ts {
			if v >= target {
				return int64(i)
			}
		}
		return int64(len(ts))
	}
	check := func(l *Log) {
		for _, target := range []int64{0, 500, 501, 1000, 1001, 1495, 1500, 1505, 2990, 2991, 1 << 40} {
			got, err := l.OffsetForTime(context.Background(), target)
			if err != nil {
				t.Fatal(err)
			}
			if want := first(target); got != want {
				t.Fatalf("OffsetForTime(%d) = %d, want %d", target, got, want)
			}
		}
	}
	check(l)
	st.Close()
	// After reopen, sealed segments use their persisted time indexes.
	st = openTestStore(t, dir)
	defer st.Close()
	check(openTestLog(t, st, "p", Options{SegmentBytes: 8 << 10, IndexIntervalBytes: 128}))
}

func TestConcurrentAppendersAndReaders(t *testing.T) {
	for _, d := range allModes {
		t.Run("sync="+d.String(), func(t *testing.T) {
			st := openTestStore(t, t.TempDir())
			defer st.Close()
			l := openTestLog(t, st, "p", Options{Durability: d, SegmentBytes: 64 << 10})
			const writers, per = 8, 60
			ctx := context.Background()
			var wg sync.WaitGroup
			offsets := make(chan int64, writers*per)
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						off, err := l.Append(ctx, makeBatch(t, fmt.Sprintf("w%d-%d", w, i), 3, 30, 1))
						if err != nil {
							t.Error(err)
							return
						}
						offsets <- off
					}
				}()
			}
			// A reader tails the log while writers run and must only ever see
			// dense offsets.
			readErr := make(chan error, 1)
			go func() {
				var it batch.Iter
				next := int64(0)
				for next < writers*per*3 {
					if err := l.Wait(ctx, next); err != nil {
						readErr <- err
						return
					}
					b, err := l.Read(ctx, next, 1<<20, nil)
					if err != nil {
						readErr <- err
						return
					}
					for p := 0; p < len(b); {
						h, _ := batch.ParseHeader(b[p:])
						it.Reset(b[p : p+h.Size()])
						for it.Next() {
							if it.Offset() != next {
								readErr <- fmt.Errorf("reader saw offset %d, want %d", it.Offset(), next)
								return
							}
							next++
						}
						p += h.Size()
					}
				}
				readErr <- nil
			}()
			wg.Wait()
			close(offsets)
			seen := map[int64]bool{}
			for off := range offsets {
				if off%3 != 0 || seen[off] {
					t.Fatalf("bad or duplicate base offset %d", off)
				}
				seen[off] = true
			}
			if err := <-readErr; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDirectoryLockAndFormat(t *testing.T) {
	dir := t.TempDir()
	st := openTestStore(t, dir)
	if _, err := OpenStore(dir, StoreOptions{Logger: quietLogger(t)}); !errors.Is(err, vfs.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	st.Close()
	if err := os.WriteFile(filepath.Join(dir, formatFile), []byte("herald-data-format 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenStore(dir, StoreOptions{Logger: quietLogger(t)})
	var fv *FormatVersionError
	if !errors.As(err, &fv) || !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("newer format: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "7") || !strings.Contains(msg, "[1]") {
		t.Fatalf("error %q should name both versions", msg)
	}
}

func TestOptionsValidate(t *testing.T) {
	o := Options{SegmentBytes: 10, MaxBatchBytes: 1, IndexIntervalBytes: 1, RetentionAge: -1}
	o.setDefaults()
	err := o.Validate()
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"segment bytes 10", "max batch bytes 1", "index interval", "negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for _, s := range []string{"always", "interval=5ms", "unsafe-none", "none", "memory"} {
		if _, err := ParseDurability(s); err != nil {
			t.Errorf("ParseDurability(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "sometimes", "interval=", "interval=-1s", "interval=fast"} {
		if _, err := ParseDurability(s); err == nil {
			t.Errorf("ParseDurability(%q) accepted", s)
		}
	}
}

func TestFsyncFailureFailsLog(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.Default, nil)
	dir := t.TempDir()
	st := openTestStore(t, dir, func(o *StoreOptions) { o.FS = efs })
	l := openTestLog(t, st, "p", Options{})
	mustAppend(t, l, makeBatch(t, "a", 2, 10, 1))
	efs.Set(func(op vfs.Op, name string) error {
		if op == vfs.OpSync && strings.HasSuffix(name, segSuffix) {
			return vfs.ErrInjected
		}
		return nil
	})
	if _, err := l.Append(context.Background(), makeBatch(t, "b", 2, 10, 1)); !errors.Is(err, ErrLogFailed) {
		t.Fatalf("append with failing fsync: %v, want ErrLogFailed", err)
	}
	efs.Set(nil)
	if _, err := l.Append(context.Background(), makeBatch(t, "c", 2, 10, 1)); !errors.Is(err, ErrLogFailed) {
		t.Fatalf("append after fsync failure: %v, want ErrLogFailed (sticky)", err)
	}
	// The acknowledged record stays readable; the unacknowledged one is not
	// visible in always mode.
	if got := readAll(t, l, 0); len(got) != 2 {
		t.Fatalf("read %d records after failure, want 2", len(got))
	}
	l.Close()
	st.Close()
	st = openTestStore(t, dir)
	defer st.Close()
	l = openTestLog(t, st, "p", Options{})
	if got := readAll(t, l, 0); len(got) < 2 || !strings.HasPrefix(got[0].value, "a-0") {
		t.Fatalf("after reopen: %+v", got)
	}
	mustAppend(t, l, makeBatch(t, "d", 1, 10, 1))
}

func TestWriteFailureLosesNothing(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.Default, nil)
	st := openTestStore(t, t.TempDir(), func(o *StoreOptions) { o.FS = efs })
	defer st.Close()
	l := openTestLog(t, st, "p", Options{})
	mustAppend(t, l, makeBatch(t, "a", 2, 10, 1))
	efs.Set(func(op vfs.Op, name string) error {
		if op == vfs.OpWrite && strings.HasSuffix(name, segSuffix) {
			return errors.New("no space left on device")
		}
		return nil
	})
	if _, err := l.Append(context.Background(), makeBatch(t, "b", 2, 10, 1)); err == nil {
		t.Fatal("append with failing write succeeded")
	}
	efs.Set(nil)
	// The half-written batch was cut away: the log continues densely.
	if off := mustAppend(t, l, makeBatch(t, "c", 2, 10, 1)); off != 2 {
		t.Fatalf("append after a failed write got offset %d, want 2", off)
	}
	got := readAll(t, l, 0)
	if len(got) != 4 || !strings.HasPrefix(got[2].value, "c-0") {
		t.Fatalf("got %+v", got)
	}
}

func TestOpenFilesBounded(t *testing.T) {
	st := openTestStore(t, t.TempDir(), func(o *StoreOptions) { o.MaxOpenFiles = 4 })
	defer st.Close()
	var logs []*Log
	for i := 0; i < 10; i++ {
		l := openTestLog(t, st, fmt.Sprintf("t/%d", i), Options{SegmentBytes: 4 << 10})
		for j := 0; j < 20; j++ {
			mustAppend(t, l, makeBatch(t, "x", 4, 100, 1))
		}
		logs = append(logs, l)
	}
	for _, l := range logs {
		if got := readAll(t, l, 0); len(got) != 80 {
			t.Fatalf("%s: %d records", l.Name(), len(got))
		}
	}
	if n := st.cache.open(); n > 4+1 {
		t.Fatalf("%d segment files open, bound is 4", n)
	}
}

func TestRecoveryScansOnlyTheTail(t *testing.T) {
	dir := t.TempDir()
	st := openTestStore(t, dir, func(o *StoreOptions) { o.CheckpointInterval = time.Hour })
	l := openTestLog(t, st, "p", Options{})
	for i := 0; i < 200; i++ {
		mustAppend(t, l, makeBatch(t, "x", 10, 100, 1))
	}
	if err := st.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	tail := 0
	for i := 0; i < 3; i++ {
		tail += len(makeBatch(t, "y", 10, 100, 1))
		mustAppend(t, l, makeBatch(t, "y", 10, 100, 1))
	}
	size := l.Size()
	abandon(st)
	st2 := openTestStore(t, dir)
	defer st2.Close()
	l2 := openTestLog(t, st2, "p", Options{})
	r := l2.Recovery()
	if r.Lost() {
		t.Fatalf("lost data: %+v", r)
	}
	if r.ScannedBytes > int64(tail)+int64(DefaultIndexIntervalBytes)+4096 || r.ScannedBytes >= size/2 {
		t.Fatalf("recovery scanned %d bytes of a %d-byte log; the unsynced tail was %d", r.ScannedBytes, size, tail)
	}
	if got := readAll(t, l2, 0); len(got) != 2030 {
		t.Fatalf("read %d records, want 2030", len(got))
	}
}
