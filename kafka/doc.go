// Package kafka is Herald's Kafka wire-protocol listener: existing Kafka
// clients (franz-go, sarama, librdkafka, kafkajs, kafka-go) produce,
// consume, join groups and administer topics unchanged. It translates
// requests to the broker and groups packages and holds no data itself.
//
// # Files
//
//	server.go      Config, Server, Serve, Close
//	conn.go        framing, request header parsing, dispatch, ordered replies
//	apis.go        the table of supported API keys and versions
//	NN_name.go     one handler per API key, named for its key
//	errors.go      broker and groups errors to Kafka error codes, in one place
//	configs.go     config types and the broker resource's static entries
//	metrics.go     Prometheus metrics
//
// # Connections
//
// Each connection has one reading goroutine that handles requests one at a
// time, in order, as Kafka brokers do, and one writing goroutine that
// sends the responses in request order. Produce with acks=all appends
// every partition first and waits for durability in a deferred reply, so
// fsyncs overlap and the next request is read meanwhile; a Fetch long
// poll waits on broker.Watch. Neither blocks other connections.
//
// A frame whose size is negative or over MaxRequestBytes, or whose header
// or body does not parse, is logged and closes the connection. An unknown
// API key, or a version kmsg cannot encode, is answered with the
// correlation id and UNSUPPORTED_VERSION; a known key at a version outside
// the advertised range gets its response with the top-level error code
// set where the response has one. ApiVersions outside its range is
// answered in v0 with the supported ranges. A handler panic is recovered,
// logged and closes the connection.
//
// Fetch sessions are not kept (clients fall back to sessionless fetches);
// there are no transactions, so transactional ids are refused.
package kafka
