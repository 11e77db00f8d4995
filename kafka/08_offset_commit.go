package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/groups"
)

// offsetCommit commits a group's offsets; an error for the whole request
// is reported on every partition, as the protocol has no top-level code.
func (c *conn) offsetCommit(req *request, r *kmsg.OffsetCommitRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
	gen, member := r.Generation, r.MemberID
	if r.Version < 1 {
		gen, member = -1, ""
	}
	now := time.Now()
	offsets := map[groups.TopicPartition]groups.Offset{}
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			o := groups.Offset{Offset: p.Offset, LeaderEpoch: -1, CommitTime: now}
			if r.Version >= 6 {
				o.LeaderEpoch = p.LeaderEpoch
			}
			if p.Metadata != nil {
				o.Metadata = *p.Metadata
			}
			offsets[groups.TopicPartition{Topic: t.Topic, Partition: p.Partition}] = o
		}
	}
	var perr map[groups.TopicPartition]error
	var err error
	if c.s.g == nil {
		err = errNoCoordinator
	} else {
		perr, err = c.s.g.CommitOffsets(c.ctx, r.Group, member, str(r.InstanceID), gen, offsets)
	}
	for _, t := range r.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			if err != nil {
				rp.ErrorCode = errCode(err)
			} else {
				rp.ErrorCode = errCode(perr[groups.TopicPartition{Topic: t.Topic, Partition: p.Partition}])
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}

// str dereferences a nullable string.
func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// strp returns a pointer to s, or nil for "".
func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
