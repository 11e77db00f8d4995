package saga

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/event"
)

// BenchmarkSagas measures four-step sagas completed per second end to
// end: start requests into the inbox, every step's command through a
// participant (an exactly-once subscriber in this process) and its reply
// back, each state change durable in the state topic (broker durability
// "always": fsync before acknowledging).
func BenchmarkSagas(b *testing.B) {
	brokers := startServer(b)
	createTopics(b, brokers, 8, testTopics...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var never atomic.Bool
	l := newLedger()
	for topic, d := range testDecide(&never) {
		l.participant(b, ctx, brokers, topic, d)
	}
	def := orderDef(30 * time.Second)
	e, err := Start(ctx, Config{Brokers: brokers, Partitions: 8, Definitions: []*Definition{def}, Logger: testLogger(),
		SessionTimeout: time.Second, RebalanceTimeout: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	pub, err := client.NewPublisher(brokers)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	def.Version = 1
	run := 0
	b.ResetTimer()
	for i := 0; i < b.N; {
		// NB: rounds of at most 5,000 keep the measurement to steady
		// state rather than one huge backlog.
		n := min(b.N-i, 5000)
		run++
		evs := make([]*event.Event, n)
		for j := range evs {
			evs[j] = StartRequest(def, fmt.Sprintf("ok-%d-%d", run, j), nil)
		}
		base := e.Counts()[StatusCompleted]
		for k := 0; k < n; k += 1000 {
			if err := pub.Publish(ctx, e.Config().Inbox, evs[k:min(k+1000, n)]...); err != nil {
				b.Fatal(err)
			}
		}
		deadline := time.Now().Add(2 * time.Minute)
		for e.Counts()[StatusCompleted] < base+n {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d sagas completed", e.Counts()[StatusCompleted]-base, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		i += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sagas/s")
}

// BenchmarkLookup measures saga state lookup by id through the HTTP API
// (GET /v1/sagas/{id} over loopback) with 10,000 instances in the view,
// and reports the p50 and p99 latency.
func BenchmarkLookup(b *testing.B) {
	brokers := startServer(b)
	createTopics(b, brokers, 8, testTopics...)
	ctx := context.Background()
	def := orderDef(time.Hour)
	e, err := Start(ctx, Config{Brokers: brokers, Partitions: 8, Definitions: []*Definition{def}, Logger: testLogger(),
		SessionTimeout: time.Second, RebalanceTimeout: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	pub, err := client.NewPublisher(brokers)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	def.Version = 1
	const n = 10000
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = StartRequest(def, fmt.Sprintf("look-%d", i), []byte(`{"amount":10}`))
	}
	for k := 0; k < n; k += 1000 {
		if err := pub.Publish(ctx, e.Config().Inbox, evs[k:k+1000]...); err != nil {
			b.Fatal(err)
		}
	}
	waitUntil(b, "10,000 instances in the view", 2*time.Minute, func() bool { return e.Counts()[StatusRunning] >= n })
	mux := http.NewServeMux()
	e.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	hc := srv.Client()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		resp, err := hc.Get(fmt.Sprintf("%s/v1/sagas/look-%d", srv.URL, (i*7919)%n))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
