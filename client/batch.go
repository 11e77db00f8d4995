package client

import (
	"context"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A batch is written in two waves, both asynchronous, so no event waits for
// a produce round trip before the next event of its partition:
//
//  1. as each event finishes, its outputs (Publish, dead letters) are
//     produced; its processed-id marks become pending (visible to Seen);
//  2. once the batch is handled, the subscriber flushes, writes the marks
//     of the events whose outputs are all durable (a mark never precedes
//     its outputs, or a restart could skip an event whose outputs were
//     lost), and flushes again.
//
// Under AtLeastOnce each partition then commits up to its last event whose
// outputs and marks are all durable and rewinds to the first that is not,
// so that event and those after it are redelivered (never lost). Under
// ExactlyOnce both waves are in the batch's transaction, which commits only
// if every write of the batch succeeded.

// inflight is an event of the batch that is done with (handled, skipped or
// dead-lettered) but whose writes may not be durable yet.
type inflight struct {
	rec     *kgo.Record
	marks   []mark
	pending atomic.Int32          // writes not yet acknowledged
	err     atomic.Pointer[error] // the first failed write
}

// durable reports whether every write of f so far was acknowledged.
func (f *inflight) durable() bool { return f.pending.Load() == 0 && f.err.Load() == nil }

func (f *inflight) markRecords() []*kgo.Record {
	var recs []*kgo.Record
	for _, m := range f.marks {
		if r := m.record(); r != nil {
			recs = append(recs, r)
		}
	}
	return recs
}

func (f *inflight) commitMarks() {
	for _, m := range f.marks {
		m.commit()
	}
}

func (f *inflight) undoMarks() {
	for _, m := range f.marks {
		m.undo()
	}
}

// partResult is how far one partition of a batch got.
type partResult struct {
	done        []*inflight // in offset order
	failedAt    *kgo.Record // first record not done (handler failed, shutdown), if any
	writeFailed atomic.Bool // a write of done failed: stop handling the partition
}

// writer produces a batch's records asynchronously and tracks each
// event's writes.
type writer struct {
	produce    func(context.Context, *kgo.Record, func(*kgo.Record, error))
	flush      func(context.Context) error
	metrics    *Metrics
	dlq        string
	dlqWritten atomic.Bool // a dead letter was acknowledged since the last reset
}

func (w *writer) write(ctx context.Context, f *inflight, recs []*kgo.Record, pr *partResult) {
	if len(recs) == 0 {
		return
	}
	f.pending.Add(int32(len(recs)))
	for _, r := range recs {
		w.produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				f.err.CompareAndSwap(nil, &err)
				if pr != nil {
					pr.writeFailed.Store(true)
				}
			} else {
				w.metrics.count(cPublished, r.Topic)
				if w.dlq != "" && r.Topic == w.dlq {
					w.dlqWritten.Store(true)
				}
			}
			// NB: after the error is stored, so that durable() seeing
			// no pending writes also sees the error.
			f.pending.Add(-1)
		})
	}
}

// settled is the outcome of settle for one partition.
type settled struct {
	last   *kgo.Record // last record to commit, if any
	resume *kgo.Record // first record to redeliver, if any
	err    error       // the first failed write, if any
}

// settle waits for the outputs of a batch (non-transactional), writes the
// marks of the events whose outputs are durable, waits for those, and runs
// each mark's commit or undo. It returns, per partition, how far the
// partition may be committed.
func (w *writer) settle(ctx context.Context, results []*partResult) ([]settled, error) {
	flushErr := w.flush(ctx)
	out := make([]settled, len(results))
	okPrefix := make([][]*inflight, len(results))
	marked := false
	for i, pr := range results {
		cut := firstNotDurable(pr.done)
		for _, f := range pr.done[cut:] {
			f.undoMarks()
		}
		if cut < len(pr.done) {
			out[i].resume = pr.done[cut].rec
			if p := pr.done[cut].err.Load(); p != nil {
				out[i].err = *p
			}
		} else {
			out[i].resume = pr.failedAt
		}
		okPrefix[i] = pr.done[:cut]
		for _, f := range okPrefix[i] {
			if recs := f.markRecords(); len(recs) > 0 {
				w.write(ctx, f, recs, nil)
				marked = true
			}
		}
	}
	if marked {
		if err := w.flush(ctx); err != nil && flushErr == nil {
			flushErr = err
		}
	}
	for i, ok := range okPrefix {
		cut := firstNotDurable(ok)
		for _, f := range ok[:cut] {
			f.commitMarks()
		}
		for _, f := range ok[cut:] {
			f.undoMarks()
		}
		if cut > 0 {
			out[i].last = ok[cut-1].rec
		}
		if cut < len(ok) {
			out[i].resume = ok[cut].rec
			if p := ok[cut].err.Load(); p != nil {
				out[i].err = *p
			}
		}
	}
	return out, flushErr
}

func firstNotDurable(fs []*inflight) int {
	for i, f := range fs {
		if !f.durable() {
			return i
		}
	}
	return len(fs)
}
