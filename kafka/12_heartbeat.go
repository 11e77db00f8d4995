package kafka

import "github.com/twmb/franz-go/pkg/kmsg"

func (c *conn) heartbeat(req *request, r *kmsg.HeartbeatRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
	if c.s.g == nil {
		resp.ErrorCode = errNoCoordinator.Code
		return resp, nil
	}
	resp.ErrorCode = errCode(c.s.g.Heartbeat(c.ctx, r.Group, r.MemberID, str(r.InstanceID), r.Generation))
	return resp, nil
}
