package rules

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

const tracerName = "github.com/heraldhq/herald/rules"

// startDeliverySpan starts the span of one delivery of an event to a
// target: "deliver <bus>/<rule>" (kind producer for a topic target, client
// for a webhook), a child of the event's traceparent. Spans go to the
// global tracer provider; with none installed the span is a no-op that
// carries the event's trace context on.
func (w *targetWorker) startDeliverySpan(cfg *targetConfig, ev *event.Event) (context.Context, trace.Span) {
	ctx := w.e.ctx
	if ev.TraceParent != "" {
		c := propagation.MapCarrier{"traceparent": ev.TraceParent}
		if ts, ok := ev.Extensions["tracestate"]; ok {
			c["tracestate"] = ts
		}
		ctx = propagation.TraceContext{}.Extract(ctx, c)
	}
	kind, target := trace.SpanKindProducer, cfg.t.Topic
	if cfg.t.Topic == "" {
		kind, target = trace.SpanKindClient, cfg.t.Webhook
	}
	ctx, span := otel.Tracer(tracerName).Start(ctx, w.spanName, trace.WithSpanKind(kind))
	// NB: attributes only for a span that records: building them for the
	// no-op span of an untraced server cost more than the delivery.
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("herald.bus", w.bus),
			attribute.String("herald.rule", w.rule),
			attribute.String("herald.target", w.id),
			attribute.String("herald.target.destination", target),
			attribute.String("messaging.message.id", ev.ID),
			attribute.String("cloudevents.event_type", ev.Type),
		)
	}
	return ctx, span
}

// traced returns ev with the delivery span's traceparent (a copy: ev may be
// shared by other targets), so the next hop continues the trace from the
// delivery. With no valid span context ev is returned as it is.
func traced(ctx context.Context, ev *event.Event) *event.Event {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	tp := c["traceparent"]
	if tp == "" || tp == ev.TraceParent {
		return ev
	}
	out := *ev
	out.TraceParent = tp
	return &out
}

// injectTraceHeader sets the W3C traceparent (and tracestate) headers of a
// webhook request from the event's trace context.
func injectTraceHeader(h http.Header, ev *event.Event) {
	if ev.TraceParent == "" {
		return
	}
	h.Set("traceparent", ev.TraceParent)
	if ts, ok := ev.Extensions["tracestate"]; ok && ts != "" {
		h.Set("tracestate", ts)
	}
}

func endDeliverySpan(span trace.Span, de *deliveryError) {
	if de != nil {
		span.SetAttributes(attribute.String("error.type", de.code))
		span.SetStatus(codes.Error, de.msg)
	}
	span.End()
}
