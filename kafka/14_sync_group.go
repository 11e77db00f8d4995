package kafka

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/groups"
)

// syncGroup blocks until the leader's assignment arrives.
func (c *conn) syncGroup(req *request, r *kmsg.SyncGroupRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
	if c.s.g == nil {
		resp.ErrorCode = errNoCoordinator.Code
		return resp, nil
	}
	sr := groups.SyncRequest{
		Group:        r.Group,
		MemberID:     r.MemberID,
		InstanceID:   str(r.InstanceID),
		Generation:   r.Generation,
		ProtocolType: str(r.ProtocolType),
		Protocol:     str(r.Protocol),
	}
	if len(r.GroupAssignment) > 0 {
		sr.Assignments = make(map[string][]byte, len(r.GroupAssignment))
		for _, a := range r.GroupAssignment {
			sr.Assignments[a.MemberID] = a.MemberAssignment
		}
	}
	res := c.s.g.Sync(c.ctx, sr)
	resp.ErrorCode = errCode(res.Err)
	resp.ProtocolType, resp.Protocol = strp(res.ProtocolType), strp(res.Protocol)
	resp.MemberAssignment = res.Assignment
	if resp.MemberAssignment == nil {
		resp.MemberAssignment = []byte{}
	}
	return resp, nil
}
