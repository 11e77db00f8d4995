package kafka

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/groups"
)

// leaveGroup handles the single-member form (v0-v2) and the batch (v3+).
func (c *conn) leaveGroup(req *request, r *kmsg.LeaveGroupRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
	if c.s.g == nil {
		resp.ErrorCode = errNoCoordinator.Code
		return resp, nil
	}
	var members []groups.LeaveMember
	if r.Version < 3 {
		members = []groups.LeaveMember{{MemberID: r.MemberID}}
	} else {
		for _, m := range r.Members {
			members = append(members, groups.LeaveMember{MemberID: m.MemberID, InstanceID: str(m.InstanceID), Reason: str(m.Reason)})
		}
	}
	errs, err := c.s.g.Leave(c.ctx, r.Group, members)
	resp.ErrorCode = errCode(err)
	if r.Version < 3 {
		if err == nil && len(errs) > 0 {
			resp.ErrorCode = errCode(errs[0])
		}
		return resp, nil
	}
	for i, m := range r.Members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = m.MemberID, m.InstanceID
		if err == nil && i < len(errs) {
			rm.ErrorCode = errCode(errs[i])
		}
		resp.Members = append(resp.Members, rm)
	}
	return resp, nil
}
