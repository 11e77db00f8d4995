package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/internal/otlptest"
)

// TestTraceAcrossPublishRuleAndConsumer: herald serve, told by
// OTEL_EXPORTER_OTLP_ENDPOINT to export traces to an in-process OTLP
// receiver, makes one trace of an HTTP publish (continuing the caller's
// traceparent), the rule delivery that routes the event to another topic,
// and an SDK consumer of that topic; a record produced over the Kafka
// protocol with a traceparent header gets the listener's produce span in
// the producer's trace.
func TestTraceAcrossPublishRuleAndConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	recv := otlptest.NewReceiver()
	defer recv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	p := startHeraldProcess(t)

	p.call(t, "POST", "/v1/topics", "application/json", `{"name":"tr-shop","partitions":1}`, 201)
	p.call(t, "POST", "/v1/topics", "application/json", `{"name":"tr-billing","partitions":1}`, 201)
	p.call(t, "POST", "/v1/buses", "application/json", `{"name":"tr-shop"}`, 201)
	p.call(t, "POST", "/v1/rules", "application/json",
		`{"name":"paid","bus":"tr-shop","event_pattern":{"type":["order.placed"]},"targets":[{"id":"bill","topic":"tr-billing"}]}`, 201)

	// The consumer: an SDK subscriber with the Trace middleware, recording
	// its spans in memory.
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	got := make(chan *event.Event, 1)
	sub, err := client.NewSubscriber([]string{p.kafkaAddr}, "tr-billing-svc", []string{"tr-billing"},
		func(ctx context.Context, e *event.Event) error {
			select {
			case got <- e:
			default:
			}
			return nil
		}, client.WithTracerProvider(tp), client.WithMiddleware(client.Trace()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- sub.Run(ctx) }()
	defer func() { cancel(); <-ran }()

	const traceID = "0af7651916cd43dd8448eb211c80319c"
	const callerSpan = "b7ad6b7169203331"
	req, _ := http.NewRequest("POST", "http://"+p.httpAddr+"/v1/topics/tr-shop/events",
		bytes.NewReader([]byte(`{"specversion":"1.0","source":"/shop","type":"order.placed","id":"o-1","data":{"n":1}}`)))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %s", resp.Status)
	}

	var delivered *event.Event
	select {
	case delivered = <-got:
	case <-time.After(30 * time.Second):
		t.Fatalf("the consumer got nothing\n%s", p.log.String())
	}

	var pub, del *tracepb.Span
	waitFor(t, "the publish and delivery spans at the OTLP receiver", 30*time.Second, func() bool {
		pub, del = recv.Find("publish tr-shop"), recv.Find("deliver tr-shop/paid")
		return pub != nil && del != nil
	})
	id := otlptest.ID
	if id(pub.GetTraceId()) != traceID || id(pub.GetParentSpanId()) != callerSpan {
		t.Errorf("publish span in trace %s under %s, want %s under the caller's %s",
			id(pub.GetTraceId()), id(pub.GetParentSpanId()), traceID, callerSpan)
	}
	if pub.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("publish span kind %v", pub.GetKind())
	}
	if id(del.GetTraceId()) != traceID || id(del.GetParentSpanId()) != id(pub.GetSpanId()) {
		t.Errorf("delivery span in trace %s under %s, want %s under the publish span %s",
			id(del.GetTraceId()), id(del.GetParentSpanId()), traceID, id(pub.GetSpanId()))
	}
	if want := fmt.Sprintf("00-%s-%s-01", traceID, id(del.GetSpanId())); delivered.TraceParent != want {
		t.Errorf("delivered event's traceparent %q, want the delivery span's %q", delivered.TraceParent, want)
	}
	// The consumer's span continues the same trace, under the delivery.
	var consume sdktrace.ReadOnlySpan
	waitFor(t, "the consumer's span", 10*time.Second, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "consume tr-billing" {
				consume = s
				return true
			}
		}
		return false
	})
	if consume.SpanContext().TraceID().String() != traceID || consume.Parent().SpanID().String() != id(del.GetSpanId()) {
		t.Errorf("consume span in trace %s under %s, want %s under the delivery span %s",
			consume.SpanContext().TraceID(), consume.Parent().SpanID(), traceID, id(del.GetSpanId()))
	}

	// Over the Kafka protocol: the listener's span of the produce is the
	// child of the record's traceparent.
	const kafkaTrace, kafkaSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	if err := cl.ProduceSync(pctx, &kgo.Record{Topic: "tr-shop", Value: []byte("x"),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-" + kafkaTrace + "-" + kafkaSpan + "-01")}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var prod *tracepb.Span
	waitFor(t, "the Kafka produce span at the OTLP receiver", 30*time.Second, func() bool {
		for _, s := range recv.Spans() {
			if s.GetName() == "produce tr-shop" && id(s.GetTraceId()) == kafkaTrace {
				prod = s
				return true
			}
		}
		return false
	})
	if id(prod.GetParentSpanId()) != kafkaSpan || prod.GetKind() != tracepb.Span_SPAN_KIND_SERVER ||
		otlptest.Attr(prod, "messaging.batch.message_count") != "1" || otlptest.Attr(prod, "messaging.destination.partition.id") != "0" {
		t.Errorf("produce span: parent %s (want %s), kind %v, attributes %v", id(prod.GetParentSpanId()), kafkaSpan, prod.GetKind(), prod.GetAttributes())
	}
}
