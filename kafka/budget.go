package kafka

import (
	"context"
	"sync"
)

// byteBudget bounds the bytes of the requests a server holds at once (Kafka's
// queued.max.request.bytes). A connection acquires a frame's size before it
// reads the frame and releases it once the request is handled, so a server
// behind many pipelining producers holds at most max bytes of requests
// instead of whatever the clients have in flight. Waiters are served in
// order; a frame larger than max takes the whole budget.
type byteBudget struct {
	mu struct {
		sync.Mutex
		avail   int64
		waiters []*budgetWaiter
	}
	max int64
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed once n is granted
}

func newByteBudget(max int64) *byteBudget {
	b := &byteBudget{max: max}
	b.mu.avail = max
	return b
}

// acquire waits until n bytes (at most max) are free and takes them. It
// returns the amount taken, to be passed to release, or ctx's error.
func (b *byteBudget) acquire(ctx context.Context, n int64) (int64, error) {
	n = min(max(n, 0), b.max)
	b.mu.Lock()
	if len(b.mu.waiters) == 0 && b.mu.avail >= n {
		b.mu.avail -= n
		b.mu.Unlock()
		return n, nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.mu.waiters = append(b.mu.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return n, nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		b.mu.avail += n
	default:
		for i, x := range b.mu.waiters {
			if x == w {
				b.mu.waiters = append(b.mu.waiters[:i], b.mu.waiters[i+1:]...)
				break
			}
		}
	}
	b.grantLocked()
	b.mu.Unlock()
	return 0, ctx.Err()
}

// release returns n bytes taken by acquire.
func (b *byteBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.mu.avail += n
	b.grantLocked()
	b.mu.Unlock()
}

func (b *byteBudget) grantLocked() {
	for len(b.mu.waiters) > 0 && b.mu.avail >= b.mu.waiters[0].n {
		w := b.mu.waiters[0]
		b.mu.waiters = b.mu.waiters[1:]
		b.mu.avail -= w.n
		close(w.ready)
	}
}
