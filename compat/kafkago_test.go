package compat

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	kafka "github.com/segmentio/kafka-go"
)

// Tests with segmentio/kafka-go.

// TestKafkaGoWriterAndGroupReader: a Writer (acks=all, hash balancer)
// writes records with headers; a Reader with a GroupID reads every one and
// commits; a second Reader in the group resumes after the commit.
func TestKafkaGoWriterAndGroupReader(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const topic, group = "kafka-go", "kafka-go-group"
	s.createTopic(t, topic, 3)

	w := &kafka.Writer{
		Addr:         kafka.TCP(s.kafkaAddr),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
		ErrorLogger:  kafkaGoLogger(t, "writer"),
	}
	defer w.Close()
	write := func(recs []record) {
		t.Helper()
		msgs := make([]kafka.Message, len(recs))
		for i, r := range recs {
			msgs[i] = kafka.Message{Key: []byte(r.Key), Value: []byte(r.Value)}
			for _, h := range r.Headers {
				msgs[i].Headers = append(msgs[i].Headers, kafka.Header{Key: h.Key, Value: []byte(h.Value)})
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("kafka-go WriteMessages: %v", err)
		}
	}

	first := makeRecords("kafka-go-1", 200)
	write(first)
	got := readKafkaGoGroup(t, s, topic, group, len(first))
	requireSameRecords(t, "kafka-go group reader, first run", first, got, true)
	requireOrderedByPartition(t, "kafka-go group reader, first run", first, got)
	if c, end := s.committed(t, group, topic), s.endOffsets(t, topic); !mapsEqual(c, end) {
		t.Fatalf("committed offsets %v, want the end offsets %v", c, end)
	}

	second := makeRecords("kafka-go-2", 100)
	write(second)
	got = readKafkaGoGroup(t, s, topic, group, len(second))
	requireSameRecords(t, "kafka-go group reader, second run (resumed)", second, got, true)
	if c, end := s.committed(t, group, topic), s.endOffsets(t, topic); !mapsEqual(c, end) {
		t.Fatalf("committed offsets %v, want the end offsets %v", c, end)
	}
}

// readKafkaGoGroup reads n records with a group Reader, committing each
// synchronously, then checks nothing more arrives and closes the reader.
func readKafkaGoGroup(t *testing.T, s *server, topic, group string, n int) []record {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{s.kafkaAddr},
		GroupID:           group,
		Topic:             topic,
		StartOffset:       kafka.FirstOffset,
		MaxWait:           200 * time.Millisecond,
		SessionTimeout:    groupSessionTimeout,
		HeartbeatInterval: 500 * time.Millisecond,
		JoinGroupBackoff:  200 * time.Millisecond,
		ErrorLogger:       kafkaGoLogger(t, "reader"),
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var out []record
	var msgs []kafka.Message
	for len(out) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("kafka-go FetchMessage after %d of %d records: %v", len(out), n, err)
		}
		rec := record{Key: string(m.Key), Value: string(m.Value), Partition: int32(m.Partition), Offset: m.Offset}
		for _, h := range m.Headers {
			rec.Headers = append(rec.Headers, header{h.Key, string(h.Value)})
		}
		out = append(out, rec)
		msgs = append(msgs, m)
		if len(msgs) == 50 || len(out) == n {
			if err := r.CommitMessages(ctx, msgs...); err != nil {
				t.Fatalf("kafka-go CommitMessages: %v", err)
			}
			msgs = msgs[:0]
		}
	}
	extra, cancelExtra := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelExtra()
	if m, err := r.FetchMessage(extra); err == nil {
		t.Fatalf("kafka-go read a record beyond the %d expected: %q at %d/%d", n, m.Key, m.Partition, m.Offset)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("kafka-go Reader.Close: %v", err)
	}
	return out
}

// kafkaGoLogger logs kafka-go's errors to the test log when
// HERALD_COMPAT_DEBUG is set.
func kafkaGoLogger(t *testing.T, who string) kafka.Logger {
	return kafka.LoggerFunc(func(format string, args ...any) {
		if os.Getenv("HERALD_COMPAT_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "kafka-go %s (%s): %s\n", who, t.Name(), fmt.Sprintf(format, args...))
		}
	})
}
