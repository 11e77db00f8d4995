package subscription

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

const tracerName = "github.com/heraldhq/herald/subscription"

// tracePush starts the span of one push to a webhook, "push <subscription>"
// (kind client), a child of the message's traceparent attribute (the
// CloudEvents distributed-tracing extension, or a record's traceparent
// header), and sets the request's W3C traceparent header to the span, so
// the endpoint continues the trace. Spans go to the global tracer provider;
// with none installed the header still carries the message's trace on. The
// returned func ends the span with the endpoint's status code (0 and err
// when the request failed).
func (s *sub) tracePush(h http.Header, attrs map[string]string, msgID string) func(status int, err error) {
	ctx := context.Background()
	if tp := attrs["traceparent"]; tp != "" {
		c := propagation.MapCarrier{"traceparent": tp}
		if ts := attrs["tracestate"]; ts != "" {
			c["tracestate"] = ts
		}
		ctx = propagation.TraceContext{}.Extract(ctx, c)
	}
	ctx, span := otel.Tracer(tracerName).Start(ctx, "push "+s.name,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("herald.subscription", s.name),
			attribute.String("messaging.message.id", msgID),
			attribute.String("http.request.method", http.MethodPost),
		))
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
	return func(status int, err error) {
		switch {
		case err != nil:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		default:
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if status < 200 || status >= 300 {
				span.SetStatus(codes.Error, "HTTP "+strconv.Itoa(status))
			}
		}
		span.End()
	}
}
