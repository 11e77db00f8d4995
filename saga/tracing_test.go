package saga

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// A saga started under a span sends its first command under a "saga
// <command>" producer span in the same trace.
func TestCommandSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	brokers := startServer(t)
	createTopics(t, brokers, 4, testTopics...)
	e := startEngine(t, brokers, nil, orderDef(time.Minute))
	defer e.Close()

	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithRemoteSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	if err := e.StartSaga(ctx, "order", "traced-1", []byte(`{"amount":1}`)); err != nil {
		t.Fatal(err)
	}
	var span sdktrace.ReadOnlySpan
	waitUntil(t, "the command span", 20*time.Second, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "saga ProcessPayment" {
				span = s
				return true
			}
		}
		return false
	})
	if span.SpanKind() != trace.SpanKindProducer || span.SpanContext().TraceID() != tid || span.Parent().SpanID() != sid {
		t.Errorf("command span %v in trace %v under %v; want a producer span in the start's trace under its span",
			span.SpanKind(), span.SpanContext().TraceID(), span.Parent().SpanID())
	}
	if span.Status().Code != 0 {
		t.Errorf("command span status %v", span.Status())
	}
}
