package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/embedded"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newLog starts a real broker and group coordinator in dir.
func newLog(t testing.TB, dir string) eventlog.Log {
	return newLogDurability(t, dir, commitlog.DurabilityAlways)
}

func newLogDurability(t testing.TB, dir string, d commitlog.Durability) eventlog.Log {
	t.Helper()
	logger := quietLogger()
	b, err := broker.Open(broker.Config{DataDir: dir, Logger: logger, Durability: d})
	if err != nil {
		t.Fatal(err)
	}
	store, err := b.GroupStore()
	if err != nil {
		t.Fatal(err)
	}
	g, err := groups.New(context.Background(), groups.Config{
		Store: store, Logger: logger, MinSessionTimeout: 100 * time.Millisecond,
		TopicExists: b.PartitionExists, HighWatermark: b.HighWatermark,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := embedded.New(embedded.Config{Broker: b, Groups: g})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			l.Close()
			g.Close()
			if err := b.Close(); err != nil {
				t.Errorf("broker Close: %v", err)
			}
		})
	})
	return l
}

func newEngine(t testing.TB, l eventlog.Log, mod func(*Config)) *Engine {
	t.Helper()
	cfg := Config{Log: l, Logger: quietLogger(), RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		CommitInterval: 20 * time.Millisecond, BusPartitions: 2}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// readAll reads every record of every partition of topic.
func readAll(t testing.TB, l eventlog.Log, topic string) []eventlog.Record {
	t.Helper()
	ctx := context.Background()
	info, err := l.Topic(ctx, topic)
	if err != nil {
		return nil
	}
	var out []eventlog.Record
	for p := 0; p < info.Partitions; p++ {
		start, end, err := l.Offsets(ctx, topic, int32(p))
		if err != nil {
			t.Fatal(err)
		}
		for off := start; off < end; {
			recs, err := l.Read(ctx, topic, int32(p), off, eventlog.ReadOptions{MaxBytes: 4 << 20})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			out = append(out, recs...)
			off = recs[len(recs)-1].Offset + 1
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mkEvent(src, typ string, data string) *event.Event {
	e := event.New(src, typ)
	e.DataContentType = "application/json"
	e.Data = []byte(data)
	return e
}

func createTopic(t testing.TB, l eventlog.Log, name string) {
	t.Helper()
	if err := l.CreateTopic(context.Background(), name, 1, nil); err != nil {
		t.Fatal(err)
	}
}

func TestDeliverToTopicsWithTransformer(t *testing.T) {
	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	ctx := context.Background()
	createTopic(t, l, "big-orders")
	createTopic(t, l, "summaries")
	_, err := e.PutRule(ctx, Rule{Name: "big", EventPattern: json.RawMessage(
		`{"source":["shop"],"detail-type":["order.placed"],"detail":{"total":[{"numeric":[">",100]}]}}`),
		Targets: []Target{
			{ID: "raw", Topic: "big-orders"},
			{ID: "summary", Topic: "summaries", InputTransformer: &InputTransformer{
				InputPaths:    map[string]string{"id": "$.data.id", "total": "$.data.total", "missing": "$.data.nope"},
				InputTemplate: `{"order":"<id>","total":<total>,"rule":"<herald.rule-name>","missing":<missing>,"m":"<missing>"}`}},
		}}, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := e.Publish(ctx, DefaultBus, mkEvent("shop", "order.placed", fmt.Sprintf(`{"id":"o%d","total":%d}`, i, i*10))); err != nil {
			t.Fatal(err)
		}
	}
	e.Publish(ctx, DefaultBus, mkEvent("other", "order.placed", `{"id":"x","total":1000}`))
	// The targets are delivered independently: wait for both.
	waitFor(t, 10*time.Second, "deliveries", func() bool {
		return len(readAll(t, l, "summaries")) >= 9 && len(readAll(t, l, "big-orders")) >= 9
	})
	time.Sleep(50 * time.Millisecond) // a tenth record, were there one, would show
	raw := readAll(t, l, "big-orders")
	if len(raw) != 9 {
		t.Fatalf("big-orders has %d records, want 9 (totals 110..190)", len(raw))
	}
	for _, r := range readAll(t, l, "summaries") {
		var v map[string]any
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("summary %s: %v", r.Value, err)
		}
		if v["rule"] != "big" || v["total"].(float64) <= 100 || v["missing"] != nil || v["m"] != "" {
			t.Fatalf("summary %s", r.Value)
		}
	}
	// The counters move just after the writes a reader sees.
	waitFor(t, 10*time.Second, "the metrics to count every delivery", func() bool {
		m, err := e.Metrics(DefaultBus, "big")
		if err != nil {
			t.Fatal(err)
		}
		return m.Matched == 9 && m.Targets["raw"].Delivered == 9 && m.Targets["summary"].Delivered == 9
	})
}

func TestWebhookRetryDeadLetterAndIsolation(t *testing.T) {
	var okHits, badHits atomic.Int64
	var gotHeaders atomic.Pointer[http.Header]
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		gotHeaders.Store(&h)
		okHits.Add(1)
	}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer bad.Close()
	reject := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such order", http.StatusNotFound)
	}))
	defer reject.Close()

	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	ctx := context.Background()
	createTopic(t, l, "dlq")
	three := 3
	zero := 0
	_, err := e.PutRule(ctx, Rule{Name: "hooks", EventPattern: json.RawMessage(`{"source":["shop"]}`),
		Targets: []Target{
			{ID: "ok", Webhook: ok.URL},
			{ID: "bad", Webhook: bad.URL, DeadLetterTopic: "dlq", RetryPolicy: &RetryPolicy{MaximumRetryAttempts: &three}},
			{ID: "reject", Webhook: reject.URL, DeadLetterTopic: "dlq", RetryPolicy: &RetryPolicy{MaximumRetryAttempts: &zero}},
		}}, true)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	for i := 0; i < n; i++ {
		ev := mkEvent("shop", "order.placed", fmt.Sprintf(`{"i":%d}`, i))
		ev.Subject = "order"
		if err := e.Publish(ctx, DefaultBus, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "ok webhook", func() bool { return okHits.Load() == n })
	h := *gotHeaders.Load()
	if h.Get("ce-source") != "shop" || h.Get("ce-type") != "order.placed" || h.Get("ce-subject") != "order" ||
		h.Get("ce-specversion") != "1.0" || h.Get("ce-id") == "" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("binary-mode headers: %v", h)
	}
	waitFor(t, 20*time.Second, "dead letters", func() bool { return len(readAll(t, l, "dlq")) == 2*n })
	if badHits.Load() != 4*n {
		t.Fatalf("bad webhook got %d attempts, want %d (1 + 3 retries each)", badHits.Load(), 4*n)
	}
	byTarget := map[string]int{}
	for _, r := range readAll(t, l, "dlq") {
		hd := map[string]string{}
		for _, x := range r.Headers {
			hd[x.Key] = string(x.Value)
		}
		byTarget[hd[HeaderDLQTarget]]++
		if hd[HeaderDLQRule] != "hooks" || hd["ce_source"] != "shop" {
			t.Fatalf("dlq headers %v", hd)
		}
		switch hd[HeaderDLQTarget] {
		case "bad":
			if hd[HeaderDLQErrorCode] != "HTTP_503" || hd[HeaderDLQExhausted] != ExhaustedAttempts || hd[HeaderDLQAttempts] != "4" ||
				!strings.Contains(hd[HeaderDLQErrorMsg], "down for maintenance") {
				t.Fatalf("bad dlq headers %v", hd)
			}
		case "reject":
			if hd[HeaderDLQErrorCode] != "HTTP_404" || hd[HeaderDLQExhausted] != ExhaustedNonRetrying || hd[HeaderDLQAttempts] != "1" {
				t.Fatalf("reject dlq headers %v", hd)
			}
		}
	}
	if byTarget["bad"] != n || byTarget["reject"] != n {
		t.Fatalf("dlq by target %v", byTarget)
	}
	// The counters move just after the writes a reader sees.
	var m RuleMetrics
	waitFor(t, 10*time.Second, "the metrics to count every outcome", func() bool {
		m, _ = e.Metrics(DefaultBus, "hooks")
		return m.Targets["bad"].DeadLettered == n && m.Targets["bad"].Failed == 4*n && m.Targets["ok"].Delivered == n
	})
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0))
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestSlowTargetDoesNotSlowOthers: a webhook that hangs for seconds on
// every request must not delay another rule's topic target.
func TestSlowTargetDoesNotSlowOthers(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	ctx := context.Background()
	createTopic(t, l, "fast")
	if _, err := e.PutRule(ctx, Rule{Name: "slow", EventPattern: json.RawMessage(`{"source":["s"]}`),
		Targets: []Target{{ID: "hook", Webhook: slow.URL}}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRule(ctx, Rule{Name: "fast", EventPattern: json.RawMessage(`{"source":["s"]}`),
		Targets: []Target{{ID: "t", Topic: "fast"}}}, true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 200; i++ {
		e.Publish(ctx, DefaultBus, mkEvent("s", "t", `{}`))
	}
	waitFor(t, 5*time.Second, "fast target", func() bool { return len(readAll(t, l, "fast")) == 200 })
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("fast target took %v behind a hanging one", d)
	}
}

func TestDefinitionsAreDurableAndDeliveryAtLeastOnce(t *testing.T) {
	dir := t.TempDir()
	l := newLog(t, dir)
	ctx := context.Background()
	e := newEngine(t, l, nil)
	createTopic(t, l, "out")
	if _, err := e.CreateBus(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRule(ctx, Rule{Name: "r1", Bus: "orders", EventPattern: json.RawMessage(`{"source":["a"]}`),
		Targets: []Target{{ID: "t", Topic: "out"}}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRule(ctx, Rule{Name: "r2", Bus: "orders", EventPattern: json.RawMessage(`{"source":["b"]}`),
		Targets: []Target{{ID: "t", Topic: "out"}}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetState(ctx, "orders", "r2", Disabled); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRule(ctx, Rule{Name: "gone", Bus: "orders", EventPattern: json.RawMessage(`{"source":["a"]}`),
		Targets: []Target{{ID: "t", Topic: "out"}}}, true); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteRule(ctx, "orders", "gone"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		e.Publish(ctx, "orders", mkEvent("a", "t", fmt.Sprintf(`{"i":%d}`, i)))
		e.Publish(ctx, "orders", mkEvent("b", "t", `{}`))
	}
	waitFor(t, 10*time.Second, "first deliveries", func() bool { return len(readAll(t, l, "out")) >= 50 })
	e.Close()

	// A new engine over the same log: same definitions, and the events
	// published while no engine ran are delivered.
	e2 := newEngine(t, l, nil)
	rs := e2.Rules("orders")
	if len(rs) != 2 || rs[0].Name != "r1" || rs[1].Name != "r2" || rs[1].State != Disabled {
		t.Fatalf("rules after restart: %+v", rs)
	}
	if _, err := e2.Bus("orders"); err != nil {
		t.Fatal(err)
	}
	for i := 50; i < 100; i++ {
		e2.Publish(ctx, "orders", mkEvent("a", "t", fmt.Sprintf(`{"i":%d}`, i)))
	}
	waitFor(t, 10*time.Second, "all deliveries", func() bool {
		seen := map[string]bool{}
		for _, r := range readAll(t, l, "out") {
			seen[string(r.Value)] = true
		}
		return len(seen) == 100
	})
	// Duplicates are allowed (at least once) but a clean Close committed,
	// so the first 50 are not delivered again.
	if n := len(readAll(t, l, "out")); n != 100 {
		t.Fatalf("out has %d records, want 100 (clean restart redelivers nothing)", n)
	}
	for _, r := range readAll(t, l, "out") {
		for _, h := range r.Headers {
			if h.Key == "ce_source" && string(h.Value) != "a" {
				t.Fatalf("disabled rule delivered: %s", h.Value)
			}
		}
	}
}

// TestMaximumEventAge: when the next retry would come after the event's
// maximum age, the event is dead-lettered at once with MaximumEventAge.
func TestMaximumEventAge(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusTooManyRequests)
	}))
	defer bad.Close()
	l := newLog(t, t.TempDir())
	e := newEngine(t, l, func(c *Config) { c.RetryBase, c.RetryMax = 3*time.Minute, 3*time.Minute })
	ctx := context.Background()
	createTopic(t, l, "dlq")
	if _, err := e.PutRule(ctx, Rule{Name: "aged", EventPattern: json.RawMessage(`{"source":["s"]}`),
		Targets: []Target{{ID: "w", Webhook: bad.URL, DeadLetterTopic: "dlq", RetryPolicy: &RetryPolicy{MaximumEventAgeSeconds: 60}}}}, true); err != nil {
		t.Fatal(err)
	}
	e.Publish(ctx, DefaultBus, mkEvent("s", "t", `{}`))
	waitFor(t, 10*time.Second, "dead letter", func() bool { return len(readAll(t, l, "dlq")) == 1 })
	hd := map[string]string{}
	for _, h := range readAll(t, l, "dlq")[0].Headers {
		hd[h.Key] = string(h.Value)
	}
	if hd[HeaderDLQExhausted] != ExhaustedEventAge || hd[HeaderDLQErrorCode] != "HTTP_429" || hd[HeaderDLQAttempts] != "1" {
		t.Fatalf("dlq headers %v", hd)
	}
}

// TestRuleUpdateWhileFlowing: replacing a rule's pattern and targets takes
// effect for the following events; a deleted target gets nothing more.
func TestRuleUpdateWhileFlowing(t *testing.T) {
	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	ctx := context.Background()
	createTopic(t, l, "a")
	createTopic(t, l, "b")
	r := Rule{Name: "r", EventPattern: json.RawMessage(`{"source":["one"]}`), Targets: []Target{{ID: "ta", Topic: "a"}}}
	if _, err := e.PutRule(ctx, r, true); err != nil {
		t.Fatal(err)
	}
	e.Publish(ctx, DefaultBus, mkEvent("one", "t", `{}`))
	waitFor(t, 5*time.Second, "first", func() bool { return len(readAll(t, l, "a")) == 1 })
	r.EventPattern = json.RawMessage(`{"source":["two"]}`)
	r.Targets = []Target{{ID: "tb", Topic: "b"}}
	if _, err := e.PutRule(ctx, r, false); err != nil {
		t.Fatal(err)
	}
	e.Publish(ctx, DefaultBus, mkEvent("one", "t", `{}`))
	e.Publish(ctx, DefaultBus, mkEvent("two", "t", `{}`))
	waitFor(t, 5*time.Second, "second", func() bool { return len(readAll(t, l, "b")) == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := len(readAll(t, l, "a")); n != 1 {
		t.Fatalf("old target got %d", n)
	}
	if _, err := e.PutRule(ctx, Rule{Name: "nope", EventPattern: json.RawMessage(`{"a":["b"]}`)}, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replace of a missing rule: %v", err)
	}
}

// crash stops an engine abruptly: no worker finishes its batch, queued
// deliveries are abandoned, only offsets already done may be committed.
func crash(e *Engine) {
	e.mu.Lock()
	e.mu.closed = true
	var buses []*busState
	for _, b := range e.mu.buses {
		buses = append(buses, b)
	}
	e.mu.Unlock()
	e.cancel()
	for _, b := range buses {
		b.stopAndWait()
		// A dead process's membership expires; leaving (with e.ctx done,
		// so nothing more is committed) is the same, sooner.
		b.leave()
	}
	e.wg.Wait()
}

// TestAtLeastOnceAcrossCrash: events whose deliveries were pending when
// the engine stopped abruptly are delivered by the next engine.
func TestAtLeastOnceAcrossCrash(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	var slow atomic.Bool
	slow.Store(true)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		got[r.Header.Get("ce-id")]++
		mu.Unlock()
	}))
	defer hook.Close()
	l := newLog(t, t.TempDir())
	ctx := context.Background()
	e := newEngine(t, l, func(c *Config) { c.WebhookConcurrency = 1 })
	if _, err := e.PutRule(ctx, Rule{Name: "r", EventPattern: json.RawMessage(`{"source":["s"]}`),
		Targets: []Target{{ID: "w", Webhook: hook.URL}}}, true); err != nil {
		t.Fatal(err)
	}
	const n = 200
	var ids []string
	for i := 0; i < n; i++ {
		ev := mkEvent("s", "t", `{}`)
		ids = append(ids, ev.ID)
		if err := e.Publish(ctx, DefaultBus, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "some deliveries", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 10 })
	crash(e)
	mu.Lock()
	before := len(got)
	mu.Unlock()
	if before >= n {
		t.Fatalf("everything was delivered before the crash (%d); the test needs pending deliveries", before)
	}
	slow.Store(false)
	newEngine(t, l, nil)
	waitFor(t, 20*time.Second, "every event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("%d of %d delivered before the crash; all %d after the restart", before, n, n)
}

// TestCloseDoesNotHangOnAHangingTarget: Close returns within its grace
// even while a webhook never answers.
func TestCloseDoesNotHangOnAHangingTarget(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	l := newLog(t, t.TempDir())
	e := newEngine(t, l, func(c *Config) { c.CloseGrace = 200 * time.Millisecond; c.HTTPClient = &http.Client{} })
	ctx := context.Background()
	if _, err := e.PutRule(ctx, Rule{Name: "r", EventPattern: json.RawMessage(`{"source":["s"]}`),
		Targets: []Target{{ID: "w", Webhook: hang.URL}}}, true); err != nil {
		t.Fatal(err)
	}
	e.Publish(ctx, DefaultBus, mkEvent("s", "t", `{}`))
	waitFor(t, 5*time.Second, "delivery in flight", func() bool { m, _ := e.Metrics(DefaultBus, "r"); return m.Matched == 1 })
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	e.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
}
