package kafka

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// initProducerID hands out a new idempotent producer id. A producer asking
// to bump its epoch (v3+) gets a new id with epoch 0, which Kafka clients
// accept as well.
func (c *conn) initProducerID(req *request, r *kmsg.InitProducerIDRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	id, epoch, err := c.s.b.InitProducerID(c.ctx, str(r.TransactionalID))
	resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = errCode(err), id, epoch
	if err != nil {
		resp.ProducerID, resp.ProducerEpoch = -1, -1
	}
	return resp, nil
}
