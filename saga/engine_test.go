package saga

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/event"
)

// behaviour by saga id: the id says which fault to inject.
func testDecide(refundFixed *atomic.Bool) map[string]decide {
	return map[string]decide{
		"t.payments": func(c *event.Event, _ int) string {
			id := c.Extensions[ExtSagaID]
			switch {
			case c.Type == "RefundPayment" && strings.Contains(id, "refundfails") && !refundFixed.Load():
				return "PaymentRefundedFailed"
			case c.Type == "RefundPayment":
				return "PaymentRefunded"
			case strings.Contains(id, "decline"):
				return "PaymentDeclined"
			}
			return "PaymentProcessed"
		},
		"t.inventory": func(c *event.Event, attempt int) string {
			id := c.Extensions[ExtSagaID]
			switch {
			case c.Type == "ReleaseInventory" && strings.Contains(id, "releaseonce") && attempt == 1:
				return "InventoryReleasedFailed"
			case c.Type == "ReleaseInventory":
				return "InventoryReleased"
			case strings.Contains(id, "slowinv") && attempt == 1:
				return "" // lost: the engine must resend after the timeout
			}
			return "InventoryReserved"
		},
		"t.shipping": func(c *event.Event, _ int) string {
			id := c.Extensions[ExtSagaID]
			switch {
			case c.Type == "CancelShipment":
				return "ShipmentCancelled"
			case strings.Contains(id, "shipfail"), strings.Contains(id, "releaseonce"), strings.Contains(id, "refundfails"):
				return "ShippingFailed"
			case strings.Contains(id, "hold"):
				return ""
			}
			return "ShipmentCreated"
		},
		"t.orders": func(c *event.Event, _ int) string { return "OrderCompleted" },
	}
}

func startEngine(t testing.TB, brokers []string, reg prometheus.Registerer, defs ...*Definition) *Engine {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := Start(ctx, Config{Brokers: brokers, Partitions: 4, Definitions: defs, Logger: testLogger(),
		Registerer: reg, SessionTimeout: time.Second, RebalanceTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEngineOrderFlow(t *testing.T) {
	brokers := startServer(t)
	createTopics(t, brokers, 4, testTopics...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var refundFixed atomic.Bool
	l := newLedger()
	for topic, d := range testDecide(&refundFixed) {
		l.participant(t, ctx, brokers, topic, d)
	}
	reg := prometheus.NewRegistry()
	e := startEngine(t, brokers, reg, orderDef(500*time.Millisecond))
	defer e.Close()

	want := map[string]Status{
		"ok-1": StatusCompleted, "decline-1": StatusCompensated, "shipfail-1": StatusCompensated,
		"slowinv-1": StatusCompleted, "releaseonce-1": StatusCompensated, "refundfails-1": StatusParked,
		"hold-1": StatusCompensated,
	}
	for id := range want {
		if err := e.StartSaga(ctx, "order", id, []byte(`{"amount":10}`)); err != nil {
			t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	// hold-1 waits on shipping, which never answers: abort it.
	if _, err := e.WaitFor(wctx, "hold-1", func(in *Instance) bool { return in.CurrentStep() == "shipping" }); err != nil {
		t.Fatal(err)
	}
	if err := e.Abort(ctx, "hold-1", "customer called"); err != nil {
		t.Fatal(err)
	}
	for id, st := range want {
		in, err := e.WaitFor(wctx, id, func(in *Instance) bool { return in.Status == st })
		if err != nil {
			t.Fatalf("%s: want %s, have %+v: %v", id, st, in, err)
		}
		if st.Final() {
			l.check(t, in)
		}
	}

	in, _ := e.Get("slowinv-1")
	if in.Steps[1].Attempts != 2 {
		t.Errorf("slowinv-1 inventory attempts = %d, want 2 (a resend after the timeout)", in.Steps[1].Attempts)
	}
	in, _ = e.Get("shipfail-1")
	var order []string
	for _, h := range in.History {
		if h.Event == "compensation sent" {
			order = append(order, h.Step)
		}
	}
	if strings.Join(order, ",") != "inventory,payment" {
		t.Errorf("shipfail-1 compensated %v, want inventory then payment", order)
	}
	if in.Steps[2].Status != StepFailed || in.Steps[3].Status != StepSkipped {
		t.Errorf("shipfail-1 steps: %+v", in.Steps)
	}
	in, _ = e.Get("hold-1")
	if !strings.Contains(in.Reason, "customer called") {
		t.Errorf("hold-1 reason %q", in.Reason)
	}

	// A parked step: an operator fixes the participant and retries.
	if err := e.Retry(ctx, "refundfails-1", "inventory"); !errors.Is(err, ErrConflict) {
		t.Errorf("retry of a compensated step: %v, want ErrConflict", err)
	}
	if err := e.Retry(ctx, "nope", "payment"); !errors.Is(err, ErrNotFound) {
		t.Errorf("retry of an unknown saga: %v, want ErrNotFound", err)
	}
	refundFixed.Store(true)
	if err := e.Retry(ctx, "refundfails-1", "payment"); err != nil {
		t.Fatal(err)
	}
	in, err := e.WaitFor(wctx, "refundfails-1", func(in *Instance) bool { return in.Status == StatusCompensated })
	if err != nil {
		t.Fatalf("after retry: %+v: %v", in, err)
	}
	l.check(t, in)
	if err := e.Abort(ctx, "ok-1", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("abort of a completed saga: %v, want ErrConflict", err)
	}

	// A duplicate reply and a reply for an unknown saga change nothing.
	pub, err := client.NewPublisher(brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	cmd := &event.Event{ID: CommandID("ok-1", "payment", false), PartitionKey: "ok-1", Source: "/x", Type: "ProcessPayment"}
	if err := pub.Publish(ctx, e.Config().Inbox, Reply(cmd, "/test", "PaymentProcessed", nil)); err != nil {
		t.Fatal(err)
	}
	ghost := &event.Event{ID: CommandID("ghost", "payment", false), PartitionKey: "ghost", Source: "/x", Type: "ProcessPayment"}
	if err := pub.Publish(ctx, e.Config().Inbox, Reply(ghost, "/test", "PaymentProcessed", nil)); err != nil {
		t.Fatal(err)
	}
	in, err = e.WaitFor(wctx, "ok-1", func(in *Instance) bool {
		return in.History[len(in.History)-1].Event == "duplicate reply ignored"
	})
	if err != nil || in.Status != StatusCompleted {
		t.Fatalf("after a duplicate reply: %+v %v", in, err)
	}
	waitUntil(t, "the unknown saga to be counted", 10*time.Second, func() bool {
		return testutil.ToFloat64(e.m.ignored.WithLabelValues("unknown saga")) == 1
	})
	if got := testutil.ToFloat64(e.m.sagas.WithLabelValues("order", "completed")); got != 2 {
		t.Errorf("completed metric = %v, want 2", got)
	}
	if got := testutil.ToFloat64(e.m.sagas.WithLabelValues("order", "parked")); got != 1 {
		t.Errorf("parked metric = %v, want 1", got)
	}
	l.mu.Lock()
	if l.cancelled["shipfail-1"] != 1 || l.cancelled["ok-1"] != 0 {
		t.Errorf("CancelOrder sent %v", l.cancelled)
	}
	l.mu.Unlock()
	if n := len(e.List(Filter{Status: StatusCompensated})); n != 5 {
		t.Errorf("list compensated: %d, want 5", n)
	}
}

// TestEngineRestart stops the engine while sagas wait on a step that will
// time out, starts a new one, and checks the instances and their timers
// survived.
func TestEngineRestart(t *testing.T) {
	brokers := startServer(t)
	createTopics(t, brokers, 4, testTopics...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fixed atomic.Bool
	l := newLedger()
	for topic, d := range testDecide(&fixed) {
		l.participant(t, ctx, brokers, topic, d)
	}
	def := orderDef(time.Second)
	e := startEngine(t, brokers, nil, def)
	for _, id := range []string{"slowinv-a", "slowinv-b", "ok-a"} {
		if err := e.StartSaga(ctx, "order", id, nil); err != nil {
			t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if _, err := e.WaitFor(wctx, "slowinv-b", func(in *Instance) bool { return in.CurrentStep() == "inventory" }); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = startEngine(t, brokers, nil) // the definition comes from the definitions topic
	defer e.Close()
	for _, id := range []string{"slowinv-a", "slowinv-b", "ok-a"} {
		in, err := e.WaitFor(wctx, id, func(in *Instance) bool { return in.Status == StatusCompleted })
		if err != nil {
			t.Fatalf("%s: %+v %v", id, in, err)
		}
		l.check(t, in)
	}
}

func TestEngineRegisterRefusesBadDefinitions(t *testing.T) {
	brokers := startServer(t)
	createTopics(t, brokers, 4, testTopics...)
	e := startEngine(t, brokers, nil)
	defer e.Close()
	d := orderDef(time.Second)
	d.Steps[2].Command.Topic = "t.nowhere"
	_, err := e.Register(context.Background(), d)
	var de *DefinitionError
	if !errors.As(err, &de) || de.Step != "shipping" || !strings.Contains(err.Error(), `unknown topic "t.nowhere"`) {
		t.Fatalf("unknown topic: %v", err)
	}
	d1, err := e.Register(context.Background(), orderDef(time.Second))
	if err != nil || d1.Version != 1 {
		t.Fatalf("register: %+v %v", d1, err)
	}
	d2, err := e.Register(context.Background(), orderDef(time.Second))
	if err != nil || d2.Version != 1 {
		t.Fatalf("register the same again: %+v %v", d2, err)
	}
	d3, err := e.Register(context.Background(), orderDef(2*time.Second))
	if err != nil || d3.Version != 2 {
		t.Fatalf("register a change: %+v %v", d3, err)
	}
}

// TestEngineRetention checks finished sagas are deleted after
// RetainFinished, and parked ones are kept.
func TestEngineRetention(t *testing.T) {
	brokers := startServer(t)
	createTopics(t, brokers, 4, testTopics...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var never atomic.Bool
	l := newLedger()
	for topic, d := range testDecide(&never) {
		l.participant(t, ctx, brokers, topic, d)
	}
	e, err := Start(ctx, Config{Brokers: brokers, Partitions: 4, Definitions: []*Definition{orderDef(time.Second)},
		Logger: testLogger(), SessionTimeout: time.Second, RebalanceTimeout: 2 * time.Second, RetainFinished: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, id := range []string{"ok-r", "refundfails-r"} {
		if err := e.StartSaga(ctx, "order", id, nil); err != nil {
			t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if _, err := e.WaitFor(wctx, "ok-r", func(in *Instance) bool { return in.Status == StatusCompleted }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.WaitFor(wctx, "refundfails-r", func(in *Instance) bool { return in.Status == StatusParked }); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the finished saga to be deleted", 10*time.Second, func() bool {
		_, err := e.Get("ok-r")
		return errors.Is(err, ErrNotFound)
	})
	time.Sleep(time.Second)
	if in, err := e.Get("refundfails-r"); err != nil || in.Status != StatusParked {
		t.Fatalf("parked saga: %+v %v", in, err)
	}
}
