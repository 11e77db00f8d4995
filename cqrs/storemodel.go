package cqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/heraldhq/herald/eventstore"
)

// StoreModel is a read model kept in memory and persisted in the event
// store itself (for example the embedded one, with no database at all): after
// each Apply the whole state and the checkpoint are appended as one event to
// stream "readmodel.<Name>" (max count 1), so state and checkpoint are
// saved atomically. Suits read models small enough to write whole; larger
// ones belong in PostgreSQL (PGModel). Load restores it. It ignores its
// own stream's events.
type StoreModel[T any] struct {
	Store eventstore.Store
	Name  string
	init  func() T
	apply func(state *T, ev eventstore.RecordedEvent) error

	mu      sync.RWMutex
	state   T
	next    int64
	version int64 // of the model's stream, for optimistic saves
	loaded  bool
}

type storeModelBody[T any] struct {
	Next  int64 `json:"next"`
	State T     `json:"state"`
}

// NewStoreModel makes a model; call Load before use (Checkpoint does).
func NewStoreModel[T any](store eventstore.Store, name string, init func() T, apply func(state *T, ev eventstore.RecordedEvent) error) *StoreModel[T] {
	return &StoreModel[T]{Store: store, Name: name, init: init, apply: apply, state: init(), version: -1}
}

func (m *StoreModel[T]) stream() string { return "readmodel." + m.Name }

// Load restores the last saved state and checkpoint.
func (m *StoreModel[T]) Load(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loadLocked(ctx)
}

func (m *StoreModel[T]) loadLocked(ctx context.Context) error {
	m.state, m.next, m.version = m.init(), 0, -1
	evs, err := m.Store.ReadStream(ctx, m.stream(), eventstore.ReadStreamOptions{From: eventstore.End, Backwards: true, Max: 1})
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		return err
	}
	if len(evs) == 1 {
		var body storeModelBody[T]
		body.State = m.init()
		if err := json.Unmarshal(evs[0].Data, &body); err != nil {
			return fmt.Errorf("read model %s: decode saved state: %w", m.Name, err)
		}
		m.state, m.next, m.version = body.State, body.Next, evs[0].Version
	} else if info, err := m.Store.StreamInfo(ctx, m.stream()); err == nil {
		m.version = info.Version
	}
	m.loaded = true
	return nil
}

// Checkpoint implements ReadModel.
func (m *StoreModel[T]) Checkpoint(ctx context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded {
		if err := m.loadLocked(ctx); err != nil {
			return 0, err
		}
	}
	return m.next, nil
}

// Apply implements ReadModel: events are applied to a copy of the state
// (through a JSON round trip), which is saved, and only then served.
func (m *StoreModel[T]) Apply(ctx context.Context, events []eventstore.RecordedEvent, next int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded {
		if err := m.loadLocked(ctx); err != nil {
			return err
		}
	}
	work, err := clone(m.state, m.init)
	if err != nil {
		return err
	}
	applied := 0
	for _, ev := range events {
		if ev.Position < m.next || ev.Stream == m.stream() {
			continue // its own saves, with an unfiltered projection
		}
		if err := m.apply(&work, ev); err != nil {
			return err
		}
		applied++
	}
	if applied == 0 {
		// Nothing to save: the range holds no event for the model, so
		// rescanning it after a restart changes nothing. Saving here
		// would append an event, and an unfiltered projection would wake
		// for it forever.
		m.next = max(next, m.next)
		return nil
	}
	body, err := json.Marshal(storeModelBody[T]{Next: max(next, m.next), State: work})
	if err != nil {
		return fmt.Errorf("read model %s: encode state: %w", m.Name, err)
	}
	exp := eventstore.Exact(m.version)
	if m.version < 0 {
		exp = eventstore.Any
	}
	res, err := m.Store.Append(ctx, m.stream(), exp, eventstore.EventData{ID: eventstore.NewID(), Type: "$readmodel", Data: body})
	if err != nil {
		if errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			m.loaded = false // another runner saved: reload before going on
		}
		return err
	}
	if m.version < 0 {
		if err := m.Store.SetMetadata(ctx, m.stream(), eventstore.StreamMetadata{MaxCount: 1}); err != nil {
			return err
		}
	}
	m.state, m.next, m.version = work, max(next, m.next), res.Version
	return nil
}

// Reset implements ReadModel.
func (m *StoreModel[T]) Reset(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded {
		if err := m.loadLocked(ctx); err != nil {
			return err
		}
	}
	body, _ := json.Marshal(storeModelBody[T]{Next: 0, State: m.init()})
	exp := eventstore.Exact(m.version)
	if m.version < 0 {
		exp = eventstore.Any
	}
	res, err := m.Store.Append(ctx, m.stream(), exp, eventstore.EventData{ID: eventstore.NewID(), Type: "$readmodel", Data: body})
	if err != nil {
		return err
	}
	m.state, m.next, m.version = m.init(), 0, res.Version
	return nil
}

// Read runs a query against the state under the read lock.
func (m *StoreModel[T]) Read(fn func(state *T)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	fn(&m.state)
}

func clone[T any](v T, init func() T) (T, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return v, err
	}
	out := init()
	err = json.Unmarshal(b, &out)
	return out, err
}
