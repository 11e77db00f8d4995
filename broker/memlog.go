package broker

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/commitlog/batch"
)

// partitionLog is what a partition stores its records in: a commitlog.Log
// on disk, or a memLog for topics with durability "memory".
type partitionLog interface {
	AppendAsync(ctx context.Context, b []byte) (commitlog.Pending, error)
	Read(ctx context.Context, offset int64, maxBytes int, dst []byte) ([]byte, error)
	Watch(offset int64) (<-chan struct{}, func())
	HighWatermark() int64
	StartOffset() int64
	OffsetForTime(ctx context.Context, ts int64) (int64, error)
	Size() int64
	Clean(now time.Time) (commitlog.CleanReport, error)
	Close() error
}

// defaultMemoryBytes bounds a memory topic partition without retention.bytes.
const defaultMemoryBytes = 64 << 20

// memLog keeps a partition's batches in memory only: the seed's transient
// messages (metrics, logs). It is bounded by bytes (oldest batches dropped
// first) and by age, and is empty after a restart. Appends are visible and
// acknowledged at once.
type memLog struct {
	maxBatch int
	limit    int64
	age      time.Duration

	mu      sync.Mutex
	batches [][]byte // each a whole batch with its offset assigned
	bases   []int64
	start   int64
	next    int64
	bytes   int64
	closed  bool
	notify  chan struct{}
	hwm     atomic.Int64
	waiters atomic.Int32
}

func newMemLog(tc TopicConfig) *memLog {
	m := &memLog{maxBatch: tc.MaxMessageBytes, limit: tc.RetentionBytes, age: tc.Retention, notify: make(chan struct{})}
	if m.limit <= 0 {
		m.limit = defaultMemoryBytes
	}
	return m
}

func (m *memLog) AppendAsync(ctx context.Context, b []byte) (commitlog.Pending, error) {
	if _, err := commitlog.CheckBatches(b, m.maxBatch); err != nil {
		return commitlog.Pending{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return commitlog.Pending{}, commitlog.ErrClosed
	}
	base := m.next
	for p := 0; p < len(b); {
		h, _ := batch.ParseHeader(b[p:])
		cp := append([]byte(nil), b[p:p+h.Size()]...)
		batch.SetBaseOffset(cp, m.next)
		batch.SetPartitionLeaderEpoch(cp, 0)
		batch.SetBaseOffset(b[p:], m.next)
		m.batches = append(m.batches, cp)
		m.bases = append(m.bases, m.next)
		m.bytes += int64(len(cp))
		m.next += int64(h.LastOffsetDelta) + 1
		p += h.Size()
	}
	for m.bytes > m.limit && len(m.batches) > 1 {
		m.dropFirstLocked()
	}
	m.hwm.Store(m.next)
	if m.waiters.Load() > 0 {
		close(m.notify)
		m.notify = make(chan struct{})
	}
	return commitlog.Pending{BaseOffset: base}, nil
}

func (m *memLog) dropFirstLocked() {
	m.bytes -= int64(len(m.batches[0]))
	m.batches[0] = nil
	m.batches, m.bases = m.batches[1:], m.bases[1:]
	if len(m.bases) > 0 {
		m.start = m.bases[0]
	} else {
		m.start = m.next
	}
}

func (m *memLog) Read(ctx context.Context, offset int64, maxBytes int, dst []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return dst[:0], commitlog.ErrClosed
	}
	if offset < m.start || offset > m.next {
		return dst[:0], &commitlog.OffsetOutOfRangeError{Offset: offset, Start: m.start, End: m.next}
	}
	out := dst[:0]
	if offset == m.next {
		return out, nil
	}
	i := sort.Search(len(m.bases), func(i int) bool { return m.bases[i] > offset }) - 1
	for ; i >= 0 && i < len(m.batches); i++ {
		if len(out) > 0 && len(out)+len(m.batches[i]) > maxBytes {
			break
		}
		out = append(out, m.batches[i]...)
	}
	return out, nil
}

func (m *memLog) Watch(offset int64) (<-chan struct{}, func()) {
	m.waiters.Add(1)
	m.mu.Lock()
	ch := m.notify
	ready := m.next > offset || m.closed
	m.mu.Unlock()
	stop := func() { m.waiters.Add(-1) }
	if ready {
		c := make(chan struct{})
		close(c)
		return c, stop
	}
	return ch, stop
}

func (m *memLog) HighWatermark() int64 { return m.hwm.Load() }

func (m *memLog) StartOffset() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.start
}

func (m *memLog) OffsetForTime(ctx context.Context, ts int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var it batch.Iter
	for _, b := range m.batches {
		h, _ := batch.ParseHeader(b)
		if h.MaxTimestamp < ts {
			continue
		}
		if err := it.Reset(b); err != nil {
			return -1, err
		}
		for it.Next() {
			if it.Timestamp() >= ts {
				return it.Offset(), nil
			}
		}
	}
	return m.next, nil
}

func (m *memLog) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes
}

// Clean drops batches older than the retention age.
func (m *memLog) Clean(now time.Time) (commitlog.CleanReport, error) {
	var rep commitlog.CleanReport
	if m.age <= 0 {
		return rep, nil
	}
	cutoff := now.Add(-m.age).UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.batches) > 0 {
		h, _ := batch.ParseHeader(m.batches[0])
		if h.MaxTimestamp >= cutoff {
			break
		}
		rep.DeletedBytes += int64(len(m.batches[0]))
		m.dropFirstLocked()
	}
	return rep, nil
}

func (m *memLog) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.notify)
		m.batches, m.bases = nil, nil
	}
	return nil
}
