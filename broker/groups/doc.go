// Package groups is Herald's consumer-group coordinator (Kafka's classic
// group protocol): membership (join, sync, heartbeat, leave), rebalances
// with session and rebalance timeouts, static membership, the leader's
// assignment relayed to members, and committed offsets, stored durably in a
// Store (the broker backs it with an internal compacted topic) and restored
// on start. It has no protocol code: the Kafka adapter translates requests
// to these calls.
//
// # Behaviour
//
// The state machine follows Apache Kafka's GroupCoordinator (the classic
// protocol): states Empty, PreparingRebalance, CompletingRebalance, Stable
// and Dead; Kafka's rules for who may join, when a rebalance completes, how
// the leader and the protocol are chosen, which errors each request gets,
// pending (member-id-required) members, pending syncs, static membership
// with fencing, and offset commit validation. Where Herald differs it says
// so at the line (for example, a Join whose ctx ends is withdrawn).
//
// # Files
//
//	groups.go       the API types and errors (the Kafka adapter codes against them)
//	config.go       Config defaults and validation
//	coordinator.go  Coordinator: the actor goroutine, the flusher, the public calls
//	state.go        the deterministic core: groups, members, the state machine
//	offsets.go      the core's offset commit, fetch, delete and reset
//	record.go       the stored record encoding (frozen, below)
//	metrics.go      Prometheus metrics, lag computed at scrape time
//	memstore.go     MemoryStore, a non-durable Store for tests and tools
//	txn.go          transactional offset commits: pending until the transaction completes
//
// # Concurrency
//
// One actor goroutine owns every group (state is touched only there), so
// there are no locks around group state. Calls send a closure to the actor;
// Join and Sync then wait for their answer, their ctx, or Close. Writes to
// the Store go through one flusher goroutine: the actor validates an
// operation, queues its records, and applies the operation to memory only
// after Store.Append returned, in queue order, so memory and the store agree
// on the order of every key. Several queued operations share one Append
// (group commit). The core never calls the Store, Config.TopicExists or
// Config.HighWatermark: callers evaluate those outside the actor.
//
// Time comes from Config.Now. The actor checks deadlines (sessions,
// rebalance and sync timeouts, pending members) every tickInterval; tests
// script the clock and call the unexported tick hook.
//
// # Record format (frozen: version 1)
//
// Every record is a key and a value; all integers big-endian. Keys:
//
//	offset key: version u16 = 1 | kind u8 = 1 | group len u16 | group |
//	            topic len u16 | topic | partition i32
//	group key:  version u16 = 1 | kind u8 = 2 | group len u16 | group
//
// txn.go adds a third key kind (3) for offsets pending in a transaction.
//
// Values (a nil value is a tombstone: the key is deleted):
//
//	offset value: version u16 = 1 | offset i64 | leader epoch i32 |
//	              commit time i64 (Unix ms) | metadata len u32 | metadata
//	group value:  version u16 = 1 | generation i32 | protocol type s |
//	              protocol s | leader s | state time i64 (Unix ms) |
//	              member count u32 | members
//	member:       member id s | instance id s | client id s | client host s |
//	              session timeout ms u32 | rebalance timeout ms u32 |
//	              protocol count u32 | count x (name s | metadata b) |
//	              assignment b
//	s, b:         len u32 | bytes
//
// The records travel inside Kafka record batches, whose CRC covers them, so
// they carry no checksum of their own. Replay applies records oldest first,
// the newest value of a key winning, which is exactly what log compaction
// preserves. A record that does not decode (unknown version, truncated,
// trailing bytes) is logged, counted in herald_group_replay_skipped_total
// and skipped. Deleting a group writes a tombstone for each of its offsets
// and for its group record. Any change to these layouts is a new version;
// the decoder then reads versions N and N-1 and the encoder writes N.
package groups
