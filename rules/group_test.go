package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"
)

// owned returns the bus partitions e dispatches now.
func owned(e *Engine, bus string) []int32 {
	e.mu.Lock()
	bs := e.mu.buses[bus]
	e.mu.Unlock()
	bs.parts.Lock()
	defer bs.parts.Unlock()
	var ps []int32
	for p := range bs.parts.m {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// TestTwoEnginesShareTheBus: two engines on one log split the bus's
// partitions through its consumer group, so every event is delivered
// once, not once per engine; when one closes, the other takes its
// partitions over from where it committed.
func TestTwoEnginesShareTheBus(t *testing.T) {
	l := newLog(t, t.TempDir())
	ctx := context.Background()
	cfg := func(c *Config) { c.BusPartitions = 4; c.SessionTimeout = 2 * time.Second }
	a := newEngine(t, l, cfg)
	createTopic(t, l, "out")
	if _, err := a.PutRule(ctx, Rule{Name: "all", EventPattern: json.RawMessage(`{"source":["s"]}`),
		Targets: []Target{{ID: "t", Topic: "out"}}}, true); err != nil {
		t.Fatal(err)
	}
	b := newEngine(t, l, cfg) // loads the rule a stored
	waitFor(t, 20*time.Second, "the bus's partitions split between the engines", func() bool {
		pa, pb := owned(a, DefaultBus), owned(b, DefaultBus)
		all := slices.Sorted(slices.Values(append(slices.Clone(pa), pb...)))
		return len(pa) > 0 && len(pb) > 0 && slices.Equal(all, []int32{0, 1, 2, 3})
	})
	t.Logf("engine a reads %v, engine b %v", owned(a, DefaultBus), owned(b, DefaultBus))

	publish := func(from, to int) {
		for i := from; i < to; i++ {
			ev := mkEvent("s", "t", fmt.Sprintf(`{"i":%d}`, i))
			ev.PartitionKey = fmt.Sprint(i)
			if err := a.Publish(ctx, DefaultBus, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	// settled waits until the group's commits reach the end of every bus
	// partition: then no engine owes a delivery, and out is final.
	settled := func() bool {
		committed, err := l.CommittedOffsets(ctx, "herald.rules."+DefaultBus, DefaultBus)
		if err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < 4; p++ {
			_, end, err := l.Offsets(ctx, DefaultBus, p)
			if err != nil {
				t.Fatal(err)
			}
			if committed[p] != end {
				return false
			}
		}
		return true
	}
	check := func(n int) {
		t.Helper()
		waitFor(t, 20*time.Second, "every event delivered and committed", settled)
		counts := map[string]int{}
		for _, r := range readAll(t, l, "out") {
			counts[string(r.Value)]++
		}
		for i := 0; i < n; i++ {
			if c := counts[fmt.Sprintf(`{"i":%d}`, i)]; c != 1 {
				t.Fatalf("event %d delivered %d times, want once", i, c)
			}
		}
		if len(counts) != n {
			t.Fatalf("%d distinct events delivered, want %d", len(counts), n)
		}
	}
	const n = 400
	publish(0, n)
	check(n)

	// b leaves cleanly: a takes every partition over from b's commits.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "engine a owning every partition", func() bool {
		return slices.Equal(owned(a, DefaultBus), []int32{0, 1, 2, 3})
	})
	publish(n, 2*n)
	check(2 * n)
}

// TestEnginesFollowDefinitions: a rule or archive created, changed or
// deleted through one engine is in force on the others on the log, so the
// partitions they own route by it too.
func TestEnginesFollowDefinitions(t *testing.T) {
	l := newLog(t, t.TempDir())
	ctx := context.Background()
	cfg := func(c *Config) { c.BusPartitions = 4; c.SessionTimeout = 2 * time.Second }
	a := newEngine(t, l, cfg)
	b := newEngine(t, l, cfg)
	createTopic(t, l, "out")
	waitFor(t, 20*time.Second, "both engines owning bus partitions", func() bool {
		return len(owned(a, DefaultBus)) > 0 && len(owned(b, DefaultBus)) > 0
	})
	if _, err := a.PutRule(ctx, Rule{Name: "r", EventPattern: json.RawMessage(`{"source":["s"]}`),
		Targets: []Target{{ID: "t", Topic: "out"}}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateArchive(ctx, Archive{Name: "arc"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateBus(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "engine b to follow the rule, archive and bus", func() bool {
		_, errR := b.Rule(DefaultBus, "r")
		_, errA := b.ArchiveByName("arc")
		_, errB := b.Bus("orders")
		return errR == nil && errA == nil && errB == nil
	})
	const n = 200
	for i := 0; i < n; i++ {
		ev := mkEvent("s", "t", fmt.Sprintf(`{"i":%d}`, i))
		ev.PartitionKey = fmt.Sprint(i)
		if err := a.Publish(ctx, DefaultBus, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "every event delivered and archived", func() bool {
		return len(readAll(t, l, "out")) >= n && len(readAll(t, l, archiveTopic("arc"))) >= n
	})
	counts := map[string]int{}
	for _, r := range readAll(t, l, "out") {
		counts[string(r.Value)]++
	}
	for i := 0; i < n; i++ {
		if c := counts[fmt.Sprintf(`{"i":%d}`, i)]; c != 1 {
			t.Fatalf("event %d delivered %d times, want once", i, c)
		}
	}
	// A change made through b, then a deletion through a.
	if _, err := b.SetState(ctx, DefaultBus, "r", Disabled); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "engine a to see the rule disabled", func() bool {
		r, err := a.Rule(DefaultBus, "r")
		return err == nil && r.State == Disabled
	})
	if err := a.DeleteRule(ctx, DefaultBus, "r"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "engine b to drop the rule", func() bool {
		_, err := b.Rule(DefaultBus, "r")
		return err != nil
	})
}
