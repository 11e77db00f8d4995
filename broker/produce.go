package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/commitlog/batch"
)

// Acks values, as Kafka's producer acks.
const (
	AcksNone   int16 = 0  // respond without waiting for anything
	AcksLeader int16 = 1  // respond once written
	AcksAll    int16 = -1 // respond once durable under the topic's mode
)

// Produced is the outcome of appending to one partition.
type Produced struct {
	BaseOffset     int64
	LogAppendTime  int64 // -1 unless the topic stamps LogAppendTime
	LogStartOffset int64
	Records        int
	Bytes          int
	// Duplicate is set when an idempotent producer's retry was recognised:
	// nothing was appended and BaseOffset is the original's.
	Duplicate bool
	pending   commitlog.Pending
}

// Wait blocks until the append is durable under the topic's mode.
func (r *Produced) Wait(ctx context.Context) error {
	if err := r.pending.Wait(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return nil
}

// Durable reports whether the append is durable under the topic's mode
// already (always so for interval and unsafe-none durability), so that
// Wait would return at once.
func (r *Produced) Durable() bool { return r.pending.Durable() }

// Produce appends record batches (as a Kafka producer sends them) to a
// partition and waits as acks asks. See ProduceAsync.
func (b *Broker) Produce(ctx context.Context, topic string, part int32, batches []byte, acks int16) (Produced, error) {
	r, err := b.ProduceAsync(ctx, topic, part, batches)
	if err != nil {
		return r, err
	}
	if acks == AcksAll {
		err = r.Wait(ctx)
	}
	return r, err
}

// ProduceAsync validates and appends batches and returns once they are
// written; Produced.Wait waits for durability (acks=all). Batches are checked
// whole before anything is appended: a batch over max.message.bytes fails
// with ErrMessageTooLarge, a bad CRC with ErrCorruptMessage, bad records with
// ErrInvalidRecord, and none of the request is stored. Idempotent producers'
// sequence numbers are checked per partition: a retried batch is
// acknowledged with its first offset, a gap is refused with
// ErrOutOfOrderSequence.
func (b *Broker) ProduceAsync(ctx context.Context, topic string, part int32, batches []byte) (Produced, error) {
	res := Produced{BaseOffset: -1, LogAppendTime: -1, LogStartOffset: -1}
	p, err := b.partition(topic, part, true)
	if err != nil {
		return res, err
	}
	tc := p.t.tc
	records, err := commitlog.CheckBatches(batches, tc.MaxMessageBytes)
	if err != nil {
		b.m.produceErrors.Inc()
		return res, mapLogError(err)
	}
	var heads []batch.Header
	for off := 0; off < len(batches); {
		h, _ := batch.ParseHeader(batches[off:])
		raw := batches[off : off+h.Size()]
		if tc.Schema.Key || tc.Schema.Value {
			// One pass decodes the records for both checks.
			if err := b.validateSchemas(topic, tc.Schema, len(heads), raw); err != nil {
				b.m.produceErrors.Inc()
				return res, err
			}
		} else if err := batch.ValidateRecords(raw); err != nil {
			b.m.produceErrors.Inc()
			return res, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
		}
		if h.Control() {
			return res, fmt.Errorf("%w: producers may not write control batches", ErrInvalidRecord)
		}
		if tc.CleanupPolicy&commitlog.CleanupCompact != 0 {
			if err := requireKeys(raw); err != nil {
				return res, err
			}
		}
		heads = append(heads, h)
		off += h.Size()
	}
	if tc.LogAppendTime {
		now := time.Now().UnixMilli()
		for off := 0; off < len(batches); {
			h, _ := batch.ParseHeader(batches[off:])
			batch.SetLogAppendTime(batches[off:off+h.Size()], now)
			off += h.Size()
		}
		res.LogAppendTime = now
	}

	p.mu.RLock()
	defer p.mu.RUnlock()
	p.pmu.Lock()
	defer p.pmu.Unlock()
	if dup, ok, err := p.checkSequences(heads); err != nil {
		b.m.produceErrors.Inc()
		return res, err
	} else if ok {
		res.BaseOffset, res.Duplicate = dup, true
		res.LogStartOffset = p.log.StartOffset()
		return res, nil
	}
	// Under pmu, so no marker can slip between the check and the append.
	if err := b.verifyTxnBatches(p, heads); err != nil {
		b.m.produceErrors.Inc()
		return res, err
	}
	pend, err := p.log.AppendAsync(ctx, batches)
	if err != nil {
		b.m.produceErrors.Inc()
		return res, mapLogError(err)
	}
	p.recordSequences(heads, pend.BaseOffset)
	p.trackTxnBatches(heads, pend.BaseOffset)
	res.BaseOffset, res.pending = pend.BaseOffset, pend
	res.LogStartOffset = p.log.StartOffset()
	res.Records, res.Bytes = records, len(batches)
	b.m.produceRecords.Add(float64(records))
	p.counters.appended.Add(int64(records))
	b.m.produceBytes.Add(float64(len(batches)))
	return res, nil
}

func requireKeys(raw []byte) error {
	var it batch.Iter
	if err := it.Reset(raw); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	for it.Next() {
		if it.Record().Key == nil {
			return fmt.Errorf("%w: a compacted topic needs a key on every record", ErrInvalidRecord)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	return nil
}

// mapLogError turns a commit log error into the broker's.
func mapLogError(err error) error {
	switch {
	case errors.Is(err, commitlog.ErrTooLarge):
		return fmt.Errorf("%w: %v", ErrMessageTooLarge, err)
	case errors.Is(err, commitlog.ErrCorrupt):
		return fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	case errors.Is(err, commitlog.ErrInvalidBatch):
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	case errors.Is(err, commitlog.ErrOffsetOutOfRange):
		return fmt.Errorf("%w: %v", ErrOffsetOutOfRange, err)
	case errors.Is(err, commitlog.ErrClosed):
		return ErrClosed
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%w: %v", ErrStorage, err)
}

// Fetched is what Fetch read from one partition.
type Fetched struct {
	Records        []byte // whole record batches
	HighWatermark  int64
	LogStartOffset int64
	// LastStableOffset is below every ongoing transaction's data.
	LastStableOffset int64
	// Aborted lists the aborted transactions overlapping Records
	// (FetchCommitted only).
	Aborted []AbortedTxn
}

// Fetch reads batches from offset, at most maxBytes unless the first batch
// alone is larger. It does not wait; see Watch.
func (b *Broker) Fetch(ctx context.Context, topic string, part int32, offset int64, maxBytes int, dst []byte) (Fetched, error) {
	p, err := b.partition(topic, part, false)
	if err != nil {
		return Fetched{HighWatermark: -1, LogStartOffset: -1}, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := Fetched{HighWatermark: p.log.HighWatermark(), LogStartOffset: p.log.StartOffset()}
	out.LastStableOffset = p.txns.lso(out.HighWatermark)
	recs, err := p.log.Read(ctx, offset, maxBytes, dst)
	if err != nil {
		return out, mapLogError(err)
	}
	out.Records = recs
	b.m.fetchBytes.Add(float64(len(recs)))
	p.counters.fetched.Add(countFetched(recs, offset))
	return out, nil
}

// Watch returns a channel closed when the partition's high-water mark may
// have passed offset, and a func to call when done.
func (b *Broker) Watch(topic string, part int32, offset int64) (<-chan struct{}, func(), error) {
	p, err := b.partition(topic, part, false)
	if err != nil {
		return nil, nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	ch, stop := p.log.Watch(offset)
	return ch, stop, nil
}

// Special timestamps for ListOffset.
const (
	LatestOffset   int64 = -1
	EarliestOffset int64 = -2
)

// ListOffset returns the offset for a timestamp: LatestOffset (the
// high-water mark), EarliestOffset (the log start), or the first record
// whose timestamp is at least ts, with that record's timestamp. When no
// record is that new it returns offset -1 and timestamp -1, as Kafka does.
func (b *Broker) ListOffset(ctx context.Context, topic string, part int32, ts int64) (offset, timestamp int64, err error) {
	p, err := b.partition(topic, part, false)
	if err != nil {
		return -1, -1, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	switch {
	case ts == LatestOffset:
		return p.log.HighWatermark(), -1, nil
	case ts == EarliestOffset:
		return p.log.StartOffset(), -1, nil
	case ts < 0:
		return -1, -1, fmt.Errorf("%w: timestamp %d: want -1 (latest), -2 (earliest) or a time in ms", ErrInvalidRequest, ts)
	}
	off, err := p.log.OffsetForTime(ctx, ts)
	if err != nil {
		return -1, -1, mapLogError(err)
	}
	if off >= p.log.HighWatermark() {
		return -1, -1, nil
	}
	// The timestamp of the record found.
	raw, err := p.log.Read(ctx, off, 1, nil)
	if err != nil {
		return -1, -1, mapLogError(err)
	}
	var it batch.Iter
	if len(raw) > 0 && it.Reset(raw) == nil {
		for it.Next() {
			if it.Offset() >= off {
				return off, it.Timestamp(), nil
			}
		}
	}
	return off, ts, nil
}

// FetchSpan is Fetch, or FetchCommitted when committed is set, for a
// caller that sends the records without copying them: it returns where
// the batches are in a segment file (see commitlog.FileSpan; the caller
// must Release it) instead of their bytes. ok is false when the partition
// keeps its records in memory (durability memory); the caller then uses
// Fetch or FetchCommitted. Records of the returned Fetched is nil.
func (b *Broker) FetchSpan(ctx context.Context, topic string, part int32, offset int64, maxBytes int, committed bool) (out Fetched, span commitlog.FileSpan, ok bool, err error) {
	p, err := b.partition(topic, part, false)
	if err != nil {
		return Fetched{HighWatermark: -1, LogStartOffset: -1, LastStableOffset: -1}, span, true, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	l, isLog := p.log.(*commitlog.Log)
	if !isLog {
		return out, span, false, nil
	}
	hwm := l.HighWatermark()
	out = Fetched{HighWatermark: hwm, LogStartOffset: l.StartOffset(), LastStableOffset: p.txns.lso(hwm)}
	before := int64(math.MaxInt64)
	if committed {
		if offset >= out.LastStableOffset && offset <= hwm {
			return out, span, true, nil
		}
		before = out.LastStableOffset
	}
	span, err = l.ReadSpan(ctx, offset, maxBytes, before)
	if err != nil {
		return out, span, true, mapLogError(err)
	}
	if committed && span.Len > 0 {
		out.Aborted = p.txns.abortedIn(offset, span.LastOffset)
	}
	b.m.fetchBytes.Add(float64(span.Len))
	if span.Len > 0 {
		p.counters.fetched.Add(span.LastOffset - max(offset, out.LogStartOffset) + 1)
	}
	return out, span, true, nil
}
