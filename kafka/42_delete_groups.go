package kafka

import "github.com/twmb/franz-go/pkg/kmsg"

func (c *conn) deleteGroups(req *request, r *kmsg.DeleteGroupsRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, g := range r.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = g
		if c.s.g == nil {
			rg.ErrorCode = errNoCoordinator.Code
		} else {
			rg.ErrorCode = errCode(c.s.g.Delete(c.ctx, g))
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp, nil
}
