package stream

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// BenchmarkJobThroughput runs an exactly-once job (tumbling count and sum
// over 10,000 keys) from an input topic on an in-process Herald server to
// its output topic, and reports input events per second (floor: 200,000 on
// 2 cores). Each iteration consumes 200,000 fresh events.
func BenchmarkJobThroughput(b *testing.B) {
	brokers, cl := startServer(b, kgo.ProducerBatchMaxBytes(1<<20))
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	const n = 200_000
	var total time.Duration
	for it := 0; it < b.N; it++ {
		in := fmt.Sprintf("bench-in-%d", it)
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, in); err != nil {
			b.Fatal(err)
		}
		recs := make([]*kgo.Record, 0, n)
		for i := 0; i < n; i++ {
			e := event.New("/bench", "OrderCreated")
			e.ID = fmt.Sprint(i)
			e.Time = t0.Add(time.Duration(i) * time.Millisecond)
			e.Data = fmt.Appendf(nil, `{"user":"user-%d","total":%d}`, i%10000, i%100)
			r := toKgo(e)
			r.Topic, r.Partition = in, int32(i%2)
			recs = append(recs, r)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		j, err := NewJob(JobConfig{Name: fmt.Sprintf("bench-%d", it), Brokers: []string{brokers}, Input: in, Output: in + "-out",
			Processor:      tumblingCfg(),
			MaxPollRecords: 10000, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		jctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- j.Run(jctx) }()
		for {
			offs, err := adm.FetchOffsets(ctx, j.Group())
			if err == nil {
				sum := int64(0)
				offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
				if sum >= n {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		total += time.Since(start)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
}
