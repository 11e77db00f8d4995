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
// is the only replica; a manual assignment must name only this node.
func (c *conn) createTopics(req *request, r *kmsg.CreateTopicsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, t := range r.Topics {
		seen[t.Topic]++
	}
	for _, t := range r.Topics {
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.Topic = t.Topic
		rt.NumPartitions, rt.ReplicationFactor = -1, -1
		err := c.createTopic(r, t, seen[t.Topic] > 1, &rt)
		rt.ErrorCode, rt.ErrorMessage = errCode(err), errMessage(err)
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}

func (c *conn) createTopic(r *kmsg.CreateTopicsRequest, t kmsg.CreateTopicsRequestTopic, dup bool, rt *kmsg.CreateTopicsResponseTopic) error {
	if dup {
		return fmt.Errorf("%w: topic %s is named more than once", kerr.InvalidRequest, t.Topic)
	}
	if err := broker.ValidateTopicName(t.Topic); err != nil {
		return err
	}
	if t.ReplicationFactor != -1 && t.ReplicationFactor != 1 {
		return fmt.Errorf("%w: replication factor %d: this cluster has one broker", kerr.InvalidReplicationFactor, t.ReplicationFactor)
	}
	n := int(t.NumPartitions)
	if len(t.ReplicaAssignment) > 0 {
		if t.NumPartitions != -1 || t.ReplicationFactor != -1 {
			return fmt.Errorf("%w: a replica assignment needs partitions and replication factor -1", kerr.InvalidRequest)
		}
		for _, a := range t.ReplicaAssignment {
			if len(a.Replicas) != 1 || a.Replicas[0] != c.s.cfg.NodeID || a.Partition < 0 || int(a.Partition) >= len(t.ReplicaAssignment) {
				return fmt.Errorf("%w: every partition must be on broker %d alone", kerr.InvalidReplicaAssignment, c.s.cfg.NodeID)
			}
		}
		n = len(t.ReplicaAssignment)
	}
	if n == -1 {
		n = c.s.b.DefaultPartitions()
	}
	if n < 1 || n > broker.MaxPartitions {
		return fmt.Errorf("%w: %d partitions", broker.ErrInvalidPartitions, n)
	}
	configs := map[string]string{}
	for _, cf := range t.Configs {
		if cf.Value != nil {
			configs[cf.Name] = *cf.Value
		}
	}
	var err error
	if r.ValidateOnly {
		if _, terr := c.s.b.Topic(t.Topic); terr == nil {
			err = fmt.Errorf("%w: %s", broker.ErrTopicExists, t.Topic)
		} else {
			err = broker.ValidateTopicConfigs(configs)
		}
	} else {
		err = c.s.b.CreateTopic(c.ctx, t.Topic, n, configs)
	}
	if err != nil {
		return err
	}
	rt.NumPartitions, rt.ReplicationFactor = int32(n), 1
	var entries []broker.ConfigEntry
	if r.ValidateOnly {
		entries = c.s.b.DefaultConfigs()
		for i, e := range entries {
			if v, ok := configs[e.Name]; ok {
				entries[i].Value, entries[i].Source = v, broker.SourceTopic
			}
		}
	} else {
		info, ierr := c.s.b.Topic(t.Topic)
		if ierr == nil {
			rt.TopicID = info.ID
		}
		entries, ierr = c.s.b.DescribeConfigs(t.Topic)
		if errors.Is(ierr, broker.ErrUnknownTopic) {
			entries = nil // deleted meanwhile
		}
	}
	for _, e := range entries {
		rc := kmsg.NewCreateTopicsResponseTopicConfig()
		rc.Name, rc.Value, rc.ReadOnly, rc.Source, rc.IsSensitive = e.Name, &e.Value, e.ReadOnly, int8(e.Source), e.Sensitive
		rt.Configs = append(rt.Configs, rc)
	}
	return nil
}
