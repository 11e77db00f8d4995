// Package schema holds Herald's schema types: Avro (hamba/avro), JSON
// Schema (santhosh-tekuri/jsonschema) and Protobuf (bufbuild/protocompile),
// with references between schemas. It parses them and gives their
// canonical forms. It applies each type's compatibility rules under the
// Confluent levels. It reads and writes the Confluent wire format, and
// checks payloads against a schema. It infers JSON Schemas from sample
// documents. It does no I/O; package schema/registry stores and serves
// schemas.
//
// Files:
//
//	schema.go        Type, Reference, Dep, Parse, Fingerprint, canonical JSON
//	compat.go        Level, Check (levels, transitivity), CanRead (by type)
//	avro.go          Avro parsing and reader/writer resolution rules
//	avrobinary.go    Avro binary validation, compiled from the schema
//	jsonschema.go    JSON Schema parsing, validation, content-model rules
//	protobuf.go      .proto parsing, message indexes, wire validation, rules
//	wire.go          the Confluent wire format (frozen: Confluent's)
//	infer.go         JSON Schema inference (schema discovery)
//
// Compatibility checks are bounded (TOO_COMPLEX beyond a budget of
// steps): registering a schema is user input and must not wedge the
// server.
package schema
