package orders

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/internal/otlptest"
	"github.com/heraldhq/herald/kafka"
	"github.com/heraldhq/herald/server"
)

// traceView indexes the spans of one trace.
type traceView struct {
	id       string
	spans    []*tracepb.Span
	children map[string][]*tracepb.Span // by parent span id
}

func viewOf(all []*tracepb.Span, traceID string) *traceView {
	v := &traceView{id: traceID, children: map[string][]*tracepb.Span{}}
	for _, s := range all {
		if otlptest.ID(s.GetTraceId()) == traceID {
			v.spans = append(v.spans, s)
			v.children[otlptest.ID(s.GetParentSpanId())] = append(v.children[otlptest.ID(s.GetParentSpanId())], s)
		}
	}
	return v
}

// hop is one expected span: its name and kind, a child of the previous hop.
type hop struct {
	name string
	kind tracepb.Span_SpanKind
}

// path finds a chain of spans, each a child of the one before, the first a
// child of from, with the hops' names and kinds; nil if there is none.
// Several candidates may match a hop (a redelivered event is consumed
// again): any chain that goes all the way is taken.
func (v *traceView) path(from *tracepb.Span, hops []hop) []*tracepb.Span {
	if len(hops) == 0 {
		return []*tracepb.Span{}
	}
	for _, c := range v.children[otlptest.ID(from.GetSpanId())] {
		if c.GetName() != hops[0].name || c.GetKind() != hops[0].kind {
			continue
		}
		if rest := v.path(c, hops[1:]); rest != nil {
			return append([]*tracepb.Span{c}, rest...)
		}
	}
	return nil
}

// produced says whether Herald's Kafka listener recorded the produce of
// what span sent to topic: a server span "produce <topic>" that is the
// sender's child (a partition batch of this trace only) or links to it (a
// batch of several traces).
func produced(all []*tracepb.Span, sender *tracepb.Span, topic string) bool {
	id := otlptest.ID(sender.GetSpanId())
	for _, s := range all {
		if s.GetName() != "produce "+topic || s.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			continue
		}
		if otlptest.ID(s.GetParentSpanId()) == id && otlptest.ID(s.GetTraceId()) == otlptest.ID(sender.GetTraceId()) {
			return true
		}
		for _, l := range s.GetLinks() {
			if otlptest.ID(l.GetSpanId()) == id && otlptest.ID(l.GetTraceId()) == otlptest.ID(sender.GetTraceId()) {
				return true
			}
		}
	}
	return false
}

// TestOneTracePerOrder runs the order flow (orchestration: the saga engine
// and the services' SDK subscribers) against a Herald whose Kafka listener
// traces produces, all exporting over OTLP/HTTP to an in-process receiver,
// and follows each order's trace from "place order" through every saga
// command, the participant's consume and handle spans and its reply, to
// the next command: one trace per order, each span the child of what
// caused it, and every write seen by the broker's produce span (as its
// child or linked to it). One order completes; the other fails at shipping
// and its trace goes on through the compensations.
func TestOneTracePerOrder(t *testing.T) {
	recv := otlptest.NewReceiver()
	defer recv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(recv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(100*time.Millisecond)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "orders-test"))))
	defer tp.Shutdown(context.Background())
	srv, err := server.Start(ctx, server.Config{
		Broker: broker.Config{DataDir: t.TempDir()},
		Kafka:  kafka.Config{TracerProvider: tp},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// A seed with which order 1 ships and order 2 does not.
	var seed uint64 = 1
	for chance(seed, "order-000001", "ship") < 0.5 || chance(seed, "order-000002", "ship") >= 0.5 {
		seed++
	}
	cfg := Config{Brokers: []string{srv.KafkaAddr()}, Mode: Orchestration, Orders: 2, ShippingFailureRate: 0.5,
		Seed: seed, Timeout: 60 * time.Second, TracerProvider: tp, Prefix: "traced."}
	sum, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK() || sum.Completed != 1 || sum.Compensated != 1 {
		t.Fatalf("run: %+v", sum)
	}
	tt := cfg.topics()
	cmd := func(typ, topic, reply string) []hop {
		return []hop{
			{"saga " + typ, tracepb.Span_SPAN_KIND_PRODUCER},
			{"consume " + topic, tracepb.Span_SPAN_KIND_CONSUMER},
			{"handle " + typ, tracepb.Span_SPAN_KIND_INTERNAL},
			{"publish " + reply, tracepb.Span_SPAN_KIND_PRODUCER},
		}
	}
	// The hops of each order's trace after "place order"; every span that
	// writes (publish, saga) is checked for the broker's produce span.
	start := []hop{{"publish " + tt.inbox, tracepb.Span_SPAN_KIND_PRODUCER}}
	var completed, compensated []hop
	completed = append(completed, start...)
	completed = append(completed, cmd("PaymentCommand", tt.payments, tt.inbox)...)
	completed = append(completed, cmd("ReserveInventoryCommand", tt.inventory, tt.inbox)...)
	completed = append(completed, cmd("CreateShipmentCommand", tt.shipping, tt.inbox)...)
	completed = append(completed, cmd("CompleteOrderCommand", tt.orders, tt.events)...)
	completed = append(completed, hop{"consume " + tt.events, tracepb.Span_SPAN_KIND_CONSUMER}, hop{"handle OrderCompleted", tracepb.Span_SPAN_KIND_INTERNAL})
	compensated = append(compensated, start...)
	compensated = append(compensated, cmd("PaymentCommand", tt.payments, tt.inbox)...)
	compensated = append(compensated, cmd("ReserveInventoryCommand", tt.inventory, tt.inbox)...)
	compensated = append(compensated, cmd("CreateShipmentCommand", tt.shipping, tt.inbox)...) // ShippingFailed
	compensated = append(compensated, cmd("ReleaseInventory", tt.inventory, tt.inbox)...)
	compensated = append(compensated, cmd("RefundPayment", tt.payments, tt.inbox)...)
	compensated = append(compensated, hop{"saga CancelOrder", tracepb.Span_SPAN_KIND_PRODUCER},
		hop{"consume " + tt.orders, tracepb.Span_SPAN_KIND_CONSUMER}, hop{"handle CancelOrder", tracepb.Span_SPAN_KIND_INTERNAL},
		hop{"publish " + tt.events, tracepb.Span_SPAN_KIND_PRODUCER})

	want := map[string][]hop{"order-000001": completed, "order-000002": compensated}
	var report string
	ok := waitUntil(30*time.Second, func() bool {
		tp.ForceFlush(ctx)
		all := recv.Spans()
		report = ""
		for order, hops := range want {
			var root *tracepb.Span
			for _, s := range all {
				if s.GetName() == "place order" && otlptest.Attr(s, "order.id") == order {
					root = s
				}
			}
			if root == nil {
				report += fmt.Sprintf("%s: no \"place order\" span\n", order)
				continue
			}
			if len(root.GetParentSpanId()) != 0 {
				report += fmt.Sprintf("%s: \"place order\" is not a root\n", order)
				continue
			}
			v := viewOf(all, otlptest.ID(root.GetTraceId()))
			chain := v.path(root, hops)
			if chain == nil {
				report += fmt.Sprintf("%s: trace %s lacks the chain %v; it has:\n%s", order, v.id, names(hops), v.dump(root, "  "))
				continue
			}
			for _, s := range chain {
				name := s.GetName()
				var topic string
				switch {
				case strings.HasPrefix(name, "publish "):
					topic = strings.TrimPrefix(name, "publish ")
				case strings.HasPrefix(name, "saga "):
					topic = otlptest.Attr(s, "messaging.destination.name")
				default:
					continue
				}
				if !produced(all, s, topic) {
					report += fmt.Sprintf("%s: no broker span \"produce %s\" child of or linked to %q\n", order, topic, name)
				}
			}
		}
		return report == ""
	})
	if !ok {
		t.Fatal(report)
	}
}

func names(hops []hop) []string {
	var out []string
	for _, h := range hops {
		out = append(out, h.name)
	}
	return out
}

// dump draws the trace below s, for failure messages.
func (v *traceView) dump(s *tracepb.Span, indent string) string {
	out := fmt.Sprintf("%s%s (%s)\n", indent, s.GetName(), s.GetKind())
	for _, c := range v.children[otlptest.ID(s.GetSpanId())] {
		out += v.dump(c, indent+"  ")
	}
	return out
}

func waitUntil(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
