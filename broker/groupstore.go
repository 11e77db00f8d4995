package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/commitlog/batch"
)

// OffsetsTopic is the internal, compacted topic that keeps consumer groups'
// committed offsets and metadata.
const OffsetsTopic = "__consumer_offsets"

// GroupStore returns the groups.Store backed by the internal offsets topic,
// creating the topic on first use. Records are durable (fsynced) before
// Append returns, whatever the broker's default durability.
func (b *Broker) GroupStore() (groups.Store, error) {
	err := b.createTopic(OffsetsTopic, 1, map[string]string{
		CfgCleanupPolicy: "compact",
		CfgDurability:    "always",
		CfgSegmentBytes:  fmt.Sprint(64 << 20),
	}, true)
	if err != nil && !errors.Is(err, ErrTopicExists) {
		return nil, err
	}
	return &groupStore{b: b}, nil
}

type groupStore struct{ b *Broker }

// groupsKV is the key/value record both internal stores keep.
type groupsKV = groups.KV

func (s *groupStore) Append(ctx context.Context, recs []groups.KV) error {
	return s.appendTo(ctx, OffsetsTopic, recs)
}

// appendTo durably appends records to an internal topic's partition 0.
func (s *groupStore) appendTo(ctx context.Context, topic string, recs []groupsKV) error {
	if len(recs) == 0 {
		return nil
	}
	now := time.Now().UnixMilli()
	rs := make([]batch.Rec, len(recs))
	for i, kv := range recs {
		rs[i] = batch.Rec{Timestamp: now, Key: kv.Key, Value: kv.Value}
	}
	raw, err := batch.Encode(nil, batch.BuildOptions{}, rs)
	if err != nil {
		return err
	}
	p, err := s.b.partition(topic, 0, false)
	if err != nil {
		return err
	}
	p.mu.RLock()
	pend, err := p.log.AppendAsync(ctx, raw)
	p.mu.RUnlock()
	if err != nil {
		return mapLogError(err)
	}
	return pend.Wait(ctx)
}

func (s *groupStore) Replay(ctx context.Context, fn func(groups.KV) error) error {
	return s.replayFrom(ctx, OffsetsTopic, fn)
}

// replayFrom calls fn for every record of an internal topic's partition 0.
func (s *groupStore) replayFrom(ctx context.Context, topic string, fn func(groupsKV) error) error {
	p, err := s.b.partition(topic, 0, false)
	if err != nil {
		return err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	var it batch.Iter
	var buf []byte
	for off := p.log.StartOffset(); off < p.log.HighWatermark(); {
		out, err := p.log.Read(ctx, off, 1<<20, buf)
		if err != nil {
			return mapLogError(err)
		}
		if len(out) == 0 {
			break
		}
		for q := 0; q < len(out); {
			h, err := batch.ParseHeader(out[q:])
			if err != nil {
				return fmt.Errorf("%w: %v", ErrCorruptMessage, err)
			}
			if err := it.Reset(out[q : q+h.Size()]); err != nil {
				return fmt.Errorf("%w: %v", ErrCorruptMessage, err)
			}
			for it.Next() {
				if it.Offset() < off {
					continue
				}
				r := it.Record()
				// The iterator reuses its buffers: hand out copies.
				if err := fn(groups.KV{Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)}); err != nil {
					return err
				}
			}
			if err := it.Err(); err != nil {
				return fmt.Errorf("%w: %v", ErrCorruptMessage, err)
			}
			off = h.LastOffset() + 1
			q += h.Size()
		}
		buf = out
	}
	return nil
}

// HighWatermark returns a partition's high-water mark, for lag.
func (b *Broker) HighWatermark(topic string, part int32) (int64, bool) {
	p, err := b.partition(topic, part, false)
	if err != nil {
		return 0, false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.log.HighWatermark(), true
}

// PartitionExists reports whether topic has partition part.
func (b *Broker) PartitionExists(topic string, part int32) bool {
	_, err := b.partition(topic, part, false)
	return err == nil
}
