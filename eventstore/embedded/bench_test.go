package embedded

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/eventstore"
)

// BenchmarkOpen measures the stream index rebuild on open: a scan of the
// whole log (there is no index file). b.N is unused beyond repeating the
// open; events/s is the rebuild rate.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("events=%d/streams=10000", n), func(b *testing.B) {
			dir := b.TempDir()
			s, err := Open(Config{Dir: dir, Durability: commitlog.Durability{Mode: commitlog.SyncUnsafeNone}})
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
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				s, err := Open(Config{Dir: dir})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(n)/time.Since(t0).Seconds(), "events/s")
				s.Close()
			}
		})
	}
}
