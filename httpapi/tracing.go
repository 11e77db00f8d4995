package httpapi

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/event"
)

const tracerName = "github.com/heraldhq/herald/httpapi"

// startPublishSpan starts the server span of a publish request, "publish
// <topic>" (kind server), a child of the request's W3C traceparent header
// when it has one. Spans go to the global tracer provider (herald serve
// installs an OTLP one when the OTEL_* variables ask for it); with none
// installed the span is a no-op that still carries the incoming parent.
func startPublishSpan(r *http.Request, topic string) (context.Context, trace.Span) {
	ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	return otel.Tracer(tracerName).Start(ctx, "publish "+topic,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", topic),
			attribute.String("http.request.method", r.Method),
		))
}

// traceEvent gives an event that has no traceparent the publish span's, so
// the CloudEvents distributed-tracing extension (and the Kafka traceparent
// header) carry the trace to rules, subscriptions and consumers. An event
// that has one keeps it, and the span links to it.
func traceEvent(ctx context.Context, span trace.Span, e *event.Event) {
	if e.TraceParent != "" {
		pc := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": e.TraceParent})
		if sc := trace.SpanContextFromContext(pc); sc.IsValid() {
			span.AddLink(trace.Link{SpanContext: sc})
		}
		return
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	e.TraceParent = c["traceparent"]
	if ts := c["tracestate"]; ts != "" {
		if _, ok := e.Extensions["tracestate"]; !ok {
			if e.Extensions == nil {
				e.Extensions = map[string]string{}
			}
			e.Extensions["tracestate"] = ts
		}
	}
}

// endSpan ends a span, marking it failed when err is set.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
