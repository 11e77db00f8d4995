package client

// SDK throughput and latency floors, against an in-process Herald (and
// kfake with HERALD_BENCH_BACKEND=kfake). One b.N iteration runs a fresh
// cluster with N pre-published 1 KiB CloudEvents (HERALD_BENCH_N, default
// per benchmark); run with -benchtime=1x and -count for repeats:
//
//	go test -run '^$' -bench 'Subscriber|Idempotency' -benchtime=1x -count=3 ./client/

import (
	"context"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

const benchPartitions = 8

func benchN(def int) int {
	if s := os.Getenv("HERALD_BENCH_N"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return def
}

func benchBackend(b *testing.B) backend {
	if os.Getenv("HERALD_BENCH_BACKEND") == "kfake" {
		return kfakeBackend(b)
	}
	return heraldBackend(b)
}

// benchPublish pre-publishes n CloudEvents with 1 KiB of data over 64 keys.
func benchPublish(b *testing.B, be backend, topic string, n int) {
	p, err := NewPublisher(be.brokers)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	data := make([]byte, 1024)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	ctx := context.Background()
	var failed atomic.Pointer[error]
	for i := range n {
		e := &event.Event{ID: "e" + strconv.Itoa(i), Source: "/bench", Type: "bench.v1",
			PartitionKey: "k" + strconv.Itoa(i%64), Data: data}
		p.PublishAsync(ctx, topic, e, func(err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if e := failed.Load(); e != nil {
		b.Fatal(*e)
	}
}

// waitCommitted waits until group's committed offsets on topic sum to n.
func waitCommitted(b *testing.B, be backend, group, topic string, n int, timeout time.Duration) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(be.brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		os, err := adm.FetchOffsets(ctx, group)
		cancel()
		if err == nil {
			var sum int64
			os.Each(func(o kadm.OffsetResponse) {
				if o.Topic == topic && o.Err == nil {
					sum += o.At
				}
			})
			if sum >= int64(n) {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.Fatalf("group %s did not commit %d offsets on %s within %s", group, n, topic, timeout)
}

// fineLatency replaces m's handler histogram with fine buckets (1µs..10s,
// ~5% apart) so a p99 can be read from it.
func fineLatency(m *Metrics) *prometheus.HistogramVec {
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_client_handler_seconds",
		Buckets: prometheus.ExponentialBucketsRange(1e-6, 10, 330)}, []string{"group", "topic"})
	return m.latency
}

// histQuantile returns the upper bound of the bucket holding quantile q.
func histQuantile(h *prometheus.HistogramVec, q float64) time.Duration {
	ch := make(chan prometheus.Metric, 16)
	go func() { h.Collect(ch); close(ch) }()
	var buckets []*dto.Bucket
	var total uint64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			panic(err)
		}
		hs := d.Histogram
		total += hs.GetSampleCount()
		if buckets == nil {
			for _, bk := range hs.Bucket {
				buckets = append(buckets, &dto.Bucket{UpperBound: bk.UpperBound, CumulativeCount: new(uint64)})
			}
		}
		for i, bk := range hs.Bucket {
			*buckets[i].CumulativeCount += bk.GetCumulativeCount()
		}
	}
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	for _, bk := range buckets {
		if bk.GetCumulativeCount() >= want {
			return time.Duration(bk.GetUpperBound() * float64(time.Second))
		}
	}
	return time.Duration(math.Inf(1))
}

type benchRun struct {
	total   time.Duration // Run start until all N handled and committed
	steady  time.Duration // first event handled until all N committed
	latency *prometheus.HistogramVec
}

// runSubscriber pre-publishes n events to "in", runs a subscriber with h
// and opts until the group committed all n, and returns the timings.
func runSubscriber(b *testing.B, n int, exactly bool, h HandlerFunc, opts ...Option) benchRun {
	b.StopTimer()
	be := benchBackend(b)
	createTopics(b, be, benchPartitions, "in", "out")
	t0 := time.Now()
	benchPublish(b, be, "in", n)
	b.Logf("%s: pre-published %d events in %s", be.name, n, time.Since(t0).Round(time.Millisecond))

	m := NewMetrics(nil)
	lat := fineLatency(m)
	var handled atomic.Int64
	var first atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	wrapped := func(ctx context.Context, e *event.Event) error {
		if err := h(ctx, e); err != nil {
			return err
		}
		first.CompareAndSwap(0, time.Now().UnixNano())
		if handled.Add(1) >= int64(n) {
			once.Do(func() { close(done) })
		}
		return nil
	}
	opts = append([]Option{WithMetrics(m), WithLogger(discard())}, opts...)
	if exactly {
		opts = append(opts, WithDeliveryMode(ExactlyOnce))
	}
	group := "bench-" + event.NewID()
	sub, err := NewSubscriber(be.brokers, group, []string{"in"}, wrapped, opts...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() { errc <- sub.Run(ctx) }()
	select {
	case <-done:
	case err := <-errc:
		b.Fatalf("Run returned early: %v", err)
	case <-time.After(120 * time.Second):
		b.Fatalf("handled only %d of %d events in 120s", handled.Load(), n)
	}
	waitCommitted(b, be, group, "in", n, 60*time.Second)
	end := time.Now()
	b.StopTimer()
	sub.Close()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return benchRun{total: end.Sub(start), steady: end.Sub(time.Unix(0, first.Load())), latency: lat}
}

func report(b *testing.B, n int, runs []benchRun) {
	var total, steady time.Duration
	for _, r := range runs {
		total += r.total
		steady += r.steady
	}
	k := float64(len(runs))
	b.ReportMetric(float64(n)*k/total.Seconds(), "events/s")
	b.ReportMetric(float64(n)*k/steady.Seconds(), "steady-events/s")
	b.ReportMetric(float64(histQuantile(runs[len(runs)-1].latency, 0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(histQuantile(runs[len(runs)-1].latency, 0.50).Microseconds()), "p50-µs")
	b.ReportMetric(0, "ns/op")
}

func noop(context.Context, *event.Event) error { return nil }

// BenchmarkSubscriberAtLeastOnce: default mode, no-op handler. Floor:
// 200,000 events/s from Run start until all N are handled and committed.
func BenchmarkSubscriberAtLeastOnce(b *testing.B) {
	n := benchN(1_000_000)
	var runs []benchRun
	for range b.N {
		runs = append(runs, runSubscriber(b, n, false, noop))
	}
	report(b, n, runs)
}

// BenchmarkSubscriberExactlyOnce: consume-transform-produce, one output per
// input via Publish, one transaction per poll of up to 1,000 records. Floor:
// 50,000 events/s.
func BenchmarkSubscriberExactlyOnce(b *testing.B) {
	n := benchN(400_000)
	h := func(ctx context.Context, e *event.Event) error {
		return Publish(ctx, "out", &event.Event{Source: "/bench/transform", Type: "bench.out.v1",
			PartitionKey: e.PartitionKey, Data: e.Data})
	}
	var runs []benchRun
	for range b.N {
		runs = append(runs, runSubscriber(b, n, true, h, WithMaxPollRecords(1000)))
	}
	report(b, n, runs)
}

// BenchmarkIdempotencyOverhead: the handler path's p99 (the
// herald_client_handler_seconds histogram with fine buckets: decode,
// middleware, handler, outputs written) with and without WithIdempotency,
// in the default at-least-once mode and in exactly-once. Floor:
// with/without ≤ 1.20.
func BenchmarkIdempotencyOverhead(b *testing.B) {
	n := benchN(50_000)
	for _, c := range []struct {
		name    string
		exactly bool
		opts    []Option
	}{
		{"at-least-once/without", false, nil},
		{"at-least-once/with", false, []Option{WithIdempotency(24 * time.Hour)}},
		{"exactly-once/without", true, []Option{WithMaxPollRecords(1000)}},
		{"exactly-once/with", true, []Option{WithMaxPollRecords(1000), WithIdempotency(24 * time.Hour)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var runs []benchRun
			for range b.N {
				runs = append(runs, runSubscriber(b, n, c.exactly, noop, c.opts...))
			}
			report(b, n, runs)
		})
	}
}
