package kafka

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
)

// createPartitions grows topics; a manual assignment must name only this
// node.
func (c *conn) createPartitions(req *request, r *kmsg.CreatePartitionsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.CreatePartitionsResponse)
	for _, t := range r.Topics {
		rt := kmsg.NewCreatePartitionsResponseTopic()
		rt.Topic = t.Topic
		err := c.createPartitionsOf(r, t)
		rt.ErrorCode, rt.ErrorMessage = errCode(err), errMessage(err)
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}

func (c *conn) createPartitionsOf(r *kmsg.CreatePartitionsRequest, t kmsg.CreatePartitionsRequestTopic) error {
	for _, a := range t.Assignment {
		if len(a.Replicas) != 1 || a.Replicas[0] != c.s.cfg.NodeID {
			return fmt.Errorf("%w: every partition must be on broker %d alone", kerr.InvalidReplicaAssignment, c.s.cfg.NodeID)
		}
	}
	if !r.ValidateOnly {
		return c.s.b.CreatePartitions(c.ctx, t.Topic, int(t.Count))
	}
	info, err := c.s.b.Topic(t.Topic)
	if err != nil {
		return err
	}
	if int(t.Count) <= info.Partitions || t.Count > broker.MaxPartitions {
		return fmt.Errorf("%w: topic %s has %d partitions; the new count %d must be larger", broker.ErrInvalidPartitions, t.Topic, info.Partitions, t.Count)
	}
	return nil
}
