package client

import (
	"context"
	"sync/atomic"
	"time"

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
	idms    []idMark              // marks of the processed-id topic store
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

	// The processed-id topic store's state for this batch, used only by
	// the goroutine handling the partition: the ids whose marks are
	// pending, the time lookups are made at, and the last id Seen hashed
	// (Mark reuses the hash).
	pending localIDs
	nowMs   int64
	lastID  string
	lastKey idKey
	// pre[i] is the lookup of the i-th record's id made before the batch
	// was handled (topicStore.prelook); cur is the record being handled.
	pre []preLook
	cur int
	// idmSlab[i] is room for the i-th record's store mark (prelook
	// allocates it), so marking allocates nothing per event.
	idmSlab []idMark
}

// idMarks returns the topic-store marks of fs, in order.
func idMarks(fs []*inflight) []idMark {
	var ms []idMark
	for _, f := range fs {
		ms = append(ms, f.idms...)
	}
	return ms
}

// withIDMarks returns the events of fs that carry topic-store marks.
func withIDMarks(fs []*inflight) []*inflight {
	var out []*inflight
	for _, f := range fs {
		if len(f.idms) > 0 {
			out = append(out, f)
		}
	}
	return out
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

// writeShared produces recs, each of which carries writes of every event of
// fs (a batch record of processed-id marks): a failure fails them all.
func (w *writer) writeShared(ctx context.Context, fs []*inflight, recs []*kgo.Record, pr *partResult) {
	if len(recs) == 0 || len(fs) == 0 {
		return
	}
	for _, f := range fs {
		f.pending.Add(int32(len(recs)))
	}
	for _, r := range recs {
		w.produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				for _, f := range fs {
					f.err.CompareAndSwap(nil, &err)
				}
				if pr != nil {
					pr.writeFailed.Store(true)
				}
			} else {
				w.metrics.count(cPublished, r.Topic)
			}
			for _, f := range fs { // NB: after the errors, as in write
				f.pending.Add(-1)
			}
		})
	}
}

// writeMarks writes the processed-id marks of fs: each event's own mark
// records, and one batch record (or a few) for the topic store's marks.
func (w *writer) writeMarks(ctx context.Context, fs []*inflight, nowMs int64, pr *partResult) bool {
	wrote := false
	for _, f := range fs {
		if recs := f.markRecords(); len(recs) > 0 {
			w.write(ctx, f, recs, pr)
			wrote = true
		}
	}
	if with := withIDMarks(fs); len(with) > 0 {
		w.writeShared(ctx, with, idMarkRecords(idMarks(with), nowMs), pr)
		wrote = true
	}
	return wrote
}

// commitAllMarks runs the commit of every mark of fs, whose writes are
// durable.
func commitAllMarks(fs []*inflight, nowMs int64) {
	for _, f := range fs {
		f.commitMarks()
	}
	if with := withIDMarks(fs); len(with) > 0 {
		commitIDMarks(idMarks(with), nowMs)
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
	nowMs := time.Now().UnixMilli()
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
		if w.writeMarks(ctx, okPrefix[i], nowMs, nil) {
			marked = true
		}
	}
	if marked {
		if err := w.flush(ctx); err != nil && flushErr == nil {
			flushErr = err
		}
	}
	for i, ok := range okPrefix {
		cut := firstNotDurable(ok)
		commitAllMarks(ok[:cut], nowMs)
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
