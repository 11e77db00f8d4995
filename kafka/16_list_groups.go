package kafka

import "github.com/twmb/franz-go/pkg/kmsg"

func (c *conn) listGroups(req *request, r *kmsg.ListGroupsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
	if c.s.g == nil {
		resp.ErrorCode = errNoCoordinator.Code
		return resp, nil
	}
	for _, g := range c.s.g.List(r.StatesFilter) {
		rg := kmsg.NewListGroupsResponseGroup()
		rg.Group, rg.ProtocolType, rg.GroupState = g.Group, g.ProtocolType, g.State
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
