// Package registry is Herald's schema registry. It serves the Confluent
// Schema Registry REST API (Registry.Handler) from memory and stores its
// state in a compacted topic reached through eventlog.Log (store.go draws
// the record formats). It also gives the broker a validator that checks
// produced records against their schemas (Registry.Validator, Hook).
//
// Files:
//
//	registry.go   state, loading, Register, Lookup, deletes, config, mode
//	store.go      the _schemas record formats (frozen, magic 1)
//	http.go       the REST API (Handler), routed by a ServeMux
//	fastpath.go   lookups answered from responses rendered at apply
//	request.go    the strict HTTP/1.1 request parser of the fast path
//	server.go     Server: a keep-alive loop for lookups, net/http for the rest
//	validate.go   validation on produce (wire format, CloudEvents dataschema)
//	errors.go     the Confluent error codes
//	metrics.go    Prometheus metrics
//
// Lock order: wmu (one write at a time: check, append, apply) before mu
// (the in-memory state). Readers take mu only. Server's own mu (listeners,
// connections) is never held with either.
//
// Invariants: a change is in memory only once its record is durable in
// the topic. A rendered response is never modified: apply renders a new
// one with every schema or version it stores, so a reader holding the old
// one still sends a consistent answer. A schema id is written once and never reassigned or reused.
// A subject's versions only grow until the subject is deleted for good. The
// registry is its topic's only writer; it reads records other clients
// wrote only when it loads, and skips those it cannot decode or apply.
package registry
