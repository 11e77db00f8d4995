package client

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/event"
)

const tracerName = "github.com/heraldhq/herald/client"

// traceContext is the W3C propagator; CloudEvents' distributed-tracing
// extension carries exactly its traceparent and tracestate.
var traceContext = propagation.TraceContext{}

// Trace records OpenTelemetry spans for each event, on the tracer provider of
// WithTracerProvider (default: the global one):
//
//   - "consume <topic>" (kind consumer) around the rest of the chain, a
//     child of the span that published the event (its traceparent, and a
//     "tracestate" extension if any) and linked to it;
//   - "handle <type>" (kind internal) around each attempt of the handler,
//     so retries show as sibling spans, a failed one with error status;
//   - "publish <topic>" (kind producer) for each client.Publish from the
//     handler, whose span context becomes the outputs' traceparent.
//
// With no provider installed the spans are no-ops that still carry the
// remote parent, so outputs stay in the same trace either way. Put Trace
// first, so the consume span covers retries and the breaker.
func Trace() Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e *event.Event) error {
			var opts []trace.SpanStartOption
			if e.TraceParent != "" {
				c := propagation.MapCarrier{"traceparent": e.TraceParent}
				if ts, ok := e.Extensions["tracestate"]; ok {
					c["tracestate"] = ts
				}
				ctx = traceContext.Extract(ctx, c)
				if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
					opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
				}
			}
			attrs := []attribute.KeyValue{
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.message.id", e.ID),
				attribute.String("cloudevents.event_type", e.Type),
			}
			name := "consume"
			if d, ok := DeliveryFrom(ctx); ok {
				name += " " + d.Topic
				attrs = append(attrs,
					attribute.String("messaging.destination.name", d.Topic),
					attribute.String("messaging.consumer.group.name", d.Group),
					attribute.Int("messaging.destination.partition.id", int(d.Partition)),
					attribute.Int64("messaging.kafka.offset", d.Offset))
			}
			tr := tracerOf(envFrom(ctx).tp)
			ctx, span := tr.Start(ctx, name, append(opts,
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))...)
			defer span.End()
			err := next(context.WithValue(ctx, tracerKey, tr), e)
			endSpan(span, err)
			return err
		}
	}
}

func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// tracerFrom returns the tracer Trace put in ctx, or nil outside Trace.
func tracerFrom(ctx context.Context) trace.Tracer {
	tr, _ := ctx.Value(tracerKey).(trace.Tracer)
	return tr
}

func startPublishSpan(ctx context.Context, tr trace.Tracer, topic string, n int) (context.Context, trace.Span) {
	return tr.Start(ctx, "publish "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", topic),
			attribute.Int("messaging.batch.message_count", n)))
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}

// injectTraceParent returns the traceparent of ctx's span, or "" if ctx
// carries no valid span context.
func injectTraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c["traceparent"]
}
