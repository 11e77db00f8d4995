package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog/batch"
)

// tracedEnv is a listener whose Config.TracerProvider records spans in
// memory.
func tracedEnv(t *testing.T) (addr string, b *broker.Broker, rec *tracetest.SpanRecorder) {
	t.Helper()
	b, err := broker.Open(broker.Config{DataDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rec = tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s := New(Config{Broker: b, Logger: testLogger(t), TracerProvider: tp})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		b.Close()
	})
	return ln.Addr().String(), b, rec
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestProduceSpans: each partition of a Produce request gets a server
// span "produce <topic>" with topic, partition, record count and acks;
// records that all carry one traceparent make it the span's parent (and a
// link), records of several traces give a root span linked to each; a
// refused produce ends its span with an error; without a TracerProvider
// nothing is recorded.
func TestProduceSpans(t *testing.T) {
	addr, b, rec := tracedEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.CreateTopic(context.Background(), "traced", 2, nil); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(50*time.Millisecond), kgo.RecordRetries(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	const (
		traceA = "0af7651916cd43dd8448eb211c80319c"
		spanA  = "b7ad6b7169203331"
		traceB = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanB  = "00f067aa0ba902b7"
	)
	tpA := "00-" + traceA + "-" + spanA + "-01"
	tpB := "00-" + traceB + "-" + spanB + "-01"
	rec0 := func(v, tp string) *kgo.Record {
		r := &kgo.Record{Topic: "traced", Partition: 0, Value: []byte(v)}
		if tp != "" {
			r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}}
		}
		return r
	}
	// Partition 0: three records of one trace. Partition 1: records of two
	// traces, one with none and one with a malformed traceparent.
	recs := []*kgo.Record{rec0("a1", tpA), rec0("a2", tpA), rec0("a3", tpA)}
	for _, r := range []*kgo.Record{rec0("x", tpA), rec0("y", tpB), rec0("z", ""), rec0("bad", "00-zz-yy-01")} {
		r.Partition = 1
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	byPart := map[string]sdktrace.ReadOnlySpan{}
	count := 0
	for _, s := range rec.Ended() {
		if s.Name() != "produce traced" {
			t.Errorf("unexpected span %q", s.Name())
			continue
		}
		a := attrs(s)
		count += int(a["messaging.batch.message_count"].AsInt64())
		byPart[a["messaging.destination.partition.id"].AsString()] = s
		if s.SpanKind() != trace.SpanKindServer {
			t.Errorf("span kind %v, want server", s.SpanKind())
		}
		if a["messaging.destination.name"].AsString() != "traced" || a["messaging.kafka.acks"].AsInt64() != -1 ||
			a["messaging.system"].AsString() != "kafka" {
			t.Errorf("span attributes %v", s.Attributes())
		}
		if _, ok := a["messaging.kafka.offset"]; !ok || s.Status().Code == codes.Error {
			t.Errorf("span of a stored produce: status %v, attributes %v", s.Status(), s.Attributes())
		}
	}
	if count != len(recs) || len(byPart) != 2 {
		t.Fatalf("spans count %d records over partitions %v; want %d over 0 and 1", count, byPart, len(recs))
	}
	p0, p1 := byPart["0"], byPart["1"]
	if p0.SpanContext().TraceID().String() != traceA || p0.Parent().SpanID().String() != spanA || !p0.Parent().IsRemote() {
		t.Errorf("partition 0 span in trace %s under %s, want %s under the producer's %s",
			p0.SpanContext().TraceID(), p0.Parent().SpanID(), traceA, spanA)
	}
	if l := p0.Links(); len(l) != 1 || l[0].SpanContext.SpanID().String() != spanA {
		t.Errorf("partition 0 links %v, want one to %s", l, spanA)
	}
	if p1.Parent().IsValid() {
		t.Errorf("partition 1 span (records of two traces) has parent %v, want a root", p1.Parent())
	}
	var linked []string
	for _, l := range p1.Links() {
		linked = append(linked, l.SpanContext.TraceID().String()+"/"+l.SpanContext.SpanID().String())
	}
	if want := []string{traceA + "/" + spanA, traceB + "/" + spanB}; len(linked) != 2 || linked[0] != want[0] || linked[1] != want[1] {
		t.Errorf("partition 1 links %v, want %v", linked, want)
	}

	// A refused produce (no such topic, no auto-create) fails its span.
	rec.Reset()
	bb, _ := batch.Encode(nil, batch.BuildOptions{}, []batch.Rec{{Value: []byte("v")}})
	if _, err := cl.Request(ctx, produceReq(9, 1, map[string]map[int32][]byte{"missing": {0: bb}})); err != nil {
		t.Fatal(err)
	}
	var failed sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "produce missing" {
			failed = s
		}
	}
	if failed == nil || failed.Status().Code != codes.Error || attrs(failed)["error.type"].AsString() != "UNKNOWN_TOPIC_OR_PARTITION" {
		t.Fatalf("refused produce's span %v", failed)
	}
}

// TestProduceSpansAcksNone: with acks=0 there is no reply, yet the span
// ends once the records are appended; the trace context of a Herald event
// (the CloudEvents binding's ce_traceparent header) is followed too.
func TestProduceSpansAcksNone(t *testing.T) {
	addr, b, rec := tracedEnv(t)
	if err := b.CreateTopic(context.Background(), "fire", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ceTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := &kgo.Record{Topic: "fire", Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "ce_traceparent", Value: []byte(ceTP)}}}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, s := range rec.Ended() {
			if s.Name() == "produce fire" {
				if a := attrs(s); a["messaging.kafka.acks"].AsInt64() != 0 || a["messaging.batch.message_count"].AsInt64() != 1 {
					t.Errorf("attributes %v", s.Attributes())
				}
				if got := "00-" + s.Parent().TraceID().String() + "-" + s.Parent().SpanID().String() + "-01"; got != ceTP {
					t.Errorf("parent %s, want the record's ce_traceparent %s", got, ceTP)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no span for an acks=0 produce")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRecordTracesBounded: a batch of records from more traces than
// maxProduceLinks links to the first ones and counts the rest.
func TestRecordTracesBounded(t *testing.T) {
	addr, b, rec := tracedEnv(t)
	if err := b.CreateTopic(context.Background(), "many", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(time.Second), kgo.MaxBufferedRecords(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = maxProduceLinks + 36
	var recs []*kgo.Record
	for i := range n {
		tp := []byte(fmt.Sprintf("00-0af7651916cd43dd8448eb211c80319c-%016x-01", i+1))
		recs = append(recs, &kgo.Record{Topic: "many", Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: tp}}})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	links, dropped, records := 0, int64(0), int64(0)
	for _, s := range rec.Ended() {
		links += len(s.Links())
		dropped += attrs(s)["herald.kafka.trace_links_dropped"].AsInt64()
		records += attrs(s)["messaging.batch.message_count"].AsInt64()
	}
	if records != n || int64(links)+dropped != n || links > maxProduceLinks*len(rec.Ended()) {
		t.Fatalf("%d records: %d links + %d dropped over %d spans", records, links, dropped, len(rec.Ended()))
	}
}

// FuzzRecordTraces: the produce span reads the trace context headers of
// records a client sent, before the broker checks them: any bytes give a
// count and valid span contexts, never a panic.
func FuzzRecordTraces(f *testing.F) {
	tp := []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	for _, c := range []batch.Compression{batch.None, batch.Gzip, batch.Zstd} {
		b, err := batch.Encode(nil, batch.BuildOptions{Compression: c}, []batch.Rec{
			{Value: []byte("a"), Headers: []batch.RecordHeader{{Key: []byte("traceparent"), Value: tp}}},
			{Value: []byte("b"), Headers: []batch.RecordHeader{{Key: []byte("ce_traceparent"), Value: []byte("00-bad")}}},
		})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(append(b, b...))
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, parents := recordTraces(b)
		if n < 0 || len(parents) > n {
			t.Fatalf("%d records, %d parents", n, len(parents))
		}
		for _, sc := range parents {
			if !sc.IsValid() {
				t.Fatalf("invalid span context %v", sc)
			}
		}
	})
}
