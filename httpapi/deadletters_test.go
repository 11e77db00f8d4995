package httpapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/client"
)

func TestDeadLetters(t *testing.T) {
	e := newEnv(t)
	e.createTopic("orders.dlq", 1, nil)
	cl := kafkaClient(t, e, kgo.DefaultProduceTopic("orders.dlq"))
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	dl := func(reason, errText string, last time.Time, extra ...kgo.RecordHeader) *kgo.Record {
		h := append(extra,
			kgo.RecordHeader{Key: client.HeaderDLQTopic, Value: []byte("orders")},
			kgo.RecordHeader{Key: client.HeaderDLQPartition, Value: []byte("2")},
			kgo.RecordHeader{Key: client.HeaderDLQOffset, Value: []byte("41")},
			kgo.RecordHeader{Key: client.HeaderDLQGroup, Value: []byte("billing")},
			kgo.RecordHeader{Key: client.HeaderDLQError, Value: []byte(errText)},
			kgo.RecordHeader{Key: client.HeaderDLQReason, Value: []byte(reason)},
			kgo.RecordHeader{Key: client.HeaderDLQAttempts, Value: []byte("5")},
			kgo.RecordHeader{Key: client.HeaderDLQFirstFailure, Value: []byte(last.Add(-time.Minute).Format(time.RFC3339Nano))},
			kgo.RecordHeader{Key: client.HeaderDLQLastFailure, Value: []byte(last.Format(time.RFC3339Nano))},
		)
		return &kgo.Record{Key: []byte("k"), Value: []byte(`{"n":1}`), Headers: h}
	}
	ceHeaders := []kgo.RecordHeader{{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte("e1")},
		{Key: "ce_source", Value: []byte("/shop")}, {Key: "ce_type", Value: []byte("order.placed")}, {Key: "content-type", Value: []byte("application/json")}}
	recs := []*kgo.Record{
		dl("failed", "connection refused", t0, ceHeaders...),
		dl("malformed", "not a CloudEvent", t0.Add(time.Hour)),
		dl("failed", "timeout", t0.Add(2*time.Hour)),
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	get := func(q string) DeadLettersResponse {
		var out DeadLettersResponse
		e.must(e.do("GET", "/v1/topics/orders.dlq/deadletters?"+q, nil, nil), 200, &out)
		return out
	}
	all := get("")
	if len(all.DeadLetters) != 3 || all.NextOffset != 3 || all.Scanned != 3 {
		t.Fatalf("all: %+v", all)
	}
	d0 := all.DeadLetters[0]
	if d0.DeadLetter.SourceTopic != "orders" || *d0.DeadLetter.SourcePartition != 2 || *d0.DeadLetter.SourceOffset != 41 || *d0.DeadLetter.Attempts != 5 ||
		d0.DeadLetter.Reason != "failed" || d0.DeadLetter.Group != "billing" || d0.DeadLetter.LastFailure != "2026-06-01T00:00:00Z" {
		t.Errorf("metadata: %+v", d0.DeadLetter)
	}
	// The original CloudEvent is decoded; the raw one keeps its headers
	// but not herald-dlq-*.
	if !strings.Contains(string(d0.Event), `"id":"e1"`) || strings.Contains(string(d0.Event), "dlq") {
		t.Errorf("original event: %s", d0.Event)
	}
	if r := all.DeadLetters[1].Record; r == nil || *r.Value != `{"n":1}` || len(r.Headers) != 0 {
		t.Errorf("original record: %+v", all.DeadLetters[1].ReadItem)
	}
	for q, want := range map[string]int{
		"reason=failed": 2, "error=refused": 1, "sourceTopic=other": 0, "group=billing": 3,
		"since=2026-06-01T01:00:00Z": 2, "until=2026-06-01T01:00:00Z": 1, "offset=2": 1, "limit=1": 1,
	} {
		if got := get(q); len(got.DeadLetters) != want {
			t.Errorf("%s: %d dead letters, want %d", q, len(got.DeadLetters), want)
		}
	}
	if got := get("limit=1&reason=malformed"); got.NextOffset != 2 || got.DeadLetters[0].Offset != 1 {
		t.Errorf("limit=1&reason=malformed: next %d, %+v", got.NextOffset, got.DeadLetters)
	}
	// The summary, as herald dlq list.
	var sum dlqSummary
	e.must(e.do("GET", "/v1/topics/orders.dlq/deadletters:summary?top=1", nil, nil), 200, &sum)
	if !sum.Complete || sum.Matched != 3 || sum.Stored != 3 || sum.FirstFailure != "2026-05-31T23:59:00Z" || sum.LastFailure != "2026-06-01T02:00:00Z" ||
		len(sum.ByReason.Entries) != 1 || sum.ByReason.Entries[0].Name != "failed" || sum.ByReason.Entries[0].Records != 2 || sum.ByReason.Omitted != 1 ||
		sum.BySourceTopic.Entries[0].Records != 3 || sum.ByError.Entries[0].Name != "connection refused" {
		t.Errorf("summary: %+v", sum)
	}
	e.must(e.do("GET", "/v1/topics/orders.dlq/deadletters:summary?reason=malformed", nil, nil), 200, &sum)
	if sum.Matched != 1 || sum.Scanned != 3 || sum.ByError.Entries[0].Name != "not a CloudEvent" {
		t.Errorf("filtered summary: %+v", sum)
	}
	expectError(t, e.do("GET", "/v1/topics/orders.dlq/deadletters:summary?top=0", nil, nil), 400, "top", "")
	expectError(t, e.do("GET", "/v1/topics/orders.dlq/deadletters?reason=odd", nil, nil), 400, "reason", "failed or malformed")
	expectError(t, e.do("GET", "/v1/topics/orders.dlq/deadletters?since=yesterday", nil, nil), 400, "since", "RFC 3339")
	expectError(t, e.do("GET", "/v1/topics/orders.dlq/deadletters?offset=9", nil, nil), 400, "offset", "0 to 3")
	expectError(t, e.do("GET", "/v1/topics/nope/deadletters", nil, nil), 404, "topic")
}

func TestRedrive(t *testing.T) {
	e := newEnv(t)
	e.createTopic("orders", 3, nil)
	e.createTopic("orders.dlq", 2, nil)
	cl := kafkaClient(t, e, kgo.DefaultProduceTopic("orders.dlq"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	mk := func(part int32, key, reason string, origPart string) *kgo.Record {
		return &kgo.Record{Partition: part, Key: []byte(key), Value: []byte("v-" + key), Headers: []kgo.RecordHeader{
			{Key: "app", Value: []byte("x")},
			{Key: client.HeaderDLQTopic, Value: []byte("orders")},
			{Key: client.HeaderDLQPartition, Value: []byte(origPart)},
			{Key: client.HeaderDLQReason, Value: []byte(reason)},
			{Key: client.HeaderDLQError, Value: []byte("boom")},
		}}
	}
	recs := []*kgo.Record{mk(0, "a", "failed", "2"), mk(0, "b", "malformed", "1"), mk(1, "c", "failed", "0"), mk(0, "d", "failed", "2")}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	type resp struct {
		Executed      bool
		ProgressGroup string
		Matched       int64
		Published     int64
		More          bool
		Partitions    []redrivePartition
	}
	redrive := func(body map[string]any) resp {
		t.Helper()
		var out resp
		e.must(e.doJSON("POST", "/v1/topics/orders.dlq/deadletters:redrive", body), 200, &out)
		return out
	}
	// A dry run publishes nothing and commits nothing.
	if r := redrive(map[string]any{"reason": "failed", "dryRun": true}); r.Executed || r.Matched != 3 || r.Published != 0 || total(e, "orders") != 0 {
		t.Fatalf("dry run: %+v, %d in orders", r, total(e, "orders"))
	}
	// A missing target: refused before anything is published.
	expectError(t, e.doJSON("POST", "/v1/topics/orders.dlq/deadletters:redrive", map[string]any{"to": "nope"}), 404, "to", "nothing was published")
	expectError(t, e.doJSON("POST", "/v1/topics/orders.dlq/deadletters:redrive", map[string]any{"reason": "x"}), 400, "reason", "")
	expectError(t, e.doJSON("POST", "/v1/topics/orders.dlq/deadletters:redrive", map[string]any{"maxRecords": -1}), 400, "maxRecords", "")

	// Two calls of one record each, then the rest, under one progress
	// group: every failed dead letter redriven exactly once.
	r1 := redrive(map[string]any{"reason": "failed", "samePartition": true, "maxRecords": 1})
	if !r1.Executed || r1.Published != 1 || !r1.More || !strings.HasPrefix(r1.ProgressGroup, "herald-dlq-redrive-orders.dlq-") {
		t.Fatalf("first call: %+v", r1)
	}
	r2 := redrive(map[string]any{"reason": "failed", "samePartition": true})
	if r2.Published != 2 || r2.More {
		t.Fatalf("second call: %+v", r2)
	}
	if r3 := redrive(map[string]any{"reason": "failed", "samePartition": true}); r3.Published != 0 || r3.Matched != 0 {
		t.Fatalf("third call republished: %+v", r3)
	}
	if n := total(e, "orders"); n != 3 {
		t.Fatalf("%d records in orders, want 3", n)
	}
	// Same partition as the original; dead-letter headers gone;
	// herald-redriven-from names the dead letter.
	got := consumeAll(t, e, "orders", 3)
	for _, r := range got {
		h := headerMap(r)
		want := map[string]int32{"a": 2, "c": 0, "d": 2}[string(r.Key)]
		if r.Partition != want || h["app"] != "x" || h[client.HeaderDLQTopic] != "" || !strings.HasPrefix(h[client.HeaderRedrivenFrom], "orders.dlq/") || string(r.Value) != "v-"+string(r.Key) {
			t.Errorf("redriven record %s: partition %d headers %v", r.Key, r.Partition, h)
		}
	}
	// fromStart ignores the progress.
	if r := redrive(map[string]any{"reason": "failed", "fromStart": true, "dryRun": true}); r.Matched != 3 {
		t.Errorf("fromStart dry run: %+v", r)
	}
}
