package saga

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/event"
)

// TestChoreography runs a three-service choreography with Reactors and
// rebuilds each flow from its correlation id with a ProcessView.
func TestChoreography(t *testing.T) {
	brokers := startServer(t)
	createTopics(t, brokers, 4, "c.events")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type order struct {
		ID     string `json:"id"`
		Amount int    `json:"amount"`
	}
	services := map[string]*Reactor{
		"payment": NewReactor("/payment").On("OrderCreated", func(ctx context.Context, e *event.Event) error {
			if e.PartitionKey == "o-declined" {
				return Emit(ctx, "c.events", "PaymentDeclined", nil)
			}
			return Emit(ctx, "c.events", "PaymentProcessed", order{ID: e.PartitionKey, Amount: 5})
		}),
		"shipping": NewReactor("/shipping").On("PaymentProcessed", func(ctx context.Context, e *event.Event) error {
			return Emit(ctx, "c.events", "ShipmentCreated", nil)
		}),
		"orders": NewReactor("/orders").
			On("ShipmentCreated", func(ctx context.Context, e *event.Event) error { return Emit(ctx, "c.events", "OrderCompleted", nil) }).
			On("PaymentDeclined", func(ctx context.Context, e *event.Event) error { return Emit(ctx, "c.events", "OrderCancelled", nil) }),
	}
	for name, r := range services {
		s, err := client.NewSubscriber(brokers, "c-"+name, []string{"c.events"}, r.Handler(), client.WithLogger(testLogger()),
			client.WithDeliveryMode(client.ExactlyOnce),
			client.WithKgoOptions(kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100*time.Millisecond)))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		defer func() { s.Close(); <-done }()
	}
	pub, err := client.NewPublisher(brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var starts []*event.Event
	for _, id := range []string{"o-ok", "o-declined"} {
		e := event.New("/orders", "OrderCreated")
		e.PartitionKey = id
		starts = append(starts, e)
	}
	if err := pub.Publish(ctx, "c.events", starts...); err != nil {
		t.Fatal(err)
	}
	if err := Emit(ctx, "c.events", "x", nil); !errors.Is(err, ErrNoReaction) {
		t.Errorf("Emit outside a reaction: %v", err)
	}

	v, err := StartProcessView(ProcessViewConfig{Brokers: brokers, Topics: []string{"c.events"}, Logger: testLogger(),
		Terminal: map[string]string{"OrderCompleted": "completed", "OrderCancelled": "cancelled"}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitUntil(t, "both flows to end", 30*time.Second, func() bool {
		o := v.Outcomes()
		return o["completed"] == 1 && o["cancelled"] == 1
	})
	f, ok := v.Flow(starts[0].ID) // the first event's id is the flow's correlation id
	if !ok || f.Outcome != "completed" {
		t.Fatalf("flow of o-ok: %+v", f)
	}
	want := []string{"OrderCreated", "PaymentProcessed", "ShipmentCreated", "OrderCompleted"}
	if len(f.Steps) != len(want) {
		t.Fatalf("flow of o-ok has %d steps: %+v", len(f.Steps), f.Steps)
	}
	for i, s := range f.Steps {
		if s.Type != want[i] {
			t.Fatalf("step %d is %s, want %s: %+v", i, s.Type, want[i], f.Steps)
		}
		if i > 0 && s.CausationID != f.Steps[i-1].ID {
			t.Errorf("step %s caused by %s, want %s", s.Type, s.CausationID, f.Steps[i-1].ID)
		}
	}
	f, _ = v.Flow(starts[1].ID)
	if f.Outcome != "cancelled" || len(f.Steps) != 3 || f.Steps[1].Type != "PaymentDeclined" {
		t.Fatalf("flow of o-declined: %+v", f)
	}
}
