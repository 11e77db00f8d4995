package kafka

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// describeTransactions describes transactional ids: state, producer id and
// epoch, timeout, start time and partitions. An unknown id gets
// TRANSACTIONAL_ID_NOT_FOUND.
func (c *conn) describeTransactions(req *request, r *kmsg.DescribeTransactionsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range r.TransactionalIDs {
		rs := kmsg.NewDescribeTransactionsResponseTransactionState()
		rs.TransactionalID, rs.ProducerID, rs.ProducerEpoch, rs.StartTimestamp = id, -1, -1, -1
		if c.s.t == nil {
			rs.ErrorCode = errNoTxns.Code
			resp.TransactionStates = append(resp.TransactionStates, rs)
			continue
		}
		t, err := c.s.t.Describe(id)
		rs.ErrorCode = errCode(err)
		if err == nil {
			rs.State, rs.ProducerID, rs.ProducerEpoch = t.State.String(), t.ProducerID, t.Epoch
			rs.TimeoutMillis = int32(t.Timeout.Milliseconds())
			if !t.Start.IsZero() {
				rs.StartTimestamp = t.Start.UnixMilli()
			}
			for _, tp := range t.Partitions {
				if n := len(rs.Topics); n == 0 || rs.Topics[n-1].Topic != tp.Topic {
					rt := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
					rt.Topic = tp.Topic
					rs.Topics = append(rs.Topics, rt)
				}
				rt := &rs.Topics[len(rs.Topics)-1]
				rt.Partitions = append(rt.Partitions, tp.Partition)
			}
		}
		resp.TransactionStates = append(resp.TransactionStates, rs)
	}
	return resp, nil
}
