// Package recbatch converts eventlog records to and from Kafka record
// batches (message format v2), for every implementation that speaks them.
// Older message formats (magic 0 and 1) are not decoded.
package recbatch

import (
	"fmt"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/eventlog"
)

// Encode encodes recs as one uncompressed Kafka record batch, zero
// timestamps set to now.
func Encode(recs []eventlog.Record, now time.Time) ([]byte, error) {
	rs := make([]batch.Rec, len(recs))
	for i, r := range recs {
		ts := r.Timestamp
		if ts.IsZero() {
			ts = now
		}
		rs[i] = batch.Rec{Timestamp: ts.UnixMilli(), Key: r.Key, Value: r.Value}
		if len(r.Headers) > 0 {
			hs := make([]batch.RecordHeader, len(r.Headers))
			for j, h := range r.Headers {
				hs[j] = batch.RecordHeader{Key: []byte(h.Key), Value: h.Value}
			}
			rs[i].Headers = hs
		}
	}
	raw, err := batch.Encode(nil, batch.BuildOptions{}, rs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", eventlog.ErrInvalidArgument, err)
	}
	return raw, nil
}

// Decode decodes the records at or after offset in raw (whole
// record batches), skipping control batches, and copies them out. next is
// the offset after the last batch.
func Decode(raw []byte, topic string, partition int32, offset int64) (recs []eventlog.Record, next int64, err error) {
	next = offset
	var it batch.Iter
	for len(raw) > 0 {
		h, err := batch.ParseHeader(raw)
		if err != nil || h.Size() > len(raw) {
			break // a partial batch at the end of a fetch
		}
		one := raw[:h.Size()]
		raw = raw[h.Size():]
		next = max(next, h.LastOffset()+1)
		if h.Control() {
			continue
		}
		if err := it.Reset(one); err != nil {
			return nil, next, err
		}
		for it.Next() {
			if it.Offset() < offset {
				continue
			}
			r := it.Record()
			rec := eventlog.Record{
				Key:       clone(r.Key),
				Value:     clone(r.Value),
				Timestamp: time.UnixMilli(it.Timestamp()),
				Topic:     topic,
				Partition: partition,
				Offset:    it.Offset(),
			}
			if len(r.Headers) > 0 {
				rec.Headers = make([]eventlog.Header, len(r.Headers))
				for i, h := range r.Headers {
					rec.Headers[i] = eventlog.Header{Key: string(h.Key), Value: clone(h.Value)}
				}
			}
			recs = append(recs, rec)
		}
		if err := it.Err(); err != nil {
			return nil, next, err
		}
	}
	return recs, next, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
