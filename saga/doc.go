// Package saga runs long-lived business transactions over Herald's topics:
// orchestrated sagas (an Engine sends each step's command and compensates
// completed steps in reverse order when one fails) and choreographed flows
// (services react to events with a Reactor; a ProcessView rebuilds a flow
// from its correlation id).
//
// # Files
//
//	definition.go  Definition, Step, validation (unknown topic, missing compensation, cycle)
//	instance.go    Instance state and the state machine (no I/O: tested with scripted inputs)
//	engine.go      Engine: the exactly-once loop, restore on assignment, operator API
//	view.go        the read side: latest committed state of every instance, by id
//	http.go        the /v1/sagas routes
//	choreo.go      Reactor, Emit, ProcessView
//	metrics.go     Prometheus metrics
//
// # Invariants
//
//   - An instance changes only in the engine loop, in a Kafka transaction
//     that also writes the commands the change sends and commits the inbox
//     offsets that caused it: no command without its state, no state without
//     its command, no input applied twice.
//   - The engine owning inbox partition p owns the instances in state
//     partition p (the topics have equal partition counts and are both keyed
//     by saga id); it loads them, to the end, before it reads p's inbox.
//   - Timers are deadlines in the state. They are acted on only once the
//     owning engine has read the inbox up to where it ended when the
//     partition was assigned, so a reply that arrived while no engine ran is
//     not mistaken for a timeout.
//   - A command keeps its id across resends (CommandID): participants
//     deduplicate by it.
//
// # Lock order
//
// Engine.state before nothing else; Engine.defs is taken alone. The kgo
// assignment callbacks take Engine.state; the loop holds it only between
// polls.
package saga
