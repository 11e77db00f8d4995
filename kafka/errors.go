package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/broker/txn"
)

// errCodes maps the broker's and the coordinator's errors to Kafka error
// codes; the first match wins.
var errCodes = []struct {
	err  error
	kerr *kerr.Error
}{
	{broker.ErrUnknownTopic, kerr.UnknownTopicOrPartition},
	{broker.ErrTopicExists, kerr.TopicAlreadyExists},
	{broker.ErrInvalidTopic, kerr.InvalidTopicException},
	{broker.ErrInvalidPartitions, kerr.InvalidPartitions},
	{broker.ErrInvalidConfig, kerr.InvalidConfig},
	{broker.ErrMessageTooLarge, kerr.MessageTooLarge},
	{broker.ErrCorruptMessage, kerr.CorruptMessage},
	{broker.ErrInvalidRecord, kerr.InvalidRecord},
	{broker.ErrOutOfOrderSequence, kerr.OutOfOrderSequenceNumber},
	{broker.ErrInvalidProducerEpoch, kerr.InvalidProducerEpoch},
	{broker.ErrUnknownProducer, kerr.UnknownProducerID},
	{broker.ErrOffsetOutOfRange, kerr.OffsetOutOfRange},
	{broker.ErrInvalidRequest, kerr.InvalidRequest},
	{broker.ErrStorage, kerr.KafkaStorageError},
	{broker.ErrPolicyViolation, kerr.PolicyViolation},
	// A closing broker: retriable, so clients go elsewhere or come back.
	{broker.ErrClosed, kerr.NotLeaderForPartition},

	{groups.ErrClosed, kerr.CoordinatorNotAvailable},
	{groups.ErrInvalidGroupID, kerr.InvalidGroupID},
	{groups.ErrGroupIDNotFound, kerr.GroupIDNotFound},
	{groups.ErrNonEmptyGroup, kerr.NonEmptyGroup},
	{groups.ErrUnknownMemberID, kerr.UnknownMemberID},
	{groups.ErrMemberIDRequired, kerr.MemberIDRequired},
	{groups.ErrIllegalGeneration, kerr.IllegalGeneration},
	{groups.ErrRebalanceInProgress, kerr.RebalanceInProgress},
	{groups.ErrInconsistentProtocol, kerr.InconsistentGroupProtocol},
	{groups.ErrInvalidSessionTimeout, kerr.InvalidSessionTimeout},
	{groups.ErrFencedInstanceID, kerr.FencedInstanceID},
	{groups.ErrGroupSubscribedToTopic, kerr.GroupSubscribedToTopic},
	{groups.ErrOffsetMetadataTooLarge, kerr.OffsetMetadataTooLarge},
	{groups.ErrCoordinatorLoading, kerr.CoordinatorLoadInProgress},
	{groups.ErrUnknownTopic, kerr.UnknownTopicOrPartition},

	{txn.ErrClosed, kerr.CoordinatorNotAvailable},
	{txn.ErrInvalidTransactionalID, kerr.InvalidRequest},
	{txn.ErrInvalidProducerIDMapping, kerr.InvalidProducerIDMapping},
	{txn.ErrProducerFenced, kerr.ProducerFenced},
	{txn.ErrInvalidTxnState, kerr.InvalidTxnState},
	{txn.ErrConcurrentTransactions, kerr.ConcurrentTransactions},
	{txn.ErrInvalidTimeout, kerr.InvalidTransactionTimeout},
	{txn.ErrTransactionalIDNotFound, kerr.TransactionalIDNotFound},
	{txn.ErrCoordinatorLoading, kerr.CoordinatorLoadInProgress},

	{context.DeadlineExceeded, kerr.RequestTimedOut},
	{context.Canceled, kerr.RequestTimedOut},
}

// errCode maps an error to its Kafka error code: 0 for nil,
// UNKNOWN_SERVER_ERROR for errors without a mapping.
func errCode(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	for _, e := range errCodes {
		if errors.Is(err, e.err) {
			return e.kerr.Code
		}
	}
	return kerr.UnknownServerError.Code
}

// errMessage is the message sent with an error code where the protocol
// has room for one.
func errMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}

// errNoCoordinator answers group requests when the server has no
// coordinator.
var errNoCoordinator = kerr.CoordinatorNotAvailable
