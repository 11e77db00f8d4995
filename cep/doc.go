// Package cep detects patterns of events (complex event processing): a
// pattern is a sequence of steps, each a condition on an event (an
// EventBridge pattern from rules/pattern, plus comparisons with events that
// earlier steps matched), with quantifiers, contiguity, negations, a time
// bound and an after-match skip strategy, partitioned by a key. A match
// emits a new event (Match.Event) whose data lists every matched event.
//
// # Semantics
//
// An assignment of a partition's events e1 < e2 < ... (arrival order) to the
// pattern's positive steps is a match when:
//   - each step takes between Min and Max events (Min 0: optional; Max -1:
//     unbounded; the first step is never optional), each satisfying its
//     condition evaluated against the events matched before it;
//   - each event relates to the previous matched event p by its step's
//     contiguity: Strict, it comes right after p; Relaxed, no event between
//     p and it satisfies the step's condition (the first matching event is
//     taken); Any, any later event;
//   - a NotNext step between two positive steps: the event right after the
//     earlier step's last event does not match it; a NotFollowedBy step: no
//     event strictly between the two steps' events matches it; a trailing
//     NotFollowedBy (which requires Within) holds when no event matching it
//     comes within Within of the first matched event, and the match is
//     emitted once that time has passed (or at Flush);
//   - a Greedy looping step never skips an event it could take (unless its
//     contiguity is Any) and never lets a later step take such an event;
//   - the last event is at most Within after the first.
//
// Matches are emitted as they complete, in order of their first event and
// then their events; the skip strategy then discards partial matches:
// SkipPastLastEvent those that started at or before the match's last event,
// SkipToNext those that started with the match's first event, NoSkip none.
// Partial matches that Within ends are reported with EmitTimeouts. These are
// the semantics of Flink CEP's followedBy/next/followedByAny, and
// TestRandomAgainstReference holds the engine equal to a brute-force
// enumeration of exactly this definition.
//
// # Engine
//
// Engine keeps, per partition, its partial matches (runs): the step being
// filled, its count, the start, a bitmask of steps that contiguity or a
// negation has ruled out since the run's last event, and the run's last
// matched event as a node of a shared backward-linked list (48 bytes: runs
// that branched share their prefix). All step conditions are compiled into
// one rules/pattern Machine, evaluated once per event. With TrackChanges
// the Engine remembers which partitions changed, for incremental
// checkpoints (MarshalChanges, RestoreChanges). Engine does no I/O and
// is not safe for concurrent use; events of a partition must arrive in
// event-time order.
package cep
