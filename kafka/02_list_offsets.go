package kafka

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
)

// listOffsets answers latest (-1), earliest (-2) and by-timestamp lookups.
// v0 answers in OldStyleOffsets, at most one offset. With read_committed
// (v2+) latest is the last stable offset.
func (c *conn) listOffsets(req *request, r *kmsg.ListOffsetsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, t := range r.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition = p.Partition
			off, ts, err := c.s.b.ListOffset(c.ctx, t.Topic, p.Partition, p.Timestamp)
			if err == nil && r.IsolationLevel == 1 && p.Timestamp == broker.LatestOffset {
				// read_committed: the latest offset is the last stable one.
				_, _, off, err = c.s.b.StableOffsets(t.Topic, p.Partition)
			}
			rp.ErrorCode = errCode(err)
			rp.Offset, rp.Timestamp = off, ts
			if err != nil {
				rp.Offset, rp.Timestamp = -1, -1
			}
			rp.LeaderEpoch = -1
			if r.Version == 0 && err == nil && p.MaxNumOffsets > 0 && off >= 0 {
				rp.OldStyleOffsets = []int64{off}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
