package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/groups"
)

// joinGroup blocks until the group's rebalance completes (or the
// connection ends), as Kafka's JoinGroup does.
func (c *conn) joinGroup(req *request, r *kmsg.JoinGroupRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
	if c.s.g == nil {
		resp.ErrorCode, resp.Generation = errNoCoordinator.Code, -1
		return resp, nil
	}
	jr := groups.JoinRequest{
		Group:                r.Group,
		MemberID:             r.MemberID,
		InstanceID:           str(r.InstanceID),
		ProtocolType:         r.ProtocolType,
		SessionTimeout:       time.Duration(r.SessionTimeoutMillis) * time.Millisecond,
		RebalanceTimeout:     time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond,
		ClientID:             req.clientID,
		ClientHost:           c.host,
		RequireKnownMemberID: r.Version >= 4,
		Reason:               str(r.Reason),
	}
	if r.Version < 1 {
		jr.RebalanceTimeout = jr.SessionTimeout
	}
	for _, p := range r.Protocols {
		jr.Protocols = append(jr.Protocols, groups.Protocol{Name: p.Name, Metadata: p.Metadata})
	}
	res := c.s.g.Join(c.ctx, jr)
	resp.ErrorCode = errCode(res.Err)
	resp.Generation, resp.LeaderID, resp.MemberID = res.Generation, res.Leader, res.MemberID
	if res.Err != nil && res.Generation == 0 {
		resp.Generation = -1
	}
	if res.ProtocolType != "" {
		resp.ProtocolType = &res.ProtocolType
	}
	if res.Protocol != "" || res.Err == nil {
		resp.Protocol = &res.Protocol
	}
	for _, m := range res.Members {
		rm := kmsg.NewJoinGroupResponseMember()
		rm.MemberID, rm.InstanceID, rm.ProtocolMetadata = m.MemberID, strp(m.InstanceID), m.Metadata
		resp.Members = append(resp.Members, rm)
	}
	return resp, nil
}
