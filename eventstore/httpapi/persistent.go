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
//	DELETE /v1/persistent-subscriptions/{group}               stop serving it (its checkpoint stays)
//
// A group lives in the server's memory; its checkpoint and parked events
// live in the store, so after a server restart the first PUT resumes it.

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
	StreamPrefix string   `json:"streamPrefix,omitempty"`
	TypePrefix   string   `json:"typePrefix,omitempty"`
	TypeRegex    string   `json:"typeRegex,omitempty"`
	Types        []string `json:"types,omitempty"`
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
	cfg GroupConfig
	p   *eventstore.Persistent

	mu         sync.Mutex
	deliveries map[string]pending
	seq        int64
	pruned     time.Time
}

// pending is a delivery awaiting its consumer's ack or nack. One never
// settled (the consumer died) is redelivered by the group after its ack
// timeout, and forgotten here after twice that.
type pending struct {
	d  eventstore.Delivery
	at time.Time
}

func (gr *group) ackTimeout() time.Duration {
	if gr.cfg.AckTimeoutMs > 0 {
		return time.Duration(gr.cfg.AckTimeoutMs) * time.Millisecond
	}
	return 30 * time.Second
}

type groups struct {
	s  eventstore.Store
	mu sync.Mutex
	m  map[string]*group
}

func (g *groups) get(name string) (*group, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.m[name]
	if gr == nil {
		return nil, httpjson.Errorf(httpjson.CodeNotFound, "group", "subscription group %q is not running on this server: create it with PUT /v1/persistent-subscriptions/%s", name, name)
	}
	return gr, nil
}

func (g *groups) put(w http.ResponseWriter, r *http.Request) error {
	var cfg GroupConfig
	if err := httpjson.Decode(w, r, 64<<10, &cfg); err != nil {
		return err
	}
	name := r.PathValue("group")
	if cfg.AckTimeoutMs < 0 || cfg.MaxRetries < 0 || cfg.MaxInFlight < 0 || cfg.MaxInFlight > 10000 {
		return httpjson.Invalid("", "ackTimeoutMs, maxRetries and maxInFlight must be >= 0 (maxInFlight at most 10000)")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if gr := g.m[name]; gr != nil {
		if !sameConfig(gr.cfg, cfg) {
			return httpjson.Errorf(httpjson.CodeAlreadyExists, "group", "subscription group %q runs with another configuration", name)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	f := eventstore.Filter{StreamPrefix: cfg.Filter.StreamPrefix, TypePrefix: cfg.Filter.TypePrefix, TypeRegex: cfg.Filter.TypeRegex, Types: cfg.Filter.Types}
	p, err := eventstore.NewPersistent(context.Background(), g.s, eventstore.PersistentConfig{
		Group: name, Stream: cfg.Stream, Filter: f, From: cfg.From, MaxRetries: cfg.MaxRetries,
		AckTimeout: time.Duration(cfg.AckTimeoutMs) * time.Millisecond, MaxInFlight: cfg.MaxInFlight,
	})
	if err != nil {
		return err
	}
	g.m[name] = &group{cfg: cfg, p: p, deliveries: map[string]pending{}}
	w.WriteHeader(http.StatusCreated)
	return nil
}

func sameConfig(a, b GroupConfig) bool {
	if len(a.Filter.Types) != len(b.Filter.Types) {
		return false
	}
	for i := range a.Filter.Types {
		if a.Filter.Types[i] != b.Filter.Types[i] {
			return false
		}
	}
	a.Filter.Types, b.Filter.Types = nil, nil
	return a.Stream == b.Stream && a.Filter.StreamPrefix == b.Filter.StreamPrefix && a.Filter.TypePrefix == b.Filter.TypePrefix &&
		a.Filter.TypeRegex == b.Filter.TypeRegex && a.From == b.From && a.MaxRetries == b.MaxRetries &&
		a.AckTimeoutMs == b.AckTimeoutMs && a.MaxInFlight == b.MaxInFlight
}

func (g *groups) next(w http.ResponseWriter, r *http.Request) error {
	gr, err := g.get(r.PathValue("group"))
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
			if now.Sub(p.at) > 2*gr.ackTimeout() {
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
		gr, err := g.get(r.PathValue("group"))
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
	gr, err := g.get(r.PathValue("group"))
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
	g.mu.Lock()
	gr := g.m[name]
	delete(g.m, name)
	g.mu.Unlock()
	if gr == nil {
		return httpjson.Errorf(httpjson.CodeNotFound, "group", "subscription group %q is not running", name)
	}
	if err := gr.p.Close(); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *groups) close() error {
	g.mu.Lock()
	m := g.m
	g.m = map[string]*group{}
	g.mu.Unlock()
	var errs []error
	for _, gr := range m {
		errs = append(errs, gr.p.Close())
	}
	return errors.Join(errs...)
}
