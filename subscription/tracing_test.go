package subscription

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
)

// A push makes a client span under the event's traceparent and sends the
// span's traceparent header to the webhook.
func TestPushSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	var mu sync.Mutex
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("traceparent")+" "+r.Header.Get("ce-traceparent"))
		mu.Unlock()
	}))
	defer hook.Close()

	e := newEnv(t)
	e.topic("traced", 1)
	if st := e.do("PUT", "/v1/subscriptions/tp", map[string]any{"topic": "traced", "pushConfig": map[string]any{"pushEndpoint": hook.URL}}, nil); st != 200 {
		t.Fatalf("create: %d", st)
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ev := event.New("/src", "traced.happened")
	ev.TraceParent = parent
	msg, err := event.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	hs := make([]eventlog.Header, len(msg.Headers))
	for j, h := range msg.Headers {
		hs[j] = eventlog.Header{Key: h.Key, Value: h.Value}
	}
	if _, err := e.prod.Append(context.Background(), "traced", eventlog.Record{Key: msg.Key, Value: msg.Value, Headers: hs}); err != nil {
		t.Fatal(err)
	}
	var span sdktrace.ReadOnlySpan
	waitFor(t, "the push span", 20*time.Second, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "push tp" {
				span = s
				return true
			}
		}
		return false
	})
	if span.SpanKind() != trace.SpanKindClient || span.Parent().SpanID().String() != "00f067aa0ba902b7" ||
		span.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("push span %v under %v in trace %v; want a client span under the event's traceparent",
			span.SpanKind(), span.Parent().SpanID(), span.SpanContext().TraceID())
	}
	mu.Lock()
	defer mu.Unlock()
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + span.SpanContext().SpanID().String() + "-01 " + parent
	if len(got) == 0 || got[0] != want {
		t.Errorf("webhook got traceparent and ce-traceparent %q, want %q", got, want)
	}
}
