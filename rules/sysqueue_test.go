package rules

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/event"
)

// TestSystemQueueNeverBlocks: a full queue drops (and counts) instead of
// making the emitting component wait; what was queued before the engine
// ran is published once it does, in order; events with an invalid
// source are dropped, not published.
func TestSystemQueueNeverBlocks(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := NewSystemQueue(SystemQueueConfig{Size: 3, Logger: quietLogger(), Registerer: reg})
	h := q.Hook()
	ctx := context.Background()
	start := time.Now()
	for i := range 10 {
		h.Emit(ctx, "herald/test", "herald.test.happened", "thing", map[string]int{"n": i})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("emitting 10 events into a queue of 3 took %s", d)
	}
	if got := q.Dropped("herald/test", "queue_full"); got != 7 {
		t.Fatalf("dropped %v events, want 7", got)
	}
	var nilq *SystemQueue
	if nilq.Hook() != nil {
		t.Fatal("a nil queue's hook is not nil")
	}
	event.Hook(nil).Emit(ctx, "herald/test", "x", "", nil) // a nil hook does nothing
	nilq.Start(nil)()

	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	createTopic(t, l, "sysq-out")
	if _, err := e.PutRule(ctx, Rule{Name: "all", Bus: SystemBus,
		EventPattern: []byte(`{"source":["herald/test"]}`), Targets: []Target{{ID: "t", Topic: "sysq-out"}}}, true); err != nil {
		t.Fatal(err)
	}
	stop := q.Start(e)
	waitFor(t, 10*time.Second, "3 queued events delivered", func() bool { return len(readAll(t, l, "sysq-out")) == 3 })
	for i, r := range readAll(t, l, "sysq-out") {
		ev, err := decodeRecord(&r)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Source != "herald/test" || ev.Subject != "thing" || string(ev.Data) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("event %d: %s %s %s", i, ev.Source, ev.Subject, ev.Data)
		}
	}
	h(ctx, event.New("broker", "not.a.system.event"))
	waitFor(t, 5*time.Second, "the invalid event dropped", func() bool { return q.Dropped("broker", "invalid") == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The system bus unavailable (its log closed): dropped and counted.
	l.Close()
	stop = q.Start(e)
	h.Emit(ctx, "herald/test", "herald.test.happened", "late", nil)
	waitFor(t, 5*time.Second, "the event dropped", func() bool { return q.Dropped("herald/test", "publish_failed") == 1 })
	stop()
}
