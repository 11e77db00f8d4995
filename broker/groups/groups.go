package groups

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/event"
)

// Errors, one per Kafka error code they map to.
var (
	ErrClosed                 = errors.New("coordinator closed")
	ErrInvalidGroupID         = errors.New("invalid group id")
	ErrGroupIDNotFound        = errors.New("group id not found")
	ErrNonEmptyGroup          = errors.New("group is not empty")
	ErrUnknownMemberID        = errors.New("unknown member id")
	ErrMemberIDRequired       = errors.New("member id required")
	ErrIllegalGeneration      = errors.New("illegal generation")
	ErrRebalanceInProgress    = errors.New("rebalance in progress")
	ErrInconsistentProtocol   = errors.New("inconsistent group protocol")
	ErrInvalidSessionTimeout  = errors.New("invalid session timeout")
	ErrFencedInstanceID       = errors.New("fenced instance id")
	ErrGroupSubscribedToTopic = errors.New("group is subscribed to the topic")
	ErrOffsetMetadataTooLarge = errors.New("offset metadata too large")
	ErrCoordinatorLoading     = errors.New("coordinator is loading")
	ErrUnknownTopic           = errors.New("unknown topic or partition")
)

// Store persists the coordinator's records: committed offsets and group
// metadata, as key/value records where the newest value of a key wins and a
// nil value deletes it.
type Store interface {
	// Append durably stores records; it returns once they are durable.
	Append(ctx context.Context, recs []KV) error
	// Replay calls fn for every stored record, oldest first.
	Replay(ctx context.Context, fn func(KV) error) error
}

// KV is one stored record.
type KV struct{ Key, Value []byte }

// Config configures a Coordinator.
type Config struct {
	Store      Store
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// MinSessionTimeout and MaxSessionTimeout bound what members may ask
	// for (defaults 6s and 30m, as Kafka's).
	MinSessionTimeout, MaxSessionTimeout time.Duration
	// InitialRebalanceDelay waits for more members before the first
	// rebalance of an empty group (default 0; Kafka's is 3s).
	InitialRebalanceDelay time.Duration
	// MaxMetadataBytes bounds offset commit metadata (default 4096).
	MaxMetadataBytes int
	// TopicExists, if set, refuses commits for unknown partitions.
	TopicExists func(topic string, partition int32) bool
	// HighWatermark, if set, gives lag for Describe and metrics.
	HighWatermark func(topic string, partition int32) (int64, bool)
	// RecordTimestamp, if set, gives the timestamp (Unix ms) of the record
	// at an offset, for lag in seconds (herald_group_lag_seconds).
	RecordTimestamp func(topic string, partition int32, offset int64) (int64, bool)
	// Now is the clock (default time.Now); tests script it.
	Now func() time.Time
	// OnEvent, if set, receives a herald.group.rebalanced event (source
	// "herald/groups") when a rebalance completes with a new generation.
	OnEvent event.Hook
}

// The system event the coordinator emits through Config.OnEvent.
const (
	SystemSource        = "herald/groups"
	TypeGroupRebalanced = "herald.group.rebalanced"
)

// RebalanceEvent is the data of a herald.group.rebalanced event.
type RebalanceEvent struct {
	Group        string   `json:"group"`
	Generation   int32    `json:"generation"`
	ProtocolType string   `json:"protocol_type,omitempty"`
	Protocol     string   `json:"protocol,omitempty"`
	Leader       string   `json:"leader,omitempty"`
	Members      []string `json:"members"`
}

// Protocol is one assignment protocol a member supports.
type Protocol struct {
	Name     string
	Metadata []byte
}

// JoinRequest is a JoinGroup.
type JoinRequest struct {
	Group            string
	MemberID         string // "" on the first join
	InstanceID       string // static membership (group.instance.id); "" if none
	ProtocolType     string // "consumer" for Kafka consumers
	Protocols        []Protocol
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
	ClientID         string
	ClientHost       string
	// RequireKnownMemberID (JoinGroup v4+): a first join without a member
	// id gets ErrMemberIDRequired and the id to rejoin with.
	RequireKnownMemberID bool
	Reason               string
}

// Member is a group member as the leader sees it.
type Member struct {
	MemberID   string
	InstanceID string
	Metadata   []byte
}

// JoinResponse answers a JoinRequest.
type JoinResponse struct {
	Err          error
	Generation   int32
	ProtocolType string
	Protocol     string
	Leader       string
	MemberID     string
	Members      []Member // for the leader only
}

// SyncRequest is a SyncGroup.
type SyncRequest struct {
	Group        string
	MemberID     string
	InstanceID   string
	Generation   int32
	ProtocolType string
	Protocol     string
	Assignments  map[string][]byte // member id -> assignment; from the leader
}

// SyncResponse answers a SyncRequest.
type SyncResponse struct {
	Err          error
	ProtocolType string
	Protocol     string
	Assignment   []byte
}

// LeaveMember names a member leaving.
type LeaveMember struct {
	MemberID   string
	InstanceID string
	Reason     string
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Offset is a committed offset.
type Offset struct {
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	CommitTime  time.Time
}

// GroupSummary is one row of List.
type GroupSummary struct {
	Group        string
	ProtocolType string
	State        string // Empty, PreparingRebalance, CompletingRebalance, Stable, Dead
}

// MemberDescription describes a member for Describe.
type MemberDescription struct {
	MemberID   string
	InstanceID string
	ClientID   string
	ClientHost string
	Metadata   []byte
	Assignment []byte
}

// GroupDescription is Describe's answer.
type GroupDescription struct {
	Err          error
	Group        string
	State        string
	ProtocolType string
	Protocol     string
	Generation   int32
	Members      []MemberDescription
}
