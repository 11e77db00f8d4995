package kafka

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
)

// metadata describes this node as the only broker, the controller and the
// leader of every partition, with itself as the only replica. Unknown
// topics are auto-created when both the broker and the request allow it.
func (c *conn) metadata(req *request, r *kmsg.MetadataRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.MetadataResponse)
	host, port := c.advertised()
	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = c.s.cfg.NodeID, host, port
	resp.Brokers = []kmsg.MetadataResponseBroker{b}
	resp.ClusterID = &c.s.cfg.ClusterID
	resp.ControllerID = c.s.cfg.NodeID

	type entry struct {
		info broker.TopicInfo
		err  error
		name *string  // as asked, for errors
		id   [16]byte // as asked, for errors
	}
	var entries []entry
	if r.Topics == nil || r.Version == 0 && len(r.Topics) == 0 {
		for _, t := range c.s.b.Topics() {
			entries = append(entries, entry{info: t})
		}
	}
	allowCreate := c.s.b.AutoCreate() && (r.Version < 4 || r.AllowAutoTopicCreation)
	for _, t := range r.Topics {
		e := entry{name: t.Topic, id: t.TopicID}
		switch {
		case t.Topic == nil && r.Version >= 10:
			if e.info, e.err = c.s.b.TopicByID(t.TopicID); e.err != nil {
				e.err = kerr.UnknownTopicID
			}
		case t.Topic == nil:
			e.err = kerr.InvalidTopicException
		default:
			e.info, e.err = c.s.b.Topic(*t.Topic)
			if errors.Is(e.err, broker.ErrUnknownTopic) {
				if verr := broker.ValidateTopicName(*t.Topic); verr != nil {
					e.err = verr
				} else if allowCreate && c.s.b.EnsureTopic(*t.Topic) {
					e.info, e.err = c.s.b.Topic(*t.Topic)
				}
			}
		}
		entries = append(entries, e)
	}
	for _, e := range entries {
		rt := kmsg.NewMetadataResponseTopic()
		rt.AuthorizedOperations = -2147483648 // not computed
		if e.err != nil {
			rt.ErrorCode = errCode(e.err)
			rt.Topic, rt.TopicID = e.name, e.id
			if rt.Topic == nil && r.Version < 12 {
				rt.Topic = new(string)
			}
			resp.Topics = append(resp.Topics, rt)
			continue
		}
		info := e.info
		name := info.Name
		rt.Topic, rt.TopicID, rt.IsInternal = &name, info.ID, info.Internal
		rt.Partitions = make([]kmsg.MetadataResponseTopicPartition, info.Partitions)
		for p := range rt.Partitions {
			rp := kmsg.NewMetadataResponseTopicPartition()
			rp.Partition, rp.Leader = int32(p), c.s.cfg.NodeID
			// Unknown epoch: clients then skip leader-epoch validation,
			// which needs OffsetForLeaderEpoch.
			rp.LeaderEpoch = -1
			rp.Replicas, rp.ISR = []int32{c.s.cfg.NodeID}, []int32{c.s.cfg.NodeID}
			rt.Partitions[p] = rp
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
