package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestArchiveAndReplay(t *testing.T) {
	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	ctx := context.Background()
	createTopic(t, l, "out1")
	createTopic(t, l, "out2")
	for _, n := range []string{"r1", "r2"} {
		if _, err := e.PutRule(ctx, Rule{Name: n, EventPattern: json.RawMessage(`{"source":["shop"]}`),
			Targets: []Target{{ID: "t", Topic: "out" + n[1:]}}}, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.CreateArchive(ctx, Archive{Name: "all", RetentionDays: 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateArchive(ctx, Archive{Name: "big", EventPattern: json.RawMessage(`{"data":{"n":[{"numeric":[">=",5]}]}}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateArchive(ctx, Archive{Name: "bad", EventPattern: json.RawMessage(`{"data":{"n":[{"numeric":[">"]}]}}`)}); err == nil {
		t.Fatal("archive with a bad pattern accepted")
	}
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	perm := []int{3, 0, 9, 5, 1, 7, 2, 8, 4, 6} // arrival order differs from event time
	for _, i := range perm {
		ev := mkEvent("shop", "order", fmt.Sprintf(`{"n":%d}`, i))
		ev.Time = base.Add(time.Duration(i) * time.Minute)
		if err := e.Publish(ctx, DefaultBus, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "archives", func() bool {
		return len(readAll(t, l, archiveTopic("all"))) == 10 && len(readAll(t, l, archiveTopic("big"))) == 5 &&
			len(readAll(t, l, "out1")) == 10 && len(readAll(t, l, "out2")) == 10
	})
	// Replay [T2, T8) to r1 only.
	rp, err := e.StartReplay(ctx, Replay{Name: "rp", Archive: "all", Start: base.Add(2 * time.Minute), End: base.Add(8 * time.Minute), Rules: []string{"r1"}})
	if err != nil {
		t.Fatal(err)
	}
	if rp.State != ReplayStarting {
		t.Fatalf("state %s", rp.State)
	}
	waitFor(t, 10*time.Second, "replay", func() bool {
		r, _ := e.ReplayByName("rp")
		return r.State == ReplayCompleted
	})
	waitFor(t, 10*time.Second, "replayed deliveries", func() bool { return len(readAll(t, l, "out1")) == 16 })
	time.Sleep(100 * time.Millisecond)
	if n := len(readAll(t, l, "out2")); n != 10 {
		t.Fatalf("out2 (a rule not named by the replay) got %d", n)
	}
	if n := len(readAll(t, l, archiveTopic("all"))); n != 10 {
		t.Fatalf("replayed events were archived again: %d", n)
	}
	var times []string
	for _, r := range readAll(t, l, "out1")[10:] {
		var rep, tm string
		for _, h := range r.Headers {
			switch h.Key {
			case "ce_" + ReplayExtension:
				rep = string(h.Value)
			case "ce_time":
				tm = string(h.Value)
			}
		}
		if rep != "rp" {
			t.Fatalf("replayed event not marked: %v", r.Headers)
		}
		times = append(times, tm)
	}
	for i := 1; i < len(times); i++ {
		t1, _ := time.Parse(time.RFC3339Nano, times[i-1])
		t2, _ := time.Parse(time.RFC3339Nano, times[i])
		if !t1.Before(t2) {
			t.Fatalf("replay not in event-time order: %v", times)
		}
	}
	r, _ := e.ReplayByName("rp")
	if r.Replayed != 6 || r.Total != 6 || !r.LastReplayed.Equal(base.Add(7*time.Minute)) || r.Ended.IsZero() {
		t.Fatalf("replay progress %+v", r)
	}
	if _, err := e.CancelReplay(ctx, "rp"); err == nil {
		t.Fatal("cancelled a completed replay")
	}
	if _, err := e.StartReplay(ctx, Replay{Name: "x", Archive: "all", Start: base, End: base.Add(time.Minute), Rules: []string{"nope"}}); err == nil {
		t.Fatal("replay to an unknown rule accepted")
	}
	if _, err := e.StartReplay(ctx, Replay{Name: "x", Archive: "all", Start: base, End: base, Rules: []string{"r1"}}); err == nil {
		t.Fatal("empty window accepted")
	}
}

func TestReplayCancel(t *testing.T) {
	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	ctx := context.Background()
	createTopic(t, l, "out1")
	if _, err := e.PutRule(ctx, Rule{Name: "r1", EventPattern: json.RawMessage(`{"source":["shop"]}`),
		Targets: []Target{{ID: "t", Topic: "out1"}}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateArchive(ctx, Archive{Name: "all"}); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	base := time.Now().Add(-time.Hour)
	for i := 0; i < n; i++ {
		ev := mkEvent("shop", "order", `{}`)
		ev.Time = base.Add(time.Duration(i) * time.Millisecond)
		e.Publish(ctx, DefaultBus, ev)
	}
	waitFor(t, 60*time.Second, "archive", func() bool { return len(readAll(t, l, archiveTopic("all"))) == n })
	mux := http.NewServeMux()
	e.Routes(mux)
	srv := httptest.NewServer(checkedAgainstOpenAPI(t, mux))
	defer srv.Close()
	body := fmt.Sprintf(`{"name":"long","archive":"all","start":%q,"end":%q,"rules":["r1"]}`,
		base.Add(-time.Second).Format(time.RFC3339Nano), time.Now().Format(time.RFC3339Nano))
	if st, v := do(t, srv, "POST", "/v1/replays", body); st != 201 {
		t.Fatalf("start replay: %d %v", st, v)
	}
	waitFor(t, 30*time.Second, "progress", func() bool { r, _ := e.ReplayByName("long"); return r.Replayed > 0 })
	if st, v := do(t, srv, "POST", "/v1/replays/long/cancel", ""); st != 200 || (v["state"] != ReplayCancelling && v["state"] != ReplayCompleted) {
		t.Fatalf("cancel: %d %v", st, v)
	}
	waitFor(t, 10*time.Second, "cancelled", func() bool {
		r, _ := e.ReplayByName("long")
		return r.State == ReplayCancelled
	})
	st, v := do(t, srv, "GET", "/v1/replays/long", "")
	if st != 200 || v["replayed"].(float64) >= n || v["state"] != ReplayCancelled {
		t.Fatalf("after cancel: %d %v", st, v)
	}
	if st, _ := do(t, srv, "DELETE", "/v1/archives/all", ""); st != 204 {
		t.Fatalf("delete archive %d", st)
	}
	if st, _ := do(t, srv, "GET", "/v1/archives/all", ""); st != 404 {
		t.Fatalf("deleted archive %d", st)
	}
}

func TestSystemBusEvents(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusBadRequest)
	}))
	defer bad.Close()
	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	ctx := context.Background()
	createTopic(t, l, "alerts")
	createTopic(t, l, "audit")
	if _, err := e.PutRule(ctx, Rule{Name: "on-failure", Bus: SystemBus,
		EventPattern: json.RawMessage(`{"source":["herald/rules"],"type":["herald.rule.target.failed"],"data":{"rule":["hook"]}}`),
		Targets:      []Target{{ID: "t", Topic: "alerts"}}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRule(ctx, Rule{Name: "audit", Bus: SystemBus,
		EventPattern: json.RawMessage(`{"source":[{"prefix":"herald/"}],"type":[{"wildcard":"herald.rule.*d"}]}`),
		Targets:      []Target{{ID: "t", Topic: "audit"}}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRule(ctx, Rule{Name: "hook", EventPattern: json.RawMessage(`{"source":["shop"]}`),
		Targets: []Target{{ID: "w", Webhook: bad.URL}}}, true); err != nil {
		t.Fatal(err)
	}
	e.Publish(ctx, DefaultBus, mkEvent("shop", "order", `{}`))
	waitFor(t, 10*time.Second, "failure event", func() bool { return len(readAll(t, l, "alerts")) == 1 })
	var f TargetFailure
	if err := json.Unmarshal(readAll(t, l, "alerts")[0].Value, &f); err != nil {
		t.Fatal(err)
	}
	if f.Rule != "hook" || f.Target != "w" || f.ErrorCode != "HTTP_400" || f.Exhausted != ExhaustedNonRetrying || f.Attempts != 1 || f.EventSource != "shop" {
		t.Fatalf("failure event %+v", f)
	}
	// Rule creation is announced too (the audit rule sees "hook" created).
	waitFor(t, 10*time.Second, "rule created event", func() bool {
		for _, r := range readAll(t, l, "audit") {
			if string(r.Value) == `{"bus":"default","rule":"hook"}` {
				return true
			}
		}
		return false
	})
	// Other components emit through the Emitter interface.
	var em Emitter = e
	if err := em.Emit(ctx, "herald/broker", "herald.topic.created", "orders", map[string]string{"topic": "orders"}); err != nil {
		t.Fatal(err)
	}
	if err := em.Emit(ctx, "broker", "x", "", nil); err == nil {
		t.Fatal("a source outside herald/ accepted")
	}
	if err := e.DeleteBus(ctx, SystemBus); err == nil {
		t.Fatal("system bus deleted")
	}
}

// TestReplayResumesAfterRestart: an engine stopping in the middle of a
// replay (crash) leaves it running in its stored state; the next engine
// resumes it from its stored progress, and every event of the window
// reaches the replay's rule, in event-time order, none skipped.
func TestReplayResumesAfterRestart(t *testing.T) {
	const n, stopAt = 300, 120
	reached := pauseReplayAt(t, stopAt) // the engine crashes there

	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	ctx := context.Background()
	createTopic(t, l, "live")
	createTopic(t, l, "replayed")
	// Both rules take the bus's events; only "rep" takes what the replay
	// sends, after them in its topic.
	if _, err := e.PutRule(ctx, Rule{Name: "live", EventPattern: json.RawMessage(`{"source":["shop"]}`),
		Targets: []Target{{ID: "t", Topic: "live"}}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRule(ctx, Rule{Name: "rep", EventPattern: json.RawMessage(`{"source":["shop"]}`),
		Targets: []Target{{ID: "t", Topic: "replayed"}}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateArchive(ctx, Archive{Name: "all"}); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for i := 0; i < n; i++ {
		k := (i * 7) % n // arrival order differs from event time
		ev := mkEvent("shop", "order", fmt.Sprintf(`{"k":%d}`, k))
		ev.Time = base.Add(time.Duration(k) * time.Second)
		if err := e.Publish(ctx, DefaultBus, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the archive", func() bool {
		return len(readAll(t, l, archiveTopic("all"))) == n && len(readAll(t, l, "replayed")) == n
	})
	if _, err := e.StartReplay(ctx, Replay{Name: "rp", Archive: "all", Start: base, End: base.Add(n * time.Second),
		Rules: []string{"rep"}}); err != nil {
		t.Fatal(err)
	}
	waitReached(t, reached)
	crash(e)

	e2 := newEngine(t, l, nil)
	var r Replay
	waitFor(t, 20*time.Second, "the resumed replay to complete", func() bool {
		r, _ = e2.ReplayByName("rp")
		return r.State == ReplayCompleted
	})
	if r.Resumed != 1 || r.Replayed != n || r.Total != n || !r.LastReplayed.Equal(base.Add((n-1)*time.Second)) {
		t.Fatalf("replay after the restart: %+v", r)
	}
	// Each event of the window reached "rep" again: at least once (the
	// progress stored before the crash may lag what was sent), in order.
	waitFor(t, 20*time.Second, "replayed deliveries", func() bool {
		seen := map[string]bool{}
		for _, rec := range readAll(t, l, "replayed")[n:] {
			seen[string(rec.Value)] = true
		}
		return len(seen) == n
	})
	// In event-time order, but for one step back where the next engine
	// delivered again what the crashed one had not committed.
	var last time.Time
	back := 0
	for _, rec := range readAll(t, l, "replayed")[n:] {
		var tm time.Time
		for _, h := range rec.Headers {
			if h.Key == "ce_time" {
				tm, _ = time.Parse(time.RFC3339Nano, string(h.Value))
			}
		}
		if tm.Before(last) {
			back++
		}
		last = tm
	}
	if back > 1 {
		t.Fatalf("replayed events out of event-time order %d times", back)
	}
	if got := len(readAll(t, l, "live")); got != n {
		t.Fatalf("the live rule got %d events, want %d: replayed events went to a rule the replay does not name", got, n)
	}
}
