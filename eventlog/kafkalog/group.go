package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/eventlog"
)

// JoinGroup implements eventlog.Log: one kgo client per member, with
// manual commits.
func (l *Log) JoinGroup(ctx context.Context, group string, topics []string, opts eventlog.GroupOptions) (eventlog.GroupConsumer, error) {
	if _, done, err := l.callCtx(ctx); err != nil {
		return nil, err
	} else {
		done()
	}
	if group == "" || len(topics) == 0 {
		return nil, fmt.Errorf("%w: a group needs an id and topics", eventlog.ErrInvalidArgument)
	}
	opts = opts.WithDefaults()
	c := &consumer{l: l, group: group, opts: opts}
	c.mu.owned = map[eventlog.TopicPartition]bool{}
	reset := kgo.NewOffset().AtStart()
	if opts.StartAt == eventlog.StartLatest {
		reset = kgo.NewOffset().AtEnd()
	}
	cl, err := kgo.NewClient(l.cfg.clientOpts(
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(reset),
		kgo.SessionTimeout(opts.SessionTimeout),
		kgo.HeartbeatInterval(opts.HeartbeatInterval),
		kgo.RebalanceTimeout(opts.RebalanceTimeout),
		kgo.FetchMaxBytes(int32(opts.MaxPollBytes)),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onRevoked),
	)...)
	if err != nil {
		return nil, fmt.Errorf("%w: kafkalog: %v", eventlog.ErrInvalidArgument, err)
	}
	c.cl = cl
	return c, nil
}

// consumer is a GroupConsumer over a kgo group client. kgo runs the
// group protocol and calls the callbacks on its own goroutine, one at a
// time, calling OnPartitionsAssigned before fetching the new partitions.
type consumer struct {
	l     *Log
	cl    *kgo.Client
	group string
	opts  eventlog.GroupOptions

	closeOnce sync.Once
	mu        struct {
		sync.Mutex
		// owned is the assignment as the callbacks saw it; Poll filters
		// by it, so records of a partition revoked while they were in
		// flight are dropped.
		owned  map[eventlog.TopicPartition]bool
		closed bool
	}
}

func flatten(m map[string][]int32) []eventlog.TopicPartition {
	var out []eventlog.TopicPartition
	for t, ps := range m {
		for _, p := range ps {
			out = append(out, eventlog.TopicPartition{Topic: t, Partition: p})
		}
	}
	eventlog.SortPartitions(out)
	return out
}

func (c *consumer) onAssigned(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	tps := flatten(m)
	if len(tps) == 0 {
		return
	}
	// The user's callback first: kgo fetches the partitions only after
	// this returns, so nothing is filtered out meanwhile.
	if c.opts.OnAssigned != nil {
		c.opts.OnAssigned(ctx, tps)
	}
	c.mu.Lock()
	for _, tp := range tps {
		c.mu.owned[tp] = true
	}
	c.mu.Unlock()
}

func (c *consumer) onRevoked(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	var tps []eventlog.TopicPartition
	c.mu.Lock()
	for _, tp := range flatten(m) {
		if c.mu.owned[tp] {
			delete(c.mu.owned, tp)
			tps = append(tps, tp)
		}
	}
	c.mu.Unlock()
	if len(tps) > 0 && c.opts.OnRevoked != nil {
		c.opts.OnRevoked(ctx, tps)
	}
}

// Assignment implements eventlog.GroupConsumer.
func (c *consumer) Assignment() []eventlog.TopicPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]eventlog.TopicPartition, 0, len(c.mu.owned))
	for tp := range c.mu.owned {
		out = append(out, tp)
	}
	eventlog.SortPartitions(out)
	return out
}

// Close implements eventlog.GroupConsumer: kgo leaves the group, calling
// OnRevoked for what the member owned.
func (c *consumer) Close() error {
	c.closeOnce.Do(func() {
		c.cl.Close()
		c.mu.Lock()
		c.mu.closed = true
		c.mu.Unlock()
	})
	return nil
}

func (c *consumer) closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closed
}

// Poll implements eventlog.GroupConsumer.
func (c *consumer) Poll(ctx context.Context) ([]eventlog.Record, error) {
	for {
		if c.closed() {
			return nil, eventlog.ErrClosed
		}
		fs := c.cl.PollFetches(ctx)
		if fs.IsClientClosed() {
			return nil, eventlog.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.l.ctx.Err() != nil {
			return nil, eventlog.ErrClosed
		}
		var out []eventlog.Record
		c.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			if !c.mu.owned[eventlog.TopicPartition{Topic: r.Topic, Partition: r.Partition}] {
				return
			}
			rec := eventlog.Record{
				Key: r.Key, Value: r.Value, Timestamp: r.Timestamp,
				Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
			}
			if len(r.Headers) > 0 {
				rec.Headers = make([]eventlog.Header, len(r.Headers))
				for i, h := range r.Headers {
					rec.Headers[i] = eventlog.Header{Key: h.Key, Value: h.Value}
				}
			}
			out = append(out, rec)
		})
		c.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		// Only errors (kgo retries them itself) or filtered records.
	}
}

// Commit implements eventlog.GroupConsumer.
func (c *consumer) Commit(ctx context.Context, offsets map[eventlog.TopicPartition]int64) error {
	if c.closed() {
		return eventlog.ErrClosed
	}
	ctx, done, err := c.l.callCtx(ctx)
	if err != nil {
		return err
	}
	defer done()
	if len(offsets) == 0 {
		return nil
	}
	in := map[string]map[int32]kgo.EpochOffset{}
	for tp, o := range offsets {
		if o < 0 {
			return fmt.Errorf("%w: commit of offset %d for %s/%d", eventlog.ErrInvalidArgument, o, tp.Topic, tp.Partition)
		}
		if in[tp.Topic] == nil {
			in[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		in[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	var cerr error
	c.cl.CommitOffsetsSync(ctx, in, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err)
				}
			}
		}
	})
	if cerr == nil {
		return nil
	}
	if c.closed() || errors.Is(cerr, kgo.ErrClientClosed) {
		return eventlog.ErrClosed
	}
	return c.l.mapErr(ctx, fmt.Errorf("commit for group %q: %w", c.group, cerr))
}
