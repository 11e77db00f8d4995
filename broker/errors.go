package broker

import "errors"

// Errors the broker returns. The Kafka adapter maps each to its protocol
// error code; other adapters map them to their own statuses.
var (
	ErrClosed               = errors.New("broker closed")
	ErrUnknownTopic         = errors.New("unknown topic or partition")
	ErrTopicExists          = errors.New("topic already exists")
	ErrInvalidTopic         = errors.New("invalid topic")
	ErrInvalidPartitions    = errors.New("invalid partition count")
	ErrInvalidConfig        = errors.New("invalid config")
	ErrMessageTooLarge      = errors.New("message too large")
	ErrCorruptMessage       = errors.New("corrupt message")
	ErrInvalidRecord        = errors.New("invalid record")
	ErrOutOfOrderSequence   = errors.New("out of order sequence number")
	ErrInvalidProducerEpoch = errors.New("invalid producer epoch")
	ErrUnknownProducer      = errors.New("unknown producer id")
	ErrOffsetOutOfRange     = errors.New("offset out of range")
	ErrInvalidRequest       = errors.New("invalid request")
	ErrStorage              = errors.New("storage error")
	ErrPolicyViolation      = errors.New("policy violation")
)
