package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/server"
)

// BenchmarkEndToEnd is the end-to-end floor: a Herald server
// started in-process (server.Start), an Engine on it as `herald serve`
// builds one, 1,000 rules (e2eRule: exact, prefix, numeric and
// anything-but) each delivering to one of 8 topics, and a franz-go
// producer publishing events to the default bus over the Kafka protocol
// while the engine runs. One op is one event: the clock stops when every
// delivery the events owe is in its target topic.
//
//	HERALD_BENCH=... go test -run XXX -bench EndToEnd -benchtime 100000x ./rules/
func BenchmarkEndToEnd(b *testing.B) {
	for _, dur := range []string{"interval=100ms", "always"} {
		b.Run("durability="+dur, func(b *testing.B) { benchEndToEnd(b, dur) })
	}
}

func benchEndToEnd(b *testing.B, dur string) {
	const nRules, outs = 1000, 8
	d, err := commitlog.ParseDurability(dur)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: b.TempDir(), Durability: d},
		Groups: groups.Config{MinSessionTimeout: 100 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	l, err := embedded.New(embedded.Config{Broker: srv.Broker, Groups: srv.Groups})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e, err := New(Config{Log: l, Logger: quietLogger(), BusPartitions: 4})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for o := 0; o < outs; o++ {
		if err := l.CreateTopic(ctx, fmt.Sprintf("e2e-out-%d", o), 2, nil); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < nRules; i++ {
		_, err := e.PutRule(ctx, Rule{Name: fmt.Sprintf("r%04d", i), EventPattern: json.RawMessage(e2eRule(i)),
			Targets: []Target{{ID: "out", Topic: fmt.Sprintf("e2e-out-%d", i%outs)}}}, true)
		if err != nil {
			b.Fatal(err)
		}
	}
	// Encode the events before the clock starts: the producer's cost is
	// not the engine's.
	n := b.N
	recs := make([]*kgo.Record, n)
	want := 0
	for k := 0; k < n; k++ {
		m, err := event.Encode(e2eEvent(k))
		if err != nil {
			b.Fatal(err)
		}
		r := &kgo.Record{Topic: DefaultBus, Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		recs[k] = r
		for i := 0; i < nRules; i++ {
			if e2eWant(i, k) {
				want++
			}
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr()), kgo.ProducerLinger(2*time.Millisecond),
		kgo.MaxBufferedRecords(50_000))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	count := func() int {
		total := 0
		for o := 0; o < outs; o++ {
			for p := int32(0); p < 2; p++ {
				_, end, err := l.Offsets(ctx, fmt.Sprintf("e2e-out-%d", o), p)
				if err != nil {
					b.Fatal(err)
				}
				total += int(end)
			}
		}
		return total
	}
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	var perr error
	var perrOnce sync.Once
	for _, r := range recs {
		wg.Add(1)
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				perrOnce.Do(func() { perr = err })
			}
			wg.Done()
		})
	}
	produced := make(chan time.Duration, 1)
	go func() { wg.Wait(); produced <- time.Since(start) }()
	deadline := time.Now().Add(5 * time.Minute)
	for count() < want {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d", count(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	b.Logf("%d events produced in %v, %d deliveries done in %v", n, <-produced, want, elapsed)
	if perr != nil {
		b.Fatal(perr)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(want)/elapsed.Seconds(), "deliveries/s")
	// On a shared machine wall time includes waiting for a core; the
	// process's CPU time (server, producer and engine) is what the work
	// costs.
	b.ReportMetric(float64(n)/cpu.Seconds(), "events/cpu-s")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
