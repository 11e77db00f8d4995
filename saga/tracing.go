package saga

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

const tracerName = "github.com/heraldhq/herald/saga"

// traceFrom gives the commands the machine sent while applying ev (a start
// request or a reply) ev's trace context, so a saga's steps join the trace
// of what drove them. Commands sent by a timer start a trace of their own.
func (m *machine) traceFrom(ev *event.Event) {
	if ev.TraceParent == "" {
		return
	}
	for _, o := range m.outs {
		if o.ev.TraceParent == "" {
			o.ev.TraceParent = ev.TraceParent
		}
	}
}

// startCommandSpan starts the span of one saga command sent, "saga <type>"
// (kind producer), a child of the command's traceparent, and sets the
// command's traceparent to the span so the participant continues from it.
// Spans go to tp, or to the global tracer provider when tp is nil.
func startCommandSpan(ctx context.Context, tp trace.TracerProvider, o out) trace.Span {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if o.ev.TraceParent != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": o.ev.TraceParent})
	}
	ctx, span := tp.Tracer(tracerName).Start(ctx, "saga "+o.ev.Type,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("herald.saga.id", o.ev.Extensions[ExtSagaID]),
			attribute.String("herald.saga.step", o.ev.Extensions[ExtStep]),
			attribute.String("herald.saga.phase", o.ev.Extensions[ExtPhase]),
			attribute.String("messaging.destination.name", o.topic),
			attribute.String("messaging.message.id", o.ev.ID),
		))
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	if tp := c["traceparent"]; tp != "" {
		o.ev.TraceParent = tp
	}
	return span
}

// endCommandSpans ends the spans of a batch's commands, failed when the
// transaction writing them did not commit.
func endCommandSpans(spans []trace.Span, committed bool) {
	for _, s := range spans {
		if !committed {
			s.SetStatus(codes.Error, "saga transaction aborted; the command will be sent again")
		}
		s.End()
	}
}

// traceFromContext gives a request the engine writes to its inbox (a start,
// retry or abort) the trace context of ctx, when it has one: StartSaga
// called under a span starts the saga in that trace.
func traceFromContext(ctx context.Context, ev *event.Event) {
	if ev.TraceParent != "" {
		return
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	ev.TraceParent = c["traceparent"]
}

// requestTrace returns the request's context with the W3C trace context of
// its traceparent header, so a saga started over HTTP joins the caller's
// trace.
func requestTrace(r *http.Request) context.Context {
	return propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
}
