package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/eventstore"
)

// BenchmarkOpen measures opening a store: from the index file a clean
// Close saved (index=clean); after a crash, from a save made when the
// store held 80% of its events, scanning the other 20% (index=tail); or by
// scanning the whole log (index=none).
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("events=%d/streams=10000", n), func(b *testing.B) {
			dir := b.TempDir()
			cfg := Config{Dir: dir, Logger: slog.New(slog.DiscardHandler), IndexCheckpointRecords: -1}
			fast := cfg
			fast.Durability = commitlog.Durability{Mode: commitlog.SyncUnsafeNone}
			s, err := Open(fast)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			data := make([]byte, 512)
			evs := make([]eventstore.EventData, 100)
			var older []byte
			for i := 0; i < n; i += len(evs) {
				if i == n*4/5 {
					if err := s.checkpointIndex(ctx); err != nil {
						b.Fatal(err)
					}
					if older, err = os.ReadFile(filepath.Join(dir, indexFile)); err != nil {
						b.Fatal(err)
					}
				}
				for j := range evs {
					evs[j] = eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: data}
				}
				if _, err := s.Append(ctx, fmt.Sprintf("s-%d", i/len(evs)%10000), eventstore.Any, evs...); err != nil {
					b.Fatal(err)
				}
			}
			s.Close()
			clean, err := os.ReadFile(filepath.Join(dir, indexFile))
			if err != nil {
				b.Fatal(err)
			}
			for _, mode := range []string{"clean", "tail", "none"} {
				b.Run("index="+mode, func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						path := filepath.Join(dir, indexFile)
						switch mode {
						case "clean":
							err = os.WriteFile(path, clean, 0o644)
						case "tail":
							err = os.WriteFile(path, older, 0o644)
						case "none":
							err = os.Remove(path)
						}
						if err != nil {
							b.Fatal(err)
						}
						t0 := time.Now()
						s, err := Open(cfg)
						if err != nil {
							b.Fatal(err)
						}
						if s.indexLoaded != (mode != "none") || (mode == "tail") != (s.indexScanned > 0) {
							b.Fatalf("index file loaded: %v, %d records scanned after it", s.indexLoaded, s.indexScanned)
						}
						b.ReportMetric(time.Since(t0).Seconds()*1000, "open-ms")
						s.Close()
					}
				})
			}
		})
	}
}

// BenchmarkIndexSave measures one save of the index (checkpointIndex) of a
// store of 1 million events in 10,000 streams: the copy under the writers'
// lock (writers-held-ms, the pause appends see), the encoding, and the
// atomic write with its fsyncs (save-ms, all of it).
func BenchmarkIndexSave(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(Config{Dir: dir, Logger: slog.New(slog.DiscardHandler), IndexCheckpointRecords: -1,
		Durability: commitlog.Durability{Mode: commitlog.SyncUnsafeNone}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	evs := make([]eventstore.EventData, 100)
	for i := 0; i < 1_000_000; i += len(evs) {
		for j := range evs {
			evs[j] = eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: make([]byte, 64)}
		}
		if _, err := s.Append(ctx, fmt.Sprintf("s-%d", i/len(evs)%10000), eventstore.Any, evs...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A new position each time, or the save is skipped.
		if _, err := s.Append(ctx, "tick", eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "T"}); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := s.checkpointIndex(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds()*1000, "save-ms")
		b.ReportMetric(float64(s.ckHeld.Load())/1e6, "writers-held-ms")
	}
}
