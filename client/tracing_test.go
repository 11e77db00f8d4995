package client

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/event"
)

// TestTracingSpans runs publish -> consume -> publish output -> consume
// through real subscribers with an OpenTelemetry SDK tracer provider and
// an in-memory exporter, and checks the spans: one trace from the test's
// root span to the last handler; each consume span a child of, and linked
// to, the publish span whose traceparent its event carried; each handle
// span a child of its consume span; the output's publish span a child of
// the handle span; a failed attempt an error span, retried as a sibling.
func TestTracingSpans(t *testing.T) {
	for _, mk := range backends(t) {
		b := mk(t)
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			createTopics(t, b, 1, "orders", "invoices")
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			defer tp.Shutdown(context.Background())

			failed := false
			bill := func(ctx context.Context, e *event.Event) error {
				if !failed {
					failed = true
					return errBoom // one failed attempt, then a retry
				}
				return Publish(ctx, "invoices", &event.Event{Source: "/billing", Type: "invoice.issued"})
			}
			done := make(chan *event.Event, 1)
			mail := func(ctx context.Context, e *event.Event) error { done <- e; return nil }
			retry := Retry(RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond})
			s1, err := NewSubscriber(b.brokers, "billing", []string{"orders"}, bill, WithTracerProvider(tp),
				WithLogger(testLogger()), WithMiddleware(Trace(), Correlate(), retry))
			if err != nil {
				t.Fatal(err)
			}
			s2, err := NewSubscriber(b.brokers, "mailer", []string{"invoices"}, mail, WithTracerProvider(tp),
				WithLogger(testLogger()), WithMiddleware(Trace()))
			if err != nil {
				t.Fatal(err)
			}
			startSub(t, s1)
			startSub(t, s2)

			pub, err := NewPublisher(b.brokers, WithTracerProvider(tp))
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			ctx, root := tp.Tracer("test").Start(context.Background(), "checkout")
			order := &event.Event{Source: "/shop", Type: "order.placed"}
			if err := pub.Publish(ctx, "orders", order); err != nil {
				t.Fatal(err)
			}
			root.End()
			var invoice *event.Event
			select {
			case invoice = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("the invoice was not consumed")
			}
			var spans tracetest.SpanStubs
			waitFor(t, 5*time.Second, "the mailer's consume span", func() bool {
				spans = exp.GetSpans() // ended spans only: the consume span ends after the handler returns
				for _, s := range spans {
					if s.Name == "consume invoices" {
						return true
					}
				}
				return false
			})
			byName := map[string][]tracetest.SpanStub{}
			for _, s := range spans {
				byName[s.Name] = append(byName[s.Name], s)
			}
			one := func(name string) tracetest.SpanStub {
				t.Helper()
				if len(byName[name]) != 1 {
					t.Fatalf("%d spans named %q; spans: %v", len(byName[name]), name, names(spans))
				}
				return byName[name][0]
			}
			rootS := one("checkout")
			pubOrder := one("publish orders")
			consOrder := one("consume orders")
			pubInv := one("publish invoices")
			consInv := one("consume invoices")
			handles := byName["handle order.placed"]
			handleInv := one("handle invoice.issued")
			if len(handles) != 2 {
				t.Fatalf("%d handle spans for the order, want 2 (a failure and its retry); spans %v", len(handles), names(spans))
			}
			tid := rootS.SpanContext.TraceID()
			for _, s := range spans {
				if s.SpanContext.TraceID() != tid {
					t.Errorf("span %q in trace %s, want %s", s.Name, s.SpanContext.TraceID(), tid)
				}
			}
			childOf := func(c, p tracetest.SpanStub) {
				t.Helper()
				if c.Parent.SpanID() != p.SpanContext.SpanID() {
					t.Errorf("span %q has parent %s, want %q (%s)", c.Name, c.Parent.SpanID(), p.Name, p.SpanContext.SpanID())
				}
			}
			linkedTo := func(c, p tracetest.SpanStub) {
				t.Helper()
				for _, l := range c.Links {
					if l.SpanContext.SpanID() == p.SpanContext.SpanID() && l.SpanContext.TraceID() == p.SpanContext.TraceID() {
						return
					}
				}
				t.Errorf("span %q is not linked to %q", c.Name, p.Name)
			}
			kind := func(s tracetest.SpanStub, k trace.SpanKind) {
				t.Helper()
				if s.SpanKind != k {
					t.Errorf("span %q kind %v, want %v", s.Name, s.SpanKind, k)
				}
			}
			childOf(pubOrder, rootS)
			kind(pubOrder, trace.SpanKindProducer)
			childOf(consOrder, pubOrder)
			linkedTo(consOrder, pubOrder)
			kind(consOrder, trace.SpanKindConsumer)
			for _, h := range handles {
				childOf(h, consOrder)
			}
			if handles[0].Status.Code.String() != "Error" || handles[1].Status.Code.String() == "Error" {
				t.Errorf("handle statuses %v, %v: want the first failed, the retry not", handles[0].Status, handles[1].Status)
			}
			childOf(pubInv, handles[1])
			kind(pubInv, trace.SpanKindProducer)
			childOf(consInv, pubInv)
			linkedTo(consInv, pubInv)
			childOf(handleInv, consInv)

			// The wire carries it: each event's traceparent names the span
			// that published it.
			if want := "00-" + tid.String() + "-" + pubInv.SpanContext.SpanID().String() + "-01"; invoice.TraceParent != want {
				t.Errorf("invoice traceparent %q, want %q", invoice.TraceParent, want)
			}
			if want := "00-" + tid.String() + "-" + pubOrder.SpanContext.SpanID().String() + "-01"; order.TraceParent != want {
				t.Errorf("order traceparent %q, want %q", order.TraceParent, want)
			}
			if invoice.CausationID != order.ID {
				t.Errorf("invoice causation %q, want %q", invoice.CausationID, order.ID)
			}
		})
	}
}

func names(spans tracetest.SpanStubs) []string {
	var ns []string
	for _, s := range spans {
		ns = append(ns, s.Name)
	}
	return ns
}
