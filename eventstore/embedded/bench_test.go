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
// Close saved (scan=false), or by scanning the whole log (scan=true).
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("events=%d/streams=10000", n), func(b *testing.B) {
			dir := b.TempDir()
			s, err := Open(Config{Dir: dir, Logger: slog.New(slog.DiscardHandler), Durability: commitlog.Durability{Mode: commitlog.SyncUnsafeNone}})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			data := make([]byte, 512)
			evs := make([]eventstore.EventData, 100)
			for i := 0; i < n; i += len(evs) {
				for j := range evs {
					evs[j] = eventstore.EventData{ID: eventstore.NewID(), Type: "E", Data: data}
				}
				if _, err := s.Append(ctx, fmt.Sprintf("s-%d", i/len(evs)%10000), eventstore.Any, evs...); err != nil {
					b.Fatal(err)
				}
			}
			s.Close()
			for _, scan := range []bool{false, true} {
				b.Run(fmt.Sprintf("scan=%v", scan), func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						if scan {
							os.Remove(filepath.Join(dir, indexFile))
						}
						t0 := time.Now()
						s, err := Open(Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
						if err != nil {
							b.Fatal(err)
						}
						if s.indexLoaded == scan {
							b.Fatalf("index file loaded: %v", s.indexLoaded)
						}
						b.ReportMetric(time.Since(t0).Seconds()*1000, "open-ms")
						s.Close()
					}
				})
			}
		})
	}
}
