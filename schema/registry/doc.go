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
//	http.go       the REST API
//	validate.go   validation on produce (wire format, CloudEvents dataschema)
//	errors.go     the Confluent error codes
//	metrics.go    Prometheus metrics
//
// Lock order: wmu (one write at a time: check, append, apply) before mu
// (the in-memory state). Readers take mu only.
//
// Invariants: a change is in memory only once its record is durable in
// the topic. A schema id is written once and never reassigned or reused.
// A subject's versions only grow until the subject is deleted for good. The
// registry is its topic's only writer; it reads records other clients
// wrote only when it loads, and skips those it cannot decode or apply.
package registry
