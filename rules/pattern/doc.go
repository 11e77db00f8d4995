// Package pattern implements the EventBridge event pattern language and a
// matcher that evaluates many patterns at once.
//
// A pattern is a JSON object shaped like the events it matches: every leaf
// is an array of alternatives (OR), sibling fields are ANDed, and "$or"
// joins whole sub-patterns. The alternatives are exact values (strings,
// numbers compared numerically, true, false, null), and the operators
// prefix, suffix (both also with equals-ignore-case), equals-ignore-case,
// wildcard, anything-but (a value, a list of strings or numbers, or a
// prefix / suffix / equals-ignore-case / wildcard), numeric ranges, cidr
// and exists. Compile validates a pattern and names the JSON path of
// anything it refuses.
//
// Patterns are matched against a CloudEvent as JSON: its attributes
// (source, type, subject, id, time, extensions) are top-level string
// fields and data is the "data" field. "detail-type" and "detail" are
// aliases of "type" and "data", in patterns and in events, so patterns
// written for EventBridge work unchanged.
//
// Semantics worth knowing:
//   - an event array matches a leaf when any of its elements does;
//   - fields taken from different elements of one array of objects never
//     combine into a match (array consistency);
//   - exists and every other operator see leaf values only: a field whose
//     value is an object, or an empty array, does not exist for exists and
//     matches nothing else;
//   - null is a value: [null] matches an explicit null, never a missing
//     field, and "" never matches null;
//   - anything-but X matches a present value that X does not match, of any
//     type; on a missing field it does not match;
//   - numeric and cidr see only numbers and strings respectively; prefix,
//     suffix, equals-ignore-case and wildcard see only strings.
//
// Two matchers share those semantics: Pattern.Match, a plain evaluator over
// a decoded event (the reference, also able to explain a miss), and
// Machine, an automaton shared by all rules whose cost depends on the
// event rather than the number of rules (the approach of aws/event-ruler
// and quamina). A property test holds them equal.
//
// # Machine
//
// Every pattern is expanded into conjunctions (one per $or combination,
// at most 1,000), each a list of conditions on one field path, ordered
// most selective first (exact values, then string operators, numeric and
// cidr, anything-but, exists, and exists:false last). The conjunctions form
// a trie of states: a state has, per field path, a transition whose value
// matchers (a hash map of exact strings, one of numbers, byte tries for
// prefix and reversed suffix, lower-cased maps and tries for
// equals-ignore-case, wildcard patterns indexed by their literal prefix,
// numeric ranges, cidr blocks, anything-but sets) lead to the next states.
// Identical conditions at one state share their next state, so ten
// thousand rules that start with the same source share its transition.
//
// An event is flattened once into (path, value) fields by a small JSON
// scanner that allocates nothing and skips every value no pattern refers
// to; the fields are sorted by path and the trie is walked from the start
// state, checking array consistency as conditions are taken.
//
// Concurrency: the automaton is kept twice (left-right). Matching reads
// the copy an atomic index names and takes no lock; Add and Remove (one at
// a time) edit the other copy, swap the index, wait for matches still on
// the old copy to finish their event, and edit it too. Matching therefore
// never waits for an edit, and sees every edit whole (a replaced rule is
// never missing). Remove leaves dead states behind and a copy rebuilds
// itself when they outnumber the live ones. Exact strings of all
// transitions share one map per copy, and other operators sit in a
// per-transition ops struct allocated on need, which keeps a simple rule
// near 600 bytes per copy.
package pattern
