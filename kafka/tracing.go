package kafka

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/commitlog/batch"
)

const tracerName = "github.com/heraldhq/herald/kafka"

// maxProduceLinks bounds the links of one produce span: a batch of
// thousands of records from as many traces links to the first ones only
// (the herald.kafka.trace_links_dropped attribute counts the rest).
const maxProduceLinks = 64

// produceSpans are the server spans of one Produce request, one per
// partition written ("produce <topic>", kind server). Each is linked to
// the distinct W3C traceparent headers of its records ("traceparent", or
// the CloudEvents Kafka binding's "ce_traceparent") and, when they all
// carry the same one, is its child, so a single producer's send shows in
// the producer's trace. A span ends when the partition's reply is known
// (after durability for acks=all) and fails with the Kafka error code.
//
// With no Config.TracerProvider the zero value does nothing and the
// records are not read.
type produceSpans struct {
	tracer trace.Tracer
	acks   int16
	spans  []partSpan
}

type partSpan struct {
	span trace.Span
	p    *kmsg.ProduceResponseTopicPartition
}

func (s *Server) produceSpans(acks int16) produceSpans {
	if s.tracer == nil {
		return produceSpans{}
	}
	return produceSpans{tracer: s.tracer, acks: acks}
}

// start starts the span of one partition's records, before they are
// appended (records is read, not kept).
func (ps *produceSpans) start(ctx context.Context, topic string, part int32, records []byte, p *kmsg.ProduceResponseTopicPartition) {
	if ps.tracer == nil {
		return
	}
	n, parents := recordTraces(records)
	var links []trace.Link
	for _, sc := range parents {
		if len(links) == maxProduceLinks {
			break
		}
		links = append(links, trace.Link{SpanContext: sc})
	}
	if len(parents) == 1 {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parents[0])
	} else {
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{}) // a root, whatever ctx holds
	}
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.type", "receive"),
		attribute.String("messaging.operation.name", "produce"),
		attribute.String("messaging.destination.name", topic),
		attribute.String("messaging.destination.partition.id", strconv.Itoa(int(part))),
		attribute.Int("messaging.batch.message_count", n),
		attribute.Int("messaging.kafka.acks", int(ps.acks)),
	}
	if d := len(parents) - len(links); d > 0 {
		attrs = append(attrs, attribute.Int("herald.kafka.trace_links_dropped", d))
	}
	_, span := ps.tracer.Start(ctx, "produce "+topic, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithLinks(links...), trace.WithAttributes(attrs...))
	ps.spans = append(ps.spans, partSpan{span, p})
}

// end ends every span with its partition's outcome.
func (ps *produceSpans) end() {
	for _, s := range ps.spans {
		if s.p.ErrorCode != 0 {
			err := kerr.ErrorForCode(s.p.ErrorCode)
			msg := err.Error()
			if s.p.ErrorMessage != nil {
				msg += ": " + *s.p.ErrorMessage
			}
			if ke, ok := err.(*kerr.Error); ok {
				s.span.SetAttributes(attribute.String("error.type", ke.Message))
			}
			s.span.SetStatus(codes.Error, msg)
		} else {
			s.span.SetAttributes(attribute.Int64("messaging.kafka.offset", s.p.BaseOffset))
		}
		s.span.End()
	}
	ps.spans = nil
}

// recordTraces counts the records of a produce's batches and returns the
// distinct valid span contexts of their trace context headers (with
// tracestate when the record has one), in order of first appearance.
// Batches that do not parse are counted as far as they go: the broker
// refuses them, and the span records that.
func recordTraces(b []byte) (n int, parents []trace.SpanContext) {
	var it batch.Iter
	seen := map[string]bool{}
	for off := 0; off < len(b); {
		h, err := batch.ParseHeader(b[off:])
		if err != nil || h.Size() > len(b)-off {
			break
		}
		if err := it.Reset(b[off : off+h.Size()]); err != nil {
			break
		}
		for it.Next() {
			n++
			// The W3C header of Kafka instrumentations, or the
			// CloudEvents binding's (Herald's events) when there is none.
			var tp, ts, ceTP, ceTS []byte
			for _, hd := range it.Record().Headers {
				switch string(hd.Key) {
				case "traceparent":
					tp = hd.Value
				case "tracestate":
					ts = hd.Value
				case "ce_traceparent":
					ceTP = hd.Value
				case "ce_tracestate":
					ceTS = hd.Value
				}
			}
			if tp == nil {
				tp, ts = ceTP, ceTS
			}
			if tp == nil || seen[string(tp)] {
				continue
			}
			seen[string(tp)] = true
			c := propagation.MapCarrier{"traceparent": string(tp)}
			if ts != nil {
				c["tracestate"] = string(ts)
			}
			if sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), c)); sc.IsValid() {
				parents = append(parents, sc)
			}
		}
		off += h.Size()
	}
	return n, parents
}
