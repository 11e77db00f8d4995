package kafka

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/groups"
)

func (c *conn) offsetDelete(req *request, r *kmsg.OffsetDeleteRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if c.s.g == nil {
		resp.ErrorCode = errNoCoordinator.Code
		return resp, nil
	}
	var parts []groups.TopicPartition
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			parts = append(parts, groups.TopicPartition{Topic: t.Topic, Partition: p.Partition})
		}
	}
	perr, err := c.s.g.DeleteOffsets(c.ctx, r.Group, parts)
	resp.ErrorCode = errCode(err)
	for _, t := range r.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			if err == nil {
				rp.ErrorCode = errCode(perr[groups.TopicPartition{Topic: t.Topic, Partition: p.Partition}])
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
