package commitlog

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
)

// TestReadSpanMatchesRead checks that ReadSpan finds exactly the bytes Read
// returns, for every offset, many byte limits, with and without an offset
// bound, across segments and index entries.
func TestReadSpanMatchesRead(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	l := openTestLog(t, st, "p", Options{SegmentBytes: 96 << 10, IndexIntervalBytes: 4096, Durability: Durability{Mode: SyncUnsafeNone}})
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		n, size := 1+rng.IntN(8), 20+rng.IntN(2000)
		if i%25 == 0 {
			n, size = 30, 1000 // larger than the index interval
		}
		if _, err := l.Append(ctx, makeBatch(t, "v", n, size, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if l.Segments() < 3 {
		t.Fatalf("%d segments; the test wants several", l.Segments())
	}
	hwm := l.HighWatermark()
	spans := 0
	for off := int64(0); off <= hwm; off += 1 + int64(rng.IntN(3)) {
		for _, maxBytes := range []int{1, 100, 5000, 16 << 10, 40 << 10, 1 << 20} {
			before := int64(math.MaxInt64)
			if rng.IntN(3) == 0 {
				before = off + int64(rng.IntN(200))
			}
			want, err := l.Read(ctx, off, maxBytes, nil)
			if err != nil {
				t.Fatalf("Read(%d, %d): %v", off, maxBytes, err)
			}
			// Read has no offset bound; cut as FetchCommitted does (which
			// reads nothing from the bound on).
			want = cutBefore(want, before)
			if off >= before {
				want = want[:0]
			}
			sp, err := l.ReadSpan(ctx, off, maxBytes, before)
			if err != nil {
				t.Fatalf("ReadSpan(%d, %d, %d): %v", off, maxBytes, before, err)
			}
			var got []byte
			if sp.Len > 0 {
				spans++
				got, err = sp.AppendTo(nil)
				sp.Release()
				if err != nil {
					t.Fatal(err)
				}
				if last := lastOffset(t, got); sp.LastOffset < last || sp.LastOffset >= off+int64(1<<20) {
					t.Fatalf("span at %d: LastOffset %d, last batch ends at %d", off, sp.LastOffset, last)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("offset %d, maxBytes %d, before %d: span of %d bytes at %d, Read returned %d bytes", off, maxBytes, before, len(got), sp.Pos, len(want))
			}
		}
	}
	if spans == 0 {
		t.Fatal("no span had bytes")
	}
	if _, err := l.ReadSpan(ctx, hwm+1, 100, math.MaxInt64); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("past the end: %v", err)
	}
}

// TestReadSpanSurvivesRetention takes spans of the oldest segments, lets
// retention delete those segments and compaction replace others, and
// checks that every span still reads the bytes it stood for: a fetch in
// flight sends what it found even if the file is removed meanwhile.
func TestReadSpanSurvivesRetention(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	l := openTestLog(t, st, "p", Options{SegmentBytes: 32 << 10, RetentionBytes: 64 << 10, Durability: Durability{Mode: SyncAlways}})
	for i := 0; i < 60; i++ {
		if _, err := l.Append(ctx, makeBatch(t, "r", 4, 1000, time.Now().UnixMilli())); err != nil {
			t.Fatal(err)
		}
	}
	type held struct {
		sp   FileSpan
		want []byte
	}
	var spans []held
	for off := l.StartOffset(); off < l.HighWatermark(); {
		want, err := l.Read(ctx, off, 20<<10, nil)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := l.ReadSpan(ctx, off, 20<<10, math.MaxInt64)
		if err != nil || sp.Len != int64(len(want)) {
			t.Fatalf("span at %d: %d bytes, %v; Read gave %d", off, sp.Len, err, len(want))
		}
		spans = append(spans, held{sp, want})
		off = lastOffset(t, want) + 1
	}
	segsBefore, startBefore := l.Segments(), l.StartOffset()
	rep, err := l.Clean(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if l.StartOffset() == startBefore || l.Segments() >= segsBefore {
		t.Fatalf("retention removed nothing (%+v): the test proves nothing", rep)
	}
	// The removed segments' files are gone from the directory.
	if _, err := l.Read(ctx, startBefore, 100, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read of a removed offset: %v", err)
	}
	for i, h := range spans {
		got, err := h.sp.AppendTo(nil)
		h.sp.Release()
		if err != nil || !bytes.Equal(got, h.want) {
			t.Fatalf("span %d after retention: %d bytes, %v; want the %d bytes found before", i, len(got), err, len(h.want))
		}
	}
	// Closing with spans released leaves no file open.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := st.cache.open(); n != 0 {
		t.Fatalf("%d segment files still open after Close", n)
	}
}

// cutBefore keeps the batches of b whose base offset is below before.
func cutBefore(b []byte, before int64) []byte {
	n := 0
	for n < len(b) {
		h, err := batch.ParseHeader(b[n:])
		if err != nil || h.BaseOffset >= before {
			break
		}
		n += h.Size()
	}
	return b[:n]
}

func lastOffset(t testing.TB, b []byte) int64 {
	t.Helper()
	last := int64(-1)
	for n := 0; n < len(b); {
		h, err := batch.ParseHeader(b[n:])
		if err != nil {
			t.Fatal(err)
		}
		last = h.LastOffset()
		n += h.Size()
	}
	return last
}
