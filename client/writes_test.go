package client

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// createTopicWith creates topic with one config set.
func createTopicWith(t testing.TB, b backend, partitions int32, topic, key, value string) {
	t.Helper()
	adm := admin(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, map[string]*string{key: &value}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
}

// setTopicConfig sets one config of topic.
func setTopicConfig(t testing.TB, b backend, topic, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resps, err := admin(t, b).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: key, Value: &value}}, topic)
	if err == nil {
		for _, r := range resps {
			if r.Err != nil {
				err = r.Err
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

func admin(t testing.TB, b backend) *kadm.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func committedSum(t testing.TB, b backend, group, topic string) int64 {
	t.Helper()
	os, err := admin(t, b).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	os.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At > 0 {
			sum += o.At
		}
	})
	return sum
}

func countRecords(t testing.TB, b backend, topic string) int64 {
	t.Helper()
	ctx := context.Background()
	adm := admin(t, b)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(e kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, e.Partition)
		n += e.Offset - s.Offset
	})
	return n
}

// markedIDs reads the processed-id topic up to its end offsets and returns
// the distinct ids its records mark, of either layout.
func markedIDs(t testing.TB, b backend, topic string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, r := range readToEnd(t, b, topic) {
		if len(r.Value) > 0 && r.Value[0] == markBatchV1 {
			if err := decodeMarkBatch(r.Value, func(id []byte, _ int64) { ids[string(id)] = true }); err != nil {
				t.Fatalf("offset %d: %v", r.Offset, err)
			}
			continue
		}
		if _, id, ok := strings.Cut(string(r.Key), "\x00"); ok {
			ids[id] = true
		}
	}
	return ids
}

// readToEnd reads every record of topic up to the end offsets it has now.
func readToEnd(t testing.TB, b backend, topic string) []*kgo.Record {
	t.Helper()
	ctx := context.Background()
	ends, err := admin(t, b).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	if len(left) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for len(left) > 0 {
		fs := cl.PollFetches(pctx)
		if pctx.Err() != nil {
			t.Fatalf("read %d records of %s; partitions not read to their end: %v", len(out), topic, left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			if e, ok := left[r.Partition]; ok && r.Offset+1 >= e {
				delete(left, r.Partition)
			}
		})
	}
	return out
}

// TestAtLeastOnceWriteFailures: under at-least-once with idempotency, an
// output write that fails (the output topic's max.message.bytes is below any
// batch) or a processed-id mark write that fails (same, on the store's
// topic) keeps the event's offset uncommitted, so it is redelivered, never
// lost; a mark is never written for an event whose outputs failed. Once the
// limit is raised the events go through and are committed.
func TestAtLeastOnceWriteFailures(t *testing.T) {
	for _, mk := range backends(t) {
		for _, failing := range []string{"output", "mark"} {
			b := mk(t)
			t.Run(b.name+"/"+failing, func(t *testing.T) {
				t.Parallel()
				const n = 6
				createTopics(t, b, 1, "in")
				broken := map[string]string{"output": "out", "mark": "processed"}[failing]
				createTopicWith(t, b, 1, broken, "max.message.bytes", "64")
				if failing == "mark" {
					createTopics(t, b, 1, "out")
				} else {
					createTopics(t, b, 1, "processed")
				}
				publishN(t, b, "in", n, 1)
				calls := map[string]int{}
				var mu sync.Mutex
				h := func(ctx context.Context, e *event.Event) error {
					mu.Lock()
					calls[e.ID]++
					mu.Unlock()
					return Publish(ctx, "out", &event.Event{Source: "/t", Type: "out", PartitionKey: e.PartitionKey})
				}
				s, err := NewSubscriber(b.brokers, "g", []string{"in"}, h, WithLogger(testLogger()),
					WithIdempotency(time.Hour), WithProcessedTopic("processed", 1), WithFailurePause(20*time.Millisecond),
					WithMiddleware(Correlate()))
				if err != nil {
					t.Fatal(err)
				}
				stop := startSub(t, s)
				waitFor(t, 20*time.Second, "e0 redelivered", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return calls["e0"] >= 3
				})
				if c := committedSum(t, b, "g", "in"); c != 0 {
					t.Fatalf("committed %d offsets while the %s writes fail", c, failing)
				}
				if failing == "output" {
					if m := countRecords(t, b, "processed"); m != 0 {
						t.Fatalf("%d processed-id marks written for events whose outputs failed", m)
					}
				}
				setTopicConfig(t, b, broken, "max.message.bytes", "1048588")
				waitFor(t, 20*time.Second, "all committed", func() bool { return committedSum(t, b, "g", "in") == n })
				stop()
				causes := distinctCauses(readAll(t, b, "out", n, 300*time.Millisecond))
				for i := range n {
					if causes["e"+strconv.Itoa(i)] == 0 {
						t.Fatalf("e%d has no output", i)
					}
				}
				if ids := markedIDs(t, b, "processed"); len(ids) < n {
					t.Fatalf("%d ids marked for %d events: %v", len(ids), n, ids)
				}
			})
		}
	}
}

// TestExactlyOnceOutputFailure: an output write that fails inside an
// exactly-once batch (the broker rejects it: over its topic's
// max.message.bytes) aborts the batch's transaction: no output of the batch
// is visible to read_committed consumers, the input offsets are not
// committed, and the whole batch is handled again; the second time it
// commits and each input has exactly one output.
func TestExactlyOnceOutputFailure(t *testing.T) {
	for _, mk := range backends(t) {
		b := mk(t)
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			const n = 10
			createTopics(t, b, 1, "in", "out")
			createTopicWith(t, b, 1, "small", "max.message.bytes", "512")
			publishN(t, b, "in", n, 1)
			var mu sync.Mutex
			calls := map[string]int{}
			var failedOnce atomic.Bool
			redelivered, resume := make(chan struct{}), make(chan struct{})
			h := func(ctx context.Context, e *event.Event) error {
				mu.Lock()
				calls[e.ID]++
				again := e.ID == "e0" && calls[e.ID] == 2
				mu.Unlock()
				if again {
					// The first pass has ended: hold the second one while
					// the test looks at what the first left behind.
					close(redelivered)
					<-resume
				}
				if err := Publish(ctx, "out", &event.Event{Source: "/t", Type: "out", PartitionKey: e.PartitionKey}); err != nil {
					return err
				}
				// Mid-batch, once: an output the broker will reject.
				if e.ID == "e5" && failedOnce.CompareAndSwap(false, true) {
					big := make([]byte, 2048) // random: the producer compresses
					for i := range big {
						big[i] = byte(rand.Uint32())
					}
					return Publish(ctx, "small", &event.Event{Source: "/t", Type: "big", Data: big})
				}
				return nil
			}
			s, err := NewSubscriber(b.brokers, "g", []string{"in"}, h, WithDeliveryMode(ExactlyOnce),
				WithLogger(testLogger()), WithMaxPollRecords(100), WithFailurePause(10*time.Millisecond),
				WithIdempotency(time.Hour), WithProcessedTopic("processed", 1), WithMiddleware(Correlate()))
			if err != nil {
				t.Fatal(err)
			}
			stop := startSub(t, s)
			select {
			case <-redelivered:
			case <-time.After(20 * time.Second):
				t.Fatal("the batch was not redelivered")
			}
			mu.Lock()
			for i := range n {
				if c := calls["e"+strconv.Itoa(i)]; c != 1 && i > 0 {
					t.Errorf("e%d handled %d times in the first pass", i, c)
				}
			}
			mu.Unlock()
			if got := readCommittedNow(t, b, "out"); len(got) != 0 {
				t.Fatalf("read_committed sees %d outputs of the aborted batch", len(got))
			}
			if got := readCommittedNow(t, b, "processed"); len(got) != 0 {
				t.Fatalf("read_committed sees %d processed-id marks of the aborted batch", len(got))
			}
			if c := committedSum(t, b, "g", "in"); c != 0 {
				t.Fatalf("offsets committed by the aborted batch: %d", c)
			}
			if m := countRecords(t, b, "out"); m < n {
				// read_uncommitted: the first pass's outputs were written,
				// then aborted (n records plus a marker, at least).
				t.Fatalf("the first pass wrote %d records to out, want at least %d", m, n)
			}
			close(resume)
			waitFor(t, 20*time.Second, "committed", func() bool { return committedSum(t, b, "g", "in") == n })
			stop()
			out := readAll(t, b, "out", n, 300*time.Millisecond)
			causes := distinctCauses(out)
			for i := range n {
				if c := causes["e"+strconv.Itoa(i)]; c != 1 {
					t.Fatalf("e%d has %d outputs, want 1 (%d outputs in all)", i, c, len(out))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for i := range n {
				if c := calls["e"+strconv.Itoa(i)]; c != 2 {
					t.Fatalf("e%d handled %d times, want 2 (the aborted batch and its redelivery)", i, c)
				}
			}
		})
	}
}

// readCommittedNow reads what read_committed shows of topic right now.
func readCommittedNow(t testing.TB, b backend, topic string) []*kgo.Record {
	return readAll(t, b, topic, -1, 300*time.Millisecond)
}

// TestDLQDepth: the herald_client_dlq_depth gauge counts the records in the
// subscriber's dead-letter topic after each batch that dead-letters.
func TestDLQDepth(t *testing.T) {
	for _, mk := range backends(t) {
		b := mk(t)
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			createTopics(t, b, 2, "in", "dlq")
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			h := func(ctx context.Context, e *event.Event) error {
				if e.Type == "poison" {
					return Permanent(errBoom)
				}
				return nil
			}
			s, err := NewSubscriber(b.brokers, "g", []string{"in"}, h, WithDeadLetter("dlq"), WithLogger(testLogger()),
				WithMetrics(m), WithDeadLetterDepthInterval(time.Hour)) // only the refresh after a dead letter
			if err != nil {
				t.Fatal(err)
			}
			startSub(t, s)
			depth := func() float64 { return metricValue(m.dlqDepth.WithLabelValues("dlq")) }
			pub, err := NewPublisher(b.brokers)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			ctx := context.Background()
			send := func(typ string, k int) {
				if err := pub.Publish(ctx, "in", &event.Event{Source: "/t", Type: typ, PartitionKey: "k" + strconv.Itoa(k)}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 3 {
				send("poison", i)
				send("ok", i)
			}
			waitFor(t, 10*time.Second, "depth 3", func() bool { return depth() == 3 })
			send("ok", 9)
			send("poison", 7)
			send("poison", 8)
			waitFor(t, 10*time.Second, "depth 5", func() bool { return depth() == 5 })
			if n := countRecords(t, b, "dlq"); n != 5 {
				t.Fatalf("dlq holds %d records", n)
			}
		})
	}
}
