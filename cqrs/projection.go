package cqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/prometheus/client_golang/prometheus"
)

// ReadModel is what a projection writes: query-side state plus the $all
// position it has consumed up to. Apply must make the events' effects and
// the new checkpoint visible atomically (both or neither, also across a
// crash), which is what makes a projection exactly-once.
type ReadModel interface {
	// Checkpoint is the $all position to resume from (0: the start).
	Checkpoint(ctx context.Context) (int64, error)
	// Apply applies events, in order, and records next as the checkpoint.
	Apply(ctx context.Context, events []eventstore.RecordedEvent, next int64) error
	// Reset empties the model and its checkpoint.
	Reset(ctx context.Context) error
}

// Projection feeds the events of $all matching Filter to a read model,
// from the model's checkpoint, first catching up and then live.
type Projection struct {
	Name   string
	Store  eventstore.Store
	Filter eventstore.Filter
	// Upcaster, if set, rewrites old events before the model sees them.
	Upcaster eventstore.Upcaster
	// BatchSize bounds the events per Apply; 0 means 500.
	BatchSize int
	Logger    *slog.Logger
	// Registerer receives the projection's position and lag gauges.
	Registerer prometheus.Registerer

	mu    sync.Mutex
	model ReadModel
	pos   int64 // checkpoint after the last Apply
	head  int64 // $all head when last looked at
	err   error // last Apply error, nil once one succeeds
}

// NewProjection makes a projection writing to model.
func NewProjection(name string, store eventstore.Store, filter eventstore.Filter, model ReadModel) *Projection {
	return &Projection{Name: name, Store: store, Filter: filter, model: model}
}

// Model is the read model currently served (it changes after Rebuild).
func (p *Projection) Model() ReadModel {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.model
}

// Status is a projection's progress.
type Status struct {
	Name     string
	Position int64 // checkpoint: events before it are applied
	Head     int64 // $all head at the last look
	Lag      int64 // Head - Position (positions, not only matching events)
	LastErr  error
}

// Status reports progress.
func (p *Projection) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{Name: p.Name, Position: p.pos, Head: p.head, Lag: max(0, p.head-p.pos), LastErr: p.err}
}

func (p *Projection) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// Run projects until ctx ends, the store closes, or the model's checkpoint
// cannot be read. A failed Apply is logged and retried with backoff: the
// model is unchanged by a failed Apply, so nothing is applied twice.
func (p *Projection) Run(ctx context.Context) error {
	if p.Registerer != nil {
		c := p.collector()
		if err := p.Registerer.Register(c); err != nil {
			return fmt.Errorf("projection %s: register metrics: %w", p.Name, err)
		}
		defer p.Registerer.Unregister(c)
	}
	backoff := 10 * time.Millisecond
	for {
		caughtUp, head, err := p.step(ctx, p.Model())
		switch {
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, eventstore.ErrClosed):
			return err
		case err != nil:
			p.logger().Warn("projection step failed; retrying", "projection", p.Name, "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		if caughtUp {
			if err := p.Store.WaitAll(ctx, head); err != nil {
				return err
			}
		}
	}
}

// CatchUp projects until the model has consumed $all up to the head as it
// was when CatchUp started.
func (p *Projection) CatchUp(ctx context.Context) error {
	return p.catchUp(ctx, p.Model())
}

func (p *Projection) catchUp(ctx context.Context, m ReadModel) error {
	target, err := p.Store.Head(ctx)
	if err != nil {
		return err
	}
	for {
		cp, err := m.Checkpoint(ctx)
		if err != nil {
			return err
		}
		if cp >= target {
			return nil
		}
		if _, _, err := p.step(ctx, m); err != nil {
			return err
		}
	}
}

// step applies one page to m. caughtUp reports that $all had nothing more
// at head.
func (p *Projection) step(ctx context.Context, m ReadModel) (caughtUp bool, head int64, err error) {
	cp, err := m.Checkpoint(ctx)
	if err != nil {
		return false, 0, fmt.Errorf("projection %s: read checkpoint: %w", p.Name, err)
	}
	n := p.BatchSize
	if n <= 0 {
		n = 500
	}
	if head, err = p.Store.Head(ctx); err != nil {
		return false, 0, err
	}
	page, err := p.Store.ReadAll(ctx, eventstore.ReadAllOptions{From: cp, Max: n, Filter: p.Filter})
	if err != nil {
		return false, head, err
	}
	if p.Upcaster != nil {
		for i := range page.Events {
			if page.Events[i], err = p.Upcaster.Upcast(page.Events[i]); err != nil {
				return false, head, err
			}
		}
	}
	if len(page.Events) > 0 || page.Next > cp {
		err = m.Apply(ctx, page.Events, page.Next)
	}
	p.mu.Lock()
	if m == p.model {
		if err == nil {
			p.pos = page.Next
		}
		p.head, p.err = max(head, page.Next), err
	}
	p.mu.Unlock()
	if err != nil {
		return false, head, fmt.Errorf("projection %s: apply: %w", p.Name, err)
	}
	return page.IsEnd && len(page.Events) == 0, max(head, page.Next), nil
}

// Rebuild replays $all from the start into fresh (an empty model, reset
// first) while the current model keeps serving queries and Run keeps
// updating it; once fresh has caught up, it replaces the current model,
// and Run continues with it.
func (p *Projection) Rebuild(ctx context.Context, fresh ReadModel) error {
	if err := fresh.Reset(ctx); err != nil {
		return fmt.Errorf("projection %s: reset the new model: %w", p.Name, err)
	}
	if err := p.catchUp(ctx, fresh); err != nil {
		return fmt.Errorf("projection %s: rebuild: %w", p.Name, err)
	}
	cp, err := fresh.Checkpoint(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.model, p.pos = fresh, cp
	p.mu.Unlock()
	p.logger().Info("projection rebuilt", "projection", p.Name, "position", cp)
	return nil
}

func (p *Projection) collector() prometheus.Collector {
	labels := prometheus.Labels{"projection": p.Name}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "herald_projection_lag_positions", Help: "Positions of $all the projection has not consumed yet.", ConstLabels: labels,
	}, func() float64 { return float64(p.Status().Lag) })
}

// MemoryModel is a read model in memory: a value of T changed by apply
// under a lock, with queries through Read. Its checkpoint advances with
// every event, so an apply that fails part-way leaves the model consistent
// (the events before the failure applied, the checkpoint right after them).
type MemoryModel[T any] struct {
	init  func() T
	apply func(state *T, ev eventstore.RecordedEvent) error

	mu    sync.RWMutex
	state T
	next  int64
}

// NewMemoryModel makes an empty memory model.
func NewMemoryModel[T any](init func() T, apply func(state *T, ev eventstore.RecordedEvent) error) *MemoryModel[T] {
	return &MemoryModel[T]{init: init, apply: apply, state: init()}
}

// Checkpoint implements ReadModel.
func (m *MemoryModel[T]) Checkpoint(context.Context) (int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.next, nil
}

// Apply implements ReadModel.
func (m *MemoryModel[T]) Apply(_ context.Context, events []eventstore.RecordedEvent, next int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range events {
		if ev.Position < m.next {
			continue // already applied
		}
		if err := m.apply(&m.state, ev); err != nil {
			return err
		}
		m.next = ev.Position + 1
	}
	m.next = max(m.next, next)
	return nil
}

// Reset implements ReadModel.
func (m *MemoryModel[T]) Reset(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state, m.next = m.init(), 0
	return nil
}

// Read runs a query against the state under the read lock; fn must not
// keep references into it.
func (m *MemoryModel[T]) Read(fn func(state *T)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	fn(&m.state)
}
