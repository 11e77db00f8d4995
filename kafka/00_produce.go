package kafka

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
)

// produce appends every partition's batches first and then, for acks=all,
// waits for all of them in a deferred reply, so the partitions' fsyncs
// overlap and the connection's next request is read meanwhile. Each
// partition succeeds or fails alone.
func (c *conn) produce(req *request, r *kmsg.ProduceRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	type waiting struct {
		p   *kmsg.ProduceResponseTopicPartition
		res broker.Produced
	}
	var waits []waiting
	spans := c.s.produceSpans(r.Acks)
	badAcks := r.Acks != broker.AcksNone && r.Acks != broker.AcksLeader && r.Acks != broker.AcksAll
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(r.Topics))
	for i, t := range r.Topics {
		rt := &resp.Topics[i]
		*rt = kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		rt.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(t.Partitions))
		for j, p := range t.Partitions {
			rp := &rt.Partitions[j]
			*rp = kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = -1, -1, -1
			if badAcks {
				rp.ErrorCode = kerr.InvalidRequiredAcks.Code
				continue
			}
			spans.start(c.ctx, t.Topic, p.Partition, p.Records, rp)
			res, err := c.s.b.ProduceAsync(c.ctx, t.Topic, p.Partition, p.Records)
			if err != nil {
				rp.ErrorCode = errCode(err)
				rp.ErrorMessage = errMessage(err)
				var re *broker.RecordError // v8+: which record was refused
				if errors.As(err, &re) {
					rp.ErrorRecords = append(rp.ErrorRecords, kmsg.ProduceResponseTopicPartitionErrorRecord{
						RelativeOffset: int32(re.Index), ErrorMessage: errMessage(re.Err)})
				}
				c.logger.Debug("kafka: produce refused", "topic", t.Topic, "partition", p.Partition, "err", err)
				continue
			}
			rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = res.BaseOffset, res.LogAppendTime, res.LogStartOffset
			// NB: an append already durable (interval durability) needs
			// no deferred reply: answering now spares a goroutine and lets
			// the serving goroutine write the response itself.
			if r.Acks == broker.AcksAll && !res.Duplicate && !res.Durable() {
				waits = append(waits, waiting{rp, res})
			}
		}
	}
	if r.Acks == broker.AcksNone || len(waits) == 0 {
		spans.end()
	}
	if r.Acks == broker.AcksNone {
		return nil, nil
	}
	if len(waits) == 0 {
		return resp, nil
	}
	timeout := time.Duration(r.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	req.later = func() kmsg.Response {
		ctx, cancel := context.WithTimeout(c.ctx, timeout)
		defer cancel()
		for _, w := range waits {
			if err := w.res.Wait(ctx); err != nil {
				w.p.ErrorCode = errCode(err)
				if ctx.Err() != nil {
					// The records may yet be durable: a retry is
					// recognised as a duplicate.
					w.p.ErrorCode = kerr.RequestTimedOut.Code
				}
				w.p.ErrorMessage = errMessage(err)
			}
		}
		spans.end()
		return resp
	}
	return nil, nil
}
