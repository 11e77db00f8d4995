package broker

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/heraldhq/herald/commitlog/batch"
)

// partCounters count the records a partition took from producers and gave
// to fetches. They are plain atomics bumped once per request, summed per
// topic by the metrics collector at scrape time, so the produce and fetch
// paths never look up a labelled metric.
type partCounters struct {
	appended atomic.Int64
	fetched  atomic.Int64
}

// countFetched returns how many data records at or past from the batches
// in raw hold (control batches and the part of the first batch before from
// are not counted). It reads batch headers only.
func countFetched(raw []byte, from int64) int64 {
	var n int64
	for off := 0; off < len(raw); {
		h, err := batch.ParseHeader(raw[off:])
		if err != nil || h.Size() <= 0 || off+h.Size() > len(raw) {
			break
		}
		off += h.Size()
		if h.Control() || h.LastOffset() < from {
			continue
		}
		if h.BaseOffset >= from {
			n += int64(h.NumRecords)
		} else {
			n += h.LastOffset() - from + 1
		}
	}
	return n
}

// IsDeadLetterTopic reports whether a topic holds dead letters by Herald's
// naming convention: its name ends in "dlq" or "dead-letter" (any case)
// after a '.', '-' or '_' separator, as in "orders.dlq", "orders-DLQ" or
// "billing_dead-letter". The broker reports the depth of such topics as
// herald_broker_dlq_records.
func IsDeadLetterTopic(name string) bool {
	l := strings.ToLower(name)
	for _, suf := range []string{"dlq", "dead-letter", "deadletter", "dead_letter"} {
		if len(l) > len(suf) && strings.HasSuffix(l, suf) {
			switch l[len(l)-len(suf)-1] {
			case '.', '-', '_':
				return true
			}
		}
	}
	return false
}

// RecordTimestamp returns the timestamp (Unix milliseconds) of the first
// record at or after offset in a partition, and false when there is none
// (offset at or past the high-water mark, or the partition is gone). The
// consumer group lag collector uses it for lag in seconds.
func (b *Broker) RecordTimestamp(topic string, part int32, offset int64) (int64, bool) {
	p, err := b.partition(topic, part, false)
	if err != nil {
		return 0, false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if offset < p.log.StartOffset() {
		offset = p.log.StartOffset()
	}
	if offset >= p.log.HighWatermark() {
		return 0, false
	}
	// A committed offset often points at a transaction marker: skip
	// control batches (a few reads at most).
	for range 8 {
		if offset >= p.log.HighWatermark() {
			return 0, false
		}
		raw, err := p.log.Read(context.Background(), offset, 1, nil)
		if err != nil || len(raw) == 0 {
			return 0, false
		}
		ts, next, ok := timestampAt(raw, offset)
		if ok {
			return ts, true
		}
		if next <= offset {
			return 0, false
		}
		offset = next
	}
	return 0, false
}

// timestampAt returns the timestamp of the first data record at or past
// offset in raw, or false and the offset to read from next.
func timestampAt(raw []byte, offset int64) (ts, next int64, ok bool) {
	next = offset
	for off := 0; off < len(raw); {
		h, err := batch.ParseHeader(raw[off:])
		if err != nil || h.Size() <= 0 || off+h.Size() > len(raw) {
			return 0, next, false
		}
		off += h.Size()
		if h.LastOffset() < offset {
			continue
		}
		if h.Control() {
			next = h.LastOffset() + 1
			continue
		}
		switch {
		case h.LogAppendTime():
			return h.MaxTimestamp, next, true
		case h.BaseOffset >= offset:
			return h.BaseTimestamp, next, true
		}
		var it batch.Iter
		if it.Reset(raw[off-h.Size():off]) == nil {
			for it.Next() {
				if it.Offset() >= offset {
					return it.Timestamp(), next, true
				}
			}
		}
		return h.MaxTimestamp, next, true
	}
	return 0, next, false
}
