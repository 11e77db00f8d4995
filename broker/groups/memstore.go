package groups

import (
	"context"
	"slices"
	"sync"
)

// MemoryStore is a Store held in memory: nothing survives the process.
// It is for tests and tools; a broker backs the coordinator with a
// compacted log. It keeps every appended record (no compaction), so a
// Replay sees the full history. Safe for concurrent use.
type MemoryStore struct {
	mu struct {
		sync.Mutex
		recs []KV
		fail error
	}
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Append copies recs into the store, or returns the error set by FailAppends.
func (s *MemoryStore) Append(ctx context.Context, recs []KV) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.fail != nil {
		return s.mu.fail
	}
	for _, r := range recs {
		s.mu.recs = append(s.mu.recs, KV{Key: slices.Clone(r.Key), Value: cloneNil(r.Value)})
	}
	return nil
}

// Replay calls fn for every record, oldest first, stopping at fn's error.
func (s *MemoryStore) Replay(ctx context.Context, fn func(KV) error) error {
	for _, r := range s.Records() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// Records returns a copy of every appended record, oldest first.
func (s *MemoryStore) Records() []KV {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.recs)
}

// FailAppends makes every later Append return err (nil heals the store),
// for fault-injection tests.
func (s *MemoryStore) FailAppends(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.fail = err
}

func cloneNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return slices.Clone(b)
}
