// Package kafkalog implements eventlog.Log against any Kafka-protocol
// cluster (Apache Kafka, Redpanda, Herald's own Kafka listener) through
// franz-go: kadm for topic admin and offsets, raw produce and fetch requests
// sent to each partition's leader for Append and Read, and one kgo consumer
// group client per GroupConsumer.
//
// Append sends the records as one record batch in one produce request with
// acks=all, so an Append is atomic and its offsets consecutive, whatever
// other producers do; a produce refused because leadership moved is retried
// after a metadata refresh (it was not written). Read is one fetch request
// with MaxWaitMillis = Wait, read_uncommitted.
//
// Group members use kgo's default balancer (cooperative-sticky), so
// OnRevoked lists only the partitions that move; manual commits only.
//
// # Files
//
//	kafkalog.go  Log: admin, append, read, offsets, commits, metadata cache
//	group.go     consumer: the kgo group client behind a GroupConsumer
package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/internal/recbatch"
)

// Config configures a Log.
type Config struct {
	// Brokers are the seed brokers, host:port; required.
	Brokers []string
	// ClientID names the clients (default "herald").
	ClientID string
	// Opts are extra kgo options for every client the Log makes (TLS,
	// SASL, dialer, logger). Options that the Log sets itself (seed
	// brokers, consumer group settings) are overridden.
	Opts []kgo.Opt
	// ReplicationFactor of created topics (default -1: the cluster's
	// default).
	ReplicationFactor int16
}

// Log is the eventlog.Log over a Kafka-protocol cluster. Safe for
// concurrent use.
type Log struct {
	cfg Config
	cl  *kgo.Client
	adm *kadm.Client

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	mu     struct {
		sync.Mutex
		closed bool
		meta   map[string]topicMeta
	}
}

type topicMeta struct {
	id      [16]byte
	leaders []int32 // by partition
}

var _ eventlog.Log = (*Log)(nil)

// New connects to the cluster. It does not wait for a broker to answer.
func New(cfg Config) (*Log, error) {
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("%w: kafkalog: Config.Brokers is empty", eventlog.ErrInvalidArgument)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "herald"
	}
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = -1
	}
	cl, err := kgo.NewClient(cfg.clientOpts()...)
	if err != nil {
		return nil, fmt.Errorf("%w: kafkalog: %v", eventlog.ErrInvalidArgument, err)
	}
	l := &Log{cfg: cfg, cl: cl, adm: kadm.NewClient(cl)}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.mu.meta = map[string]topicMeta{}
	return l, nil
}

func (c Config) clientOpts(extra ...kgo.Opt) []kgo.Opt {
	opts := slices.Clone(c.Opts)
	opts = append(opts, kgo.SeedBrokers(c.Brokers...), kgo.ClientID(c.ClientID))
	return append(opts, extra...)
}

// Close implements eventlog.Log.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil
	}
	l.mu.closed = true
	l.mu.Unlock()
	l.cancel()
	l.cl.Close()
	return nil
}

// callCtx returns a ctx that also ends when the Log closes.
func (l *Log) callCtx(ctx context.Context) (context.Context, context.CancelFunc, error) {
	l.mu.Lock()
	closed := l.mu.closed
	l.mu.Unlock()
	if closed {
		return nil, nil, eventlog.ErrClosed
	}
	c, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.ctx, cancel)
	return c, func() { stop(); cancel() }, nil
}

// mapErr turns a franz-go or Kafka error into the interface's.
func (l *Log) mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if l.ctx.Err() != nil || errors.Is(err, kgo.ErrClientClosed) {
		return eventlog.ErrClosed
	}
	return mapErr(err)
}

func mapErr(err error) error {
	var sentinel error
	switch {
	case isSentinel(err):
		return err
	case errors.Is(err, kgo.ErrClientClosed):
		return eventlog.ErrClosed
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		sentinel = eventlog.ErrUnknownTopic
	case errors.Is(err, kerr.TopicAlreadyExists):
		sentinel = eventlog.ErrTopicExists
	case errors.Is(err, kerr.InvalidTopicException), errors.Is(err, kerr.InvalidPartitions),
		errors.Is(err, kerr.InvalidConfig), errors.Is(err, kerr.InvalidReplicationFactor),
		errors.Is(err, kerr.InvalidRequest), errors.Is(err, kerr.PolicyViolation),
		errors.Is(err, kerr.InvalidRecord), errors.Is(err, kerr.CorruptMessage),
		errors.Is(err, kerr.InvalidGroupID), errors.Is(err, kerr.InvalidTimestamp):
		sentinel = eventlog.ErrInvalidArgument
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		sentinel = eventlog.ErrRecordTooLarge
	case errors.Is(err, kerr.OffsetOutOfRange):
		sentinel = eventlog.ErrOffsetOutOfRange
	case errors.Is(err, kerr.IllegalGeneration), errors.Is(err, kerr.UnknownMemberID),
		errors.Is(err, kerr.RebalanceInProgress), errors.Is(err, kerr.FencedInstanceID):
		sentinel = eventlog.ErrRebalanced
	default:
		return fmt.Errorf("kafkalog: %s", err)
	}
	return fmt.Errorf("%w: %s", sentinel, err)
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

// retriable reports errors after which a request to the partition's
// leader may succeed once metadata is refreshed; the request was not
// applied.
func retriable(err error) bool {
	return errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.LeaderNotAvailable) ||
		errors.Is(err, kerr.UnknownLeaderEpoch) || errors.Is(err, kerr.FencedLeaderEpoch) ||
		errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID) ||
		errors.Is(err, kerr.NotEnoughReplicas) || errors.Is(err, kerr.RequestTimedOut)
}

// metadata returns topic's id and partition leaders, from the cache unless
// refresh.
func (l *Log) metadata(ctx context.Context, topic string, refresh bool) (topicMeta, error) {
	if !refresh {
		l.mu.Lock()
		m, ok := l.mu.meta[topic]
		l.mu.Unlock()
		if ok {
			return m, nil
		}
	}
	md, err := l.adm.Metadata(ctx, topic)
	if err != nil {
		return topicMeta{}, err
	}
	td, ok := md.Topics[topic]
	if !ok {
		return topicMeta{}, kerr.UnknownTopicOrPartition
	}
	if td.Err != nil {
		l.forget(topic)
		return topicMeta{}, td.Err
	}
	m := topicMeta{id: td.ID, leaders: make([]int32, len(td.Partitions))}
	for p, pd := range td.Partitions {
		if int(p) < len(m.leaders) && p >= 0 {
			m.leaders[p] = pd.Leader
		}
	}
	l.mu.Lock()
	l.mu.meta[topic] = m
	l.mu.Unlock()
	return m, nil
}

func (l *Log) forget(topic string) {
	l.mu.Lock()
	delete(l.mu.meta, topic)
	l.mu.Unlock()
}

// leader returns the partition's leader and the topic's id.
func (l *Log) leader(ctx context.Context, topic string, part int32, refresh bool) (int32, [16]byte, error) {
	m, err := l.metadata(ctx, topic, refresh)
	if err != nil {
		return -1, [16]byte{}, err
	}
	if part < 0 || int(part) >= len(m.leaders) {
		if !refresh {
			// The topic may have grown.
			return l.leader(ctx, topic, part, true)
		}
		return -1, m.id, fmt.Errorf("%w: %s/%d", eventlog.ErrUnknownTopic, topic, part)
	}
	if m.leaders[part] < 0 {
		return -1, m.id, kerr.LeaderNotAvailable
	}
	return m.leaders[part], m.id, nil
}

// CreateTopic implements eventlog.Log. It returns once the cluster's
// metadata shows the topic.
func (l *Log) CreateTopic(ctx context.Context, name string, partitions int, configs map[string]string) error {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return err
	}
	defer done()
	if partitions < 1 || partitions > 1<<20 {
		return fmt.Errorf("%w: topic %q: %d partitions", eventlog.ErrInvalidArgument, name, partitions)
	}
	cfg := make(map[string]*string, len(configs))
	for k, v := range configs {
		cfg[k] = &v
	}
	resp, err := l.adm.CreateTopic(ctx, int32(partitions), l.cfg.ReplicationFactor, cfg, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return l.mapErr(ctx, fmt.Errorf("create topic %q: %w", name, err))
	}
	l.forget(name)
	// Metadata propagates asynchronously in a multi-broker cluster.
	for {
		m, err := l.metadata(ctx, name, true)
		if err == nil && len(m.leaders) == partitions && !slices.Contains(m.leaders, -1) {
			return nil
		}
		select {
		case <-ctx.Done():
			return l.mapErr(ctx, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// DeleteTopic implements eventlog.Log.
func (l *Log) DeleteTopic(ctx context.Context, name string) error {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := l.adm.DeleteTopic(ctx, name)
	if err == nil {
		err = resp.Err
	}
	l.forget(name)
	if err != nil {
		return l.mapErr(ctx, fmt.Errorf("delete topic %q: %w", name, err))
	}
	return nil
}

// Topic implements eventlog.Log. Configs are those whose source is the
// topic (DYNAMIC_TOPIC_CONFIG).
func (l *Log) Topic(ctx context.Context, name string) (eventlog.TopicInfo, error) {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return eventlog.TopicInfo{}, err
	}
	defer done()
	m, err := l.metadata(ctx, name, true)
	if err != nil {
		return eventlog.TopicInfo{}, l.mapErr(ctx, fmt.Errorf("describe topic %q: %w", name, err))
	}
	ti := eventlog.TopicInfo{Name: name, Partitions: len(m.leaders), Configs: map[string]string{}}
	rcs, err := l.adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return eventlog.TopicInfo{}, l.mapErr(ctx, fmt.Errorf("describe configs of %q: %w", name, err))
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			return eventlog.TopicInfo{}, l.mapErr(ctx, fmt.Errorf("describe configs of %q: %w", name, rc.Err))
		}
		for _, c := range rc.Configs {
			if c.Source == kmsg.ConfigSourceDynamicTopicConfig && c.Value != nil {
				ti.Configs[c.Key] = *c.Value
			}
		}
	}
	return ti, nil
}

// Append implements eventlog.Log.
func (l *Log) Append(ctx context.Context, topic string, partition int32, recs []eventlog.Record) (int64, error) {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return -1, err
	}
	defer done()
	if len(recs) == 0 {
		return -1, fmt.Errorf("%w: append of no records", eventlog.ErrInvalidArgument)
	}
	raw, err := recbatch.Encode(recs, time.Now())
	if err != nil {
		return -1, err
	}
	for attempt := 0; ; attempt++ {
		base, err := l.produce(ctx, topic, partition, raw, attempt > 0)
		if err == nil {
			return base, nil
		}
		if !retriable(err) || attempt >= 5 || ctx.Err() != nil {
			return -1, l.mapErr(ctx, fmt.Errorf("append to %s/%d: %w", topic, partition, err))
		}
		select {
		case <-ctx.Done():
			return -1, l.mapErr(ctx, ctx.Err())
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
}

func (l *Log) produce(ctx context.Context, topic string, partition int32, raw []byte, refresh bool) (int64, error) {
	leader, id, err := l.leader(ctx, topic, partition, refresh)
	if err != nil {
		return -1, err
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 30000
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutMillis = int32(max(time.Until(dl).Milliseconds(), 1))
	}
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic, id
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, raw
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := l.cl.Broker(int(leader)).Request(ctx, req)
	if err != nil {
		return -1, err
	}
	resp := kresp.(*kmsg.ProduceResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return -1, fmt.Errorf("produce response for %d topics", len(resp.Topics))
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		if p.ErrorMessage != nil {
			err = fmt.Errorf("%w: %s", err, *p.ErrorMessage)
		}
		return -1, err
	}
	return p.BaseOffset, nil
}

// Read implements eventlog.Log.
func (l *Log) Read(ctx context.Context, topic string, partition int32, offset int64, opts eventlog.ReadOptions) ([]eventlog.Record, error) {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if offset < 0 {
		return nil, fmt.Errorf("%w: %s/%d offset %d", eventlog.ErrOffsetOutOfRange, topic, partition, offset)
	}
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = eventlog.DefaultReadBytes
	}
	deadline := time.Now().Add(opts.Wait)
	for attempt := 0; ; {
		recs, next, err := l.fetch(ctx, topic, partition, offset, maxBytes, time.Until(deadline), attempt > 0)
		switch {
		case err != nil && retriable(err) && attempt < 5 && ctx.Err() == nil:
			attempt++
			time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
			continue
		case err != nil:
			return nil, l.mapErr(ctx, fmt.Errorf("read %s/%d at %d: %w", topic, partition, offset, err))
		case len(recs) > 0:
			return recs, nil
		case next > offset:
			// Only control batches or compacted-away offsets.
			offset = next
			continue
		}
		return []eventlog.Record{}, nil
	}
}

func (l *Log) fetch(ctx context.Context, topic string, partition int32, offset int64, maxBytes int, wait time.Duration, refresh bool) ([]eventlog.Record, int64, error) {
	leader, id, err := l.leader(ctx, topic, partition, refresh)
	if err != nil {
		return nil, offset, err
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = int32(max(wait.Milliseconds(), 0))
	req.MinBytes = 1
	req.MaxBytes = int32(maxBytes)
	req.SessionEpoch = -1 // no fetch session
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.FetchOffset = offset
	rp.PartitionMaxBytes = int32(maxBytes)
	rp.LogStartOffset = -1
	rp.CurrentLeaderEpoch = -1
	rp.LastFetchedEpoch = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := l.cl.Broker(int(leader)).Request(ctx, req)
	if err != nil {
		return nil, offset, err
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, offset, err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return nil, offset, fmt.Errorf("fetch response for %d topics", len(resp.Topics))
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return nil, offset, err
	}
	return recbatch.Decode(p.RecordBatches, topic, partition, offset)
}

// listOffset sends ListOffsets for one partition: ts is a time in ms, or
// -1 (end) or -2 (start). Kafka answers -1 when no record is that new.
func (l *Log) listOffset(ctx context.Context, topic string, partition int32, ts int64) (int64, error) {
	if _, _, err := l.leader(ctx, topic, partition, false); err != nil {
		return -1, err
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = partition, ts, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := l.cl.Request(ctx, req)
	if err != nil {
		return -1, err
	}
	resp := kresp.(*kmsg.ListOffsetsResponse)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if t.Topic != topic || p.Partition != partition {
				continue
			}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return -1, err
			}
			return p.Offset, nil
		}
	}
	return -1, kerr.UnknownTopicOrPartition
}

// Offsets implements eventlog.Log.
func (l *Log) Offsets(ctx context.Context, topic string, partition int32) (start, end int64, err error) {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return -1, -1, err
	}
	defer done()
	start, err = l.listOffset(ctx, topic, partition, -2)
	if err == nil {
		end, err = l.listOffset(ctx, topic, partition, -1)
	}
	if err != nil {
		return -1, -1, l.mapErr(ctx, fmt.Errorf("offsets of %s/%d: %w", topic, partition, err))
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
	off, err := l.listOffset(ctx, topic, partition, max(t.UnixMilli(), 0))
	if err == nil && off < 0 {
		off, err = l.listOffset(ctx, topic, partition, -1)
	}
	if err != nil {
		return -1, l.mapErr(ctx, fmt.Errorf("offset for time of %s/%d: %w", topic, partition, err))
	}
	return off, nil
}

// CommittedOffsets implements eventlog.Log.
func (l *Log) CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	ctx, done, err := l.callCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := l.adm.FetchOffsets(ctx, group)
	if err != nil {
		if errors.Is(err, kerr.GroupIDNotFound) {
			return map[int32]int64{}, nil
		}
		return nil, l.mapErr(ctx, fmt.Errorf("committed offsets of %q: %w", group, err))
	}
	out := map[int32]int64{}
	for p, o := range resp[topic] {
		if o.Err == nil && o.At >= 0 {
			out[p] = o.At
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
	if len(offsets) == 0 {
		return nil
	}
	var os kadm.Offsets
	for tp, o := range offsets {
		if o < 0 {
			return fmt.Errorf("%w: commit of offset %d for %s/%d", eventlog.ErrInvalidArgument, o, tp.Topic, tp.Partition)
		}
		os.AddOffset(tp.Topic, tp.Partition, o, -1)
	}
	resp, err := l.adm.CommitOffsets(ctx, group, os)
	if err == nil {
		err = resp.Error()
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.UnknownMemberID), errors.Is(err, kerr.IllegalGeneration), errors.Is(err, kerr.RebalanceInProgress):
		return fmt.Errorf("%w: group %q: %v", eventlog.ErrGroupActive, group, err)
	}
	return l.mapErr(ctx, fmt.Errorf("commit offsets of %q: %w", group, err))
}
