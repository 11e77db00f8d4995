package client

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// ProcessedStore remembers which event ids a consumer group has handled.
// Implementations are safe for concurrent use.
type ProcessedStore interface {
	// Seen reports whether id was handled within the store's TTL. ctx is
	// a handler's context (DeliveryFrom works on it).
	Seen(ctx context.Context, id string) (bool, error)
	// Mark records id as handled. Under a subscriber the stores of this
	// package make the mark visible to Seen once the handler has
	// succeeded (so a redelivery in the same batch is skipped), write it
	// after the event's outputs are durable and before the offset commit
	// (in the batch's transaction under ExactlyOnce), and withdraw it if
	// that write or the outputs fail, in which case the event is
	// redelivered. A failed handler leaves no mark.
	Mark(ctx context.Context, id string) error
}

// Idempotent skips events whose ID store has seen, and marks each event it
// lets through once the handler succeeds. Duplicates come from producers
// that retried a publish, from upstream replays, and from redelivery after a
// crash between handling and committing (AtLeastOnce). Put it outermost
// (outside DeadLetter) so a dead-lettered event is marked too.
//
// WithIdempotency installs it with a store kept in a compacted topic.
func Idempotent(store ProcessedStore) Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e *event.Event) error {
			seen, err := store.Seen(ctx, e.ID)
			if err != nil {
				return err
			}
			if seen && !redriven(ctx) {
				ev := envFrom(ctx)
				if d, ok := DeliveryFrom(ctx); ok {
					ev.metrics.count(cDuplicates, d.Group, d.Topic)
				}
				if ev.logger.Enabled(ctx, slog.LevelDebug) {
					Logger(ctx).Debug("skipping already handled event")
				}
				return nil
			}
			if err := next(ctx, e); err != nil {
				return err
			}
			return store.Mark(ctx, e.ID)
		}
	}
}

// redriven reports whether the event being handled was re-published from a
// dead-letter topic: it was marked handled when it was dead-lettered, and is
// to be handled once more.
func redriven(ctx context.Context) bool {
	d, ok := DeliveryFrom(ctx)
	if !ok {
		return false
	}
	for _, h := range d.Message.Headers {
		if h.Key == HeaderRedrivenFrom {
			return true
		}
	}
	return false
}

// MemoryStore is a ProcessedStore in memory: it forgets on restart, so it
// suits tests and consumers whose duplicates come only from producer retries.
type MemoryStore struct {
	ttl time.Duration
	now func() time.Time
	mu  struct {
		sync.Mutex
		ids   map[string]time.Time
		marks int
	}
}

// NewMemoryStore returns an empty store that forgets ids after ttl. now
// replaces the clock (nil: time.Now).
func NewMemoryStore(ttl time.Duration, now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	s := &MemoryStore{ttl: ttl, now: now}
	s.mu.ids = make(map[string]time.Time)
	return s
}

// Seen implements ProcessedStore.
func (s *MemoryStore) Seen(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.mu.ids[id]
	return ok && s.now().Sub(t) < s.ttl, nil
}

// Mark implements ProcessedStore. Under a subscriber the mark is visible
// once the handler succeeds, and withdrawn if the event's outputs fail.
func (s *MemoryStore) Mark(ctx context.Context, id string) error {
	m := &memMark{s: s, id: id}
	if ob, ok := ctx.Value(outboxKey).(*outbox); ok {
		ob.addMark(m)
	} else {
		m.pending()
	}
	return nil
}

// memMark is a MemoryStore mark: set when pending, restored on undo.
type memMark struct {
	s    *MemoryStore
	id   string
	prev time.Time
	had  bool
}

func (m *memMark) record() *kgo.Record { return nil }
func (m *memMark) commit()             {}

func (m *memMark) pending() {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	m.prev, m.had = s.mu.ids[m.id]
	now := s.now()
	s.mu.ids[m.id] = now
	if s.mu.marks++; s.mu.marks%1024 == 0 {
		for k, t := range s.mu.ids {
			if now.Sub(t) >= s.ttl {
				delete(s.mu.ids, k)
			}
		}
	}
}

func (m *memMark) undo() {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.had {
		s.mu.ids[m.id] = m.prev
	} else {
		delete(s.mu.ids, m.id)
	}
}
