package kafka

import "github.com/twmb/franz-go/pkg/kmsg"

// api is one supported API key: the versions advertised and the handler.
type api struct {
	min, max int16
	handle   func(c *conn, req *request) (kmsg.Response, error)
}

// apis is the table of supported keys, one file per key (NN_name.go).
// ApiVersions advertises exactly these ranges. Minimums are as low as the
// handlers allow: librdkafka enables a feature only when its range
// overlaps the broker's. Produce starts at v3 and Fetch at v4, the first
// versions that carry v2 record batches, the only format Herald stores.
var apis map[int16]api

func init() {
	apis = map[int16]api{
		0:  {3, 11, typed((*conn).produce)},
		1:  {4, 16, typed((*conn).fetch)},
		2:  {0, 6, typed((*conn).listOffsets)},
		3:  {0, 12, typed((*conn).metadata)},
		8:  {0, 8, typed((*conn).offsetCommit)},
		9:  {0, 8, typed((*conn).offsetFetch)},
		10: {0, 4, typed((*conn).findCoordinator)},
		11: {0, 9, typed((*conn).joinGroup)},
		12: {0, 4, typed((*conn).heartbeat)},
		13: {0, 5, typed((*conn).leaveGroup)},
		14: {0, 5, typed((*conn).syncGroup)},
		15: {0, 5, typed((*conn).describeGroups)},
		16: {0, 4, typed((*conn).listGroups)},
		17: {0, 1, typed((*conn).saslHandshake)},
		18: {0, 3, typed((*conn).apiVersions)},
		19: {0, 7, typed((*conn).createTopics)},
		20: {0, 6, typed((*conn).deleteTopics)},
		22: {0, 4, typed((*conn).initProducerID)},
		24: {0, 3, typed((*conn).addPartitionsToTxn)},
		25: {0, 3, typed((*conn).addOffsetsToTxn)},
		26: {0, 3, typed((*conn).endTxn)},
		28: {0, 3, typed((*conn).txnOffsetCommit)},
		36: {0, 2, typed((*conn).saslAuthenticate)},
		32: {0, 4, typed((*conn).describeConfigs)},
		37: {0, 3, typed((*conn).createPartitions)},
		42: {0, 2, typed((*conn).deleteGroups)},
		44: {0, 1, typed((*conn).incrementalAlterConfigs)},
		47: {0, 0, typed((*conn).offsetDelete)},
		60: {0, 1, typed((*conn).describeCluster)},
		65: {0, 0, typed((*conn).describeTransactions)},
		66: {0, 1, typed((*conn).listTransactions)},
	}
}

// typed adapts a handler of one request type to the table.
func typed[R kmsg.Request](f func(c *conn, req *request, r R) (kmsg.Response, error)) func(*conn, *request) (kmsg.Response, error) {
	return func(c *conn, req *request) (kmsg.Response, error) { return f(c, req, req.msg.(R)) }
}
