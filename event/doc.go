// Package event is Herald's envelope: a CloudEvents 1.0 event plus the Herald
// extensions every service needs to follow a flow of work (kind, partition key,
// correlation and causation ids, W3C trace context, aggregate id and version).
//
// # Kafka encoding (frozen)
//
// Events travel as Kafka records in the CloudEvents Kafka protocol binding,
// binary content mode: the record value is the event data, untouched, and
// every attribute is a record header whose value is the attribute's string
// form (UTF-8):
//
//	header               attribute          notes
//	ce_specversion       specversion        always "1.0"
//	ce_id                ID                 required
//	ce_source            Source             required, a URI-reference
//	ce_type              Type               required
//	ce_time              Time               RFC 3339 (nanoseconds), omitted when zero
//	ce_subject           Subject            omitted when empty
//	content-type         DataContentType    omitted when empty
//	ce_kind              Kind               "event" or "command"; absent decodes as event
//	ce_correlationid     CorrelationID      omitted when empty
//	ce_causationid       CausationID        omitted when empty
//	ce_traceparent       TraceParent        distributed-tracing extension
//	ce_aggregateid       AggregateID        omitted when empty
//	ce_aggregateversion  AggregateVersion   base-10, omitted when 0
//	ce_<name>            Extensions[name]   name: 1-20 of [a-z0-9]
//	(record key)         PartitionKey       the partitionkey extension maps to the key
//
// Headers that do not start with "ce_" (other than content-type) belong to
// the transport and are ignored by Decode. These names are part of Herald's
// wire contract: never rename them.
//
// DecodeAny also reads the binding's structured mode (a content-type header
// of application/cloudevents+json and the event as the value), which other
// CloudEvents producers may use; Herald writes binary mode only.
//
// # JSON event format
//
// ParseJSON and MarshalJSON are the CloudEvents JSON event format (HTTP
// structured and batched modes, and reads over HTTP). Extension attributes
// may be JSON strings, whole numbers or booleans and are kept as their
// string form, as the Kafka binding carries them. NewIDv7 makes the ids
// Herald generates for events that come without one.
package event
