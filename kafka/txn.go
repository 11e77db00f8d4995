package kafka

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/heraldhq/herald/broker/txn"
)

// txnCode maps a transaction coordinator error for a request of version v:
// PRODUCER_FENCED exists from fencedSince on (KIP-588), before which a
// fenced producer gets INVALID_PRODUCER_EPOCH.
func txnCode(err error, v, fencedSince int16) int16 {
	if errors.Is(err, txn.ErrProducerFenced) && v < fencedSince {
		return kerr.InvalidProducerEpoch.Code
	}
	return errCode(err)
}

// errNoTxns answers transaction requests when the server has no
// transaction coordinator.
var errNoTxns = kerr.CoordinatorNotAvailable
