package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/server"
)

// backend is a Kafka-protocol cluster to test against.
type backend struct {
	name    string
	brokers []string
	txns    bool // supports transactions (ExactlyOnce)
}

func kfakeBackend(t testing.TB, opts ...kfake.Opt) backend {
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return backend{name: "kfake", brokers: c.ListenAddrs(), txns: true}
}

// heraldBackend starts Herald in-process on 127.0.0.1:0, wired as herald
// serve wires it, over a broker in a temporary directory.
func heraldBackend(t testing.TB) backend {
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: t.TempDir()},
		Groups: groups.Config{MinSessionTimeout: 100 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return backend{name: "herald", brokers: []string{srv.KafkaAddr()}, txns: true}
}

// backends are every cluster the tests run on.
func backends(t *testing.T) []func(testing.TB) backend {
	return []func(testing.TB) backend{func(tb testing.TB) backend { return kfakeBackend(tb) }, heraldBackend}
}

func createTopics(t testing.TB, b backend, partitions int32, topics ...string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, nil, topics...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// publishN publishes n events over keys k0..k(keys-1); event i has ID
// "e<i>" and data "<key>:<seq within key>".
func publishN(t testing.TB, b backend, topic string, n, keys int) {
	p, err := NewPublisher(b.brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	seq := make([]int, keys)
	var evs []*event.Event
	for i := range n {
		k := i % keys
		evs = append(evs, &event.Event{ID: "e" + strconv.Itoa(i), Source: "/test", Type: "test.v1",
			PartitionKey: "k" + strconv.Itoa(k), Data: fmt.Appendf(nil, "k%d:%d", k, seq[k])})
		seq[k]++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Publish(ctx, topic, evs...); err != nil {
		t.Fatal(err)
	}
}

// readAll reads topic from the start with read_committed until n records
// arrived or quiet passed with none new.
func readAll(t testing.TB, b backend, topic string, n int, quiet time.Duration) []*kgo.Record {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		fs := cl.PollFetches(ctx)
		cancel()
		got := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r); got++ })
		if got == 0 && len(out) >= n {
			return out
		}
		if got == 0 && n < 0 {
			return out
		}
	}
	if n < 0 {
		// Still growing (a processor is producing): callers poll again.
		return out
	}
	t.Fatalf("read %d records of %s, want %d", len(out), topic, n)
	return nil
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startSub(t testing.TB, s *Subscriber) (stop func()) {
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			s.Close()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestDelivery runs AtLeastOnce and AtMostOnce on every backend: every
// event is handled once, in key order, and its output is written.
func TestDelivery(t *testing.T) {
	for _, mk := range backends(t) {
		for _, mode := range []DeliveryMode{AtLeastOnce, AtMostOnce} {
			b := mk(t)
			t.Run(b.name+"/"+mode.String(), func(t *testing.T) {
				t.Parallel()
				const n, keys = 300, 12
				createTopics(t, b, 4, "in", "out")
				publishN(t, b, "in", n, keys)
				var mu sync.Mutex
				next := map[string]int{}
				var orderErr error
				handled := atomic.Int64{}
				h := func(ctx context.Context, e *event.Event) error {
					var k string
					var seq int
					fmt.Sscanf(string(e.Data), "k%s", &k)
					kk, s, _ := cut(string(e.Data))
					k, seq = kk, s
					mu.Lock()
					if next[k] != seq && orderErr == nil {
						orderErr = fmt.Errorf("key %s: got seq %d, want %d", k, seq, next[k])
					}
					next[k] = seq + 1
					mu.Unlock()
					handled.Add(1)
					return Publish(ctx, "out", &event.Event{Source: "/t", Type: "out", PartitionKey: e.PartitionKey, Data: e.Data})
				}
				s, err := NewSubscriber(b.brokers, "g-"+mode.String(), []string{"in"}, h,
					WithDeliveryMode(mode), WithLogger(testLogger()), WithMiddleware(Correlate()))
				if err != nil {
					t.Fatal(err)
				}
				stop := startSub(t, s)
				waitFor(t, 20*time.Second, "all handled", func() bool { return handled.Load() >= n })
				stop()
				if orderErr != nil {
					t.Fatal(orderErr)
				}
				if got := handled.Load(); got != n {
					t.Fatalf("handled %d, want %d", got, n)
				}
				out := readAll(t, b, "out", n, 300*time.Millisecond)
				if len(out) != n {
					t.Fatalf("%d outputs, want %d", len(out), n)
				}
				if cid := headers(out[0])["ce_causationid"]; cid == "" || headers(out[0])["ce_correlationid"] != cid {
					t.Fatalf("output lacks causation: %v", headers(out[0]))
				}
				assertCommitted(t, b, "g-"+mode.String(), "in", n)
			})
		}
	}
}

func cut(s string) (string, int, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			n, err := strconv.Atoi(s[i+1:])
			return s[:i], n, err == nil
		}
	}
	return s, 0, false
}

// assertCommitted checks the group committed offsets summing to n on topic.
func assertCommitted(t testing.TB, b backend, group, topic string, n int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	os, err := kadm.NewClient(cl).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	os.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			sum += o.At
		}
	})
	if sum != n {
		t.Fatalf("group %s committed %d records of %s, want %d", group, sum, topic, n)
	}
}

// TestPoisonEvent: an event that always fails reaches the dead-letter topic
// after its retry budget, the events behind it in its partition are handled,
// and a malformed record goes straight to the DLQ.
func TestPoisonEvent(t *testing.T) {
	for _, mk := range backends(t) {
		b := mk(t)
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			createTopics(t, b, 1, "in", "dlq")
			p, err := NewPublisher(b.brokers)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			evs := []*event.Event{{ID: "ok1", Source: "/t", Type: "t"}, {ID: "poison", Source: "/t", Type: "t"}, {ID: "ok2", Source: "/t", Type: "t"}}
			if err := p.Publish(ctx, "in", evs[:2]...); err != nil {
				t.Fatal(err)
			}
			raw, _ := kgo.NewClient(kgo.SeedBrokers(b.brokers...))
			defer raw.Close()
			if err := raw.ProduceSync(ctx, &kgo.Record{Topic: "in", Value: []byte("not an event")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if err := p.Publish(ctx, "in", evs[2]); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var done []string
			var poisonStart time.Time
			attempts := 0
			h := func(ctx context.Context, e *event.Event) error {
				if e.ID == "poison" {
					if attempts++; attempts == 1 {
						poisonStart = time.Now()
					}
					if attempts == 2 {
						panic("poisoned")
					}
					return errBoom
				}
				mu.Lock()
				done = append(done, e.ID)
				mu.Unlock()
				return nil
			}
			budget := 3
			s, err := NewSubscriber(b.brokers, "g", []string{"in"}, h, WithDeadLetter("dlq"), WithLogger(testLogger()),
				WithMiddleware(Retry(RetryPolicy{MaxAttempts: budget, InitialBackoff: 20 * time.Millisecond}), Recover()))
			if err != nil {
				t.Fatal(err)
			}
			startSub(t, s)
			var ok2At time.Time
			waitFor(t, 10*time.Second, "ok2 handled", func() bool {
				mu.Lock()
				defer mu.Unlock()
				if len(done) == 2 {
					ok2At = time.Now()
					return true
				}
				return false
			})
			// 3 attempts, waits < 20ms + 40ms: the partition moved on soon after.
			if d := ok2At.Sub(poisonStart); d > 2*time.Second {
				t.Fatalf("poison blocked its partition for %v", d)
			}
			if attempts != budget {
				t.Fatalf("poison attempts %d, want %d", attempts, budget)
			}
			dl := readAll(t, b, "dlq", 2, 200*time.Millisecond)
			if len(dl) != 2 {
				t.Fatalf("%d dead letters", len(dl))
			}
			h0, h1 := headers(dl[0]), headers(dl[1])
			if h0["ce_id"] != "poison" || h0[HeaderDLQAttempts] != "3" || h0[HeaderDLQReason] != DLQReasonFailed ||
				h0[HeaderDLQTopic] != "in" || h0[HeaderDLQPartition] != "0" || h0[HeaderDLQOffset] != "1" ||
				h0[HeaderDLQError] != "gave up after 3 attempts: boom" || h0[HeaderDLQFirstFailure] == "" ||
				h0[HeaderDLQLastFailure] <= h0[HeaderDLQFirstFailure] {
				t.Fatalf("poison dead letter headers %v", h0)
			}
			if string(dl[1].Value) != "not an event" || h1[HeaderDLQReason] != DLQReasonMalformed ||
				h1[HeaderDLQAttempts] != "0" || h1[HeaderDLQOffset] != "2" {
				t.Fatalf("malformed dead letter %v", h1)
			}
		})
	}
}

// TestGracefulShutdown: Close while a handler runs lets it finish and
// commits it; a new member does not see it again.
func TestGracefulShutdown(t *testing.T) {
	for _, mk := range backends(t) {
		b := mk(t)
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			createTopics(t, b, 2, "in")
			publishN(t, b, "in", 2, 2)
			started, release := make(chan struct{}, 2), make(chan struct{})
			var handled atomic.Int64
			h := func(ctx context.Context, e *event.Event) error {
				started <- struct{}{}
				<-release
				handled.Add(1)
				return nil
			}
			s, err := NewSubscriber(b.brokers, "g", []string{"in"}, h, WithLogger(testLogger()))
			if err != nil {
				t.Fatal(err)
			}
			stop := startSub(t, s)
			<-started
			closed := make(chan struct{})
			go func() { stop(); close(closed) }()
			select {
			case <-closed:
				t.Fatal("Close returned with handlers in flight")
			case <-time.After(100 * time.Millisecond):
			}
			close(release)
			<-closed
			if handled.Load() == 0 {
				t.Fatal("the in-flight event was not finished")
			}
			assertCommitted(t, b, "g", "in", handled.Load())
		})
	}
}

// TestIdempotency: duplicates of an id are skipped, also by a restarted
// subscriber, which loads the processed ids from their topic.
func TestIdempotency(t *testing.T) {
	for _, mk := range backends(t) {
		b := mk(t)
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			createTopics(t, b, 2, "in")
			var handled atomic.Int64
			h := func(ctx context.Context, e *event.Event) error { handled.Add(1); return nil }
			pub, err := NewPublisher(b.brokers)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			dup := func() *event.Event { return &event.Event{ID: "same", Source: "/t", Type: "t", PartitionKey: "k"} }
			ctx := context.Background()
			pub.Publish(ctx, "in", dup(), dup(), &event.Event{ID: "other", Source: "/t", Type: "t", PartitionKey: "k"})
			s, err := NewSubscriber(b.brokers, "g", []string{"in"}, h, WithIdempotency(time.Hour), WithLogger(testLogger()),
				WithProcessedTopic("processed", 4))
			if err != nil {
				t.Fatal(err)
			}
			stop := startSub(t, s)
			waitFor(t, 10*time.Second, "2 handled", func() bool { return handled.Load() == 2 })
			stop()
			// A mark of the store's first layout (one id per record, value
			// = Unix milliseconds) is still honoured after an upgrade.
			legacy, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				t.Fatal(err)
			}
			for p := range int32(4) {
				r := &kgo.Record{Topic: "processed", Partition: p, Key: []byte("g\x00old"),
					Value: strconv.AppendInt(nil, time.Now().UnixMilli(), 10)}
				if err := legacy.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			legacy.Close()
			pub.Publish(ctx, "in", dup(), &event.Event{ID: "old", Source: "/t", Type: "t", PartitionKey: "k"},
				&event.Event{ID: "third", Source: "/t", Type: "t", PartitionKey: "k"})
			s2, _ := NewSubscriber(b.brokers, "g", []string{"in"}, h, WithIdempotency(time.Hour), WithLogger(testLogger()),
				WithProcessedTopic("processed", 4))
			stop2 := startSub(t, s2)
			waitFor(t, 10*time.Second, "third handled", func() bool { return handled.Load() >= 3 })
			stop2()
			if handled.Load() != 3 {
				t.Fatalf("handled %d, want 3", handled.Load())
			}
		})
	}
}

// TestExactlyOnce is a consume-transform-produce loop whose handler fails
// now and then (some failures outlast the retry budget, aborting the batch's
// transaction) while members join and leave; the outputs, read with
// read_committed, hold each input exactly once.
func TestExactlyOnce(t *testing.T) {
	for _, mk := range backends(t) {
		b := mk(t)
		if !b.txns {
			t.Fatalf("%s has no transactions", b.name)
		}
		t.Run(b.name, func(t *testing.T) { testExactlyOnce(t, b) })
	}
}

func testExactlyOnce(t *testing.T, b backend) {
	const n = 400
	createTopics(t, b, 4, "in", "out")
	publishN(t, b, "in", n, 16)
	var calls, fails atomic.Int64
	h := func(ctx context.Context, e *event.Event) error {
		calls.Add(1)
		if rand.IntN(10) == 0 {
			fails.Add(1)
			return errBoom
		}
		return Publish(ctx, "out", &event.Event{Source: "/t", Type: "out", PartitionKey: e.PartitionKey, Data: e.Data})
	}
	newSub := func(i int) *Subscriber {
		s, err := NewSubscriber(b.brokers, "eos", []string{"in"}, h, WithDeliveryMode(ExactlyOnce), WithLogger(testLogger()),
			WithTransactionalID("eos-"+strconv.Itoa(i)), WithMaxPollRecords(50), WithFailurePause(10*time.Millisecond),
			WithIdempotency(time.Hour), WithProcessedTopic("processed", 4),
			WithMiddleware(Correlate(), Retry(RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond})))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	stop1 := startSub(t, newSub(1))
	time.Sleep(300 * time.Millisecond)
	stop2 := startSub(t, newSub(2)) // a rebalance mid-stream
	time.Sleep(300 * time.Millisecond)
	stop1()
	out := readAll(t, b, "out", n, 500*time.Millisecond)
	stop2()
	seen := map[string]int{}
	for _, r := range out {
		seen[headers(r)["ce_causationid"]]++
	}
	var dups, lost []string
	for i := range n {
		id := "e" + strconv.Itoa(i)
		switch seen[id] {
		case 1:
		case 0:
			lost = append(lost, id)
		default:
			dups = append(dups, id)
		}
	}
	if len(dups) > 0 || len(lost) > 0 || len(out) != n {
		t.Fatalf("%d outputs for %d inputs: duplicated %v, lost %v", len(out), n, dups, lost)
	}
	if fails.Load() == 0 {
		t.Fatal("the handler never failed: the test tested nothing")
	}
	t.Logf("%d handler calls, %d failures", calls.Load(), fails.Load())
	assertCommitted(t, b, "eos", "in", n)
}

var _ = errors.New
