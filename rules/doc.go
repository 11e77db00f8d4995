// Package rules is Herald's event bus: buses (a bus is a topic; "default"
// always exists), rules that route a bus's events matching an EventBridge
// pattern (package rules/pattern) or fire on a schedule, and up to five
// targets per rule (a topic, or an HTTP webhook receiving CloudEvents in
// binary mode), each with an input transformer, a retry policy and a
// dead-letter topic.
//
// # Files
//
//	types.go      Rule, Target, Bus and their validation
//	transform.go  input transformers (JSONPath input paths, <var> templates)
//	schedule.go   rate(...) and six-field cron(...) schedules
//	engine.go     Engine: definitions, buses, dispatchers, offset tracking
//	deliver.go    per-target workers: delivery, retry, dead-lettering
//	metrics.go    Prometheus metrics and the counters describe shows
//	http.go       the HTTP API (/v1/buses, /v1/rules)
//	follow.go     following definitions other engines on the log store
//	archive.go    archives and replays (resumed after a restart)
//
// # Durability and delivery
//
// Bus and rule definitions are records of a compacted topic
// (__herald_rules, key "bus/NAME" or "rule/BUS/NAME", a nil value deletes);
// the Engine replays it on Start. An Engine reads a bus as a member of the
// consumer group "herald.rules.BUS": every engine on one log (several
// servers on one Kafka cluster, or several Engines on one eventlog) joins
// it, so each partition, and so each event, is matched and delivered by
// one engine; when an engine leaves or dies its partitions move to the
// others. Each owned partition has its own dispatcher goroutine, so a
// bus's partitions are matched in parallel. A record's offset is
// committed only once every delivery it caused is done: delivered,
// dead-lettered, or dropped because its rule or target was deleted; an
// engine giving partitions up lets their deliveries finish (CloseGrace at
// most) and commits before they move. So delivery is at least once: after
// a crash the uncommitted tail is matched and delivered again. A target
// receiving a bus event unchanged (no input transformer) gets the bus
// record's own bytes.
//
// Every engine reads the definitions at Start and then follows the topic
// (follow.go), so a bus, rule or archive created, changed or deleted
// through one engine is in force on all, and so is a replay's state. A
// replay runs on the engine that owns partition 0 of its bus, and moves
// with that partition (see replayState).
//
// # Isolation
//
// Every (rule, target) has its own worker and queue; a dispatcher only
// appends to queues, and a failing delivery is retried from a per-target
// timer heap without blocking the target's other events. A failing target
// therefore never slows other targets or rules, until the events held in
// memory for a bus reach Config.MaxInFlight: then the bus's dispatcher
// waits (backpressure) rather than grow without bound.
//
// Lock order: Engine.mu, then busState.mu, then targetWorker.mu.
package rules
