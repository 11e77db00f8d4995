package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventlog"
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

// pauseReplayAt makes the first replay run to reach its stopAt'th event
// stop there until its context ends (a crash, a hand-off, a cancel); the
// channel closes when it gets there.
func pauseReplayAt(t *testing.T, stopAt int) <-chan struct{} {
	var first atomic.Bool
	first.Store(true)
	reached := make(chan struct{})
	testReplayStep = func(ctx context.Context, i int) {
		if i == stopAt && first.CompareAndSwap(true, false) {
			close(reached)
			<-ctx.Done()
		}
	}
	t.Cleanup(func() { testReplayStep = nil })
	return reached
}

func waitReached(t *testing.T, reached <-chan struct{}) {
	t.Helper()
	select {
	case <-reached:
	case <-time.After(20 * time.Second):
		t.Fatal("the replay never reached its stop point")
	}
}

// replayFixture: two engines on one log with the bus split between them,
// a rule "rep" into topic replayed, an archive of every event, and n
// events (event times a second apart) delivered live. owner owns bus
// partition 0, other does not.
func replayFixture(t *testing.T, n int) (l eventlog.Log, owner, other *Engine, base time.Time) {
	t.Helper()
	l = newLog(t, t.TempDir())
	ctx := context.Background()
	cfg := func(c *Config) { c.BusPartitions = 4; c.SessionTimeout = 2 * time.Second }
	a := newEngine(t, l, cfg)
	createTopic(t, l, "replayed")
	if _, err := a.PutRule(ctx, Rule{Name: "rep", EventPattern: json.RawMessage(`{"source":["shop"]}`),
		Targets: []Target{{ID: "t", Topic: "replayed"}}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateArchive(ctx, Archive{Name: "all"}); err != nil {
		t.Fatal(err)
	}
	b := newEngine(t, l, cfg)
	waitFor(t, 20*time.Second, "the bus's partitions split between the engines", func() bool {
		pa, pb := owned(a, DefaultBus), owned(b, DefaultBus)
		all := slices.Sorted(slices.Values(append(slices.Clone(pa), pb...)))
		return len(pa) > 0 && len(pb) > 0 && slices.Equal(all, []int32{0, 1, 2, 3})
	})
	owner, other = a, b
	if !slices.Contains(owned(a, DefaultBus), 0) {
		owner, other = b, a
	}
	base = time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for i := 0; i < n; i++ {
		ev := mkEvent("shop", "order", fmt.Sprintf(`{"k":%d}`, i))
		ev.Time = base.Add(time.Duration(i) * time.Second)
		ev.PartitionKey = fmt.Sprint(i)
		if err := a.Publish(ctx, DefaultBus, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the archive and the live deliveries", func() bool {
		return len(readAll(t, l, archiveTopic("all"))) == n && len(readAll(t, l, "replayed")) == n
	})
	return l, owner, other, base
}

// TestReplayMovesWithPartitionZero: a replay started through an engine
// that does not own bus partition 0 runs on the one that does (and only
// there); both show its state; when the owner stops mid-replay, it
// stores its progress and the other engine, now the owner, resumes from
// it: every event of the window replayed, none twice but the one in
// flight.
func TestReplayMovesWithPartitionZero(t *testing.T) {
	const n, stopAt = 200, 80
	reached := pauseReplayAt(t, stopAt) // until the owner hands the replay off
	l, owner, other, base := replayFixture(t, n)
	ctx := context.Background()
	if _, err := other.StartReplay(ctx, Replay{Name: "rp", Archive: "all", Start: base, End: base.Add(n * time.Second),
		Rules: []string{"rep"}}); err != nil {
		t.Fatal(err)
	}
	waitReached(t, reached)
	owner.mu.Lock()
	running := owner.mu.replays["rp"] != nil && owner.mu.replays["rp"].running
	owner.mu.Unlock()
	other.mu.Lock()
	runningOther := other.mu.replays["rp"].running
	other.mu.Unlock()
	if !running || runningOther {
		t.Fatalf("the replay runs on the owner of partition 0: %v, on the other engine: %v", running, runningOther)
	}
	waitFor(t, 20*time.Second, "the other engine to show the replay running", func() bool {
		r, err := other.ReplayByName("rp")
		return err == nil && r.State == ReplayRunning && r.Total == n
	})
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	var r Replay
	waitFor(t, 20*time.Second, "the replay to complete on the other engine", func() bool {
		r, _ = other.ReplayByName("rp")
		return r.State == ReplayCompleted
	})
	if r.Resumed != 1 || r.Replayed != n || r.Total != n {
		t.Fatalf("replay after the hand-off: %+v", r)
	}
	waitFor(t, 20*time.Second, "every replayed delivery", func() bool {
		seen := map[string]bool{}
		for _, rec := range readAll(t, l, "replayed")[n:] {
			seen[string(rec.Value)] = true
		}
		return len(seen) == n
	})
	if got := len(readAll(t, l, "replayed")) - n; got > n+1 {
		t.Fatalf("%d replayed deliveries for %d events: the hand-off sent more than the event in flight again", got, n)
	}
}

// TestCancelReplayFromAnotherEngine: cancelling through an engine that
// does not run the replay stops it on the engine that does.
func TestCancelReplayFromAnotherEngine(t *testing.T) {
	const n, stopAt = 100, 10
	reached := pauseReplayAt(t, stopAt)
	_, owner, other, base := replayFixture(t, n)
	ctx := context.Background()
	if _, err := owner.StartReplay(ctx, Replay{Name: "rp", Archive: "all", Start: base, End: base.Add(n * time.Second),
		Rules: []string{"rep"}}); err != nil {
		t.Fatal(err)
	}
	waitReached(t, reached)
	waitFor(t, 20*time.Second, "the other engine to know the replay", func() bool {
		_, err := other.ReplayByName("rp")
		return err == nil
	})
	if r, err := other.CancelReplay(ctx, "rp"); err != nil || r.State != ReplayCancelling {
		t.Fatalf("cancel through the other engine: %+v %v", r, err)
	}
	for _, e := range []*Engine{owner, other} {
		waitFor(t, 20*time.Second, "the replay cancelled", func() bool {
			r, _ := e.ReplayByName("rp")
			return r.State == ReplayCancelled
		})
	}
	if r, _ := owner.ReplayByName("rp"); r.Replayed != stopAt {
		t.Fatalf("cancelled replay sent %d events, want %d", r.Replayed, stopAt)
	}
}
