package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/prometheus/client_golang/prometheus"
)

func testPersistent(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	for i := 0; i < 60; i++ {
		mustAppend(t, s, fmt.Sprintf("job-%d", i%5), eventstore.Any, ev("Job", fmt.Sprint(i)))
	}
	mustAppend(t, s, "other-1", eventstore.Any, ev("Other", "{}"))
	reg := prometheus.NewRegistry()
	cfg := eventstore.PersistentConfig{Group: "workers", Filter: eventstore.Category("job"), MaxRetries: 3,
		AckTimeout: 300 * time.Millisecond, CheckpointInterval: 10 * time.Millisecond, Registerer: reg}
	p, err := eventstore.NewPersistent(ctx, s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Three competing consumers; "poison" (data "7") is always rejected;
	// data "11" is received once and never acked (ack timeout).
	var mu sync.Mutex
	handled := map[string]int{} // event id -> acks
	deliveries := map[string]int{}
	var wg sync.WaitGroup
	cctx, stop := context.WithCancel(ctx)
	for c := 0; c < 3; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				d, err := p.Receive(cctx)
				if err != nil {
					return
				}
				mu.Lock()
				deliveries[string(d.Event.Data)]++
				mu.Unlock()
				switch {
				case string(d.Event.Data) == "7":
					d.Nack(cctx, "poison")
				case string(d.Event.Data) == "11" && d.Attempt == 1:
					// dropped: redelivered after the ack timeout
				default:
					mu.Lock()
					handled[d.Event.ID]++
					mu.Unlock()
					d.Ack()
				}
			}
		}()
	}
	waitFor(t, "all but the poison event handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 59
	})
	jobs, _ := s.ReadAll(ctx, eventstore.ReadAllOptions{From: eventstore.End, Backwards: true, Max: 1, Filter: eventstore.Category("job")})
	last := jobs.Events[0].Position
	waitFor(t, "checkpoint past every job", func() bool { return p.Checkpoint() > last })
	stop()
	wg.Wait()
	mu.Lock()
	for id, n := range handled {
		if n != 1 {
			t.Fatalf("event %s acked %d times", id, n)
		}
	}
	if deliveries["7"] != 3 || deliveries["11"] != 2 {
		t.Fatalf("poison delivered %d times (want 3), timed-out event %d (want 2)", deliveries["7"], deliveries["11"])
	}
	mu.Unlock()
	if got := metricValue(t, reg, "herald_persistent_subscription_parked_total"); got != 1 {
		t.Fatalf("parked_total %v, want 1", got)
	}
	if got := metricValue(t, reg, "herald_persistent_subscription_acks_total"); got != 59 {
		t.Fatalf("acks_total %v, want 59", got)
	}
	parked, err := s.ReadStream(ctx, "parked.workers", eventstore.ReadStreamOptions{})
	if err != nil || len(parked) != 1 {
		t.Fatalf("parked stream: %d events %v", len(parked), err)
	}
	var body eventstore.ParkedEvent
	if err := json.Unmarshal(parked[0].Data, &body); err != nil || string(body.Event.Data) != "7" || body.Reason != "poison" {
		t.Fatalf("parked %+v %v", body, err)
	}
	// Replay the parked event; this time it is acked.
	n, err := p.ReplayParked(ctx)
	if err != nil || n != 1 {
		t.Fatalf("replay: %d %v", n, err)
	}
	d, err := p.Receive(ctx)
	if err != nil || string(d.Event.Data) != "7" || d.Attempt != 1 {
		t.Fatalf("replayed delivery %+v %v", d, err)
	}
	d.Ack()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadStream(ctx, "parked.workers", eventstore.ReadStreamOptions{}); err != nil && !isEmptyOrMissing(err) {
		t.Fatal(err)
	} else if evs, _ := s.ReadStream(ctx, "parked.workers", eventstore.ReadStreamOptions{}); len(evs) != 0 {
		t.Fatalf("parked stream still shows %d events after the replay was acked", len(evs))
	}

	// Resume: the checkpoint was saved, so only new events arrive.
	mustAppend(t, s, "job-9", eventstore.Any, ev("Job", "new"))
	p2, err := eventstore.NewPersistent(ctx, s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	d, err = p2.Receive(ctx)
	if err != nil || string(d.Event.Data) != "new" {
		t.Fatalf("after resume got %q %v, want the new event", d.Event.Data, err)
	}
	d.Ack()
}

func isEmptyOrMissing(err error) bool { return err == nil || errorsIsNotFound(err) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// testGroupsRestart: groups defined through eventstore.Groups run again
// after the store is reopened, from their checkpoints; a removed group
// does not; a conflicting definition is refused.
func testGroupsRestart(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	for i := 0; i < 10; i++ {
		mustAppend(t, s, fmt.Sprintf("rjob-%d", i%3), eventstore.Any, ev("Job", fmt.Sprint(i)))
	}
	gs, err := eventstore.OpenGroups(ctx, s, eventstore.GroupsConfig{CheckpointInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	def := eventstore.GroupDefinition{Group: "restarted", Filter: eventstore.Category("rjob"), MaxRetries: 2, AckTimeout: 5 * time.Second}
	p, created, err := gs.Define(ctx, def)
	if err != nil || !created {
		t.Fatalf("define: created %v, %v", created, err)
	}
	if _, created, err := gs.Define(ctx, def); err != nil || created {
		t.Fatalf("define again with the same definition: created %v, %v; want the running group", created, err)
	}
	other := def
	other.MaxRetries = 7
	if _, _, err := gs.Define(ctx, other); !errors.Is(err, eventstore.ErrGroupExists) {
		t.Fatalf("define with another definition: %v, want ErrGroupExists", err)
	}
	if _, _, err := gs.Define(ctx, eventstore.GroupDefinition{Group: "gone", Stream: "rjob-0"}); err != nil {
		t.Fatal(err)
	}
	if err := gs.Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := gs.Get("gone"); !errors.Is(err, eventstore.ErrGroupNotFound) {
		t.Fatalf("removed group: %v, want ErrGroupNotFound", err)
	}
	for i := 0; i < 6; i++ {
		d, err := p.Receive(ctx)
		if err != nil || string(d.Event.Data) != fmt.Sprint(i) {
			t.Fatalf("delivery %d: %q %v", i, d.Event.Data, err)
		}
		d.Ack()
	}
	if err := gs.Close(); err != nil {
		t.Fatal(err)
	}

	s = h.Reopen(t, s)
	gs, err = eventstore.OpenGroups(ctx, s, eventstore.GroupsConfig{CheckpointInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Close()
	list := gs.List()
	if len(list) != 1 || !list[0].Equal(def) {
		t.Fatalf("restored groups %+v, want only %+v", list, def)
	}
	p, got, err := gs.Get("restarted")
	if err != nil || !got.Equal(def) {
		t.Fatalf("get restored group: %+v %v", got, err)
	}
	mustAppend(t, s, "rjob-1", eventstore.Any, ev("Job", "10"))
	for i := 6; i <= 10; i++ {
		d, err := p.Receive(ctx)
		if err != nil || string(d.Event.Data) != fmt.Sprint(i) {
			t.Fatalf("after restart, delivery %d: %q %v (acked events must not come again)", i, d.Event.Data, err)
		}
		d.Ack()
	}
}

// testGroupsLease: with a hosting lease (forced, so that every backend
// runs it), one Groups hosts and another stands by, naming the host; when
// the host closes, the standby takes over the groups from their saved
// checkpoints; when another process takes the lease, the host stops its
// groups at once, and takes them back once that lease lapses unrenewed.
func testGroupsLease(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	const ttl = time.Second
	cfg := func(owner string) eventstore.GroupsConfig {
		return eventstore.GroupsConfig{CheckpointInterval: 10 * time.Millisecond, LeaseTTL: ttl, Owner: owner,
			Logger: slog.New(slog.DiscardHandler)}
	}
	for i := 0; i < 6; i++ {
		mustAppend(t, s, fmt.Sprintf("ljob-%d", i%2), eventstore.Any, ev("Job", fmt.Sprint(i)))
	}
	a, err := eventstore.OpenGroups(ctx, s, cfg("host-a"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	reg := prometheus.NewRegistry()
	bcfg := cfg("host-b")
	bcfg.Registerer = reg
	b, err := eventstore.OpenGroups(ctx, s, bcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if v := metricValue(t, reg, "herald_persistent_groups_hosting"); v != 0 {
		t.Fatalf("standby's hosting gauge is %v, want 0", v)
	}
	if hosting, err := a.Hosting(); !hosting || err != nil {
		t.Fatalf("first Groups: hosting %v, %v; want hosting", hosting, err)
	}
	var nh *eventstore.NotHostError
	if hosting, err := b.Hosting(); hosting || !errors.As(err, &nh) || nh.Owner != "host-a" || !nh.Until.After(time.Now()) {
		t.Fatalf("second Groups: hosting %v, %v; want standing by, naming host-a", hosting, err)
	}
	def := eventstore.GroupDefinition{Group: "leased", Filter: eventstore.Category("ljob"), AckTimeout: 5 * time.Second}
	if _, _, err := b.Define(ctx, def); !errors.Is(err, eventstore.ErrNotHost) || !strings.Contains(err.Error(), "host-a") {
		t.Fatalf("define on the standby: %v, want ErrNotHost naming host-a", err)
	}
	p, _, err := a.Define(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	receive := func(p *eventstore.Persistent, want ...int) {
		t.Helper()
		for _, i := range want {
			d, err := p.Receive(ctx)
			if err != nil || string(d.Event.Data) != fmt.Sprint(i) {
				t.Fatalf("delivery: %q %v, want %d", d.Event.Data, err, i)
			}
			d.Ack()
		}
	}
	receive(p, 0, 1, 2)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// The standby takes over (the lease was released) from the checkpoint.
	waitHosting := func(g *eventstore.Groups, want bool) {
		t.Helper()
		deadline := time.Now().Add(4 * ttl)
		for hosting, _ := g.Hosting(); hosting != want; hosting, _ = g.Hosting() {
			if time.Now().After(deadline) {
				t.Fatalf("hosting is still %v after %v", hosting, 4*ttl)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitHosting(b, true)
	if v := metricValue(t, reg, "herald_persistent_groups_hosting"); v != 1 {
		t.Fatalf("host's hosting gauge is %v, want 1", v)
	}
	p, got, err := b.Get("leased")
	if err != nil || !got.Equal(def) {
		t.Fatalf("group after takeover: %+v %v", got, err)
	}
	receive(p, 3, 4, 5)

	// Another process takes the lease (as a host whose clock ran ahead
	// would, or after a pause past the lease): b stops at once, and takes
	// the groups back when that lease lapses, nobody renewing it.
	evs, err := s.ReadStream(ctx, eventstore.GroupsLeaseStream, eventstore.ReadStreamOptions{From: eventstore.End, Backwards: true, Max: 1})
	if err != nil || len(evs) != 1 {
		t.Fatalf("read the lease: %v %v", evs, err)
	}
	data := fmt.Appendf(nil, `{"v":1,"owner":"host-x","token":"x","expiresMs":%d}`, time.Now().Add(ttl).UnixMilli())
	if _, err := s.Append(ctx, eventstore.GroupsLeaseStream, eventstore.Exact(evs[0].Version),
		eventstore.EventData{ID: eventstore.NewID(), Type: eventstore.GroupsLeaseType, Data: data}); err != nil {
		t.Fatal(err)
	}
	waitHosting(b, false)
	if _, _, err := b.Get("leased"); !errors.Is(err, eventstore.ErrNotHost) {
		t.Fatalf("get after losing the lease: %v, want ErrNotHost", err)
	}
	if _, err := p.Receive(ctx); err == nil {
		t.Fatal("the group of a host that lost its lease still delivers")
	}
	waitHosting(b, true)
	mustAppend(t, s, "ljob-0", eventstore.Any, ev("Job", "6"))
	p, _, err = b.Get("leased")
	if err != nil {
		t.Fatal(err)
	}
	// Acks not yet in a saved checkpoint when b stopped may come again
	// (at least once); nothing is lost.
	for {
		d, err := p.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d.Ack()
		if s := string(d.Event.Data); s == "6" {
			break
		} else if s != "3" && s != "4" && s != "5" {
			t.Fatalf("after taking the lease back: delivery %q, want 3 to 6", s)
		}
	}
}

// testPersistentAllExcludesSystem: a group over $all receives the store's
// own records, its own checkpoints among them, unless its filter excludes
// them (Filter.ExcludeSystem), when it receives only the events appended.
func testPersistentAllExcludesSystem(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	// run takes what the group gets until done says so or, once done,
	// for linger more (time for checkpoints that would leak through).
	run := func(group string, exclude bool, done func([]string) bool, linger time.Duration) []string {
		t.Helper()
		p, err := eventstore.NewPersistent(ctx, s, eventstore.PersistentConfig{Group: group,
			Filter: eventstore.Filter{ExcludeSystem: exclude}, CheckpointInterval: 10 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		var got []string
		deadline := time.Now().Add(10 * time.Second)
		for {
			if l := time.Now().Add(linger); done(got) && l.Before(deadline) {
				deadline = l
			}
			rctx, cancel := context.WithDeadline(ctx, deadline)
			d, err := p.Receive(rctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatal(err)
				}
				return got
			}
			got = append(got, d.Event.Stream+"/"+d.Event.Type)
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
			if linger == 0 && done(got) {
				return got
			}
		}
	}
	mustAppend(t, s, "job-1", eventstore.Any, ev("Job", "1"), ev("Job", "2"))
	got := run("everything", false, func(got []string) bool { return strings.Contains(strings.Join(got, " "), "$checkpoint") }, 0)
	if len(got) < 3 || got[0] != "job-1/Job" || got[1] != "job-1/Job" || !strings.Contains(strings.Join(got[2:], " "), "$checkpoint") {
		t.Fatalf("a group over $all got %q; want the two events, then its own checkpoints", got)
	}
	mustAppend(t, s, "job-2", eventstore.Any, ev("Job", "3"))
	got = run("users", true, func(got []string) bool { return len(got) >= 3 }, 500*time.Millisecond)
	if strings.Join(got, " ") != "job-1/Job job-1/Job job-2/Job" {
		t.Fatalf("a group over $all that excludes the store's records got %q; want the three events only", got)
	}
}
