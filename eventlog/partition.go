package eventlog

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Murmur2 is Kafka's murmur2 hash (Utils.murmur2 in the Java client, the
// hash of kgo.StickyKeyPartitioner), seed 0x9747b28c. Frozen: changing it
// would move every key to another partition.
func Murmur2(b []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(len(b))
	for len(b) >= 4 {
		k := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		b = b[4:]
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// PartitionFor returns the partition of a non-nil key in a topic of n
// partitions, as Kafka's default partitioner computes it:
// (murmur2(key) & 0x7fffffff) % n. It panics if n < 1.
func PartitionFor(key []byte, n int) int32 {
	if n < 1 {
		panic("eventlog: PartitionFor with no partitions")
	}
	return int32(int64(Murmur2(key)&0x7fffffff) % int64(n))
}

// Producer appends records to topics, choosing partitions by key with
// PartitionFor; records with a nil key go round-robin. It caches each
// topic's partition count (Forget drops it, after the topic grows). Safe for
// concurrent use.
type Producer struct {
	log Log
	rr  atomic.Uint32
	mu  struct {
		sync.Mutex
		parts map[string]int
	}
}

// NewProducer returns a Producer appending to log.
func NewProducer(log Log) *Producer {
	p := &Producer{log: log}
	p.mu.parts = map[string]int{}
	return p
}

// Position is where a record was appended.
type Position struct {
	Partition int32
	Offset    int64
}

// Forget drops the cached partition count of topic.
func (p *Producer) Forget(topic string) {
	p.mu.Lock()
	delete(p.mu.parts, topic)
	p.mu.Unlock()
}

func (p *Producer) partitions(ctx context.Context, topic string) (int, error) {
	p.mu.Lock()
	n, ok := p.mu.parts[topic]
	p.mu.Unlock()
	if ok {
		return n, nil
	}
	ti, err := p.log.Topic(ctx, topic)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	p.mu.parts[topic] = ti.Partitions
	p.mu.Unlock()
	return ti.Partitions, nil
}

// Append appends recs to topic, each to its key's partition, and returns
// their positions, in recs' order. Records of one partition are appended
// together, in order, as one Log.Append; appends to different partitions
// are not atomic together: on error some partitions may have been
// written (their positions are returned, the others are {-1, -1}).
func (p *Producer) Append(ctx context.Context, topic string, recs ...Record) ([]Position, error) {
	n, err := p.partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	pos := make([]Position, len(recs))
	byPart := map[int32][]int{}
	var order []int32
	for i, r := range recs {
		var part int32
		if r.Key == nil {
			part = int32(p.rr.Add(1) % uint32(n))
		} else {
			part = PartitionFor(r.Key, n)
		}
		if _, ok := byPart[part]; !ok {
			order = append(order, part)
		}
		byPart[part] = append(byPart[part], i)
		pos[i] = Position{Partition: -1, Offset: -1}
	}
	for _, part := range order {
		idx := byPart[part]
		batch := make([]Record, len(idx))
		for j, i := range idx {
			batch[j] = recs[i]
		}
		base, err := p.log.Append(ctx, topic, part, batch)
		if err != nil {
			return pos, fmt.Errorf("append to %s/%d: %w", topic, part, err)
		}
		for j, i := range idx {
			pos[i] = Position{Partition: part, Offset: base + int64(j)}
		}
	}
	return pos, nil
}
