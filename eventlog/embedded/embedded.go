// Package embedded implements eventlog.Log in-process over Herald's broker
// and group coordinator: no network, no serialization beyond the record
// batches the broker stores.
//
// Consumer groups run Kafka's classic protocol against the
// *groups.Coordinator with protocol type "consumer" and Kafka's "range"
// assignor, member metadata and assignments encoded as Kafka's consumer
// protocol, so the group looks like any Kafka consumer group to tools
// (kafka-consumer-groups, herald's HTTP API). Rebalances are eager: every
// member revokes all its partitions before rejoining.
//
// # Files
//
//	embedded.go  Log: admin, append, read, offsets, commits
//	group.go     member: the join/sync/heartbeat loop, Poll, Commit
//	assign.go    the range assignor and the consumer protocol encoding
package embedded

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/internal/recbatch"
)

// Config configures a Log.
type Config struct {
	// Broker holds the topics; required. The Log does not close it.
	Broker *broker.Broker
	// Groups coordinates consumer groups; without it JoinGroup,
	// CommittedOffsets and CommitOffsets fail with ErrInvalidArgument. The
	// Log does not close it.
	Groups *groups.Coordinator
	// ClientID names this process's group members (default "herald").
	ClientID string
}

// Log is the in-process eventlog.Log. Safe for concurrent use.
type Log struct {
	b        *broker.Broker
	g        *groups.Coordinator
	clientID string

	// ctx is canceled by Close: it ends every blocking call in progress.
	ctx    context.Context
	cancel context.CancelFunc
	mu     struct {
		sync.Mutex
		closed bool
	}
}

var _ eventlog.Log = (*Log)(nil)

// New returns a Log over cfg.Broker and cfg.Groups.
func New(cfg Config) (*Log, error) {
	if cfg.Broker == nil {
		return nil, fmt.Errorf("%w: embedded: Config.Broker is nil", eventlog.ErrInvalidArgument)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "herald"
	}
	l := &Log{b: cfg.Broker, g: cfg.Groups, clientID: cfg.ClientID}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l, nil
}

// Close implements eventlog.Log.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.mu.closed {
		l.mu.closed = true
		l.cancel()
	}
	return nil
}

func (l *Log) closed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.closed
}

// callCtx returns a ctx that also ends when the Log closes.
func (l *Log) callCtx(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if l.closed() {
		return nil, nil, eventlog.ErrClosed
	}
	c, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.ctx, cancel)
	return c, func() { stop(); cancel() }, nil
}

// mapErr turns a broker or coordinator error into the interface's. ctx is
// the caller's: when it ended the error is ctx's; when only the Log's did,
// ErrClosed.
func (l *Log) mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if l.ctx.Err() != nil {
			return eventlog.ErrClosed
		}
		return err
	}
	return mapErr(err)
}

func mapErr(err error) error {
	var sentinel error
	switch {
	case isSentinel(err):
		return err
	case errors.Is(err, broker.ErrClosed), errors.Is(err, groups.ErrClosed):
		return eventlog.ErrClosed
	case errors.Is(err, broker.ErrUnknownTopic), errors.Is(err, groups.ErrUnknownTopic):
		sentinel = eventlog.ErrUnknownTopic
	case errors.Is(err, broker.ErrTopicExists):
		sentinel = eventlog.ErrTopicExists
	case errors.Is(err, broker.ErrInvalidTopic), errors.Is(err, broker.ErrInvalidPartitions),
		errors.Is(err, broker.ErrInvalidConfig), errors.Is(err, broker.ErrInvalidRequest),
		errors.Is(err, broker.ErrPolicyViolation), errors.Is(err, broker.ErrInvalidRecord),
		errors.Is(err, groups.ErrInvalidGroupID):
		sentinel = eventlog.ErrInvalidArgument
	case errors.Is(err, broker.ErrMessageTooLarge):
		sentinel = eventlog.ErrRecordTooLarge
	case errors.Is(err, broker.ErrOffsetOutOfRange):
		sentinel = eventlog.ErrOffsetOutOfRange
	case errors.Is(err, groups.ErrUnknownMemberID), errors.Is(err, groups.ErrIllegalGeneration),
		errors.Is(err, groups.ErrRebalanceInProgress), errors.Is(err, groups.ErrFencedInstanceID):
		sentinel = eventlog.ErrRebalanced
	default:
		return fmt.Errorf("embedded: %s", err)
	}
	return fmt.Errorf("%w: %s", sentinel, err)
}

// CreateTopic implements eventlog.Log.
func (l *Log) CreateTopic(ctx context.Context, name string, partitions int, configs map[string]string) error {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return err
	}
	defer done()
	if partitions < 1 {
		return fmt.Errorf("%w: topic %q: %d partitions", eventlog.ErrInvalidArgument, name, partitions)
	}
	return l.mapErr(ctx, l.b.CreateTopic(ctx, name, partitions, configs))
}

// DeleteTopic implements eventlog.Log.
func (l *Log) DeleteTopic(ctx context.Context, name string) error {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return err
	}
	defer done()
	return l.mapErr(ctx, l.b.DeleteTopic(ctx, name))
}

// Topic implements eventlog.Log.
func (l *Log) Topic(ctx context.Context, name string) (eventlog.TopicInfo, error) {
	if l.closed() {
		return eventlog.TopicInfo{}, eventlog.ErrClosed
	}
	ti, err := l.b.Topic(name)
	if err != nil {
		return eventlog.TopicInfo{}, l.mapErr(ctx, err)
	}
	cfg := make(map[string]string, len(ti.Configs))
	for k, v := range ti.Configs {
		cfg[k] = v
	}
	return eventlog.TopicInfo{Name: ti.Name, Partitions: ti.Partitions, Configs: cfg}, nil
}

// Append implements eventlog.Log: the records are one record batch,
// appended with acks=all.
func (l *Log) Append(ctx context.Context, topic string, partition int32, recs []eventlog.Record) (int64, error) {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return -1, err
	}
	defer done()
	if len(recs) == 0 {
		return -1, fmt.Errorf("%w: append of no records", eventlog.ErrInvalidArgument)
	}
	// The broker auto-creates topics on produce when configured to; the
	// interface promises ErrUnknownTopic.
	if !l.b.PartitionExists(topic, partition) {
		return -1, fmt.Errorf("%w: %s/%d", eventlog.ErrUnknownTopic, topic, partition)
	}
	raw, err := recbatch.Encode(recs, time.Now())
	if err != nil {
		return -1, err
	}
	res, err := l.b.Produce(ctx, topic, partition, raw, broker.AcksAll)
	if err != nil {
		return -1, l.mapErr(ctx, err)
	}
	return res.BaseOffset, nil
}

// Read implements eventlog.Log.
func (l *Log) Read(ctx context.Context, topic string, partition int32, offset int64, opts eventlog.ReadOptions) ([]eventlog.Record, error) {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = eventlog.DefaultReadBytes
	}
	var deadline <-chan time.Time
	for {
		start, end, err := l.b.Offsets(topic, partition)
		if err != nil {
			return nil, l.mapErr(ctx, err)
		}
		if offset < start || offset > end {
			return nil, fmt.Errorf("%w: %s/%d offset %d, log is [%d, %d)", eventlog.ErrOffsetOutOfRange, topic, partition, offset, start, end)
		}
		if offset < end {
			recs, next, err := l.fetch(ctx, topic, partition, offset, maxBytes)
			if err != nil {
				return nil, err
			}
			if len(recs) > 0 {
				return recs, nil
			}
			// Only control records or compacted-away offsets: go on.
			offset = next
			continue
		}
		if opts.Wait <= 0 {
			return []eventlog.Record{}, nil
		}
		ch, stop, err := l.b.Watch(topic, partition, offset)
		if err != nil {
			return nil, l.mapErr(ctx, err)
		}
		if deadline == nil {
			t := time.NewTimer(opts.Wait)
			defer t.Stop()
			deadline = t.C
		}
		// NB: the append may have landed between Offsets and Watch; Watch
		// fires at once then.
		select {
		case <-ch:
			stop()
		case <-deadline:
			stop()
			return []eventlog.Record{}, nil
		case <-ctx.Done():
			stop()
			return nil, l.mapErr(ctx, ctx.Err())
		}
	}
}

// fetch reads and decodes records from offset; next is the offset after
// the last batch read.
func (l *Log) fetch(ctx context.Context, topic string, partition int32, offset int64, maxBytes int) ([]eventlog.Record, int64, error) {
	f, err := l.b.Fetch(ctx, topic, partition, offset, maxBytes, nil)
	if err != nil {
		return nil, offset, l.mapErr(ctx, err)
	}
	recs, next, err := recbatch.Decode(f.Records, topic, partition, offset)
	if err != nil {
		return nil, offset, fmt.Errorf("embedded: read %s/%d at %d: %w", topic, partition, offset, err)
	}
	if next <= offset {
		// Nothing decodable although offset < end: should not happen;
		// never spin.
		return nil, offset, fmt.Errorf("embedded: read %s/%d at %d: no progress", topic, partition, offset)
	}
	return recs, next, nil
}

func isSentinel(err error) bool {
	for _, s := range []error{eventlog.ErrClosed, eventlog.ErrUnknownTopic, eventlog.ErrTopicExists,
		eventlog.ErrInvalidArgument, eventlog.ErrOffsetOutOfRange, eventlog.ErrRecordTooLarge,
		eventlog.ErrRebalanced, eventlog.ErrGroupActive} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// Offsets implements eventlog.Log.
func (l *Log) Offsets(ctx context.Context, topic string, partition int32) (start, end int64, err error) {
	if l.closed() {
		return -1, -1, eventlog.ErrClosed
	}
	start, end, err = l.b.Offsets(topic, partition)
	if err != nil {
		return -1, -1, l.mapErr(ctx, err)
	}
	return start, end, nil
}

// OffsetForTime implements eventlog.Log.
func (l *Log) OffsetForTime(ctx context.Context, topic string, partition int32, t time.Time) (int64, error) {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return -1, err
	}
	defer done()
	ms := max(t.UnixMilli(), 0)
	off, _, err := l.b.ListOffset(ctx, topic, partition, ms)
	if err != nil {
		return -1, l.mapErr(ctx, err)
	}
	if off < 0 {
		_, end, err := l.b.Offsets(topic, partition)
		if err != nil {
			return -1, l.mapErr(ctx, err)
		}
		return end, nil
	}
	return off, nil
}

func (l *Log) coordinator() (*groups.Coordinator, error) {
	if l.g == nil {
		return nil, fmt.Errorf("%w: embedded: no group coordinator configured", eventlog.ErrInvalidArgument)
	}
	return l.g, nil
}

// CommittedOffsets implements eventlog.Log.
func (l *Log) CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	g, err := l.coordinator()
	if err != nil {
		return nil, err
	}
	offs, err := g.FetchOffsets(ctx, group, nil)
	if err != nil {
		return nil, l.mapErr(ctx, err)
	}
	out := map[int32]int64{}
	for tp, o := range offs {
		if tp.Topic == topic {
			out[tp.Partition] = o.Offset
		}
	}
	return out, nil
}

// CommitOffsets implements eventlog.Log.
func (l *Log) CommitOffsets(ctx context.Context, group string, offsets map[eventlog.TopicPartition]int64) error {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return err
	}
	defer done()
	g, err := l.coordinator()
	if err != nil {
		return err
	}
	err = commit(ctx, g, group, "", -1, offsets)
	if errors.Is(err, eventlog.ErrRebalanced) {
		return fmt.Errorf("%w: group %q", eventlog.ErrGroupActive, group)
	}
	return l.mapErr(ctx, err)
}

// commit commits offsets and folds the per-partition errors into one.
func commit(ctx context.Context, g *groups.Coordinator, group, memberID string, generation int32, offsets map[eventlog.TopicPartition]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	in := make(map[groups.TopicPartition]groups.Offset, len(offsets))
	for tp, o := range offsets {
		if o < 0 {
			return fmt.Errorf("%w: commit of offset %d for %s/%d", eventlog.ErrInvalidArgument, o, tp.Topic, tp.Partition)
		}
		in[groups.TopicPartition{Topic: tp.Topic, Partition: tp.Partition}] = groups.Offset{Offset: o, LeaderEpoch: -1}
	}
	res, err := g.CommitOffsets(ctx, group, memberID, "", generation, in)
	if err != nil {
		return err
	}
	var errs []error
	for tp, e := range res {
		if e != nil {
			errs = append(errs, fmt.Errorf("%s/%d: %w", tp.Topic, tp.Partition, mapErr(e)))
		}
	}
	if len(errs) > 0 {
		// Every partition usually fails alike; report the first, wrapped.
		return fmt.Errorf("commit for group %q: %w", group, errs[0])
	}
	return nil
}
