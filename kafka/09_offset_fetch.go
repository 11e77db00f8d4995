package kafka

import (
	"errors"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/groups"
)

// groupOffsets is one group's answer: the partitions asked for (or all
// committed ones) with their offsets, -1 where nothing is committed.
type groupOffsets struct {
	err    error
	topics []string
	parts  map[string][]int32
	offs   map[groups.TopicPartition]groups.Offset
}

func (c *conn) fetchGroupOffsets(group string, asked map[string][]int32, all bool) groupOffsets {
	var out groupOffsets
	if c.s.g == nil {
		out.err = errNoCoordinator
		return out
	}
	var parts []groups.TopicPartition
	if !all {
		for t, ps := range asked {
			for _, p := range ps {
				parts = append(parts, groups.TopicPartition{Topic: t, Partition: p})
			}
		}
	}
	offs, err := c.s.g.FetchOffsets(c.ctx, group, parts)
	if errors.Is(err, groups.ErrGroupIDNotFound) {
		// An unknown group has committed nothing: not an error.
		offs, err = nil, nil
	}
	out.err, out.offs = err, offs
	out.parts = map[string][]int32{}
	if all {
		for tp := range offs {
			out.parts[tp.Topic] = append(out.parts[tp.Topic], tp.Partition)
		}
	} else {
		for t, ps := range asked {
			out.parts[t] = append(out.parts[t], ps...)
		}
	}
	for t, ps := range out.parts {
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		out.topics = append(out.topics, t)
	}
	sort.Strings(out.topics)
	return out
}

// offsetFetch answers the single-group form (v0-v7) and the multi-group
// form (v8+).
func (c *conn) offsetFetch(req *request, r *kmsg.OffsetFetchRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	if r.Version >= 8 {
		for _, g := range r.Groups {
			asked := map[string][]int32{}
			for _, t := range g.Topics {
				asked[t.Topic] = append(asked[t.Topic], t.Partitions...)
			}
			res := c.fetchGroupOffsets(g.Group, asked, g.Topics == nil)
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, errCode(res.err)
			for _, t := range res.topics {
				rt := kmsg.NewOffsetFetchResponseGroupTopic()
				rt.Topic = t
				for _, p := range res.parts[t] {
					rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					rp.Partition, rp.Offset, rp.LeaderEpoch = p, -1, -1
					if o, ok := res.offs[groups.TopicPartition{Topic: t, Partition: p}]; ok {
						rp.Offset, rp.LeaderEpoch, rp.Metadata = o.Offset, o.LeaderEpoch, &o.Metadata
					} else {
						rp.Metadata = new(string)
					}
					rt.Partitions = append(rt.Partitions, rp)
				}
				rg.Topics = append(rg.Topics, rt)
			}
			resp.Groups = append(resp.Groups, rg)
		}
		return resp, nil
	}
	asked := map[string][]int32{}
	for _, t := range r.Topics {
		asked[t.Topic] = append(asked[t.Topic], t.Partitions...)
	}
	res := c.fetchGroupOffsets(r.Group, asked, r.Topics == nil && r.Version >= 2)
	resp.ErrorCode = errCode(res.err)
	for _, t := range res.topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t
		for _, p := range res.parts[t] {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p, -1, -1
			if res.err != nil && r.Version < 2 {
				// No top-level code before v2: report it per partition.
				rp.ErrorCode = errCode(res.err)
			}
			if o, ok := res.offs[groups.TopicPartition{Topic: t, Partition: p}]; ok {
				rp.Offset, rp.LeaderEpoch, rp.Metadata = o.Offset, o.LeaderEpoch, &o.Metadata
			} else {
				rp.Metadata = new(string)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
