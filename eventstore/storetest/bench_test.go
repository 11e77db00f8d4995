package storetest_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/embedded"
	"github.com/heraldhq/herald/eventstore/pgstore/pgtest"
)

// The floors, both backends in one run:
//
//	go test -run '^$' -bench . -benchtime 20000x ./eventstore/storetest
//
// Events are 512 bytes; every append is durable (fsync / commit).

type backend struct {
	name string
	open func(b *testing.B) eventstore.Store
}

func openEmbedded(cfg embedded.Config) func(b *testing.B) eventstore.Store {
	return func(b *testing.B) eventstore.Store {
		cfg.Dir, cfg.Logger = b.TempDir(), quiet
		s, err := embedded.Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
}

// backends are the stores the read benchmarks compare; the append ones
// add embedded-no-prealloc.
func backends(b *testing.B) []backend {
	return []backend{
		{"embedded", openEmbedded(embedded.Config{})},
		{"postgres", func(b *testing.B) eventstore.Store { return pgtest.Open(b, "") }},
		// Not durable: shows the CPU cost of the embedded path without
		// the disk's fsync latency.
		{"embedded-unsafe-nosync", openEmbedded(embedded.Config{Durability: commitlog.Durability{Mode: commitlog.SyncUnsafeNone}})},
	}
}

var quiet = slog.New(slog.DiscardHandler)

var payload = []byte(fmt.Sprintf(`{"data":%q}`, make([]byte, 500))[:512])

// BenchmarkAppend: writers over 10,000 streams, each append with an exact
// expected version. writers=8 is the floor; the larger counts show
// what group commit does with more appends in flight: a writer waits for
// its append's fsync, so with W writers at most W appends share one fsync
// and appends/s <= W / fsync latency (reported as appends/fsync and
// fsync-ms for the embedded store).
func BenchmarkAppend(b *testing.B) {
	// Durable, without preallocated segment space: every fsync also
	// commits the file's size (the comparison for Config.Preallocate).
	noPrealloc := backend{"embedded-no-prealloc", openEmbedded(embedded.Config{Preallocate: -1})}
	for _, be := range append(backends(b), noPrealloc) {
		for _, per := range []int{1, 100} {
			for _, writers := range []int{8, 64, 256} {
				if writers > 8 && (per > 1 || be.name != "embedded") {
					continue
				}
				b.Run(fmt.Sprintf("backend=%s/events=%d/writers=%d/streams=10000", be.name, per, writers), func(b *testing.B) {
					benchAppend(b, be.open(b), per, writers)
				})
			}
		}
	}
}

func benchAppend(b *testing.B, s eventstore.Store, per, writers int) {
	const streams = 10000
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	es, _ := s.(*embedded.Store)
	var before embedded.SyncStats
	if es != nil {
		before = es.SyncStats()
	}
	b.SetBytes(int64(per * len(payload)))
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			versions := map[int]int64{}
			evs := make([]eventstore.EventData, per)
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				// Writer w owns streams w, w+writers, ...: no conflicts.
				k := int(i/int64(writers))%(streams/writers)*writers + w
				v, ok := versions[k]
				if !ok {
					v = -1
				}
				for j := range evs {
					evs[j] = eventstore.EventData{ID: eventstore.NewID(), Type: "Bench", Data: payload}
				}
				exp := eventstore.Exact(v)
				if v < 0 {
					exp = eventstore.NoStream
				}
				r, err := s.Append(ctx, fmt.Sprintf("bench-%d", k), exp, evs...)
				if err != nil {
					b.Error(err)
					return
				}
				versions[k] = r.Version
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/el, "appends/s")
	b.ReportMetric(float64(b.N*per)/el, "events/s")
	if es != nil {
		st := es.SyncStats()
		if rounds := st.Rounds - before.Rounds; rounds > 0 {
			b.ReportMetric(float64(b.N)/float64(rounds), "appends/fsync")
			b.ReportMetric((st.FsyncSeconds-before.FsyncSeconds)/float64(rounds)*1000, "fsync-ms")
		}
	}
}

// BenchmarkFsync is the disk's bare latency in the benchmarks' directory:
// a 512-byte write at the end of a file and fdatasync, as one durable
// append of one event costs at least. Run with BenchmarkAppend: the
// ceiling of appends/s with W writers is W / this.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := f.WriteAt(payload, int64(i*len(payload))); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkReadStream reads one 100-event stream; reports p99.
func BenchmarkReadStream(b *testing.B) {
	for _, be := range backends(b) {
		b.Run("backend="+be.name+"/events=100", func(b *testing.B) {
			s := be.open(b)
			ctx := context.Background()
			// 100 separate appends, interleaved with another stream, so
			// the events are not one contiguous batch.
			for i := 0; i < 100; i++ {
				for _, st := range []string{"read-1", "other-1"} {
					if _, err := s.Append(ctx, st, eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: payload}); err != nil {
						b.Fatal(err)
					}
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				evs, err := s.ReadStream(ctx, "read-1", eventstore.ReadStreamOptions{Max: 100})
				if err != nil || len(evs) != 100 {
					b.Fatalf("%d events, %v", len(evs), err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		})
	}
}

// BenchmarkCatchUpAll: a catch-up subscription over $all; b.N events.
func BenchmarkCatchUpAll(b *testing.B) {
	for _, be := range backends(b) {
		b.Run("backend="+be.name, func(b *testing.B) {
			s := be.open(b)
			ctx := context.Background()
			evs := make([]eventstore.EventData, 500)
			for done := 0; done < b.N; done += len(evs) {
				n := min(len(evs), b.N-done)
				for j := 0; j < n; j++ {
					evs[j] = eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: payload}
				}
				if _, err := s.Append(ctx, fmt.Sprintf("cu-%d", done/len(evs)%100), eventstore.Any, evs[:n]...); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			start := time.Now()
			sub, err := eventstore.Subscribe(s, eventstore.SubscribeOptions{PageSize: 2000})
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				if _, err := sub.Next(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
