package cep

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkCEPJobThroughput runs the fraud pattern as an exactly-once job
// from an input topic on an in-process Herald server to its output topic
// and reports input events per second. Each iteration consumes 200,000
// fresh logins of 10,000 users (one in four a success).
func BenchmarkCEPJobThroughput(b *testing.B) {
	srv := startServer(b, b.TempDir())
	defer srv.Close()
	brokers := srv.KafkaAddr()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	p, err := ParseJSON([]byte(fraudJSON("Fraud")))
	if err != nil {
		b.Fatal(err)
	}
	const n = 200_000
	var total time.Duration
	for it := 0; it < b.N; it++ {
		in := fmt.Sprintf("bench-in-%d", it)
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, in); err != nil {
			b.Fatal(err)
		}
		recs := make([]*kgo.Record, 0, n)
		for i := 0; i < n; i++ {
			ty := "LoginFailed"
			if i%4 == 3 {
				ty = "LoginSuccess"
			}
			r := login(fmt.Sprint(i), ty, fmt.Sprint("user-", (i*7919)%10000), time.Duration(i)*time.Millisecond)
			r.Topic, r.Partition = in, int32(i%2)
			recs = append(recs, r)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		j, err := NewJob(JobConfig{Name: fmt.Sprintf("bench-%d", it), Brokers: []string{brokers}, Pattern: p, Input: in, Output: in + "-out",
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
