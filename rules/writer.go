package rules

import (
	"sync"

	"github.com/heraldhq/herald/eventlog"
)

// topicWriter coalesces the appends of every worker delivering to one
// topic into few Producer.Append calls (group commit): while one append is
// in flight, the records of the others queue and go together in the next.
// A worker waits only for its own records.
type topicWriter struct {
	e     *Engine
	topic string
	mu    struct {
		sync.Mutex
		pending []*writeReq
		running bool
	}
}

const maxAppend = 1024

type writeReq struct {
	recs []eventlog.Record
	done chan error
}

func (e *Engine) writer(topic string) *topicWriter {
	e.writersMu.Lock()
	defer e.writersMu.Unlock()
	w := e.writers[topic]
	if w == nil {
		w = &topicWriter{e: e, topic: topic}
		e.writers[topic] = w
	}
	return w
}

// append appends recs to the topic and returns once they are durable.
func (w *topicWriter) append(recs []eventlog.Record) error {
	req := &writeReq{recs: recs, done: make(chan error, 1)}
	w.mu.Lock()
	w.mu.pending = append(w.mu.pending, req)
	lead := !w.mu.running
	w.mu.running = true
	w.mu.Unlock()
	if lead {
		w.flushLoop()
	}
	return <-req.done
}

// flushLoop runs on the goroutine that found the writer idle; it appends
// what is pending until nothing is.
func (w *topicWriter) flushLoop() {
	for {
		w.mu.Lock()
		reqs := w.mu.pending
		w.mu.pending = nil
		if len(reqs) == 0 {
			w.mu.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		// Chunks of about maxAppend records: one huge batch costs the
		// encoder more than several moderate ones.
		for len(reqs) > 0 {
			n, size := 0, 0
			for n < len(reqs) && (n == 0 || size+len(reqs[n].recs) <= maxAppend) {
				size += len(reqs[n].recs)
				n++
			}
			var all []eventlog.Record
			for _, r := range reqs[:n] {
				all = append(all, r.recs...)
			}
			_, err := w.e.prod.Append(w.e.ctx, w.topic, all...)
			for _, r := range reqs[:n] {
				r.done <- err
			}
			reqs = reqs[n:]
		}
	}
}
