package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/internal/httpjson"
)

// Persistent subscription groups hosted by the server, so that consumers in
// any number of processes compete for one group's events:
//
//	PUT    /v1/persistent-subscriptions/{group}               create (idempotent) {"stream","filter",...}
//	GET    /v1/persistent-subscriptions/{group}/next?waitMs=  one delivery, or 204 when none came in time
//	POST   /v1/persistent-subscriptions/{group}/ack           {"deliveryIds":[...]}
//	POST   /v1/persistent-subscriptions/{group}/nack          {"deliveryIds":[...],"reason"}
//	POST   /v1/persistent-subscriptions/{group}/replay-parked
//	DELETE /v1/persistent-subscriptions/{group}               remove it (its checkpoint and parked events stay)
//
// A group's definition, checkpoint and parked events live in the store
// (eventstore.Groups): after a server restart every group defined and not
// deleted runs again from its checkpoint, with no PUT needed.

// GroupConfig is the body of PUT /v1/persistent-subscriptions/{group}.
type GroupConfig struct {
	Stream       string     `json:"stream,omitempty"`
	Filter       WireFilter `json:"filter,omitzero"`
	From         int64      `json:"from,omitempty"`
	MaxRetries   int        `json:"maxRetries,omitempty"`
	AckTimeoutMs int64      `json:"ackTimeoutMs,omitempty"`
	MaxInFlight  int        `json:"maxInFlight,omitempty"`
}

// WireFilter is an eventstore.Filter on the wire.
type WireFilter struct {
	StreamPrefix  string   `json:"streamPrefix,omitempty"`
	TypePrefix    string   `json:"typePrefix,omitempty"`
	TypeRegex     string   `json:"typeRegex,omitempty"`
	Types         []string `json:"types,omitempty"`
	ExcludeSystem bool     `json:"excludeSystem,omitempty"`
}

// WireDelivery is GET .../next.
type WireDelivery struct {
	DeliveryID string `json:"deliveryId"`
	Attempt    int    `json:"attempt"`
	Event      Event  `json:"event"`
}

// DeliveryIDs is the body of ack and nack.
type DeliveryIDs struct {
	DeliveryIDs []string `json:"deliveryIds"`
	Reason      string   `json:"reason,omitempty"`
}

type group struct {
	p *eventstore.Persistent

	mu         sync.Mutex
	deliveries map[string]pending
	seq        int64
	pruned     time.Time
	ackTimeout time.Duration
}

// pending is a delivery awaiting its consumer's ack or nack. One never
// settled (the consumer died) is redelivered by the group after its ack
// timeout, and forgotten here after twice that.
type pending struct {
	d  eventstore.Delivery
	at time.Time
}

// groups serves the groups of an eventstore.Groups, which keeps their
// definitions in the store: the groups defined before a restart run again
// after it. The Groups is opened at Routes; if that fails (the store is
// unreachable), every group request tries again.
type groups struct {
	s  eventstore.Store
	mu sync.Mutex
	gs *eventstore.Groups
	m  map[string]*group // delivery bookkeeping by group
	// closed: Close ran; no more opening.
	closed bool
}

func (g *groups) open(ctx context.Context) (*eventstore.Groups, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, eventstore.ErrClosed
	}
	if g.gs == nil {
		gs, err := eventstore.OpenGroups(ctx, g.s, eventstore.GroupsConfig{})
		if err != nil {
			return nil, err
		}
		g.gs = gs
	}
	return g.gs, nil
}

func groupError(name string, err error) error {
	switch {
	case errors.Is(err, eventstore.ErrGroupNotFound):
		return httpjson.Errorf(httpjson.CodeNotFound, "group", "subscription group %q is not defined: create it with PUT /v1/persistent-subscriptions/%s", name, name)
	case errors.Is(err, eventstore.ErrGroupExists):
		return httpjson.Errorf(httpjson.CodeAlreadyExists, "group", "subscription group %q runs with another configuration: DELETE it first", name)
	case errors.Is(err, eventstore.ErrNotHost):
		return httpjson.Errorf(httpjson.CodeUnavailable, "group", "subscription group %q: %v", name, err)
	}
	return err
}

// bookkeeping returns the delivery state of a running group, made when
// first needed (a group restored at start has none yet).
func (g *groups) bookkeeping(name string, p *eventstore.Persistent, def eventstore.GroupDefinition) *group {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.m[name]
	if gr == nil || gr.p != p {
		at := def.AckTimeout
		if at <= 0 {
			at = 30 * time.Second
		}
		gr = &group{p: p, deliveries: map[string]pending{}, ackTimeout: at}
		g.m[name] = gr
	}
	return gr
}

func (g *groups) get(ctx context.Context, name string) (*group, error) {
	gs, err := g.open(ctx)
	if err != nil {
		return nil, err
	}
	p, def, err := gs.Get(name)
	if err != nil {
		return nil, groupError(name, err)
	}
	return g.bookkeeping(name, p, def), nil
}

func (g *groups) put(w http.ResponseWriter, r *http.Request) error {
	var cfg GroupConfig
	if err := httpjson.Decode(w, r, 64<<10, &cfg); err != nil {
		return err
	}
	name := r.PathValue("group")
	if cfg.AckTimeoutMs < 0 || cfg.MaxRetries < 0 || cfg.MaxInFlight < 0 || cfg.MaxInFlight > eventstore.MaxGroupInFlight {
		return httpjson.Invalid("", "ackTimeoutMs, maxRetries and maxInFlight must be >= 0 (maxInFlight at most %d)", eventstore.MaxGroupInFlight)
	}
	gs, err := g.open(r.Context())
	if err != nil {
		return err
	}
	def := eventstore.GroupDefinition{
		Group: name, Stream: cfg.Stream, From: cfg.From, MaxRetries: cfg.MaxRetries,
		AckTimeout: time.Duration(cfg.AckTimeoutMs) * time.Millisecond, MaxInFlight: cfg.MaxInFlight,
		Filter: eventstore.Filter{StreamPrefix: cfg.Filter.StreamPrefix, TypePrefix: cfg.Filter.TypePrefix, TypeRegex: cfg.Filter.TypeRegex, Types: cfg.Filter.Types,
			ExcludeSystem: cfg.Filter.ExcludeSystem},
	}
	p, created, err := gs.Define(r.Context(), def)
	if err != nil {
		return groupError(name, err)
	}
	g.bookkeeping(name, p, def)
	if created {
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

func (g *groups) next(w http.ResponseWriter, r *http.Request) error {
	gr, err := g.get(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	waitMs, err := queryInt(r, "waitMs", 0)
	if err != nil {
		return err
	}
	if waitMs < 0 || time.Duration(waitMs)*time.Millisecond > MaxWait {
		return httpjson.Invalid("waitMs", "%d is outside [0, %d]", waitMs, MaxWait.Milliseconds())
	}
	ctx, cancel := context.WithTimeout(r.Context(), max(time.Duration(waitMs)*time.Millisecond, time.Millisecond))
	defer cancel()
	d, err := gr.p.Receive(ctx)
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return err
	}
	now := time.Now()
	gr.mu.Lock()
	gr.seq++
	id := strconv.FormatInt(gr.seq, 10) + "-" + eventstore.NewID()[:8]
	gr.deliveries[id] = pending{d, now}
	if now.Sub(gr.pruned) > time.Second {
		gr.pruned = now
		for k, p := range gr.deliveries {
			if now.Sub(p.at) > 2*gr.ackTimeout {
				delete(gr.deliveries, k)
			}
		}
	}
	gr.mu.Unlock()
	httpjson.WriteJSON(w, http.StatusOK, WireDelivery{DeliveryID: id, Attempt: d.Attempt, Event: FromRecorded(d.Event)})
	return nil
}

func (g *groups) settle(ack bool) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		gr, err := g.get(r.Context(), r.PathValue("group"))
		if err != nil {
			return err
		}
		var body DeliveryIDs
		if err := httpjson.Decode(w, r, 1<<20, &body); err != nil {
			return err
		}
		for i, id := range body.DeliveryIDs {
			gr.mu.Lock()
			p, ok := gr.deliveries[id]
			delete(gr.deliveries, id)
			d := p.d
			gr.mu.Unlock()
			if !ok {
				return httpjson.Errorf(httpjson.CodeNotFound, "deliveryIds["+strconv.Itoa(i)+"]", "delivery %q is unknown or already settled", id)
			}
			if ack {
				err = d.Ack()
			} else {
				err = d.Nack(r.Context(), body.Reason)
			}
			if err != nil {
				return err
			}
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (g *groups) replay(w http.ResponseWriter, r *http.Request) error {
	gr, err := g.get(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	n, err := gr.p.ReplayParked(r.Context())
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, struct {
		Replayed int `json:"replayed"`
	}{n})
	return nil
}

func (g *groups) delete(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("group")
	gs, err := g.open(r.Context())
	if err != nil {
		return err
	}
	if err := gs.Remove(r.Context(), name); err != nil {
		return groupError(name, err)
	}
	g.mu.Lock()
	delete(g.m, name)
	g.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *groups) close() error {
	g.mu.Lock()
	gs := g.gs
	g.closed = true
	g.m = map[string]*group{}
	g.mu.Unlock()
	if gs == nil {
		return nil
	}
	return gs.Close()
}
