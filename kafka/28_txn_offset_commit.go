package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/groups"
)

// txnOffsetCommit stores a group's offsets as pending in the producer's
// transaction (the group must have been added with AddOffsetsToTxn); they
// become visible when the transaction commits. v3 (KIP-447) validates the
// member and generation as OffsetCommit does.
func (c *conn) txnOffsetCommit(req *request, r *kmsg.TxnOffsetCommitRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	gen, member := int32(-1), ""
	if r.Version >= 3 {
		gen, member = r.Generation, r.MemberID
	}
	now := time.Now()
	offsets := map[groups.TopicPartition]groups.Offset{}
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			o := groups.Offset{Offset: p.Offset, LeaderEpoch: -1, CommitTime: now}
			if r.Version >= 2 {
				o.LeaderEpoch = p.LeaderEpoch
			}
			if p.Metadata != nil {
				o.Metadata = *p.Metadata
			}
			offsets[groups.TopicPartition{Topic: t.Topic, Partition: p.Partition}] = o
		}
	}
	var perr map[groups.TopicPartition]error
	var code int16
	switch {
	case c.s.t == nil:
		code = errNoTxns.Code
	case c.s.g == nil:
		code = errNoCoordinator.Code
	default:
		if err := c.s.t.VerifyGroup(r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Group); err != nil {
			code = txnCode(err, r.Version, 2)
			break
		}
		var err error
		perr, err = c.s.g.TxnCommitOffsets(c.ctx, r.Group, member, str(r.InstanceID), gen, r.ProducerID, offsets)
		code = errCode(err)
	}
	for _, t := range r.Topics {
		rt := kmsg.NewTxnOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			if code == 0 {
				rp.ErrorCode = errCode(perr[groups.TopicPartition{Topic: t.Topic, Partition: p.Partition}])
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
