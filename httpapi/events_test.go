package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

var uuidv7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func kafkaClient(t *testing.T, e *env, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.srv.KafkaAddr())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// consumeAll reads n records of topic over Kafka.
func consumeAll(t *testing.T, e *env, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := kafkaClient(t, e, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(out), n, err)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func headerMap(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

func TestPublishContentModesAndKafkaBinding(t *testing.T) {
	e := newEnv(t)
	e.createTopic("ev", 1, nil)

	// Structured, with JSON data and a missing id (generated).
	res := e.publish("ev", "application/cloudevents+json",
		`{"specversion":"1.0","source":"/orders","type":"order.placed","subject":"o-1","time":"2026-01-02T03:04:05.123Z","data":{"total":12},"tenant":"acme","priority":3,"urgent":true}`, nil)
	if len(res) != 1 || res[0].Offset != 0 || res[0].Partition != 0 || !uuidv7.MatchString(res[0].ID) {
		t.Fatalf("structured: %+v", res)
	}
	genID := res[0].ID
	// Batch: text data, base64 data, partitionkey.
	res = e.publish("ev", "application/cloudevents-batch+json", `[
		{"specversion":"1.0","id":"b1","source":"/s","type":"t","datacontenttype":"text/plain","data":"hello"},
		{"specversion":"1.0","id":"b2","source":"/s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AAEC/w=="},
		{"specversion":"1.0","id":"b3","source":"/s","type":"t","partitionkey":"k1"}]`, nil)
	if len(res) != 3 || res[0].Offset != 1 || res[2].Offset != 3 || res[1].ID != "b2" {
		t.Fatalf("batch: %+v", res)
	}
	// Binary, with a percent-encoded value and non-ASCII.
	res = e.publish("ev", "text/plain; charset=utf-8", "plain body", http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {"bin-1"}, "Ce-Source": {"/bin"}, "Ce-Type": {"t"},
		"Ce-Subject": {"caf%C3%A9 %22x%22"}, "Ce-Myext": {"v"},
	})
	if len(res) != 1 || res[0].Offset != 4 || res[0].ID != "bin-1" {
		t.Fatalf("binary: %+v", res)
	}
	// Plain records.
	res = e.publish("ev", "application/json", `{"records":[{"key":"k","value":{"a":1},"headers":{"h":"v"}},{"valueBase64":"/w=="}]}`, nil)
	if len(res) != 2 || res[0].Offset != 5 || res[1].Offset != 6 || res[0].ID != "" {
		t.Fatalf("records: %+v", res)
	}

	// Over Kafka: the CloudEvents Kafka binding, binary mode.
	recs := consumeAll(t, e, "ev", 7)
	h := headerMap(recs[0])
	if h["ce_specversion"] != "1.0" || h["ce_id"] != genID || h["ce_source"] != "/orders" || h["ce_type"] != "order.placed" ||
		h["ce_time"] != "2026-01-02T03:04:05.123Z" || h["content-type"] != "application/json" || h["ce_tenant"] != "acme" ||
		h["ce_priority"] != "3" || h["ce_urgent"] != "true" || string(recs[0].Value) != `{"total":12}` {
		t.Errorf("record 0: headers %v value %s", h, recs[0].Value)
	}
	if string(recs[2].Value) != "\x00\x01\x02\xff" || string(recs[3].Key) != "k1" {
		t.Errorf("records 2, 3: %q key %q", recs[2].Value, recs[3].Key)
	}
	if h := headerMap(recs[4]); h["ce_subject"] != `café "x"` || h["content-type"] != "text/plain; charset=utf-8" || h["ce_myext"] != "v" || string(recs[4].Value) != "plain body" {
		t.Errorf("binary record: %v %q", h, recs[4].Value)
	}
	if string(recs[5].Key) != "k" || string(recs[5].Value) != `{"a":1}` || headerMap(recs[5])["h"] != "v" {
		t.Errorf("plain record: %+v", recs[5])
	}

	// Read back over HTTP.
	got := e.read("ev", "offset=0&limit=100")
	if len(got.Events) != 7 || got.NextOffset != 7 || got.HighWatermark != 7 {
		t.Fatalf("read: %d events, next %d, hwm %d", len(got.Events), got.NextOffset, got.HighWatermark)
	}
	var ev0 map[string]any
	json.Unmarshal(got.Events[0].Event, &ev0)
	if ev0["id"] != genID || ev0["time"] != "2026-01-02T03:04:05.123Z" || ev0["tenant"] != "acme" ||
		fmt.Sprint(ev0["data"]) != "map[total:12]" || ev0["specversion"] != "1.0" {
		t.Errorf("event 0: %s", got.Events[0].Event)
	}
	for i, want := range map[int]string{1: `"data":"hello"`, 2: `"data_base64":"AAEC/w=="`, 3: `"partitionkey":"k1"`, 4: `"subject":"café \"x\""`} {
		if !strings.Contains(string(got.Events[i].Event), want) {
			t.Errorf("event %d: %s lacks %s", i, got.Events[i].Event, want)
		}
	}
	if r := got.Events[5].Record; r == nil || *r.Key != "k" || *r.Value != `{"a":1}` || r.Headers[0].Key != "h" || r.Error != "" {
		t.Errorf("raw record 5: %+v", got.Events[5])
	}
	if r := got.Events[6].Record; r == nil || r.Value != nil || *r.ValueBase64 != "/w==" {
		t.Errorf("raw record 6: %+v", got.Events[6])
	}
	// Paging through by nextOffset.
	if p := e.read("ev", "offset=2&limit=2"); len(p.Events) != 2 || p.Events[0].Offset != 2 || p.NextOffset != 4 {
		t.Errorf("offset=2&limit=2: %+v", p)
	}
	if p := e.read("ev", "offset=latest"); len(p.Events) != 0 || p.NextOffset != 7 {
		t.Errorf("offset=latest: %+v", p)
	}
	// Accept: the batch format.
	r := e.do("GET", "/v1/topics/ev/events?limit=10", http.Header{"Accept": {"application/cloudevents-batch+json"}}, nil)
	var arr []map[string]any
	r.json(t, &arr)
	if r.header.Get("Content-Type") != "application/cloudevents-batch+json" || len(arr) != 5 || r.header.Get("Herald-Next-Offset") != "7" {
		t.Errorf("batch read: %s %d events, next %s", r.header.Get("Content-Type"), len(arr), r.header.Get("Herald-Next-Offset"))
	}
}

func TestReadKafkaProducedCloudEvents(t *testing.T) {
	e := newEnv(t)
	e.createTopic("k", 1, nil)
	cl := kafkaClient(t, e, kgo.DefaultProduceTopic("k"))
	ctx := context.Background()
	hs := func(kv ...string) []kgo.RecordHeader {
		var out []kgo.RecordHeader
		for i := 0; i < len(kv); i += 2 {
			out = append(out, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return out
	}
	recs := []*kgo.Record{
		// Binary mode.
		{Key: []byte("pk"), Value: []byte(`{"n":1}`), Headers: hs("ce_specversion", "1.0", "ce_id", "k1", "ce_source", "/kafka", "ce_type", "bin", "content-type", "application/json")},
		// Structured mode.
		{Key: []byte("pk2"), Value: []byte(`{"specversion":"1.0","id":"k2","source":"/kafka","type":"structured","data":{"n":2}}`), Headers: hs("content-type", "application/cloudevents+json; charset=UTF-8")},
		// Not a CloudEvent.
		{Value: []byte("plain")},
		// Claims to be one, but is not valid.
		{Value: []byte("x"), Headers: hs("ce_specversion", "1.0", "ce_id", "k4")},
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := e.read("k", "")
	if len(got.Events) != 4 {
		t.Fatalf("read %d events", len(got.Events))
	}
	var a, b map[string]any
	json.Unmarshal(got.Events[0].Event, &a)
	json.Unmarshal(got.Events[1].Event, &b)
	if a["id"] != "k1" || a["type"] != "bin" || a["partitionkey"] != "pk" || fmt.Sprint(a["data"]) != "map[n:1]" {
		t.Errorf("binary-mode record: %s", got.Events[0].Event)
	}
	if b["id"] != "k2" || b["type"] != "structured" || b["partitionkey"] != "pk2" || fmt.Sprint(b["data"]) != "map[n:2]" {
		t.Errorf("structured-mode record: %s", got.Events[1].Event)
	}
	if r := got.Events[2].Record; r == nil || *r.Value != "plain" || r.Error != "" {
		t.Errorf("plain record: %+v", got.Events[2])
	}
	if r := got.Events[3].Record; r == nil || !strings.Contains(r.Error, "source") {
		t.Errorf("invalid CloudEvent record: %+v", got.Events[3])
	}
}

func TestReadByTimeAndWait(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	e := newEnv(t, func(c *Config) { c.Now = func() time.Time { return clock } })
	e.createTopic("w", 1, nil)
	e.publish("w", "application/json", `{"records":[{"value":1}]}`, nil)
	clock = now.Add(time.Hour)
	e.publish("w", "application/json", `{"records":[{"value":2}]}`, nil)
	got := e.read("w", "time="+now.Add(30*time.Minute).Format(time.RFC3339))
	if len(got.Events) != 1 || got.Events[0].Offset != 1 || got.Events[0].Timestamp != "2026-03-01T13:00:00Z" {
		t.Errorf("time read: %+v", got)
	}
	if got := e.read("w", fmt.Sprintf("time=%d", now.Add(2*time.Hour).UnixMilli())); len(got.Events) != 0 || got.NextOffset != 2 {
		t.Errorf("read after the last: %+v", got)
	}
	// wait: a read at the end returns as soon as an event arrives.
	done := make(chan ReadResponse, 1)
	go func() {
		var out ReadResponse
		r := e.do("GET", "/v1/topics/w/events?offset=2&wait=10s", nil, nil)
		json.Unmarshal(r.body, &out)
		done <- out
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	e.publish("w", "application/json", `{"records":[{"value":3}]}`, nil)
	select {
	case got := <-done:
		if len(got.Events) != 1 || got.Events[0].Offset != 2 {
			t.Errorf("waiting read: %+v", got)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("waiting read took %v after the publish", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("waiting read did not return")
	}
	// An empty wait times out with nothing.
	start = time.Now()
	if got := e.read("w", "offset=3&wait=200ms"); len(got.Events) != 0 || time.Since(start) < 200*time.Millisecond {
		t.Errorf("timed-out wait: %+v after %v", got, time.Since(start))
	}
}

func TestPublishPartitioning(t *testing.T) {
	e := newEnv(t)
	e.createTopic("p", 4, map[string]string{"max.message.bytes": "2000"})
	// Keys go where Kafka's default partitioner puts them.
	cl := kafkaClient(t, e, kgo.DefaultProduceTopic("p"))
	for _, k := range []string{"alpha", "beta", "gamma", "delta"} {
		res := e.publish("p", "application/cloudevents+json", `{"specversion":"1.0","source":"s","type":"t","partitionkey":"`+k+`"}`, nil)
		pr, err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(k), Value: []byte("x")}).First()
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Partition != pr.Partition {
			t.Errorf("key %s: HTTP put it in %d, franz-go in %d", k, res[0].Partition, pr.Partition)
		}
	}
	// ?partition= pins; a batch over max.message.bytes is split into
	// several record batches, offsets contiguous.
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < 10; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"specversion":"1.0","source":"s","type":"t","id":"%d","data":"%s"}`, i, strings.Repeat("x", 500))
	}
	b.WriteString("]")
	res := e.publish("p", "application/cloudevents-batch+json", b.String(), nil)
	for i, x := range res {
		if x.Partition != res[0].Partition || x.Offset != res[0].Offset+int64(i) {
			t.Errorf("unkeyed batch result %d: %+v (want one partition, contiguous)", i, x)
		}
	}
	r := e.do("POST", "/v1/topics/p/events?partition=3", http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, []byte(strings.ReplaceAll(b.String(), `"id":"`, `"id":"y`)))
	var pr PublishResponse
	e.must(r, 200, &pr)
	for i, x := range pr.Results {
		if x.Partition != 3 || x.Offset != pr.Results[0].Offset+int64(i) {
			t.Errorf("pinned batch result %d: %+v", i, x)
		}
	}
	// One event over max.message.bytes is refused, naming the limit.
	r = e.do("POST", "/v1/topics/p/events", http.Header{"Content-Type": {"application/cloudevents+json"}},
		[]byte(`{"specversion":"1.0","source":"s","type":"t","data":"`+strings.Repeat("x", 3000)+`"}`))
	expectError(t, r, 413, "data", "max.message.bytes of 2000")
}

func TestEventJSONRoundTrip(t *testing.T) {
	// Every event the HTTP decoders accept reads back with the same
	// attributes (the JSON event format both ways).
	in := `{"specversion":"1.0","id":"x","source":"/s","type":"t","subject":"sub","time":"2026-01-02T03:04:05.000000001Z","datacontenttype":"application/xml","data":"<a/>","correlationid":"c","kind":"command","aggregateid":"agg","aggregateversion":7,"dataschema":"https://x/s"}`
	ev, err := decodeStructured([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := event.MarshalJSON(ev)
	if err != nil {
		t.Fatal(err)
	}
	var a, b map[string]any
	json.Unmarshal([]byte(in), &a)
	json.Unmarshal(out, &b)
	a["aggregateversion"] = "7"
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("round trip:\n in %v\nout %v", a, b)
	}
}

func TestReadAllPartitions(t *testing.T) {
	e := newEnv(t)
	e.createTopic("multi", 3, nil)
	var b strings.Builder
	for i := 0; i < 30; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"value":%d,"partition":%d}`, i, i%3)
	}
	e.publish("multi", "application/json", `{"records":[`+b.String()+`]}`, nil)
	type page struct {
		Events        []ReadItem
		NextPageToken string
	}
	read := func(q string) page {
		t.Helper()
		var p page
		e.must(e.do("GET", "/v1/topics/multi/events?"+q, nil, nil), 200, &p)
		return p
	}
	seen := map[string]int{}
	q := "limit=7"
	for calls := 0; ; calls++ {
		if calls > 10 {
			t.Fatal("paging does not end")
		}
		p := read(q)
		parts := map[int32]bool{}
		for _, it := range p.Events {
			seen[fmt.Sprintf("%d/%d", it.Partition, it.Offset)]++
			parts[it.Partition] = true
		}
		if calls == 0 && (len(p.Events) != 7 || len(parts) != 3) {
			t.Errorf("first page: %d events from %d partitions, want 7 spread over 3", len(p.Events), len(parts))
		}
		if p.NextPageToken == "" {
			t.Fatal("no nextPageToken")
		}
		q = "limit=7&pageToken=" + p.NextPageToken
		if len(p.Events) == 0 {
			break
		}
	}
	if len(seen) != 30 {
		t.Errorf("read %d distinct records, want 30", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s read %d times", k, n)
		}
	}
	// The last token continues with what is published later, and waits.
	done := make(chan page, 1)
	go func() { done <- read(q + "&wait=10s") }()
	time.Sleep(50 * time.Millisecond)
	e.publish("multi", "application/json", `{"records":[{"value":"late","partition":1}]}`, nil)
	select {
	case p := <-done:
		if len(p.Events) != 1 || p.Events[0].Partition != 1 || p.Events[0].Offset != 10 {
			t.Errorf("after the last token: %+v", p.Events)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("waiting read of every partition did not return")
	}
	if p := read("offset=latest"); len(p.Events) != 0 {
		t.Errorf("latest: %d events", len(p.Events))
	}
	if p := read("time=0&limit=1000"); len(p.Events) != 31 {
		t.Errorf("time=0: %d events", len(p.Events))
	}
}

// TestReadCommittedOnly: reads return committed data only, as Kafka's
// read_committed consumers see it: aborted transactions and control
// records are skipped, and an open transaction holds back what follows.
func TestReadCommittedOnly(t *testing.T) {
	e := newEnv(t)
	e.createTopic("tx", 1, nil)
	ctx := context.Background()
	plain := kafkaClient(t, e, kgo.DefaultProduceTopic("tx"))
	txc := kafkaClient(t, e, kgo.DefaultProduceTopic("tx"), kgo.TransactionalID("httpapi-test"))
	produceTxn := func(commit bool, vals ...string) {
		t.Helper()
		if err := txc.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if err := txc.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txc.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	produceTxn(false, "aborted-1", "aborted-2")
	produceTxn(true, "committed")
	if err := plain.ProduceSync(ctx, &kgo.Record{Value: []byte("plain")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	values := func(p ReadResponse) []string {
		var out []string
		for _, it := range p.Events {
			out = append(out, *it.Record.Value)
		}
		return out
	}
	got := e.read("tx", "")
	if v := values(got); fmt.Sprint(v) != "[committed plain]" || got.NextOffset != got.HighWatermark {
		t.Errorf("read: %v, next %d, hwm %d", v, got.NextOffset, got.HighWatermark)
	}
	// An open transaction: its record and everything after it wait.
	if err := txc.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txc.ProduceSync(ctx, &kgo.Record{Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := plain.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	next := got.NextOffset
	if p := e.read("tx", fmt.Sprintf("offset=%d&wait=100ms", next)); len(p.Events) != 0 {
		t.Errorf("read past an open transaction: %v", values(p))
	}
	if err := txc.EndTransaction(ctx, kgo.TransactionEndTry(true)); err != nil {
		t.Fatal(err)
	}
	if p := e.read("tx", fmt.Sprintf("offset=%d", next)); fmt.Sprint(values(p)) != "[open after]" {
		t.Errorf("after the commit: %v", values(p))
	}
}
