// Package compat holds Herald's client compatibility suite: tests that start
// a real `herald serve` process and drive it with the Kafka clients people
// use — franz-go, IBM/sarama, segmentio/kafka-go, kcat (librdkafka) and
// kafkajs — asserting the exact records, keys, values and headers each one
// reads back, consumer-group assignment and rebalances, committed offsets
// across restarts, and idempotent production across a SIGKILL of the server.
//
// It is a separate module so that clients used only here never enter
// Herald's go.mod. Run it with
//
//	cd compat && go test -race -count=1 ./...
//
// The suite needs kcat on $PATH and `npm ci` done in compat/js; a missing
// tool fails the test that needs it, it is never skipped (test.sh installs
// both). docs/compatibility.md records which client versions are tested and
// what does not work yet.
//
// # Files
//
//	herald_test.go   TestMain (builds herald once), the server process, helpers
//	records_test.go  the records every test writes and the exact comparison
//	franz_test.go    franz-go: produce/consume, groups and rebalances, restarts, transactions
//	sarama_test.go   IBM/sarama: idempotent SyncProducer, ConsumerGroup resume
//	kafkago_test.go  segmentio/kafka-go: Writer, Reader with GroupID
//	kcat_test.go     kcat: -P/-C, -G, -Q, -L, read_committed
//	kafkajs_test.go  kafkajs: runs js/roundtrip.js, plainly and over SASL_SSL
//	security_test.go kcat, sarama: SASL (SCRAM-SHA-512/256, PLAIN) over TLS
package compat
