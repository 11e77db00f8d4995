package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/txn"
)

// addPartitionsToTxn adds partitions to the producer's transaction (v0-3,
// the client form; v4's batched broker form is not advertised). When a
// partition does not exist it gets UNKNOWN_TOPIC_OR_PARTITION, the others
// OPERATION_NOT_ATTEMPTED, and nothing is added, as in Kafka.
func (c *conn) addPartitionsToTxn(req *request, r *kmsg.AddPartitionsToTxnRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	var parts []txn.TopicPartition
	missing := map[txn.TopicPartition]bool{}
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			tp := txn.TopicPartition{Topic: t.Topic, Partition: p}
			parts = append(parts, tp)
			if !c.s.b.PartitionExists(t.Topic, p) {
				missing[tp] = true
			}
		}
	}
	var code int16
	switch {
	case c.s.t == nil:
		code = errNoTxns.Code
	case len(missing) > 0:
		code = kerr.OperationNotAttempted.Code
	default:
		code = txnCode(c.s.t.AddPartitions(c.ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch, parts), r.Version, 2)
	}
	for _, t := range r.Topics {
		rt := kmsg.NewAddPartitionsToTxnResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p, code
			if missing[txn.TopicPartition{Topic: t.Topic, Partition: p}] {
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
