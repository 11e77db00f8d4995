package kafka

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// addOffsetsToTxn adds a consumer group to the producer's transaction, so
// that its TxnOffsetCommit offsets commit or abort with it.
func (c *conn) addOffsetsToTxn(req *request, r *kmsg.AddOffsetsToTxnRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	switch {
	case c.s.t == nil:
		resp.ErrorCode = errNoTxns.Code
	case c.s.g == nil:
		resp.ErrorCode = errNoCoordinator.Code
	default:
		resp.ErrorCode = txnCode(c.s.t.AddGroup(c.ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Group), r.Version, 2)
	}
	return resp, nil
}
