package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// findCoordinator names this node for every group key (key type 0) and,
// when the server has a transaction coordinator, every transactional id
// (key type 1). Without one, transaction keys are refused with
// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
func (c *conn) findCoordinator(req *request, r *kmsg.FindCoordinatorRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.FindCoordinatorResponse)
	host, port := c.advertised()
	var code int16
	var msg *string
	switch {
	case r.CoordinatorType == 1 && c.s.t != nil:
	case r.CoordinatorType != 0:
		code = kerr.TransactionalIDAuthorizationFailed.Code
		s := "herald does not support transactions"
		msg = &s
	case r.CoordinatorType == 0 && c.s.g == nil:
		code = errNoCoordinator.Code
	}
	if r.Version < 4 {
		resp.ErrorCode, resp.ErrorMessage = code, msg
		if code == 0 {
			resp.NodeID, resp.Host, resp.Port = c.s.cfg.NodeID, host, port
		} else {
			resp.NodeID, resp.Port = -1, -1
		}
		return resp, nil
	}
	for _, k := range r.CoordinatorKeys {
		rc := kmsg.NewFindCoordinatorResponseCoordinator()
		rc.Key, rc.ErrorCode, rc.ErrorMessage = k, code, msg
		if code == 0 {
			rc.NodeID, rc.Host, rc.Port = c.s.cfg.NodeID, host, port
		} else {
			rc.NodeID, rc.Port = -1, -1
		}
		resp.Coordinators = append(resp.Coordinators, rc)
	}
	return resp, nil
}
