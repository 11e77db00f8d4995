package kafka

import (
	"reflect"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog"
)

// fetch reads every partition asked for and, while fewer than MinBytes
// are ready, waits on broker.Watch for all of them at once until one may
// have more or MaxWaitMillis passes. Fetch sessions are not kept: a
// request to create one is answered with session id 0 (which clients take
// as "no session") and a request naming a session gets
// FETCH_SESSION_ID_NOT_FOUND, after which clients fetch sessionless.
//
// A read_committed fetch (isolation level 1) returns batches below the
// last stable offset only, with the aborted transactions overlapping
// them; every fetch reports the LSO.
func (c *conn) fetch(req *request, r *kmsg.FetchRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.FetchResponse)
	if r.Version >= 7 {
		switch {
		case r.SessionID != 0:
			resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
			return resp, nil
		case r.SessionEpoch > 0:
			resp.ErrorCode = kerr.InvalidFetchSessionEpoch.Code
			return resp, nil
		}
	}
	type fpart struct {
		topic  string
		rp     *kmsg.FetchResponseTopicPartition
		offset int64
		max    int
		err    error // fixed for the request (unknown topic id)
		hwm    int64 // as of the last read
	}
	var parts []*fpart
	resp.Topics = make([]kmsg.FetchResponseTopic, len(r.Topics))
	for i, t := range r.Topics {
		rt := &resp.Topics[i]
		*rt = kmsg.NewFetchResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		name := t.Topic
		var terr error
		if r.Version >= 13 {
			info, err := c.s.b.TopicByID(t.TopicID)
			if err != nil {
				terr = kerr.UnknownTopicID
			}
			name = info.Name
		}
		rt.Partitions = make([]kmsg.FetchResponseTopicPartition, len(t.Partitions))
		for j, p := range t.Partitions {
			rp := &rt.Partitions[j]
			*rp = kmsg.NewFetchResponseTopicPartition()
			rp.Partition = p.Partition
			parts = append(parts, &fpart{topic: name, rp: rp, offset: p.FetchOffset, max: int(p.PartitionMaxBytes), err: terr})
		}
	}
	readCommitted := r.IsolationLevel == 1
	maxBytes := int(r.MaxBytes)
	if r.Version < 3 || maxBytes <= 0 {
		maxBytes = 50 << 20
	}
	wait := min(time.Duration(r.MaxWaitMillis)*time.Millisecond, c.s.maxWait)
	deadline := time.Now().Add(wait)
	for {
		total, failed := 0, false
		// NB: partitions read into the connection's scratch buffer where
		// they fit. The response is encoded (copied) before this
		// connection handles its next request, so the buffer is free
		// again then; this spares an allocation per partition read.
		scratch := c.fetchScratch(maxBytes)
		for _, fp := range parts {
			rp := fp.rp
			// NB: empty, not nil. kmsg encodes nil as null records (-1),
			// which Kafka never sends and sarama cannot decode before
			// v12 (kafka: error decoding packet: invalid byteslice length).
			rp.ErrorCode, rp.RecordBatches, rp.AbortedTransactions = 0, []byte{}, nil
			rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = -1, -1, -1
			if fp.err != nil {
				rp.ErrorCode, failed = errCode(fp.err), true
				continue
			}
			budget := min(fp.max, maxBytes-total)
			if fp.max <= 0 {
				budget = 0
			}
			if total > 0 && budget <= 0 {
				// The response is full: report the offsets only.
				start, hwm, lso, err := c.s.b.StableOffsets(fp.topic, rp.Partition)
				if err != nil {
					rp.ErrorCode, failed = errCode(err), true
					continue
				}
				rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = hwm, lso, start
				fp.hwm = hwm
				continue
			}
			start, hwm, lso, err := c.s.b.StableOffsets(fp.topic, rp.Partition)
			if err == nil && (fp.offset < start || fp.offset > hwm) {
				err = broker.ErrOffsetOutOfRange
			}
			if err != nil {
				rp.ErrorCode, failed = errCode(err), true
				if start >= 0 {
					rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = hwm, lso, start
				}
				continue
			}
			fp.hwm = hwm
			rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = hwm, lso, start
			if fp.offset == hwm || readCommitted && fp.offset >= lso {
				// NB: an open transaction holds a read_committed consumer
				// at the LSO; the wait below wakes on the high-water mark,
				// which the marker ending the transaction moves.
				continue
			}
			var (
				f    broker.Fetched
				span commitlog.FileSpan
				ok   bool
			)
			if c.sendfile && hwm-fp.offset >= tailRecords {
				f, span, ok, err = c.s.b.FetchSpan(c.ctx, fp.topic, rp.Partition, fp.offset, max(budget, 1), readCommitted)
			}
			dst := scratch
			if !ok {
				fetch := c.s.b.Fetch
				if readCommitted {
					fetch, dst = c.s.b.FetchCommitted, nil
				}
				f, err = fetch(c.ctx, fp.topic, rp.Partition, fp.offset, max(budget, 1), dst)
			} else if err == nil && span.Len > 0 && span.Len < minSpanBytes && (total == 0 || int(span.Len) <= maxBytes-total) {
				// Small: read it with the rest of the response.
				f.Records, err = span.AppendTo(scratch[:0])
				span.Release()
				span = commitlog.FileSpan{}
			}
			if err != nil {
				span.Release()
				// Retention may have moved the start past the offset
				// meanwhile: OFFSET_OUT_OF_RANGE, as for any error.
				rp.ErrorCode, failed = errCode(err), true
				continue
			}
			fp.hwm = f.HighWatermark
			rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = f.HighWatermark, f.LastStableOffset, f.LogStartOffset
			for _, a := range f.Aborted {
				at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
				at.ProducerID, at.FirstOffset = a.ProducerID, a.FirstOffset
				rp.AbortedTransactions = append(rp.AbortedTransactions, at)
			}
			if span.Len > 0 {
				if total > 0 && int(span.Len) > maxBytes-total {
					span.Release()
					continue
				}
				// The records stay in the segment file; the writer sends
				// them from there (sendfile.go).
				req.spans = append(req.spans, heldSpan{span: span, rp: rp})
				rp.RecordBatches = spanMarker(len(req.spans) - 1)
				total += int(span.Len)
				continue
			}
			if total > 0 && len(f.Records) > maxBytes-total {
				// Only the first partition with data may exceed MaxBytes.
				continue
			}
			if len(f.Records) > 0 {
				rp.RecordBatches = f.Records
				if dst != nil && cap(scratch) > 0 && &f.Records[:1][0] == &scratch[:1][0] {
					scratch = scratch[len(f.Records):len(f.Records)]
				} else {
					// The records are elsewhere (the buffer was too
					// small, or not used): stop using it for this
					// response rather than guess what they overlap.
					scratch = nil
				}
			}
			total += len(f.Records)
		}
		if failed || total >= int(r.MinBytes) || !time.Now().Before(deadline) || c.ctx.Err() != nil {
			return resp, nil
		}
		// Reading again after the wait: let go of this round's files.
		releaseSpans(req.spans)
		req.spans = req.spans[:0]
		// Wait until any partition's high-water mark may move past what
		// was read, without spinning.
		waitAny(c, parts, deadline, func(fp *fpart) (string, int32, int64) {
			return fp.topic, fp.rp.Partition, max(fp.offset, fp.hwm)
		})
	}
}

// maxSelectWatch is the most partitions a fetch waits on with one select;
// beyond it, a goroutine per partition forwards wake-ups.
const maxSelectWatch = 128

// waitAny blocks until one of the partitions' high-water marks may have
// passed its offset (what watch returns), the deadline passes or the
// connection ends.
func waitAny[P any](c *conn, parts []P, deadline time.Time, watch func(P) (string, int32, int64)) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	if len(parts) <= maxSelectWatch {
		// NB: one select over every partition's channel: the goroutine
		// that publishes a record wakes this one directly, with no
		// forwarding goroutine in between (each hand-off is a scheduling
		// delay on a busy machine: the e2e latency's tail).
		cases := make([]reflect.SelectCase, 0, len(parts)+2)
		cases = append(cases,
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c.ctx.Done())})
		for _, p := range parts {
			topic, part, off := watch(p)
			ch, stop, err := c.s.b.Watch(topic, part, off)
			if err != nil {
				return // the partition is gone: read again and report it
			}
			stops = append(stops, stop)
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		reflect.Select(cases)
		return
	}
	wake := make(chan struct{}, 1)
	done := make(chan struct{}) // ends the watching goroutines
	defer close(done)
	for _, p := range parts {
		topic, part, off := watch(p)
		ch, stop, err := c.s.b.Watch(topic, part, off)
		if err != nil {
			return
		}
		stops = append(stops, stop)
		go func() {
			select {
			case <-ch:
				select {
				case wake <- struct{}{}:
				default:
				}
			case <-done:
			}
		}()
	}
	select {
	case <-wake:
	case <-timer.C:
	case <-c.ctx.Done():
	}
}

// maxFetchScratch bounds the read buffer a connection keeps between
// fetches.
const maxFetchScratch = 16 << 20

// fetchScratch returns the connection's empty read buffer for a fetch of up
// to maxBytes, allocating or growing it up to maxFetchScratch.
func (c *conn) fetchScratch(maxBytes int) []byte {
	want := min(maxBytes, maxFetchScratch)
	if cap(c.scratch) < want {
		c.scratch = make([]byte, 0, want)
	}
	return c.scratch[:0]
}
