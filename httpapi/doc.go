// Package httpapi is Herald's HTTP JSON API v1, a protocol adapter over the
// broker and the group coordinator like the kafka package: topics, publish
// and read of CloudEvents (and plain records), consumer groups. Other
// services (subscriptions, ...) mount their routes on the same mux with
// API.Handle and share its request ids, logs, metrics and error shape.
// docs/http-api.md is the user's guide; openapi.json the contract.
//
// # Files
//
//	api.go          Config, New, API: routing, 404/405, request id, logging, metrics
//	topics.go       /v1/topics: list (paged), create, describe, alter, delete
//	events.go       POST /v1/topics/{topic}/events: publish (modes, partitioning, batching)
//	read.go         GET /v1/topics/{topic}/events: read one or every partition, committed only
//	cloudevents.go  the CloudEvents HTTP binding: binary, structured and batched modes
//	dedup.go        the publish deduplication window and its rebuild after restart
//	deadletters.go  /v1/topics/{topic}/deadletters: dead letters with their metadata
//	dlqsummary.go   /v1/topics/{topic}/deadletters:summary: herald dlq list over HTTP
//	redrive.go      /v1/topics/{topic}/deadletters:redrive: herald dlq redrive over HTTP
//	groups.go       /v1/groups: list (paged), describe with lag, delete, offset reset
//	openapi.go      the embedded openapi.json and the check that it matches the routes
//	metrics.go      Prometheus metrics
//	openapitest/    tests: responses checked against the OpenAPI document
//
// # Errors
//
// Every error, unknown routes and wrong methods included, is
// internal/httpjson's {"error":{"code","message","field"}} with its status.
// field names the JSON field, query parameter, header or CloudEvents
// attribute at fault ("source", "[2].time" in a batch, "limit").
//
// # Storage
//
// Events are stored with the CloudEvents Kafka binding in binary mode
// (package event), so Kafka consumers see standard CloudEvents. Reads
// return records in either binding mode as CloudEvents and anything else
// in a raw form. Each HTTP-published record also carries its deduplication
// key in the header herald-dedup-key (frozen: see dedup.go).
//
// # Concurrency
//
// Handlers run concurrently. The dedup index has one mutex per topic,
// taken after (never with) the index's own; a publish reserves its keys
// under the topic's mutex, produces without it, and resolves the keys
// after, so concurrent publishes of different events overlap and a
// concurrent repeat waits for the original's outcome.
package httpapi
