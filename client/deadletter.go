package client

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// Headers added to a dead-lettered record, next to the original record's
// key, value and headers (which are kept unchanged). Frozen wire names.
const (
	HeaderDLQTopic        = "herald-dlq-topic"         // original topic
	HeaderDLQPartition    = "herald-dlq-partition"     // original partition, base 10
	HeaderDLQOffset       = "herald-dlq-offset"        // original offset, base 10
	HeaderDLQGroup        = "herald-dlq-group"         // consumer group that gave up
	HeaderDLQError        = "herald-dlq-error"         // the last error's text
	HeaderDLQReason       = "herald-dlq-reason"        // DLQReasonFailed or DLQReasonMalformed
	HeaderDLQAttempts     = "herald-dlq-attempts"      // handler attempts made, base 10 (0 if malformed)
	HeaderDLQFirstFailure = "herald-dlq-first-failure" // RFC 3339 (nanoseconds), UTC
	HeaderDLQLastFailure  = "herald-dlq-last-failure"  // RFC 3339 (nanoseconds), UTC
	// HeaderRedrivenFrom marks a record that `herald dlq redrive`
	// re-published ("dlqtopic/partition/offset"): an operator asked for it
	// to be handled again, so Idempotent lets it through.
	HeaderRedrivenFrom = "herald-redriven-from"
)

// Values of HeaderDLQReason.
const (
	DLQReasonFailed    = "failed"    // the handler failed past its retry budget
	DLQReasonMalformed = "malformed" // the record is not a valid event
)

// DeadLetter forwards an event whose handler failed (past Retry, if Retry is
// inside it) to topic, and reports success so the partition moves on. The
// forwarded record is the original plus the herald-dlq-* headers; it is
// written like any output: before the offset commit, or in the transaction
// under ExactlyOnce. An event whose handling was cut short by shutdown is not
// forwarded: it is redelivered instead.
//
// Use the subscriber option WithDeadLetter, which also sends undecodable
// records to topic; this middleware alone is for custom chains.
func DeadLetter(topic string) Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e *event.Event) error {
			err := next(ctx, e)
			if err == nil || ctx.Err() != nil {
				return err
			}
			d, ok := DeliveryFrom(ctx)
			ob, ok2 := ctx.Value(outboxKey).(*outbox)
			if !ok || !ok2 {
				return err // not under a subscriber: nothing to forward
			}
			attempts, first, last := 1, time.Now(), time.Now()
			var re *RetryError
			if errors.As(err, &re) {
				attempts, first, last = re.Attempts, re.FirstFailure, re.LastFailure
			}
			ob.add([]*kgo.Record{deadLetterRecord(topic, d, err, DLQReasonFailed, attempts, first, last)})
			ev := envFrom(ctx)
			ev.metrics.count(cDeadLettered, d.Group, d.Topic, DLQReasonFailed)
			Logger(ctx).Warn("event dead-lettered", "dlq", topic, "attempts", attempts, "err", err)
			return nil
		}
	}
}

func deadLetterRecord(topic string, d Delivery, err error, reason string, attempts int, first, last time.Time) *kgo.Record {
	// NB: the original timestamp is kept, so a redrive re-publishes the
	// event with the time it first happened.
	r := &kgo.Record{Topic: topic, Key: d.Message.Key, Value: d.Message.Value, Timestamp: d.Timestamp}
	for _, h := range d.Message.Headers {
		if !strings.HasPrefix(h.Key, "herald-dlq-") { // a re-dead-lettered record gets fresh ones
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	add := func(k, v string) { r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(HeaderDLQTopic, d.Topic)
	add(HeaderDLQPartition, strconv.Itoa(int(d.Partition)))
	add(HeaderDLQOffset, strconv.FormatInt(d.Offset, 10))
	add(HeaderDLQGroup, d.Group)
	add(HeaderDLQError, err.Error())
	add(HeaderDLQReason, reason)
	add(HeaderDLQAttempts, strconv.Itoa(attempts))
	add(HeaderDLQFirstFailure, first.UTC().Format(time.RFC3339Nano))
	add(HeaderDLQLastFailure, last.UTC().Format(time.RFC3339Nano))
	return r
}
