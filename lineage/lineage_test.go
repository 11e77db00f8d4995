package lineage

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/embedded"
)

var t0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

// orderFlow is placed -> payment.requested -> payment.ok -> shipped, and
// placed -> stock.reserved: five events of one flow.
func orderFlow(prefix string) []*event.Event {
	placed := &event.Event{ID: prefix + "placed", Source: "/shop", Type: "order.placed", Time: t0}
	at := func(e *event.Event, parent *event.Event, ms int) *event.Event {
		e.CausedBy(parent)
		e.Time = t0.Add(time.Duration(ms) * time.Millisecond)
		return e
	}
	req := at(&event.Event{ID: prefix + "pay-req", Source: "/orders", Type: "payment.requested"}, placed, 10)
	ok := at(&event.Event{ID: prefix + "pay-ok", Source: "/payments", Type: "payment.ok"}, req, 250)
	ship := at(&event.Event{ID: prefix + "shipped", Source: "/shipping", Type: "order.shipped"}, ok, 1250)
	stock := at(&event.Event{ID: prefix + "stock", Source: "/stock", Type: "stock.reserved"}, placed, 40)
	return []*event.Event{placed, req, ok, ship, stock}
}

func entry(e *event.Event, topic string, off int64) Entry {
	return Entry{ID: e.ID, Source: e.Source, Type: e.Type, Topic: topic, Offset: off, Time: e.Time,
		CorrelationID: e.CorrelationID, CausationID: e.CausationID}
}

func ids[T interface{ GetID() string }](ns []T) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = n.GetID()
	}
	return strings.Join(s, ",")
}

func (e Entry) GetID() string { return e.ID }

func TestIndexLineageAndFlow(t *testing.T) {
	x := NewIndex()
	for i, e := range orderFlow("") {
		if !x.Add(entry(e, "orders", int64(i))) {
			t.Fatalf("Add %s refused", e.ID)
		}
	}
	if x.Add(entry(orderFlow("")[1], "orders", 99)) {
		t.Error("a second copy of an id was indexed")
	}

	l, ok := x.Lineage("pay-ok", 100)
	if !ok {
		t.Fatal("pay-ok not found")
	}
	anc := make([]Entry, len(l.Ancestors))
	for i, n := range l.Ancestors {
		anc[i] = n.Entry
	}
	if got := ids(anc); got != "placed,pay-req" {
		t.Errorf("ancestors %s, want placed,pay-req", got)
	}
	if l.Ancestors[0].Depth != -2 || len(l.Descendants) != 1 || l.Descendants[0].ID != "shipped" || l.Descendants[0].Depth != 1 {
		t.Errorf("lineage %+v", l)
	}
	if len(l.Edges) != 3 {
		t.Errorf("edges %v, want 3", l.Edges)
	}

	l, _ = x.Lineage("placed", 100)
	if len(l.Ancestors) != 0 || len(l.Descendants) != 4 {
		t.Errorf("placed: %d ancestors, %d descendants; want 0 and 4", len(l.Ancestors), len(l.Descendants))
	}
	if l, _ = x.Lineage("placed", 2); !l.Truncated || len(l.Descendants) != 2 {
		t.Errorf("limit 2: %d descendants, truncated %v", len(l.Descendants), l.Truncated)
	}

	// The flow is named by the first event's id, which has no correlation
	// id itself; it comes back in time order with the gaps between steps.
	f, ok := x.Flow("placed", 100)
	if !ok {
		t.Fatal("flow not found")
	}
	steps := make([]Entry, len(f.Events))
	for i, s := range f.Events {
		steps[i] = s.Entry
	}
	if got := ids(steps); got != "placed,pay-req,stock,pay-ok,shipped" {
		t.Errorf("flow order %s", got)
	}
	if f.Events[2].SincePreviousMs != 30 || f.Events[4].SinceStartMs != 1250 || f.DurationMs != 1250 || len(f.Edges) != 4 {
		t.Errorf("flow timing or edges: %+v", f)
	}
	if _, ok := x.Flow("nope", 100); ok {
		t.Error("an unknown flow was found")
	}

	// An event whose cause was never indexed: the cause is shown missing.
	x.Add(Entry{ID: "orphan", CausationID: "elsewhere", CorrelationID: "c2", Time: t0})
	l, _ = x.Lineage("orphan", 10)
	if len(l.Ancestors) != 1 || !l.Ancestors[0].Missing || l.Ancestors[0].ID != "elsewhere" {
		t.Errorf("orphan ancestors %+v", l.Ancestors)
	}
	if l, ok := x.Lineage("elsewhere", 10); !ok || !l.Event.Missing || len(l.Descendants) != 1 {
		t.Errorf("a cause known only from its effects: %+v %v", l, ok)
	}

	// A causation cycle (bad data) ends.
	x.Add(Entry{ID: "a", CausationID: "b"})
	x.Add(Entry{ID: "b", CausationID: "a"})
	if l, _ := x.Lineage("a", 10); len(l.Ancestors) != 1 || len(l.Descendants) != 0 {
		t.Errorf("cycle: %+v", l)
	}
}

func newLog(t testing.TB) eventlog.Log {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	b, err := broker.Open(broker.Config{DataDir: dir, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	store, err := b.GroupStore()
	if err != nil {
		t.Fatal(err)
	}
	g, err := groups.New(context.Background(), groups.Config{Store: store, Logger: logger,
		TopicExists: b.PartitionExists, HighWatermark: b.HighWatermark})
	if err != nil {
		t.Fatal(err)
	}
	l, err := embedded.New(embedded.Config{Broker: b, Groups: g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close()
		g.Close()
		b.Close()
	})
	return l
}

func appendEvent(t *testing.T, l eventlog.Log, topic string, e *event.Event) {
	t.Helper()
	m, err := event.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	r := eventlog.Record{Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, eventlog.Header{Key: h.Key, Value: h.Value})
	}
	if _, err := l.Append(context.Background(), topic, 0, []eventlog.Record{r}); err != nil {
		t.Fatal(err)
	}
}

func getJSON(t *testing.T, url string, want int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, b, want)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

// TestIndexerOverRealTopics writes an order flow across three topics of a
// real broker, with a record that is no CloudEvent among them, and reads the
// lineage and the flow over HTTP; a new indexer over the same topics (a
// restart) rebuilds the same answer.
func TestIndexerOverRealTopics(t *testing.T) {
	l := newLog(t)
	ctx := context.Background()
	topics := map[string]int{"orders": 1, "payments": 1, "shipping": 1}
	for name := range topics {
		if err := l.CreateTopic(ctx, name, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	flow := orderFlow("o1-")
	where := []string{"orders", "payments", "payments", "shipping", "orders"}
	appendEvent(t, l, where[0], flow[0])
	if _, err := l.Append(ctx, "orders", 0, []eventlog.Record{{Value: []byte("not an event")}}); err != nil {
		t.Fatal(err)
	}
	for i, e := range flow[1:] {
		appendEvent(t, l, where[i+1], e)
	}

	start := func() (*Indexer, *httptest.Server) {
		x, err := NewIndexer(Config{Log: l, Topics: func() map[string]int { return topics }, Poll: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		x.Start(ctx)
		mux := http.NewServeMux()
		x.Routes(mux)
		srv := httptest.NewServer(mux)
		t.Cleanup(func() { srv.Close(); x.Close() })
		return x, srv
	}
	x, srv := start()
	deadline := time.Now().Add(10 * time.Second)
	for !x.CaughtUp() || x.Index().Len() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("indexed %d events, caught up %v", x.Index().Len(), x.CaughtUp())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := x.Index().Len(); n != 5 {
		t.Errorf("indexed %d events, want the 5 CloudEvents", n)
	}

	var f Flow
	getJSON(t, srv.URL+"/v1/flows/o1-placed", 200, &f)
	if len(f.Events) != 5 || f.Events[0].ID != "o1-placed" || f.Events[0].Topic != "orders" || f.Events[3].Topic != "payments" || f.DurationMs != 1250 {
		t.Errorf("flow %+v", f)
	}
	var lin Lineage
	getJSON(t, srv.URL+"/v1/lineage/o1-pay-req", 200, &lin)
	if lin.Event.Topic != "payments" || len(lin.Ancestors) != 1 || lin.Ancestors[0].ID != "o1-placed" || len(lin.Descendants) != 2 {
		t.Errorf("lineage %+v", lin)
	}
	var e struct {
		Error struct{ Code, Message, Field string }
	}
	getJSON(t, srv.URL+"/v1/lineage/nope", 404, &e)
	if e.Error.Code != "NOT_FOUND" || e.Error.Field != "eventId" {
		t.Errorf("unknown event: %+v", e)
	}
	getJSON(t, srv.URL+"/v1/flows/o1-placed?limit=0", 400, &e)
	if e.Error.Field != "limit" || !strings.Contains(e.Error.Message, "1 to 10000") {
		t.Errorf("bad limit: %+v", e)
	}

	// Events written later are indexed as they come.
	late := event.NewFrom(flow[3], "/shipping", "order.delivered")
	appendEvent(t, l, "shipping", late)
	deadline = time.Now().Add(10 * time.Second)
	for {
		getJSON(t, srv.URL+"/v1/flows/o1-placed", 200, &f)
		if len(f.Events) == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the later event was not indexed: %d events", len(f.Events))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A topic deleted and created again is read from its new start.
	if err := l.DeleteTopic(ctx, "shipping"); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic(ctx, "shipping", 1, nil); err != nil {
		t.Fatal(err)
	}
	appendEvent(t, l, "shipping", event.NewFrom(late, "/shipping", "order.returned"))
	deadline = time.Now().Add(10 * time.Second)
	for {
		getJSON(t, srv.URL+"/v1/flows/o1-placed", 200, &f)
		if len(f.Events) == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event in the re-created topic was not indexed: %d events", len(f.Events))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A restart rebuilds the index from the topics (the deleted topic's
	// events are gone with it).
	x2, srv2 := start()
	for !x2.CaughtUp() {
		time.Sleep(10 * time.Millisecond)
	}
	var f2 Flow
	getJSON(t, srv2.URL+"/v1/flows/o1-placed", 200, &f2)
	if len(f2.Events) != 5 {
		t.Errorf("after a restart the flow has %d events, want 5 (4 of the first topics, 1 of the new shipping)", len(f2.Events))
	}
}

// BenchmarkFlow answers a flow of 100 events from an index of many events
// (1 million; 10 million with HERALD_LONG=1, about 5 GB of memory).
func BenchmarkFlow(b *testing.B) {
	total := 1_000_000
	if os.Getenv("HERALD_LONG") == "1" {
		total = 10_000_000
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := NewIndex()
	const per = 100
	for f := range total / per {
		corr := fmt.Sprintf("flow-%08d", f)
		prev := ""
		for i := range per {
			id := fmt.Sprintf("%s-%03d", corr, i)
			x.Add(Entry{ID: id, Source: "/bench", Type: "step", Topic: "t", Offset: int64(f*per + i),
				Time: t0.Add(time.Duration(i) * time.Millisecond), CorrelationID: corr, CausationID: prev})
			prev = id
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEvent := float64(after.HeapAlloc-before.HeapAlloc) / float64(total)
	b.ResetTimer()
	for i := range b.N {
		f, ok := x.Flow(fmt.Sprintf("flow-%08d", (i*7919)%(total/per)), 1000)
		if !ok || len(f.Events) != per {
			b.Fatalf("flow of %d events", len(f.Events))
		}
	}
	b.ReportMetric(float64(total), "events-indexed")
	b.ReportMetric(perEvent, "heap-bytes/event")
}

// BenchmarkCatchUp measures a restart: a new indexer over 200,000
// CloudEvents (2 million with HERALD_LONG=1) in a topic of 8 partitions,
// until it has caught up, reading them all from the topic or loading the
// index file.
func BenchmarkCatchUp(b *testing.B) {
	total := 200_000
	if os.Getenv("HERALD_LONG") == "1" {
		total = 2_000_000
	}
	l := newLog(b)
	ctx := context.Background()
	if err := l.CreateTopic(ctx, "bench", 8, nil); err != nil {
		b.Fatal(err)
	}
	const per = 100
	batch := make([][]eventlog.Record, 8)
	for i := range total {
		f := i / per
		e := event.New("/bench", "step")
		e.ID = fmt.Sprintf("flow-%08d-%03d", f, i%per)
		e.CorrelationID = fmt.Sprintf("flow-%08d-000", f)
		if i%per > 0 {
			e.CausationID = fmt.Sprintf("flow-%08d-%03d", f, i%per-1)
		}
		m, err := event.Encode(e)
		if err != nil {
			b.Fatal(err)
		}
		r := eventlog.Record{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, eventlog.Header{Key: h.Key, Value: h.Value})
		}
		p := f % 8
		batch[p] = append(batch[p], r)
		if len(batch[p]) == 1000 || i == total-1 {
			for q := range batch {
				if len(batch[q]) > 0 {
					if _, err := l.Append(ctx, "bench", int32(q), batch[q]); err != nil {
						b.Fatal(err)
					}
					batch[q] = batch[q][:0]
				}
			}
		}
	}
	idxDir := b.TempDir()
	catchUp := func(b *testing.B, dir string) (*Indexer, time.Duration) {
		start := time.Now()
		x, err := NewIndexer(Config{Log: l, Dir: dir, Topics: func() map[string]int { return map[string]int{"bench": 8} }, Poll: time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		x.Start(ctx)
		for !x.CaughtUp() {
			time.Sleep(time.Millisecond)
		}
		d := time.Since(start)
		x.Close()
		if x.Index().Len() != total {
			b.Fatalf("indexed %d of %d", x.Index().Len(), total)
		}
		return x, d
	}
	// from=topics: no index file (or the first start); from=file: a
	// restart that loads the index file.
	b.Run("from=topics", func(b *testing.B) {
		for range b.N {
			_, d := catchUp(b, "")
			b.ReportMetric(float64(total)/d.Seconds(), "events/s")
		}
	})
	catchUp(b, idxDir)
	b.Run("from=file", func(b *testing.B) {
		for range b.N {
			_, d := catchUp(b, idxDir)
			b.ReportMetric(float64(total)/d.Seconds(), "events/s")
		}
	})
}
