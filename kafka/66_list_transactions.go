package kafka

import (
	"regexp"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/txn"
)

// listTransactions lists transactional ids, filtered by state names,
// producer ids, (v1+) a minimum running time and (v2+) an id pattern.
// Unknown state names are echoed back, as Kafka does.
func (c *conn) listTransactions(req *request, r *kmsg.ListTransactionsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.ListTransactionsResponse)
	if c.s.t == nil {
		resp.ErrorCode = errNoTxns.Code
		return resp, nil
	}
	var states []txn.State
	for _, name := range r.StateFilters {
		if s, ok := txn.ParseState(name); ok {
			states = append(states, s)
		} else {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, name)
		}
	}
	if len(r.StateFilters) > 0 && len(states) == 0 {
		return resp, nil
	}
	var re *regexp.Regexp
	if r.Version >= 2 && r.TransactionalIDPattern != nil && *r.TransactionalIDPattern != "" {
		var err error
		if re, err = regexp.Compile(*r.TransactionalIDPattern); err != nil {
			resp.ErrorCode = kerr.InvalidRegularExpression.Code
			return resp, nil
		}
	}
	var minDur time.Duration
	if r.Version >= 1 && r.DurationFilterMillis > 0 {
		minDur = time.Duration(r.DurationFilterMillis) * time.Millisecond
	}
	for _, t := range c.s.t.List(states, r.ProducerIDFilters, minDur) {
		if re != nil && !re.MatchString(t.ID) {
			continue
		}
		rs := kmsg.NewListTransactionsResponseTransactionState()
		rs.TransactionalID, rs.ProducerID, rs.TransactionState = t.ID, t.ProducerID, t.State.String()
		resp.TransactionStates = append(resp.TransactionStates, rs)
	}
	return resp, nil
}
