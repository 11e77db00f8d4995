package embedded

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/eventstore"
)

// Group commit.
//
// Writers never write to the log themselves. Under wmu a writer checks its
// expected versions against the index, encodes its batch, takes the next
// positions (nextPos), updates the index and enqueues the batch; then it
// waits for its commit without any lock. One flusher goroutine takes every
// queued batch, writes them with one write and waits for the one fsync
// that covers them (the commit log's), then completes them all. The next
// group accumulates while that fsync runs.
//
// Starting the next fsync as soon as anything is queued would split the
// writers into cohorts that alternate (half the writers in each fsync, the
// other half queued behind it), halving what each fsync carries. So the
// flusher waits, briefly, for the writers it just acknowledged: its target
// is the previous group plus what was queued when that group completed,
// and it starts once that many appends are queued, or after half an fsync,
// or at once when the queue had been idle. Waiting costs latency only when
// a writer does not come back.
//
// Positions are taken in queue order and the flusher writes in queue
// order, so the offsets the log gives are the positions taken; the flusher
// checks. Any write or fsync error fails the store (the index already
// claims the queued events): it must be reopened, which rebuilds the index
// from the log.

// maxStragglerWait bounds the flusher's wait for writers to come back.
const maxStragglerWait = 2 * time.Millisecond

// commitReq is one queued batch (one append, control record or scavenge
// marker batch).
type commitReq struct {
	buf  []byte // the encoded batch, owned by the queue
	base int64  // its first record's position
	n    int64  // records
	done chan struct{}
	err  error // set before done is closed
}

// wait waits for the request's commit, or ctx (the batch may then still
// become durable).
func (r *commitReq) wait(ctx context.Context) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type commitQueue struct {
	mu      sync.Mutex
	pending []*commitReq
	closed  bool
	wake    chan struct{} // capacity 1: something was queued, or closed
	done    chan struct{} // closed when the flusher has exited
}

// enqueueLocked queues an encoded batch of n records at the next
// positions; the queue owns b from then on. Caller holds wmu, which orders
// positions.
func (s *Store) enqueueLocked(b []byte, n int) (*commitReq, error) {
	if err := s.failure(); err != nil {
		return nil, err
	}
	r := &commitReq{buf: b, base: s.nextPos, n: int64(n), done: make(chan struct{})}
	q := &s.q
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, eventstore.ErrClosed
	}
	q.pending = append(q.pending, r)
	q.mu.Unlock()
	s.nextPos += int64(n)
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return r, nil
}

// stopFlusher makes the flusher commit what is queued and exit, and waits
// for it. Caller must not hold wmu.
func (s *Store) stopFlusher() {
	s.q.mu.Lock()
	s.q.closed = true
	s.q.mu.Unlock()
	select {
	case s.q.wake <- struct{}{}:
	default:
	}
	<-s.q.done
}

func (s *Store) flusher() {
	defer close(s.q.done)
	q := &s.q
	var (
		buf      []byte
		target   int
		round    = time.Millisecond // moving average of a group's write and fsync
		lastDone time.Time
		timer    = time.NewTimer(time.Hour)
	)
	timer.Stop()
	for {
		q.mu.Lock()
		for len(q.pending) == 0 && !q.closed {
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		if len(q.pending) == 0 {
			q.mu.Unlock()
			return
		}
		// Wait for the writers of the last group, unless the queue had been
		// idle (they are not coming).
		if len(q.pending) < target && !q.closed && time.Since(lastDone) < round/2 {
			timer.Reset(min(round/2, maxStragglerWait))
			for len(q.pending) < target && !q.closed {
				q.mu.Unlock()
				expired := false
				select {
				case <-q.wake:
				case <-timer.C:
					expired = true
				}
				q.mu.Lock()
				if expired {
					break
				}
			}
			timer.Stop()
		}
		// Take the queue, up to about MaxAppendBytes (at least one batch,
		// which is never larger), so a segment always has room for a group.
		k, size := 0, 0
		for k < len(q.pending) && (k == 0 || size+len(q.pending[k].buf) <= s.cfg.MaxAppendBytes) {
			size += len(q.pending[k].buf)
			k++
		}
		group := q.pending[:k:k]
		q.pending = q.pending[k:]
		q.mu.Unlock()

		start := time.Now()
		var err error
		buf, err = s.commit(group, buf[:0])
		for _, r := range group {
			r.buf = nil
			r.err = err
			close(r.done)
		}
		lastDone = time.Now()
		round = (round*7 + lastDone.Sub(start)) / 8
		q.mu.Lock()
		target = min(len(group)+len(q.pending), 1<<16)
		q.mu.Unlock()
		if cap(buf) < 4<<20 {
			buf = buf[:0]
		} else {
			buf = nil
		}
	}
}

// commit writes a group with one write and waits for its fsync. An error
// fails the store.
func (s *Store) commit(group []*commitReq, buf []byte) ([]byte, error) {
	if err := s.failure(); err != nil {
		return buf, err
	}
	b := group[0].buf
	if len(group) > 1 {
		for _, r := range group {
			buf = append(buf, r.buf...)
		}
		b = buf
	}
	ctx := context.Background()
	pend, err := s.log.AppendAsync(ctx, b)
	if err == nil && pend.BaseOffset != group[0].base {
		err = eventstore.Inconsistent("the log put position %d at %d", group[0].base, pend.BaseOffset)
	}
	if err == nil {
		err = pend.Wait(ctx)
	}
	if err != nil {
		s.fail(fmt.Errorf("commit positions %d to %d: %w", group[0].base, group[len(group)-1].base+group[len(group)-1].n-1, err))
		return buf, s.readErr(s.failure())
	}
	return buf, nil
}
