package eventlog

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"
)

// Errors every implementation returns, wrapped (test them with errors.Is).
// No implementation leaks its dependency's error types: a broker or Kafka
// error that has no sentinel here is wrapped with context and left opaque.
var (
	// ErrClosed: the Log or GroupConsumer was closed.
	ErrClosed = errors.New("eventlog: closed")
	// ErrUnknownTopic: the topic, or the partition of it, does not exist.
	ErrUnknownTopic = errors.New("eventlog: unknown topic or partition")
	// ErrTopicExists: CreateTopic of a name already taken.
	ErrTopicExists = errors.New("eventlog: topic already exists")
	// ErrInvalidArgument: a bad topic name, partition count, config, group
	// id or empty record list.
	ErrInvalidArgument = errors.New("eventlog: invalid argument")
	// ErrOffsetOutOfRange: Read below the log start or beyond its end.
	ErrOffsetOutOfRange = errors.New("eventlog: offset out of range")
	// ErrRecordTooLarge: an Append larger than the topic's
	// max.message.bytes. Nothing was appended.
	ErrRecordTooLarge = errors.New("eventlog: records too large")
	// ErrRebalanced: a GroupConsumer.Commit refused because the member's
	// generation is over (a rebalance took or is taking its partitions).
	ErrRebalanced = errors.New("eventlog: group rebalanced")
	// ErrGroupActive: Log.CommitOffsets for a group that has live members;
	// only the members may commit then (GroupConsumer.Commit).
	ErrGroupActive = errors.New("eventlog: group has active members")
)

// Log is an ordered, partitioned, durable record log: topics of
// partitions, each an append-only sequence of records at dense offsets
// 0, 1, 2, ... (a retention or compaction may raise the start). Consumer
// groups share a topic's partitions among members.
//
// All methods are safe for concurrent use, take a ctx that bounds the call
// (a call whose ctx ends returns ctx.Err(), and a write may or may not have
// happened), and return ErrClosed after Close.
type Log interface {
	// CreateTopic creates a topic of partitions partitions (>= 1) with the
	// given configs (Kafka topic config names; nil for the defaults). It
	// fails with ErrTopicExists if the name is taken and ErrInvalidArgument
	// for a bad name, count or config. The topic is usable by every method
	// when it returns.
	CreateTopic(ctx context.Context, name string, partitions int, configs map[string]string) error
	// DeleteTopic removes a topic and its records (ErrUnknownTopic if none).
	DeleteTopic(ctx context.Context, name string) error
	// Topic describes a topic (ErrUnknownTopic if none).
	Topic(ctx context.Context, name string) (TopicInfo, error)

	// Append appends recs to one partition, atomically and in order: they
	// get the consecutive offsets base, base+1, ..., and no other
	// append's records come between them. A zero Timestamp is set to the
	// time of the append; topics with message.timestamp.type=LogAppendTime
	// replace every timestamp. When Append returns nil the records are
	// durable as the topic's configuration promises (acks=all) and
	// visible to Read. recs must be non-empty; together they must fit the
	// topic's max.message.bytes (else ErrRecordTooLarge, nothing
	// appended). An unknown partition is ErrUnknownTopic.
	Append(ctx context.Context, topic string, partition int32, recs []Record) (base int64, err error)
	// Read returns records of one partition from offset on, in offset
	// order, with Topic, Partition and Offset set; at most opts.MaxBytes
	// of them unless the first record alone is larger (it is returned
	// anyway, so a reader always progresses). The first record returned
	// has the lowest offset >= offset still in the log (compaction leaves
	// gaps). When offset is the end of the log Read waits up to opts.Wait
	// for an append and returns an empty slice if none comes. An offset
	// below the start or beyond the end is ErrOffsetOutOfRange. The
	// returned records do not alias memory the Log reuses.
	Read(ctx context.Context, topic string, partition int32, offset int64, opts ReadOptions) ([]Record, error)
	// Offsets returns the partition's start offset (the lowest readable)
	// and end offset (the offset the next append gets).
	Offsets(ctx context.Context, topic string, partition int32) (start, end int64, err error)
	// OffsetForTime returns the offset of the first record whose
	// timestamp is at or after t, or the end offset if there is none.
	OffsetForTime(ctx context.Context, topic string, partition int32, t time.Time) (int64, error)

	// JoinGroup makes this process a member of a consumer group reading
	// topics; the group's partitions are split among its members so that
	// each is owned by exactly one member, and rebalanced when members
	// join, leave (GroupConsumer.Close) or stop heartbeating for the
	// session timeout. It returns once the member is started; its first
	// assignment comes later (GroupOptions.OnAssigned). Members of one
	// group must use the same implementation and topics.
	JoinGroup(ctx context.Context, group string, topics []string, opts GroupOptions) (GroupConsumer, error)
	// CommittedOffsets returns a group's committed offsets for a topic,
	// by partition; partitions without a commit are absent, and an
	// unknown group has none.
	CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error)
	// CommitOffsets stores a group's offsets (the next offset to read per
	// partition) outside group membership, for services that track their
	// own position. It fails with ErrGroupActive while the group has
	// members. The offsets are durable when it returns nil.
	CommitOffsets(ctx context.Context, group string, offsets map[TopicPartition]int64) error

	// Close releases the Log's resources. Calls in progress and later
	// calls return ErrClosed; GroupConsumers must be closed first (Close
	// does not leave their groups cleanly). Closing twice returns nil.
	Close() error
}

// GroupConsumer is one member of a consumer group. Poll and Commit are
// safe for concurrent use with each other and with the callbacks.
type GroupConsumer interface {
	// Poll blocks until records of the member's partitions are available,
	// ctx ends (ctx.Err()) or the consumer is closed (ErrClosed). Records
	// come in offset order per partition, continuing from the group's
	// committed offset when a partition is assigned (or from
	// GroupOptions.StartAt if none). A partition's records are never
	// returned by a Poll that returns after its OnRevoked began.
	Poll(ctx context.Context) ([]Record, error)
	// Commit stores the group's offsets (the next offset to read, that
	// is last processed + 1) for partitions the member owns. They are
	// durable when Commit returns nil. After the member lost its
	// generation (a rebalance completed without it) Commit fails with
	// ErrRebalanced and stores nothing; it may be called from OnRevoked,
	// before the partitions move.
	Commit(ctx context.Context, offsets map[TopicPartition]int64) error
	// Assignment returns the partitions the member owns now, sorted.
	Assignment() []TopicPartition
	// Close leaves the group, so its partitions move to the other members
	// at once; OnRevoked is called for what the member owned. It returns
	// once the member's goroutines have exited. Closing twice returns nil.
	Close() error
}

// GroupOptions configures a GroupConsumer. Zero values take the defaults
// noted.
type GroupOptions struct {
	// OnAssigned is called with the partitions the member gains, after
	// their starting offsets are known and before Poll returns their
	// records.
	OnAssigned func(ctx context.Context, parts []TopicPartition)
	// OnRevoked is called with the partitions the member gives up (on a
	// rebalance, on Close, or when it lost its membership), before they
	// can be assigned to another member: the place to commit and flush
	// per-partition state. An implementation may revoke every partition on
	// each rebalance (eager) or only those that move (cooperative);
	// callers must not assume either.
	//
	// Callbacks run on a goroutine of the consumer, one at a time, in
	// order; the partitions a member owns are always the union of what it
	// was assigned minus what was revoked. A callback must not call Close.
	OnRevoked func(ctx context.Context, parts []TopicPartition)
	// StartAt is where a partition without a committed offset starts
	// (default StartEarliest). It also applies when the committed offset
	// is out of range.
	StartAt StartAt
	// SessionTimeout: a member silent for this long is removed from the
	// group (default 10s). The broker bounds it.
	SessionTimeout time.Duration
	// HeartbeatInterval (default SessionTimeout/5, at most 3s) is also
	// how quickly a member notices a rebalance.
	HeartbeatInterval time.Duration
	// RebalanceTimeout bounds how long a rebalance waits for members to
	// rejoin (default 30s).
	RebalanceTimeout time.Duration
	// MaxPollBytes bounds one Poll, roughly (default 1 MiB).
	MaxPollBytes int
}

// StartAt says where a consumer starts in a partition without a committed
// offset.
type StartAt int8

const (
	// StartEarliest starts at the log's start offset.
	StartEarliest StartAt = iota
	// StartLatest starts at the log's end: only new records.
	StartLatest
)

// Defaults of GroupOptions.
const (
	DefaultSessionTimeout   = 10 * time.Second
	DefaultRebalanceTimeout = 30 * time.Second
	DefaultMaxPollBytes     = 1 << 20
	DefaultReadBytes        = 1 << 20
)

// WithDefaults returns o with zero fields set to their defaults.
func (o GroupOptions) WithDefaults() GroupOptions {
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = DefaultSessionTimeout
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = min(o.SessionTimeout/5, 3*time.Second)
	}
	if o.RebalanceTimeout <= 0 {
		o.RebalanceTimeout = DefaultRebalanceTimeout
	}
	if o.MaxPollBytes <= 0 {
		o.MaxPollBytes = DefaultMaxPollBytes
	}
	return o
}

// Record is one record of a partition.
type Record struct {
	// Key and Value may be nil (a null key or value, as Kafka's); an
	// empty non-nil slice reads back as empty, not nil.
	Key, Value []byte
	Headers    []Header
	// Timestamp has millisecond precision in the log.
	Timestamp time.Time

	// Set by Read and Poll; ignored by Append.
	Topic     string
	Partition int32
	Offset    int64
}

// Header is a record header. Keys may repeat.
type Header struct {
	Key   string
	Value []byte
}

// ReadOptions bound a Read.
type ReadOptions struct {
	// MaxBytes bounds the records returned, roughly (default
	// DefaultReadBytes); see Read.
	MaxBytes int
	// Wait is how long Read waits for records when offset is the end of
	// the log (0: return at once).
	Wait time.Duration
}

// TopicInfo describes a topic.
type TopicInfo struct {
	Name       string
	Partitions int
	// Configs are the configs set on the topic (not the defaults).
	Configs map[string]string
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// SortPartitions sorts tps by topic, then partition.
func SortPartitions(tps []TopicPartition) {
	slices.SortFunc(tps, func(a, b TopicPartition) int {
		if c := cmp.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return cmp.Compare(a.Partition, b.Partition)
	})
}
