package commitlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
)

// Benchmarks of the commit log on the real filesystem (b.TempDir). They
// measure the engine, not the network: every appender holds one pre-encoded
// batch and appends it over and over. Append rewrites the batch's base offset
// in place, so each goroutine owns its buffer.
//
// The grid is size × writers × batch × durability. Every cell reports
// records/s and MB/s (of encoded batch bytes). No cell is skipped: the
// biggest (64 writers × 1000 × 1 KiB) moves 64 MiB per group commit, which
// takes well under a second per iteration.
//
// herald bench log runs the same grid for a fixed duration per cell and adds
// latency percentiles; docs/benchmarks.md has the numbers.

var benchSizes = []struct {
	name string
	n    int
}{{"100B", 100}, {"1KiB", 1 << 10}}

var benchDurabilities = []Durability{DurabilityAlways, DurabilityInterval(10 * time.Millisecond), DurabilityUnsafeNone}

// benchBatch encodes n records with size-byte values (no key), as a producer
// sends them.
func benchBatch(tb testing.TB, n, size int) []byte {
	tb.Helper()
	value := make([]byte, size)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	recs := make([]batch.Rec, n)
	ts := time.Now().UnixMilli()
	for i := range recs {
		recs[i] = batch.Rec{Timestamp: ts, Value: value}
	}
	b, err := batch.Encode(nil, batch.BuildOptions{}, recs)
	if err != nil {
		tb.Fatalf("encode: %v", err)
	}
	return b
}

// benchOptions are the log options the benchmarks use: defaults, except a
// MaxBatchBytes that admits 1000 × 1 KiB batches.
func benchOptions(d Durability) Options {
	return Options{Durability: d, MaxBatchBytes: 4 << 20}
}

func BenchmarkAppend(b *testing.B) {
	for _, size := range benchSizes {
		for _, writers := range []int{1, 8, 64} {
			for _, n := range []int{1, 64, 1000} {
				for _, d := range benchDurabilities {
					name := fmt.Sprintf("size=%s/writers=%d/batch=%d/sync=%s", size.name, writers, n, d)
					b.Run(name, func(b *testing.B) { benchAppend(b, size.n, writers, n, d) })
				}
			}
		}
	}
}

// benchAppend runs b.N appends of one n-record batch, shared out among
// writers goroutines.
func benchAppend(b *testing.B, size, writers, n int, d Durability) {
	st := openTestStore(b, b.TempDir())
	defer st.Close()
	l := openTestLog(b, st, "bench/0", benchOptions(d))
	proto := benchBatch(b, n, size)
	bufs := make([][]byte, writers)
	for i := range bufs {
		bufs[i] = append([]byte(nil), proto...)
	}
	ctx := context.Background()
	var (
		claimed atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		firstE  error
	)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func(buf []byte) {
			defer wg.Done()
			for claimed.Add(1) <= int64(b.N) {
				if _, err := l.Append(ctx, buf); err != nil {
					errOnce.Do(func() { firstE = err })
					return
				}
			}
		}(bufs[w])
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstE != nil {
		b.Fatalf("append: %v", firstE)
	}
	sec := elapsed.Seconds()
	b.ReportMetric(float64(b.N)*float64(n)/sec, "records/s")
	b.ReportMetric(float64(b.N)*float64(len(proto))/sec/1e6, "MB/s")
}

// BenchmarkRead reads a log of 100-byte records sequentially from the start
// (wrapping around at the end) and decodes every record with batch.Iter. One
// op is one record.
func BenchmarkRead(b *testing.B) {
	for _, n := range []int{64, 1000} {
		b.Run(fmt.Sprintf("size=100B/batch=%d", n), func(b *testing.B) {
			const total = 2 << 20 // records in the log
			st := openTestStore(b, b.TempDir())
			defer st.Close()
			l := openTestLog(b, st, "bench/0", benchOptions(DurabilityUnsafeNone))
			buf := benchBatch(b, n, 100)
			ctx := context.Background()
			for l.EndOffset() < total {
				if _, err := l.Append(ctx, buf); err != nil {
					b.Fatal(err)
				}
			}
			var (
				it    batch.Iter
				dst   = make([]byte, 0, 1<<20)
				off   int64
				read  int
				bytes int64
				sink  int
				err   error
			)
			b.ReportAllocs()
			b.ResetTimer()
			for read < b.N {
				if dst, err = l.Read(ctx, off, 1<<20, dst); err != nil {
					b.Fatal(err)
				}
				if len(dst) == 0 {
					off = 0
					continue
				}
				bytes += int64(len(dst))
				for p := 0; p < len(dst); {
					if err := it.Reset(dst[p:]); err != nil {
						b.Fatal(err)
					}
					for it.Next() {
						sink += len(it.Record().Value)
						read++
					}
					if err := it.Err(); err != nil {
						b.Fatal(err)
					}
					off = it.Header().LastOffset() + 1
					p += it.Header().Size()
				}
			}
			b.StopTimer()
			if sink == 0 {
				b.Fatal("decoded nothing")
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(read)/sec, "records/s")
			b.ReportMetric(float64(bytes)/sec/1e6, "MB/s")
		})
	}
}

// BenchmarkAppendLatency compares one appender's durable Append (1 KiB × 1
// record, SyncAlways) with a bare write+fdatasync of the same bytes to a
// plain file in the same directory. The two alternate, so both see the same
// disk weather. One op is one of each.
func BenchmarkAppendLatency(b *testing.B) {
	dir := b.TempDir()
	st := openTestStore(b, dir)
	defer st.Close()
	l := openTestLog(b, st, "bench/0", benchOptions(DurabilityAlways))
	buf := benchBatch(b, 1, 1<<10)
	f, err := os.Create(filepath.Join(dir, "bare"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	appendLat := make([]time.Duration, 0, b.N)
	bareLat := make([]time.Duration, 0, b.N)
	var pos int64
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := l.Append(ctx, buf); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := f.WriteAt(buf, pos); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		pos += int64(len(buf))
		appendLat = append(appendLat, t1.Sub(t0))
		bareLat = append(bareLat, t2.Sub(t1))
	}
	b.StopTimer()
	ap50, ap99 := percentiles(appendLat)
	bp50, bp99 := percentiles(bareLat)
	b.ReportMetric(float64(ap50.Microseconds()), "append-p50-µs")
	b.ReportMetric(float64(ap99.Microseconds()), "append-p99-µs")
	b.ReportMetric(float64(bp50.Microseconds()), "fsync-p50-µs")
	b.ReportMetric(float64(bp99.Microseconds()), "fsync-p99-µs")
	b.ReportMetric(float64(ap99)/float64(max(bp99, 1)), "p99-ratio")
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)*50/100], d[min(len(d)-1, len(d)*99/100)]
}

// TestIndexMemoryBound fills a log with 256 MiB of 16 × 1 KiB batches
// (each just over the default 16 KiB index interval, so nearly every batch
// gets an offset index entry: the densest an index gets) and checks that the
// in-memory indexes cost at most 1 MiB per GiB of log, counting the slices'
// capacity, both while the log is being written and after a reopen loads the
// index files.
func TestIndexMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 256 MiB")
	}
	const (
		logBytes = 256 << 20
		perGiB   = 1 << 20 // the bound: index bytes per GiB of log
	)
	dir := t.TempDir()
	o := Options{Durability: DurabilityUnsafeNone, SegmentBytes: 64 << 20}
	st := openTestStore(t, dir)
	l := openTestLog(t, st, "mem/0", o)
	buf := benchBatch(t, 16, 1<<10)
	ctx := context.Background()
	for l.Size() < logBytes {
		if _, err := l.Append(ctx, buf); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, l *Log) {
		t.Helper()
		var entries, bytes int64
		for _, s := range *l.segs.Load() {
			s.imu.RLock()
			if s.idx == nil {
				s.imu.RUnlock()
				t.Fatalf("%s: segment %d has no index loaded", when, s.base)
			}
			entries += int64(len(s.idx.ents) + len(s.tidx.ts))
			bytes += int64(cap(s.idx.ents))*8 + int64(cap(s.tidx.ts))*8 + int64(cap(s.tidx.rel))*4
			s.imu.RUnlock()
		}
		size := l.Size()
		got := float64(bytes) / (float64(size) / (1 << 30))
		t.Logf("%s: %d segments, %d MiB of log, %d index entries, %d index bytes = %.0f KiB per GiB", when, l.Segments(), size>>20, entries, bytes, got/1024)
		if got > perGiB {
			t.Errorf("%s: index memory %.0f KiB per GiB of log, want at most %d KiB", when, got/1024, perGiB>>10)
		}
	}
	check("appended", l)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openTestStore(t, dir)
	defer st.Close()
	l = openTestLog(t, st, "mem/0", o)
	// Sealed segments load their indexes on first use; read one batch of each.
	for _, s := range *l.segs.Load() {
		if _, err := l.Read(ctx, s.base, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	check("reopened", l)
}
