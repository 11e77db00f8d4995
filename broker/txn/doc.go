// Package txn is Herald's transaction coordinator (Kafka's, KIP-98): per
// transactional id, the producer id and epoch and the state of its current
// transaction, kept durably in a Store (the broker backs it with the
// internal compacted topic __transaction_state) and restored on start.
// It has no protocol code: the Kafka adapter translates InitProducerId,
// AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, DescribeTransactions and
// ListTransactions to these calls.
//
// # Behaviour
//
// As Apache Kafka's TransactionCoordinator: states Empty, Ongoing,
// PrepareCommit, PrepareAbort, CompleteCommit and CompleteAbort. The first
// InitProducerId of an id allocates a producer id (epoch 0); each later one
// bumps the epoch, which fences the older producer (PRODUCER_FENCED on the
// coordinator's APIs, INVALID_PRODUCER_EPOCH on produce); an init while a
// transaction is ongoing aborts it first (with a bumped epoch). EndTxn
// makes the decision durable (Prepare*), writes a commit or abort marker
// to every partition of the transaction and completes the offsets of its
// groups, then stores Complete*. A transaction running longer than its
// timeout (transaction.timeout.ms, at most Config.MaxTimeout) is aborted
// with the epoch bumped. A coordinator that starts with prepared
// transactions completes them; ongoing ones carry on (or time out).
//
// Herald differs from Kafka in one visible way: EndTxn answers once the
// transaction is complete (markers written), not once the decision is
// durable, so a read_committed consumer sees a commit when EndTxn returns.
//
// # Files
//
//	txn.go          API types, errors, Config
//	core.go         the deterministic state machine (no I/O; the time is an argument)
//	coordinator.go  Coordinator: the lock around the core, store writes, completion, timeouts
//	record.go       the stored record encoding (frozen, below)
//
// # Concurrency
//
// One mutex guards the core; the Coordinator never holds it during I/O. A
// transition is proposed under the lock (the id is then busy: other
// requests get ErrConcurrentTransactions, or wait when a completion is
// under way), written to the Store without it, and applied under it once
// durable. The broker calls VerifyProduce under a partition's produce
// mutex: lock order partition, then coordinator. Markers are written by
// Config.Markers with no coordinator lock held, so a produce verified under
// the partition's mutex is always appended before the marker that ends
// its transaction.
//
// # Record format (frozen: version 1)
//
// One record per transactional id; the newest wins (compaction keeps it).
// All integers big-endian.
//
//	key:   version u16 = 1 | transactional id len u16 | id
//	value: version u16 = 1 | producer id i64 | epoch i16 | timeout ms u32 |
//	       state u8 | start ms i64 (-1: none) | updated ms i64 (-1: none) |
//	       partition count u32 | count x (topic len u16 | topic | partition i32) |
//	       group count u32 | count x (group len u16 | group)
//
// States are numbered Empty 0, Ongoing 1, PrepareCommit 2, PrepareAbort 3,
// CompleteCommit 4, CompleteAbort 5. Partitions and groups are sorted and
// distinct. A nil value is a tombstone. The records travel in Kafka record
// batches, whose CRC covers them. A record that does not decode is logged
// and skipped on replay. A new layout is a new version; the decoder then
// reads N and N-1 and the encoder writes N.
package txn
