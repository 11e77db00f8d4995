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
	"slices"
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
// middleware, handler, outputs handed to the producer) with and without
// WithIdempotency, in the default at-least-once mode and in exactly-once,
// for a no-op handler and for a transform that publishes one output per
// input. Each b.N iteration runs both, without then with, on fresh
// clusters, so load drifts hit both alike; the p99s reported are the
// medians over iterations and overhead-% compares them. Floor: ≤ 20%.
func BenchmarkIdempotencyOverhead(b *testing.B) {
	n := benchN(50_000)
	transform := func(ctx context.Context, e *event.Event) error {
		return Publish(ctx, "out", &event.Event{Source: "/bench/transform", Type: "bench.out.v1",
			PartitionKey: e.PartitionKey, Data: e.Data})
	}
	for _, c := range []struct {
		name    string
		exactly bool
		h       HandlerFunc
		opts    []Option
	}{
		{"at-least-once/noop", false, noop, nil},
		{"at-least-once/transform", false, transform, nil},
		{"exactly-once/noop", true, noop, []Option{WithMaxPollRecords(1000)}},
		{"exactly-once/transform", true, transform, []Option{WithMaxPollRecords(1000)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var without, with []benchRun
			var p99w, p99i []float64
			for range b.N {
				r := runSubscriber(b, n, c.exactly, c.h, c.opts...)
				without = append(without, r)
				p99w = append(p99w, float64(histQuantile(r.latency, 0.99).Nanoseconds())/1e3)
				r = runSubscriber(b, n, c.exactly, c.h, append([]Option{WithIdempotency(24 * time.Hour)}, c.opts...)...)
				with = append(with, r)
				p99i = append(p99i, float64(histQuantile(r.latency, 0.99).Nanoseconds())/1e3)
				b.Logf("p99 without %.1f µs (%.0f events/s), with %.1f µs (%.0f events/s)",
					p99w[len(p99w)-1], float64(n)/without[len(without)-1].total.Seconds(),
					p99i[len(p99i)-1], float64(n)/r.total.Seconds())
			}
			mw, mi := median(p99w), median(p99i)
			b.ReportMetric(mw, "p99-without-µs")
			b.ReportMetric(mi, "p99-with-µs")
			b.ReportMetric(100*(mi/mw-1), "overhead-%")
			b.ReportMetric(rate(n, without), "events/s-without")
			b.ReportMetric(rate(n, with), "events/s-with")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rate(n int, runs []benchRun) float64 {
	var total time.Duration
	for _, r := range runs {
		total += r.total
	}
	return float64(n) * float64(len(runs)) / total.Seconds()
}

// BenchmarkHandlerPathIdempotency measures the subscriber's per-event path
// (handleOne: decode, context, middleware, handler, outputs handed to the
// producer) with and without the processed-id store, in one process with
// no broker: a writer that acknowledges at once, 1 KiB events with unique
// ids over 8 partitions, batches of 500 handled as the subscriber handles
// them (handleBatch: a goroutine per partition) and settled as it settles
// them (marks written and committed, outside the per-event path). Batches
// alternate between the two pipelines, so load on a shared machine falls
// on both alike. Reports each one's p50 and p99 (fine histogram buckets)
// and the p99 overhead. Floor: ≤ 20%.
func BenchmarkHandlerPathIdempotency(b *testing.B) {
	n := benchN(400_000)
	data := make([]byte, 1024)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		r, err := toRecord("in", &event.Event{ID: "e" + strconv.Itoa(i), Source: "/bench", Type: "bench.v1",
			PartitionKey: "k" + strconv.Itoa(i%64), Data: data, Time: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		r.Partition, r.Offset = int32(i%benchPartitions), int64(i/benchPartitions)
		recs[i] = r
	}
	type pipeline struct {
		s   *Subscriber
		h   HandlerFunc
		lat *prometheus.HistogramVec
	}
	lats := []*prometheus.HistogramVec{nil, nil}
	mk := func(idem bool) pipeline {
		m := NewMetrics(nil)
		i := 0
		if idem {
			i = 1
		}
		if lats[i] == nil {
			lats[i] = fineLatency(m)
		}
		m.latency = lats[i]
		s := &Subscriber{cfg: newConfig([]Option{WithLogger(discard())}), group: "bench",
			ev: &env{metrics: m, logger: discard()}}
		var mws []Middleware
		if idem {
			st := &topicStore{topic: DefaultProcessedTopic, group: "bench", ttl: 24 * time.Hour, nparts: 16,
				now: time.Now, logger: discard(), parts: make([]atomic.Pointer[procPart], 16)}
			for p := range int32(16) {
				c := st.clock()
				st.part(p).table.Store(newIDTable(0, c.at(time.Now().UnixMilli())-c.live))
			}
			mws = append(mws, Idempotent(st))
			s.idStore = st
		}
		return pipeline{s: s, h: Chain(attempt(s.countFailures(noop)), mws...), lat: m.latency}
	}
	w := &writer{
		produce: func(_ context.Context, r *kgo.Record, p func(*kgo.Record, error)) { p(r, nil) },
		flush:   func(context.Context) error { return nil },
	}
	ctx := context.Background()
	const batch = 500
	var pls []pipeline
	for range b.N {
		pls = []pipeline{mk(false), mk(true)} // a fresh store: every id is new
		for i := 0; i < n; i += batch {
			for k := range pls {
				pl := pls[(k+i/batch)%2] // alternate which goes first
				parts := make([][]*kgo.Record, benchPartitions)
				for _, r := range recs[i:min(i+batch, n)] {
					parts[r.Partition] = append(parts[r.Partition], r)
				}
				prs := pl.s.handleBatch(ctx, parts, pl.h, w)
				for _, pr := range prs {
					if pr.failedAt != nil {
						b.Fatal("handler failed")
					}
				}
				if _, err := w.settle(ctx, prs); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	p99w, p99i := histQuantile(lats[0], 0.99), histQuantile(lats[1], 0.99)
	b.ReportMetric(float64(histQuantile(lats[0], 0.50).Nanoseconds())/1e3, "p50-without-µs")
	b.ReportMetric(float64(histQuantile(lats[1], 0.50).Nanoseconds())/1e3, "p50-with-µs")
	b.ReportMetric(float64(p99w.Nanoseconds())/1e3, "p99-without-µs")
	b.ReportMetric(float64(p99i.Nanoseconds())/1e3, "p99-with-µs")
	b.ReportMetric(100*(float64(p99i)/float64(p99w)-1), "overhead-%")
	b.ReportMetric(0, "ns/op")
}
