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

// Trace extracts the event's W3C trace context (the traceparent attribute and
// a "tracestate" extension) into the handler's context and starts a consumer
// span named "process <type>" on the global OpenTelemetry tracer provider.
// With no provider installed the span is a no-op that still carries the
// remote parent, so outputs (Publish) stay in the same trace either way.
func Trace() Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e *event.Event) error {
			if e.TraceParent != "" {
				c := propagation.MapCarrier{"traceparent": e.TraceParent}
				if ts, ok := e.Extensions["tracestate"]; ok {
					c["tracestate"] = ts
				}
				ctx = traceContext.Extract(ctx, c)
			}
			attrs := []attribute.KeyValue{
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.message.id", e.ID),
				attribute.String("cloudevents.event_type", e.Type),
			}
			if d, ok := DeliveryFrom(ctx); ok {
				attrs = append(attrs,
					attribute.String("messaging.destination.name", d.Topic),
					attribute.String("messaging.consumer.group.name", d.Group),
					attribute.Int("messaging.destination.partition.id", int(d.Partition)),
					attribute.Int64("messaging.kafka.offset", d.Offset))
			}
			ctx, span := otel.Tracer(tracerName).Start(ctx, "process "+e.Type,
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
			defer span.End()
			err := next(ctx, e)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return err
		}
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
