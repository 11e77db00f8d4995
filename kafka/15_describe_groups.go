package kafka

import "github.com/twmb/franz-go/pkg/kmsg"

func (c *conn) describeGroups(req *request, r *kmsg.DescribeGroupsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, g := range r.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = g
		rg.AuthorizedOperations = -2147483648 // not computed
		if c.s.g == nil {
			rg.ErrorCode = errNoCoordinator.Code
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		d := c.s.g.Describe(g)
		rg.ErrorCode = errCode(d.Err)
		rg.State, rg.ProtocolType, rg.Protocol = d.State, d.ProtocolType, d.Protocol
		if rg.State == "" {
			rg.State = "Dead"
		}
		for _, m := range d.Members {
			rm := kmsg.NewDescribeGroupsResponseGroupMember()
			rm.MemberID, rm.InstanceID, rm.ClientID, rm.ClientHost = m.MemberID, strp(m.InstanceID), m.ClientID, m.ClientHost
			rm.ProtocolMetadata, rm.MemberAssignment = m.Metadata, m.Assignment
			rg.Members = append(rg.Members, rm)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
