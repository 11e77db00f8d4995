// Package order is an event-sourced order aggregate on Herald's event store
// and cqrs package: the example the saga issue builds on. An order is
// placed with lines, then confirmed (payment and stock reserved), shipped,
// or cancelled (a saga's compensation); each step checks the state the
// events so far produced.
package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/cqrs"
	"github.com/heraldhq/herald/eventstore"
)

// Status of an order.
type Status string

const (
	StatusNone      Status = ""
	StatusPlaced    Status = "placed"
	StatusConfirmed Status = "confirmed"
	StatusShipped   Status = "shipped"
	StatusCancelled Status = "cancelled"
)

// Line is one item of an order.
type Line struct {
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	PriceCents int64  `json:"priceCents"`
}

// Order is the aggregate's state, derived from its events.
type Order struct {
	ID          string `json:"id"`
	Customer    string `json:"customer"`
	Lines       []Line `json:"lines"`
	TotalCents  int64  `json:"totalCents"`
	Status      Status `json:"status"`
	CancelledBy string `json:"cancelledBy,omitempty"`
	Tracking    string `json:"tracking,omitempty"`
}

// Event types.
const (
	EventPlaced    = "OrderPlaced"
	EventConfirmed = "OrderConfirmed"
	EventShipped   = "OrderShipped"
	EventCancelled = "OrderCancelled"
)

// Placed is the body of OrderPlaced.
type Placed struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Lines    []Line `json:"lines"`
}

// Confirmed is the body of OrderConfirmed.
type Confirmed struct {
	PaymentID string `json:"paymentId"`
}

// Shipped is the body of OrderShipped.
type Shipped struct {
	Tracking string `json:"tracking"`
}

// Cancelled is the body of OrderCancelled.
type Cancelled struct {
	Reason string `json:"reason"`
}

// Apply folds one event into the state.
func Apply(o Order, ev eventstore.RecordedEvent) (Order, error) {
	switch ev.Type {
	case EventPlaced:
		var e Placed
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return o, err
		}
		o.ID, o.Customer, o.Lines, o.Status = e.ID, e.Customer, e.Lines, StatusPlaced
		o.TotalCents = 0
		for _, l := range e.Lines {
			o.TotalCents += int64(l.Quantity) * l.PriceCents
		}
	case EventConfirmed:
		o.Status = StatusConfirmed
	case EventShipped:
		var e Shipped
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return o, err
		}
		o.Status, o.Tracking = StatusShipped, e.Tracking
	case EventCancelled:
		var e Cancelled
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return o, err
		}
		o.Status, o.CancelledBy = StatusCancelled, e.Reason
	default:
		return o, fmt.Errorf("order: unknown event type %q", ev.Type)
	}
	return o, nil
}

// Type is the aggregate type: streams "order-<id>", a snapshot every 50
// events.
var Type = cqrs.AggregateType[Order]{
	Category: "order", Initial: func() Order { return Order{} }, Apply: Apply, SnapshotEvery: 50,
}

// Errors of the commands; a saga tells them apart with errors.Is.
var (
	ErrExists       = errors.New("order already placed")
	ErrNotFound     = errors.New("order not placed")
	ErrInvalidState = errors.New("order is not in a state that allows this")
	ErrInvalid      = errors.New("invalid order")
)

func event(typ string, v any) []eventstore.EventData {
	b, _ := json.Marshal(v)
	return []eventstore.EventData{{Type: typ, Data: b}}
}

// Service runs the order commands against a repository.
type Service struct{ Repo *cqrs.Repository[Order] }

// NewService makes a service on store.
func NewService(store eventstore.Store) *Service {
	return &Service{Repo: &cqrs.Repository[Order]{Store: store, Type: Type}}
}

// Place places an order.
func (s *Service) Place(ctx context.Context, p Placed) (Order, error) {
	if p.ID == "" || p.Customer == "" || len(p.Lines) == 0 {
		return Order{}, fmt.Errorf("%w: id, customer and at least one line are required", ErrInvalid)
	}
	for i, l := range p.Lines {
		if l.SKU == "" || l.Quantity <= 0 || l.PriceCents < 0 {
			return Order{}, fmt.Errorf("%w: lines[%d]: want a SKU, a positive quantity and a price >= 0", ErrInvalid, i)
		}
	}
	r, err := s.Repo.Execute(ctx, p.ID, func(o Order, _ int64) ([]eventstore.EventData, error) {
		if o.Status != StatusNone {
			return nil, fmt.Errorf("%w: %s", ErrExists, p.ID)
		}
		return event(EventPlaced, p), nil
	})
	return r.State, err
}

func (s *Service) transition(ctx context.Context, id string, from []Status, typ string, body any) (Order, error) {
	r, err := s.Repo.Execute(ctx, id, func(o Order, _ int64) ([]eventstore.EventData, error) {
		if o.Status == StatusNone {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		for _, f := range from {
			if o.Status == f {
				return event(typ, body), nil
			}
		}
		return nil, fmt.Errorf("%w: %s is %s", ErrInvalidState, id, o.Status)
	})
	return r.State, err
}

// Confirm confirms a placed order.
func (s *Service) Confirm(ctx context.Context, id, paymentID string) (Order, error) {
	return s.transition(ctx, id, []Status{StatusPlaced}, EventConfirmed, Confirmed{PaymentID: paymentID})
}

// Ship ships a confirmed order.
func (s *Service) Ship(ctx context.Context, id, tracking string) (Order, error) {
	return s.transition(ctx, id, []Status{StatusConfirmed}, EventShipped, Shipped{Tracking: tracking})
}

// Cancel cancels an order that has not shipped (a saga's compensation).
func (s *Service) Cancel(ctx context.Context, id, reason string) (Order, error) {
	return s.transition(ctx, id, []Status{StatusPlaced, StatusConfirmed}, EventCancelled, Cancelled{Reason: reason})
}
