package compat

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// Tests with IBM/sarama.

// saramaVersions are the Kafka versions sarama is told the broker runs,
// which pick its request versions: the oldest that allows the idempotent
// producer, sarama's default, and the newest sarama knows.
var saramaVersions = []sarama.KafkaVersion{sarama.V2_1_0_0, sarama.DefaultVersion, sarama.MaxVersion}

func saramaConfig(v sarama.KafkaVersion) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = v
	cfg.ClientID = "herald-compat-sarama"
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	return cfg
}

// TestSaramaSyncProducerAndConsumerGroup: an idempotent SyncProducer
// writes records with headers; a ConsumerGroup reads every one and
// commits; a second run of the group resumes after the commit and reads
// only what was produced since.
func TestSaramaSyncProducerAndConsumerGroup(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	for _, v := range saramaVersions {
		t.Run("version="+v.String(), func(t *testing.T) { testSarama(t, s, v) })
	}
}

func testSarama(t *testing.T, s *server, v sarama.KafkaVersion) {
	topic, group := "sarama-"+v.String(), "sarama-group-"+v.String()
	s.createTopic(t, topic, 3)

	pcfg := saramaConfig(v)
	pcfg.Producer.Idempotent = true
	pcfg.Net.MaxOpenRequests = 1
	pcfg.Producer.RequiredAcks = sarama.WaitForAll
	pcfg.Producer.Return.Successes = true
	pcfg.Producer.Retry.Max = 10
	pcfg.Producer.Retry.Backoff = 100 * time.Millisecond
	prod, err := sarama.NewSyncProducer([]string{s.kafkaAddr}, pcfg)
	if err != nil {
		t.Fatalf("sarama.NewSyncProducer: %v", err)
	}
	defer prod.Close()

	produce := func(recs []record) {
		t.Helper()
		msgs := make([]*sarama.ProducerMessage, len(recs))
		for i, r := range recs {
			m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.Key), Value: sarama.StringEncoder(r.Value)}
			for _, h := range r.Headers {
				m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: []byte(h.Value)})
			}
			msgs[i] = m
		}
		// Half one by one, half as one SendMessages call.
		half := len(msgs) / 2
		for _, m := range msgs[:half] {
			if _, _, err := prod.SendMessage(m); err != nil {
				t.Fatalf("SendMessage: %v", err)
			}
		}
		if err := prod.SendMessages(msgs[half:]); err != nil {
			t.Fatalf("SendMessages: %v", err)
		}
	}

	first := makeRecords("sarama-1", 200)
	produce(first)
	got := consumeSaramaGroup(t, s, v, topic, group, len(first))
	requireSameRecords(t, "sarama consumer group, first run", first, got, true)
	requireOrderedByPartition(t, "sarama consumer group, first run", first, got)
	if c, end := s.committed(t, group, topic), s.endOffsets(t, topic); !mapsEqual(c, end) {
		t.Fatalf("committed offsets %v, want the end offsets %v", c, end)
	}

	second := makeRecords("sarama-2", 100)
	produce(second)
	got = consumeSaramaGroup(t, s, v, topic, group, len(second))
	requireSameRecords(t, "sarama consumer group, second run (resumed)", second, got, true)
	if c, end := s.committed(t, group, topic), s.endOffsets(t, topic); !mapsEqual(c, end) {
		t.Fatalf("committed offsets %v, want the end offsets %v", c, end)
	}
}

// consumeSaramaGroup runs a sarama ConsumerGroup until n records arrived,
// marking each and committing, then lingers briefly to catch extras.
func consumeSaramaGroup(t *testing.T, s *server, v sarama.KafkaVersion, topic, group string, n int) []record {
	t.Helper()
	cfg := saramaConfig(v)
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false // the handler commits
	cfg.Consumer.Group.Session.Timeout = groupSessionTimeout
	cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	cfg.Consumer.Return.Errors = true
	cg, err := sarama.NewConsumerGroup([]string{s.kafkaAddr}, group, cfg)
	if err != nil {
		t.Fatalf("sarama.NewConsumerGroup: %v", err)
	}
	defer cg.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	h := &saramaHandler{want: n, enough: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil {
				if !errors.Is(err, sarama.ErrClosedConsumerGroup) && ctx.Err() == nil {
					errc <- err
				}
				return
			}
		}
	}()
	var groupErrs []error
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for err := range cg.Errors() { // closed by cg.Close
			groupErrs = append(groupErrs, err)
		}
	}()
	select {
	case <-h.enough:
	case err := <-errc:
		t.Fatalf("sarama Consume: %v", err)
	case <-ctx.Done():
		t.Fatalf("sarama consumer group read %d of %d records in 45s", len(h.records()), n)
	}
	time.Sleep(300 * time.Millisecond) // extras would show up here
	cancel()
	if err := cg.Close(); err != nil {
		t.Fatalf("close consumer group: %v", err)
	}
	<-errsDone
	if len(groupErrs) > 0 {
		t.Fatalf("sarama consumer group reported %d errors: %v", len(groupErrs), errors.Join(groupErrs...))
	}
	return h.records()
}

type saramaHandler struct {
	want   int
	enough chan struct{}
	once   sync.Once

	mu   sync.Mutex
	recs []record
}

func (h *saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		r := record{Key: string(m.Key), Value: string(m.Value), Partition: m.Partition, Offset: m.Offset}
		for _, hd := range m.Headers {
			r.Headers = append(r.Headers, header{string(hd.Key), string(hd.Value)})
		}
		sess.MarkMessage(m, "")
		h.mu.Lock()
		h.recs = append(h.recs, r)
		done := len(h.recs) == h.want
		h.mu.Unlock()
		if done {
			// Every record was marked before it was counted. NB: a
			// commit per record would be slow, as on Kafka: sarama shares
			// one connection per broker, and a commit queues behind the
			// consumer's long-poll Fetch (Consumer.MaxWaitTime).
			sess.Commit()
			h.once.Do(func() { close(h.enough) })
		}
	}
	return nil
}

func (h *saramaHandler) records() []record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]record(nil), h.recs...)
}
