// Package stream computes windowed aggregations over CloudEvents: the
// deterministic core (Processor) and exactly-once jobs over a Kafka-protocol
// cluster (Job).
//
// # Model
//
// A Config names a key (any field path: "data.user", "source", an
// extension), a window (tumbling, hopping with size and advance, sliding
// with a time difference, session with an inactivity gap; sessions merge
// when an event bridges them), aggregates (count, sum, avg, min, max,
// count_distinct by HyperLogLog with 4096 registers, top_k by
// space-saving), where event time comes from (the CloudEvent time, a data
// field holding RFC 3339 or epoch milliseconds, or processing time), the
// bounded out-of-orderness, an idle timeout, the grace period (required:
// there is no default) and when results are emitted (EmitFinal once at
// close, EmitChanges on every update).
//
// Watermarks are kept per input partition (greatest event time minus the
// out-of-orderness); the job's watermark is the least over partitions that
// are not idle. A window [start, end) closes when the watermark reaches
// end + grace; an event all of whose windows have closed is late and goes to
// Output.Late (a job's late topic). An event without a usable time or key is
// counted and goes to Output.Invalid (a job's error topic): never dropped
// silently.
//
// # State layout
//
// Keys are interned to dense uint32 ids. A window's numeric state is a few
// float64 slots in one slab (slot 0 the count, then one per sum, min, max,
// two per avg), so count and sum take 16 bytes; sketches live in a side
// slice only when configured. Tumbling and hopping windows are found through
// a map keyed by (key id, start) and closed through buckets per end time
// under a min-heap of ends; sessions and sliding windows keep per-key sorted
// lists and a close queue with lazy deletion. Results for one end time are
// emitted in key order, so output is deterministic.
//
// # Exactly-once jobs
//
// Runner runs any Task (a deterministic state machine over events that can
// marshal its state) exactly once; Job is the Processor as a Task, and
// package cep runs its pattern Engine the same way. A Runner consumes its
// input in a consumer group with Kafka transactions: each batch's output
// records (results, late and error records), a snapshot of the whole Task
// state (MarshalState, written in chunks to a compacted state topic, its
// header carrying the input offsets; or, for a KeyedTask such as Job, only
// the keys the batch changed) and the input offsets commit in one
// transaction. A restart fences the previous producer, reads the group's
// committed offsets and then the state topic until the newest snapshot's
// offsets equal them, restores, and goes on; an aborted transaction rolls
// the Task back to the last committed snapshot. The snapshot format is
// drawn in state.go.
//
// # Files
//
//	field.go      field paths into an event; json.go the allocation-free lookup
//	window.go     window kinds and validation
//	agg.go        aggregates, HyperLogLog, space-saving top-k
//	watermark.go  per-partition watermarks and idleness
//	processor.go  the Processor
//	state.go      snapshots (format frozen at version 1), incremental changes
//	keystate.go   one key's windows in incremental checkpoints (frozen at version 1)
//	runner.go     the exactly-once Runner of any Task
//	job.go        the Processor as a Runner's Task
//	jobreg/       the registry of server-side jobs (queries, patterns)
package stream
