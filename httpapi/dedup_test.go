package httpapi

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

func ce(id, source string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":%q,"type":"t","data":{"id":%q}}`, id, source, id)
}

func TestDedupSourceAndID(t *testing.T) {
	e := newEnv(t)
	e.createTopic("d", 3, nil)
	first := e.publish("d", "application/cloudevents+json", ce("1", "/a"), nil)[0]
	again := e.publish("d", "application/cloudevents+json", ce("1", "/a"), nil)[0]
	if !again.Duplicate || first.Duplicate || again.Partition != first.Partition || again.Offset != first.Offset {
		t.Errorf("first %+v, again %+v", first, again)
	}
	// Same id from another source is another event; binary mode shares the
	// window with structured mode.
	other := e.publish("d", "application/cloudevents+json", ce("1", "/b"), nil)[0]
	bin := e.publish("d", "application/json; x=1", "{}", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/a"}, "Ce-Type": {"t"}})[0]
	if other.Duplicate || !bin.Duplicate || bin.Offset != first.Offset || bin.Partition != first.Partition {
		t.Errorf("other source %+v, binary repeat %+v", other, bin)
	}
	// In a batch: a repeat of a stored event, and a repeat within the batch.
	res := e.publish("d", "application/cloudevents-batch+json", "["+ce("2", "/a")+","+ce("1", "/a")+","+ce("2", "/a")+"]", nil)
	if res[0].Duplicate || !res[1].Duplicate || res[1].Offset != first.Offset || !res[2].Duplicate || res[2].Offset != res[0].Offset || res[2].Partition != res[0].Partition {
		t.Errorf("batch: %+v", res)
	}
	if n := total(e, "d"); n != 3 {
		t.Errorf("%d events stored, want 3", n)
	}
}

// total counts the events stored in every partition.
func total(e *env, topic string) int {
	var d topicDescription
	e.must(e.do("GET", "/v1/topics/"+topic, nil, nil), 200, &d)
	n := 0
	for _, p := range d.Partitions {
		n += int(p.EndOffset - p.StartOffset)
	}
	return n
}

func TestDedupIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	e.createTopic("i", 1, nil)
	key := http.Header{"Idempotency-Key": {"req-42"}}
	body := `{"records":[{"value":1},{"value":2}]}`
	a := e.publish("i", "application/json", body, key)
	b := e.publish("i", "application/json", body, key)
	if a[0].Duplicate || !b[0].Duplicate || !b[1].Duplicate || b[1].Offset != a[1].Offset {
		t.Errorf("first %+v, retry %+v", a, b)
	}
	// The key wins over source+id: a new key stores the same event again.
	c := e.publish("i", "application/cloudevents+json", ce("x", "/s"), http.Header{"Idempotency-Key": {"k1"}})
	d := e.publish("i", "application/cloudevents+json", ce("x", "/s"), http.Header{"Idempotency-Key": {"k2"}})
	if c[0].Duplicate || d[0].Duplicate {
		t.Errorf("distinct keys: %+v %+v", c, d)
	}
	if n := total(e, "i"); n != 4 {
		t.Errorf("%d stored, want 4", n)
	}
}

func TestDedupConcurrentRepeats(t *testing.T) {
	e := newEnv(t)
	e.createTopic("c", 2, nil)
	const n = 16
	var wg sync.WaitGroup
	results := make([]PublishResult, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out PublishResponse
			r := e.do("POST", "/v1/topics/c/events", http.Header{"Content-Type": {"application/cloudevents+json"}}, []byte(ce("same", "/s")))
			if r.status != 200 {
				t.Errorf("status %d: %s", r.status, r.body)
				return
			}
			r.json(t, &out)
			results[i] = out.Results[0]
		}()
	}
	wg.Wait()
	originals := 0
	for _, r := range results {
		if !r.Duplicate {
			originals++
		}
		if r.Offset != results[0].Offset || r.Partition != results[0].Partition {
			t.Errorf("results disagree: %+v vs %+v", r, results[0])
		}
	}
	if originals != 1 || total(e, "c") != 1 {
		t.Errorf("%d originals, %d stored; want 1 and 1", originals, total(e, "c"))
	}
}

func TestDedupWindow(t *testing.T) {
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := now
	setClock := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
	e := newEnv(t, func(c *Config) {
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	})
	e.createTopic("w", 1, map[string]string{CfgDedupWindowMs: "10000"})
	e.createTopic("off", 1, map[string]string{CfgDedupWindowMs: "0"})
	a := e.publish("w", "application/cloudevents+json", ce("1", "/s"), nil)[0]
	setClock(now.Add(9 * time.Second))
	if b := e.publish("w", "application/cloudevents+json", ce("1", "/s"), nil)[0]; !b.Duplicate || b.Offset != a.Offset {
		t.Errorf("inside the window: %+v", b)
	}
	setClock(now.Add(11 * time.Second))
	if c := e.publish("w", "application/cloudevents+json", ce("1", "/s"), nil)[0]; c.Duplicate || c.Offset != 1 {
		t.Errorf("after the window: %+v", c)
	}
	// Window 0: no deduplication.
	e.publish("off", "application/cloudevents+json", ce("1", "/s"), nil)
	if r := e.publish("off", "application/cloudevents+json", ce("1", "/s"), nil)[0]; r.Duplicate || r.Offset != 1 {
		t.Errorf("window 0: %+v", r)
	}
	// Shrinking the window applies at once.
	e.must(e.doJSON("PATCH", "/v1/topics/w", map[string]any{"configs": map[string]any{CfgDedupWindowMs: "1000"}}), 200, nil)
	setClock(now.Add(13 * time.Second))
	if r := e.publish("w", "application/cloudevents+json", ce("1", "/s"), nil)[0]; r.Duplicate {
		t.Errorf("after shrinking the window to 1s, 2s later: %+v", r)
	}
	// A topic deleted and made again starts with an empty window.
	e.must(e.do("DELETE", "/v1/topics/w", nil, nil), 204, nil)
	e.createTopic("w", 1, nil)
	if r := e.publish("w", "application/cloudevents+json", ce("1", "/s"), nil)[0]; r.Duplicate || r.Offset != 0 {
		t.Errorf("recreated topic: %+v", r)
	}
}

// TestDedupSurvivesRestart restarts the server on the same data directory:
// the window is rebuilt from the log.
func TestDedupSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e := startEnv(t, dir)
	e.createTopic("r", 3, nil)
	var firsts []PublishResult
	for i := 0; i < 20; i++ {
		firsts = append(firsts, e.publish("r", "application/cloudevents+json", ce(fmt.Sprint(i), "/s"), nil)[0])
	}
	keyed := e.publish("r", "application/json", `{"records":[{"value":1}]}`, http.Header{"Idempotency-Key": {"once"}})[0]
	e.Close()

	e = startEnv(t, dir)
	for i := 0; i < 20; i++ {
		r := e.publish("r", "application/cloudevents+json", ce(fmt.Sprint(i), "/s"), nil)[0]
		if !r.Duplicate || r.Partition != firsts[i].Partition || r.Offset != firsts[i].Offset {
			t.Errorf("event %d after restart: %+v, first stored at %+v", i, r, firsts[i])
		}
	}
	if r := e.publish("r", "application/json", `{"records":[{"value":1}]}`, http.Header{"Idempotency-Key": {"once"}})[0]; !r.Duplicate || r.Offset != keyed.Offset {
		t.Errorf("idempotency key after restart: %+v, first %+v", r, keyed)
	}
	if n := total(e, "r"); n != 21 {
		t.Errorf("%d stored after restart, want 21", n)
	}
}
