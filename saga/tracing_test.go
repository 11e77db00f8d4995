package saga

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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

	// Over HTTP, the request's traceparent header is the parent.
	mux := http.NewServeMux()
	e.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/sagas", strings.NewReader(`{"definition":"order","id":"traced-2","input":{"amount":1}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("start over HTTP: %s", resp.Status)
	}
	waitUntil(t, "the command span of the saga started over HTTP", 20*time.Second, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "saga ProcessPayment" && s.SpanContext().TraceID().String() == "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" &&
				s.Parent().SpanID().String() == "bbbbbbbbbbbbbbbb" {
				return true
			}
		}
		return false
	})
}
