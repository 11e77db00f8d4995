package kafka

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
)

// createTopics creates each topic alone: one failing does not stop the
// others. The replication factor must be -1 (default) or 1, as this node
// is the only replica; a manual assignment must name only this node. The
// topics that pass the checks are created in one broker call, which writes
// the metadata once for the request.
func (c *conn) createTopics(req *request, r *kmsg.CreateTopicsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, t := range r.Topics {
		seen[t.Topic]++
	}
	resp.Topics = make([]kmsg.CreateTopicsResponseTopic, len(r.Topics))
	var batch []broker.NewTopic
	var at []int // batch[j] is r.Topics[at[j]]
	for i, t := range r.Topics {
		rt := &resp.Topics[i]
		*rt = kmsg.NewCreateTopicsResponseTopic()
		rt.Topic = t.Topic
		rt.NumPartitions, rt.ReplicationFactor = -1, -1
		nt, err := c.checkNewTopic(t, seen[t.Topic] > 1)
		if err == nil && r.ValidateOnly {
			if _, terr := c.s.b.Topic(t.Topic); terr == nil {
				err = fmt.Errorf("%w: %s", broker.ErrTopicExists, t.Topic)
			} else {
				err = broker.ValidateTopicConfigs(nt.Configs)
			}
			if err == nil {
				c.fillCreated(rt, nt, true)
			}
		}
		if err != nil || r.ValidateOnly {
			rt.ErrorCode, rt.ErrorMessage = errCode(err), errMessage(err)
			continue
		}
		batch, at = append(batch, nt), append(at, i)
	}
	if len(batch) > 0 {
		for j, err := range c.s.b.CreateTopics(c.ctx, batch) {
			rt := &resp.Topics[at[j]]
			if err != nil {
				rt.ErrorCode, rt.ErrorMessage = errCode(err), errMessage(err)
				continue
			}
			c.fillCreated(rt, batch[j], false)
		}
	}
	return resp, nil
}

// checkNewTopic checks one topic of a request and says what to create.
func (c *conn) checkNewTopic(t kmsg.CreateTopicsRequestTopic, dup bool) (broker.NewTopic, error) {
	if dup {
		return broker.NewTopic{}, fmt.Errorf("%w: topic %s is named more than once", kerr.InvalidRequest, t.Topic)
	}
	if err := broker.ValidateTopicName(t.Topic); err != nil {
		return broker.NewTopic{}, err
	}
	if t.ReplicationFactor != -1 && t.ReplicationFactor != 1 {
		return broker.NewTopic{}, fmt.Errorf("%w: replication factor %d: this cluster has one broker", kerr.InvalidReplicationFactor, t.ReplicationFactor)
	}
	n := int(t.NumPartitions)
	if len(t.ReplicaAssignment) > 0 {
		if t.NumPartitions != -1 || t.ReplicationFactor != -1 {
			return broker.NewTopic{}, fmt.Errorf("%w: a replica assignment needs partitions and replication factor -1", kerr.InvalidRequest)
		}
		for _, a := range t.ReplicaAssignment {
			if len(a.Replicas) != 1 || a.Replicas[0] != c.s.cfg.NodeID || a.Partition < 0 || int(a.Partition) >= len(t.ReplicaAssignment) {
				return broker.NewTopic{}, fmt.Errorf("%w: every partition must be on broker %d alone", kerr.InvalidReplicaAssignment, c.s.cfg.NodeID)
			}
		}
		n = len(t.ReplicaAssignment)
	}
	if n == -1 {
		n = c.s.b.DefaultPartitions()
	}
	if n < 1 || n > broker.MaxPartitions {
		return broker.NewTopic{}, fmt.Errorf("%w: %d partitions", broker.ErrInvalidPartitions, n)
	}
	configs := map[string]string{}
	for _, cf := range t.Configs {
		if cf.Value != nil {
			configs[cf.Name] = *cf.Value
		}
	}
	return broker.NewTopic{Name: t.Topic, Partitions: n, Configs: configs}, nil
}

// fillCreated fills the response of a topic created (or, validateOnly,
// that would be): its partitions, id and configs.
func (c *conn) fillCreated(rt *kmsg.CreateTopicsResponseTopic, nt broker.NewTopic, validateOnly bool) {
	rt.NumPartitions, rt.ReplicationFactor = int32(nt.Partitions), 1
	var entries []broker.ConfigEntry
	if validateOnly {
		entries = c.s.b.DefaultConfigs()
		for i, e := range entries {
			if v, ok := nt.Configs[e.Name]; ok {
				entries[i].Value, entries[i].Source = v, broker.SourceTopic
			}
		}
	} else {
		info, ierr := c.s.b.Topic(nt.Name)
		if ierr == nil {
			rt.TopicID = info.ID
		}
		entries, ierr = c.s.b.DescribeConfigs(nt.Name)
		if errors.Is(ierr, broker.ErrUnknownTopic) {
			entries = nil // deleted meanwhile
		}
	}
	for _, e := range entries {
		rc := kmsg.NewCreateTopicsResponseTopicConfig()
		rc.Name, rc.Value, rc.ReadOnly, rc.Source, rc.IsSensitive = e.Name, &e.Value, e.ReadOnly, int8(e.Source), e.Sensitive
		rt.Configs = append(rt.Configs, rc)
	}
}
