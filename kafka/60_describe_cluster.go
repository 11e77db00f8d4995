package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// describeCluster describes the one-node cluster. Only broker endpoints
// (type 1) exist.
func (c *conn) describeCluster(req *request, r *kmsg.DescribeClusterRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = r.EndpointType
	if r.Version >= 1 && r.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return resp, nil
	}
	host, port := c.advertised()
	resp.ClusterID, resp.ControllerID = c.s.cfg.ClusterID, c.s.cfg.NodeID
	resp.ClusterAuthorizedOperations = -2147483648 // not computed
	b := kmsg.NewDescribeClusterResponseBroker()
	b.NodeID, b.Host, b.Port = c.s.cfg.NodeID, host, port
	resp.Brokers = []kmsg.DescribeClusterResponseBroker{b}
	return resp, nil
}
