// Package eventlog is the log interface every Herald service above the
// broker uses (subscriptions, rules, the schema registry's storage, the
// event store, sagas, stream jobs), so that they run unchanged on the
// embedded broker or on any Kafka-protocol cluster.
//
// # Implementations
//
//	eventlog/embedded   in-process, over *broker.Broker and *groups.Coordinator
//	eventlog/kafkalog   any Kafka-protocol cluster, through franz-go (kgo, kadm)
//	eventlog/logtest    the conformance suite both run, with Features flags
//
// # Contracts shared by every implementation
//
// Offsets are dense per partition and assigned in append order; an Append
// is atomic (its records are consecutive) and durable under the topic's
// configuration when it returns. Keys map to partitions with Kafka's
// default partitioner (murmur2; see PartitionFor), so a key lands in the
// same partition whichever implementation, or Kafka client, wrote it.
// Consumer groups give every partition to exactly one member; assignment
// changes are surfaced through GroupOptions.OnAssigned and OnRevoked.
//
// # Files
//
//	eventlog.go   the Log and GroupConsumer interfaces, types, errors
//	partition.go  murmur2, PartitionFor and Producer (keyed appends)
package eventlog
