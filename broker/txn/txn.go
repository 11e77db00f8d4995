package txn

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Errors, one per Kafka error code they map to.
var (
	ErrClosed                   = errors.New("transaction coordinator closed")
	ErrInvalidTransactionalID   = errors.New("invalid transactional id")
	ErrInvalidProducerIDMapping = errors.New("producer id does not match the transactional id")
	ErrProducerFenced           = errors.New("producer fenced: a newer producer with the same transactional id exists")
	ErrInvalidTxnState          = errors.New("invalid transaction state")
	ErrConcurrentTransactions   = errors.New("a transaction state change is in progress")
	ErrInvalidTimeout           = errors.New("invalid transaction timeout")
	ErrTransactionalIDNotFound  = errors.New("transactional id not found")
	ErrCoordinatorLoading       = errors.New("transaction coordinator is loading")
)

// State is a transaction's state, as Kafka's TransactionState.
type State int8

// States. A transactional id starts Empty; AddPartitionsToTxn or
// AddOffsetsToTxn makes it Ongoing; EndTxn moves it to PrepareCommit or
// PrepareAbort (durable: the decision), and once every marker is written,
// to CompleteCommit or CompleteAbort, from where the next transaction
// starts.
const (
	Empty State = iota
	Ongoing
	PrepareCommit
	PrepareAbort
	CompleteCommit
	CompleteAbort
	numStates
)

var stateNames = [...]string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"}

// String is Kafka's name for the state, as DescribeTransactions and
// ListTransactions report it.
func (s State) String() string {
	if s >= 0 && s < numStates {
		return stateNames[s]
	}
	return "Unknown"
}

// ParseState parses a state name (case-sensitive, as Kafka's).
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if n == name {
			return State(i), true
		}
	}
	return 0, false
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Txn is the metadata of one transactional id.
type Txn struct {
	ID         string
	ProducerID int64
	Epoch      int16
	Timeout    time.Duration
	State      State
	// Partitions and Groups are in the ongoing (or preparing) transaction,
	// sorted; empty in Empty and Complete states.
	Partitions []TopicPartition
	Groups     []string
	Start      time.Time // when the ongoing transaction began; zero otherwise
	Updated    time.Time
}

// Store persists the coordinator's records: one per transactional id, the
// newest winning (a compacted topic).
type Store interface {
	// Append durably stores records; it returns once they are durable.
	Append(ctx context.Context, recs []KV) error
	// Replay calls fn for every stored record, oldest first.
	Replay(ctx context.Context, fn func(KV) error) error
}

// KV is one stored record.
type KV struct{ Key, Value []byte }

// Markers writes transaction markers: a commit or abort control batch for
// the producer to each partition, durably, before it returns nil.
// Partitions that no longer exist are skipped. It may be called again for
// the same transaction (after a failure or a restart).
type Markers interface {
	WriteTxnMarkers(ctx context.Context, producerID int64, epoch int16, commit bool, parts []TopicPartition) error
}

// Groups completes the offsets a transaction committed to a consumer group
// (TxnOffsetCommit): made visible on commit, dropped on abort, durably. It
// may be called again for the same transaction and must then do nothing.
type Groups interface {
	CompleteTxnOffsets(ctx context.Context, group string, producerID int64, commit bool) error
}

// Config configures a Coordinator.
type Config struct {
	Store   Store   // required
	Markers Markers // required
	Groups  Groups  // nil: transactions may not add offsets
	// NewProducerID allocates a producer id never handed out before.
	NewProducerID func(ctx context.Context) (int64, error)
	// MaxTimeout bounds transaction.timeout.ms (default 15 minutes, Kafka's
	// transaction.max.timeout.ms).
	MaxTimeout time.Duration
	// CheckInterval is how often expired transactions are looked for
	// (default 1s; Kafka's is 10s).
	CheckInterval time.Duration
	Logger        *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = 15 * time.Minute
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every missing required field.
func (c *Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("txn: Config.Store is nil"))
	}
	if c.Markers == nil {
		errs = append(errs, errors.New("txn: Config.Markers is nil"))
	}
	if c.NewProducerID == nil {
		errs = append(errs, errors.New("txn: Config.NewProducerID is nil"))
	}
	return errors.Join(errs...)
}
