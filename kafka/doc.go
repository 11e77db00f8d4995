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
//	errors.go      broker, groups and txn errors to Kafka error codes, in one place
//	txn.go         the version-dependent fencing error of the transaction APIs
//	configs.go     config types and the broker resource's static entries
//	metrics.go     Prometheus metrics
//	tracing.go     OpenTelemetry server spans of Produce (Config.TracerProvider)
//	sendfile*.go   fetch responses sent from segment files (sendfile)
//
// # Connections
//
// Each connection has one reading goroutine that handles requests one at a
// time, in order, as Kafka brokers do, and one writing goroutine that
// sends the responses in request order. A response that is ready when
// nothing is queued before it is written by the reading goroutine itself
// (no hand-off). Produce with acks=all appends every partition first and,
// unless the appends are durable already, waits for durability in a
// deferred reply, so fsyncs overlap and the next request is read
// meanwhile; a Fetch long poll waits on broker.Watch, with one select over
// its partitions. Neither blocks other connections.
//
// # Fetch responses from files
//
// A partition read of 16 KiB or more from a topic on disk is not copied:
// broker.FetchSpan returns where its batches are in a segment file (held
// open until sent), the response is encoded by kmsg with a marker in
// place of those records, and the writer sends the bytes around the
// markers with write and the records with sendfile(2) (sendfile.go). The
// bytes are those the copying path sends (the tests compare them); the
// batches' CRCs are checked by the consumer, not by the server, as in
// Kafka. Memory topics, small reads and Config.CopyFetches use the copy.
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
// Fetch sessions are not kept (clients fall back to sessionless fetches).
//
// # Transactions
//
// With Config.Txns, transactions work as in Kafka (KIP-98, KIP-447):
// FindCoordinator key type 1, InitProducerId with a transactional id,
// AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit,
// DescribeTransactions and ListTransactions, and read_committed Fetch and
// ListOffsets (the last stable offset). EndTxn and a transactional
// InitProducerId answer in a deferred reply, as they may write markers.
// Not supported: the KIP-890 versions (AddPartitionsToTxn v4+, EndTxn v4+,
// InitProducerId v5+, TxnOffsetCommit v4+), DescribeProducers,
// AbortTransaction and WriteTxnMarkers over the wire (markers are written
// in-process). Without Config.Txns transactional ids are refused.
package kafka
