package order_test

import (
	"context"
	"errors"
	"testing"

	"github.com/heraldhq/herald/eventstore/embedded"
	"github.com/heraldhq/herald/examples/order"
)

func TestOrderLifecycle(t *testing.T) {
	es, err := embedded.Open(embedded.Config{Dir: t.TempDir(), SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	ctx := context.Background()
	svc := order.NewService(es)
	o, err := svc.Place(ctx, order.Placed{ID: "o1", Customer: "c1", Lines: []order.Line{{SKU: "a", Quantity: 2, PriceCents: 150}, {SKU: "b", Quantity: 1, PriceCents: 99}}})
	if err != nil || o.TotalCents != 399 || o.Status != order.StatusPlaced {
		t.Fatalf("place: %+v %v", o, err)
	}
	if _, err := svc.Place(ctx, order.Placed{ID: "o1", Customer: "c1", Lines: []order.Line{{SKU: "a", Quantity: 1}}}); !errors.Is(err, order.ErrExists) {
		t.Fatalf("place twice: %v", err)
	}
	if _, err := svc.Place(ctx, order.Placed{ID: "o2", Customer: "c1", Lines: []order.Line{{SKU: "a", Quantity: 0}}}); !errors.Is(err, order.ErrInvalid) {
		t.Fatalf("bad line: %v", err)
	}
	if _, err := svc.Ship(ctx, "o1", "t"); !errors.Is(err, order.ErrInvalidState) {
		t.Fatalf("ship before confirm: %v", err)
	}
	if _, err := svc.Confirm(ctx, "o1", "pay-1"); err != nil {
		t.Fatal(err)
	}
	if o, err = svc.Ship(ctx, "o1", "track-9"); err != nil || o.Status != order.StatusShipped || o.Tracking != "track-9" {
		t.Fatalf("ship: %+v %v", o, err)
	}
	if _, err := svc.Cancel(ctx, "o1", "too late"); !errors.Is(err, order.ErrInvalidState) {
		t.Fatalf("cancel shipped: %v", err)
	}
	if _, err := svc.Cancel(ctx, "nope", "x"); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
	// A saga's compensation.
	svc.Place(ctx, order.Placed{ID: "o3", Customer: "c2", Lines: []order.Line{{SKU: "z", Quantity: 1, PriceCents: 5}}})
	if o, err = svc.Cancel(ctx, "o3", "payment declined"); err != nil || o.Status != order.StatusCancelled || o.CancelledBy != "payment declined" {
		t.Fatalf("cancel: %+v %v", o, err)
	}
	l, err := svc.Repo.Load(ctx, "o1")
	if err != nil || l.Version != 2 || l.State.Status != order.StatusShipped {
		t.Fatalf("load: %+v %v", l, err)
	}
}
