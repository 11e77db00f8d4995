package kafka

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// endTxn commits or aborts the producer's transaction. It answers once the
// markers are written (see package txn), so a read_committed consumer sees
// a commit as soon as the producer does.
func (c *conn) endTxn(req *request, r *kmsg.EndTxnRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.EndTxnResponse)
	if c.s.t == nil {
		resp.ErrorCode = errNoTxns.Code
		return resp, nil
	}
	// NB: deferred, so the connection's next request is read meanwhile,
	// as for acks=all produce; the reply still goes out in order.
	req.later = func() kmsg.Response {
		resp.ErrorCode = txnCode(c.s.t.EndTxn(c.ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Commit), r.Version, 2)
		return resp
	}
	return nil, nil
}
