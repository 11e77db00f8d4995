// Package cqrs separates the write model from the read models on top of
// the event store: aggregates that turn commands into events (Repository),
// a command bus with one handler per command type (Bus), and projections
// that build read models from $all with checkpoints (Projection).
package cqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/heraldhq/herald/eventstore"
)

// AggregateType describes one kind of aggregate with state S. Its instances
// live in streams named Category + "-" + id.
type AggregateType[S any] struct {
	// Category names the stream category, e.g. "user".
	Category string
	// Initial returns the state before any event.
	Initial func() S
	// Apply folds one event into the state. It must be deterministic and
	// must not fail for events the aggregate itself produced; an error
	// stops the load.
	Apply func(state S, ev eventstore.RecordedEvent) (S, error)
	// SnapshotEvery saves a snapshot each time the stream crosses a
	// multiple of this many events; 0 never. Snapshots are S encoded as
	// JSON, so S's exported fields must hold the whole state.
	SnapshotEvery int64
	// Upcaster, if set, rewrites old events before Apply.
	Upcaster eventstore.Upcaster
}

// Loaded is an aggregate's state at a version.
type Loaded[S any] struct {
	ID      string
	State   S
	Version int64 // -1 for an aggregate with no events
	// FromSnapshot is the version of the snapshot the load started from,
	// or -1.
	FromSnapshot int64
	// Replayed counts the events applied after the snapshot.
	Replayed int
}

// Repository loads and saves aggregates of one type.
type Repository[S any] struct {
	Store eventstore.Store
	Type  AggregateType[S]
	// MaxRetries bounds how often Execute reloads and retries after a
	// concurrency conflict; 0 means 3.
	MaxRetries int
	Logger     *slog.Logger
}

// StreamName is the stream of aggregate id.
func (r *Repository[S]) StreamName(id string) string { return r.Type.Category + "-" + id }

// SnapshotStream is the stream holding aggregate id's snapshots. It is
// outside the category (its name does not start with Category + "-").
func (r *Repository[S]) SnapshotStream(id string) string {
	return "snapshot." + r.Type.Category + "-" + id
}

// SnapshotType is the event type of snapshots.
const SnapshotType = "$snapshot"

type snapshotBody[S any] struct {
	Version int64 `json:"version"`
	State   S     `json:"state"`
}

// Load returns the aggregate's current state, from its latest snapshot
// plus the events after it.
func (r *Repository[S]) Load(ctx context.Context, id string) (Loaded[S], error) {
	return r.load(ctx, id, -1, time.Time{})
}

// LoadAt returns the state as it was at version (time travel): the events
// up to and including version.
func (r *Repository[S]) LoadAt(ctx context.Context, id string, version int64) (Loaded[S], error) {
	if version < 0 {
		return Loaded[S]{}, eventstore.Invalid("version", "%d is negative", version)
	}
	return r.load(ctx, id, version, time.Time{})
}

// LoadAsOf returns the state as it was at time t: the events appended at or
// before t.
func (r *Repository[S]) LoadAsOf(ctx context.Context, id string, t time.Time) (Loaded[S], error) {
	return r.load(ctx, id, -1, t)
}

func (r *Repository[S]) load(ctx context.Context, id string, until int64, asOf time.Time) (Loaded[S], error) {
	l := Loaded[S]{ID: id, State: r.Type.Initial(), Version: -1, FromSnapshot: -1}
	stream := r.StreamName(id)
	from := int64(0)
	if r.Type.SnapshotEvery > 0 && asOf.IsZero() {
		snap, ok, err := r.latestSnapshot(ctx, id)
		if err != nil {
			return l, err
		}
		if ok && (until < 0 || snap.Version <= until) {
			l.State, l.Version, l.FromSnapshot = snap.State, snap.Version, snap.Version
			from = snap.Version + 1
		}
	}
	for {
		evs, err := r.Store.ReadStream(ctx, stream, eventstore.ReadStreamOptions{From: from, Max: 1000})
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return l, nil
		}
		if err != nil {
			return l, err
		}
		for _, ev := range evs {
			if (until >= 0 && ev.Version > until) || (!asOf.IsZero() && ev.Time.After(asOf)) {
				return l, nil
			}
			if r.Type.Upcaster != nil {
				if ev, err = r.Type.Upcaster.Upcast(ev); err != nil {
					return l, err
				}
			}
			if l.State, err = r.Type.Apply(l.State, ev); err != nil {
				return l, fmt.Errorf("apply %s event %d of %s: %w", ev.Type, ev.Version, stream, err)
			}
			l.Version = ev.Version
			l.Replayed++
		}
		if len(evs) < 1000 {
			return l, nil
		}
		from = evs[len(evs)-1].Version + 1
	}
}

func (r *Repository[S]) latestSnapshot(ctx context.Context, id string) (snapshotBody[S], bool, error) {
	var body snapshotBody[S]
	evs, err := r.Store.ReadStream(ctx, r.SnapshotStream(id), eventstore.ReadStreamOptions{From: eventstore.End, Backwards: true, Max: 1})
	if errors.Is(err, eventstore.ErrStreamNotFound) || (err == nil && len(evs) == 0) {
		return body, false, nil
	}
	if err != nil {
		return body, false, err
	}
	if err := json.Unmarshal(evs[0].Data, &body); err != nil {
		// A snapshot that no longer decodes (the state type changed) is
		// ignored: the events are the truth.
		r.logger().Warn("ignoring undecodable snapshot", "stream", r.SnapshotStream(id), "err", err)
		return body, false, nil
	}
	return body, true, nil
}

func (r *Repository[S]) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// SaveSnapshot stores l as the aggregate's latest snapshot.
func (r *Repository[S]) SaveSnapshot(ctx context.Context, l Loaded[S]) error {
	data, err := json.Marshal(snapshotBody[S]{Version: l.Version, State: l.State})
	if err != nil {
		return fmt.Errorf("encode snapshot of %s: %w", r.StreamName(l.ID), err)
	}
	res, err := r.Store.Append(ctx, r.SnapshotStream(l.ID), eventstore.Any, eventstore.EventData{
		ID: eventstore.NewID(), Type: SnapshotType, Data: data,
	})
	if err != nil {
		return err
	}
	if res.Version == 0 {
		// Only the newest snapshot is ever read; let scavenging reclaim
		// the rest.
		return r.Store.SetMetadata(ctx, r.SnapshotStream(l.ID), eventstore.StreamMetadata{MaxCount: 1})
	}
	return nil
}

// Decide turns a command into events against the current state, or fails
// (a validation error goes back to the sender unchanged).
type Decide[S any] func(state S, version int64) ([]eventstore.EventData, error)

// ExecuteResult is the outcome of Execute.
type ExecuteResult[S any] struct {
	Loaded[S]     // the state after the new events
	Appended  int // events appended (0 if decide produced none)
	Attempts  int // loads, 1 without conflicts
	Result    eventstore.AppendResult
}

// ErrTooManyConflicts wraps the last conflict when Execute gives up.
var ErrTooManyConflicts = errors.New("too many concurrency conflicts")

// Execute loads aggregate id, lets decide produce events, applies them and
// appends them expecting the loaded version. On a concurrency conflict it
// reloads and decides again, up to MaxRetries times. When the append
// crosses a multiple of SnapshotEvery, it saves a snapshot (a failure to
// snapshot is logged, never fails the command: the events are saved).
func (r *Repository[S]) Execute(ctx context.Context, id string, decide Decide[S]) (ExecuteResult[S], error) {
	retries := r.MaxRetries
	if retries == 0 {
		retries = 3
	}
	var last error
	for attempt := 1; attempt <= retries+1; attempt++ {
		l, err := r.Load(ctx, id)
		if err != nil {
			return ExecuteResult[S]{}, err
		}
		evs, err := decide(l.State, l.Version)
		if err != nil {
			return ExecuteResult[S]{}, err
		}
		out := ExecuteResult[S]{Loaded: l, Attempts: attempt}
		if len(evs) == 0 {
			return out, nil
		}
		for i := range evs {
			if evs[i].ID == "" {
				evs[i].ID = eventstore.NewID()
			}
		}
		expected := eventstore.Exact(l.Version)
		if l.Version < 0 {
			expected = eventstore.NoStream
		}
		res, err := r.Store.Append(ctx, r.StreamName(id), expected, evs...)
		if errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			last = err
			// Back off with jitter so competing writers spread out.
			d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ExecuteResult[S]{}, ctx.Err()
			}
			continue
		}
		if err != nil {
			return ExecuteResult[S]{}, err
		}
		// Apply what was appended, as the store recorded it.
		state := l.State
		for i, e := range evs {
			rec := eventstore.RecordedEvent{Stream: r.StreamName(id), Version: res.Version - int64(len(evs)-1-i),
				ID: e.ID, Type: e.Type, Data: e.Data, Metadata: e.Metadata, Time: time.Now()}
			if state, err = r.Type.Apply(state, rec); err != nil {
				return ExecuteResult[S]{}, fmt.Errorf("apply new %s event: %w", e.Type, err)
			}
		}
		out.State, out.Version, out.Appended, out.Result = state, res.Version, len(evs), res
		if n := r.Type.SnapshotEvery; n > 0 && (res.Version+1)/n > (l.Version+1)/n {
			if err := r.SaveSnapshot(ctx, out.Loaded); err != nil {
				r.logger().Warn("snapshot failed", "stream", r.StreamName(id), "err", err)
			}
		}
		return out, nil
	}
	return ExecuteResult[S]{}, fmt.Errorf("%w after %d attempts: %w", ErrTooManyConflicts, retries+1, last)
}
