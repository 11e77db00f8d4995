package httpapi

import (
	"encoding/json"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/event"
)

// A publish makes a server span, a child of the request's traceparent;
// the stored event carries the span's traceparent, unless it had one (then
// it keeps it and the span links to it).
func TestPublishSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	e := newEnv(t)
	e.createTopic("traced", 1, nil)
	const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const own = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01"
	e.publish("traced", "application/cloudevents-batch+json",
		`[{"specversion":"1.0","source":"/t","type":"a","id":"1"},
		  {"specversion":"1.0","source":"/t","type":"b","id":"2","traceparent":"`+own+`"}]`,
		http.Header{"Traceparent": {incoming}})

	var spans []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "publish traced" {
			spans = append(spans, s)
		}
	}
	if len(spans) != 1 {
		t.Fatalf("%d publish spans, want 1", len(spans))
	}
	s := spans[0]
	if s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span kind %v", s.SpanKind())
	}
	if got := s.Parent().TraceID().String() + "/" + s.Parent().SpanID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736/00f067aa0ba902b7" {
		t.Errorf("parent %s, want the incoming traceparent", got)
	}
	if s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace %s, want the incoming trace", s.SpanContext().TraceID())
	}
	if l := s.Links(); len(l) != 1 || l[0].SpanContext.TraceID().String() != "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
		t.Errorf("links %+v, want one to the event's own traceparent", l)
	}

	got := e.read("traced", "partition=0&offset=0")
	if len(got.Events) != 2 {
		t.Fatalf("read %d events", len(got.Events))
	}
	want := []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-" + s.SpanContext().SpanID().String() + "-01", own}
	for i, it := range got.Events {
		var ev event.Event
		if err := json.Unmarshal(it.Event, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.TraceParent != want[i] {
			t.Errorf("event %d: traceparent %q, want %q", i, ev.TraceParent, want[i])
		}
	}
}
