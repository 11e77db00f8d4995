package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// initProducerID hands out a producer id. Without a transactional id it is
// a new idempotent id: a producer asking to bump its epoch (v3+) gets a new
// id with epoch 0, which Kafka clients accept as well. With one, the
// transaction coordinator allocates the id on first use and bumps the
// epoch on each later init, fencing older producers and aborting an
// ongoing transaction.
func (c *conn) initProducerID(req *request, r *kmsg.InitProducerIDRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	id := str(r.TransactionalID)
	if id == "" || c.s.t == nil {
		pid, epoch, err := c.s.b.InitProducerID(c.ctx, id)
		resp.ErrorCode = errCode(err)
		if err == nil {
			resp.ProducerID, resp.ProducerEpoch = pid, epoch
		}
		return resp, nil
	}
	pid, epoch := int64(-1), int16(-1)
	if r.Version >= 3 {
		pid, epoch = r.ProducerID, r.ProducerEpoch
	}
	timeout := time.Duration(r.TransactionTimeoutMillis) * time.Millisecond
	// NB: deferred: aborting an ongoing transaction first writes markers.
	req.later = func() kmsg.Response {
		p, e, err := c.s.t.InitProducerID(c.ctx, id, timeout, pid, epoch)
		resp.ErrorCode = txnCode(err, r.Version, 3)
		if err == nil {
			resp.ProducerID, resp.ProducerEpoch = p, e
		}
		return resp
	}
	return nil, nil
}
