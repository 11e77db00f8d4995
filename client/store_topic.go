package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// DefaultProcessedTopic is the compacted topic WithIdempotency keeps
// processed event ids in, unless WithProcessedTopic names another.
const DefaultProcessedTopic = "__herald_processed"

// topicStore is the durable ProcessedStore behind WithIdempotency.
//
// Layout: records in the compacted topic, each holding the ids of a
// partition's batch of handled events (markBatch, below); a record of the
// first layout holds one id (key = group NUL id, value = the handled time in
// Unix milliseconds, base 10) and is still read. The marks of events read
// from input partition p go to partition p mod N of the topic, so a member
// that is assigned p loads only that one partition, lazily, when it first
// handles an event of p. Entries older than the TTL are ignored on load and
// on lookup; the topic is created with retention.ms = TTL so old ids also
// leave the disk.
//
// A mark is pending (visible to Seen for the rest of its partition's batch,
// so a redelivery within the batch is skipped) from the handler's success
// until its record is durable or has failed; the subscriber writes the
// records of a batch after the batch's outputs are durable and before it
// commits offsets, one record per partition, and then adds the durable ids
// to the partition's table under one lock. Under ExactlyOnce the records
// are written in the batch's transaction and loaded with read_committed, so
// a mark exists iff its outputs and offset commit do.
//
// NB: the per-event path (Seen, Mark) takes no lock and allocates nothing:
// Seen reads the partition's idTable without a lock and the batch's pending
// ids from the partition's own batch state; Mark puts the mark in the
// event's outbox.
type topicStore struct {
	topic, group  string
	ttl           time.Duration
	nparts        int32
	readCommitted bool
	adm           *kadm.Client
	loaderOpts    []kgo.Opt
	logger        *slog.Logger
	now           func() time.Time
	clockOnce     sync.Once
	clk           idClock
	keyNonce      uint64        // random per store: batch record keys of members differ
	seq           atomic.Uint64 // makes this store's batch record keys unique

	// parts[p] is the state of store partition p, nil until first used
	// and after it is dropped. NB: atomic, not under one mutex, so the
	// handlers of different partitions do not meet on a lock per event.
	parts []atomic.Pointer[procPart]
}

type procPart struct {
	mu    sync.Mutex              // held by the writer of table and by a load
	table atomic.Pointer[idTable] // nil until loaded
}

func (s *topicStore) clock() idClock {
	s.clockOnce.Do(func() { s.clk, s.keyNonce = newIDClock(s.ttl), rand.Uint64() })
	return s.clk
}

func (s *topicStore) part(p int32) *procPart {
	slot := &s.parts[p]
	if pp := slot.Load(); pp != nil {
		return pp
	}
	pp := &procPart{}
	if slot.CompareAndSwap(nil, pp) {
		return pp
	}
	return slot.Load()
}

// drop forgets the state of the store partitions behind input partitions
// that this member lost: another member may write to them now.
func (s *topicStore) drop(inputs map[string][]int32) {
	for _, ps := range inputs {
		for _, p := range ps {
			s.parts[p%s.nparts].Store(nil)
		}
	}
}

// table returns store partition p's id table, loading it on first use.
func (s *topicStore) table(ctx context.Context, pp *procPart, p int32) (*idTable, error) {
	if t := pp.table.Load(); t != nil {
		return t, nil
	}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if t := pp.table.Load(); t != nil {
		return t, nil
	}
	t, err := s.load(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("load processed ids: %w", err)
	}
	pp.table.Store(t)
	return t, nil
}

func (s *topicStore) Seen(ctx context.Context, id string) (bool, error) {
	d, _ := ctx.Value(deliveryKey).(*Delivery)
	var p int32
	if d != nil {
		p = d.Partition
	}
	p %= s.nparts
	t, err := s.table(ctx, s.part(p), p)
	if err != nil {
		return false, err
	}
	k := keyOf(id)
	var nowMs int64
	if d != nil && d.batch != nil {
		b := d.batch
		b.lastID, b.lastKey = id, k
		if b.pending.has(k) {
			return true, nil
		}
		if b.cur < len(b.pre) && b.pre[b.cur].ok && b.pre[b.cur].key == k && b.pre[b.cur].p == p {
			return b.pre[b.cur].seen, nil
		}
		if b.nowMs == 0 {
			b.nowMs = s.now().UnixMilli()
		}
		nowMs = b.nowMs
	} else {
		nowMs = s.now().UnixMilli()
	}
	c := s.clock()
	return t.contains(k, c.at(nowMs), c), nil
}

// preLook is a lookup made ahead of handling: the key of a record's
// ce_id header, the store partition, and whether the id was in the table.
type preLook struct {
	key  idKey
	p    int32
	ok   bool
	seen bool
}

// prelook looks up the ids of a partition's batch of records (their ce_id
// headers) before they are handled, and keeps the answers in pr for Seen.
// NB: all keys are hashed first and the table probed after, in a loop of
// independent loads, so the CPU overlaps the cache misses of many lookups
// instead of paying one per event on the handler path. The table does not
// change while a batch is handled (marks are added after it), and ids made
// pending during the batch are checked by Seen before these answers.
func (s *topicStore) prelook(ctx context.Context, pr *partResult, rs []*kgo.Record) {
	if len(rs) == 0 {
		return
	}
	p := rs[0].Partition % s.nparts
	t, err := s.table(ctx, s.part(p), p)
	if err != nil {
		return // Seen reports it
	}
	pre := make([]preLook, len(rs))
	for i, r := range rs {
		if r.Partition%s.nparts != p {
			continue
		}
		for _, h := range r.Headers {
			if h.Key == event.HeaderID {
				pre[i] = preLook{key: idKey{maphash.Bytes(idSeeds[0], h.Value), maphash.Bytes(idSeeds[1], h.Value)}, p: p, ok: true}
				break
			}
		}
	}
	if pr.nowMs == 0 {
		pr.nowMs = s.now().UnixMilli()
	}
	c := s.clock()
	now := c.at(pr.nowMs)
	for i := range pre {
		if pre[i].ok {
			pre[i].seen = t.contains(pre[i].key, now, c)
		}
	}
	pr.pre = pre
	pr.idmSlab = make([]idMark, len(rs))
	pr.pending.reserve(len(rs))
}

func (s *topicStore) Mark(ctx context.Context, id string) error {
	ob, ok := ctx.Value(outboxKey).(*outbox)
	if !ok {
		return errors.New("processed-id store used outside a subscriber")
	}
	d, _ := ctx.Value(deliveryKey).(*Delivery)
	var p int32
	var k idKey
	if d != nil {
		p = d.Partition
		if b := d.batch; b != nil && b.lastID == id {
			k = b.lastKey // NB: Seen just hashed it
		} else {
			k = keyOf(id)
		}
	} else {
		k = keyOf(id)
	}
	ob.addIDMark(idMark{s: s, p: p % s.nparts, key: k, id: id})
	return nil
}

// idMark is a topicStore mark: held in the event's outbox, then in its
// inflight, then written in its partition's batch record.
type idMark struct {
	s   *topicStore
	p   int32 // store partition
	key idKey
	id  string
}

// commitIDMarks adds durable marks to their partitions' tables, taking each
// partition's lock once per run of marks for it. A partition that is not
// loaded (dropped, or never used) is skipped: a later load reads the
// records.
func commitIDMarks(ms []idMark, nowMs int64) {
	for i := 0; i < len(ms); {
		s, p := ms[i].s, ms[i].p
		j := i + 1
		for j < len(ms) && ms[j].s == s && ms[j].p == p {
			j++
		}
		pp := s.part(p)
		c := s.clock()
		at := c.at(nowMs)
		pp.mu.Lock()
		if t := pp.table.Load(); t != nil {
			for _, m := range ms[i:j] {
				t = t.insert(m.key, at, c)
			}
			pp.table.Store(t)
		}
		pp.mu.Unlock()
		i = j
	}
}

// Batch record of marks (value layout version 1; the constants are frozen):
//
//	key   = group NUL NUL nonce "." sequence (base 36; unique, so compaction
//	        keeps every batch: they leave by retention.ms = TTL)
//	value = 0x01 | uvarint unix-millis | uvarint count | count × (uvarint len | id bytes)
//
// A first-layout value is base-10 digits, so the first byte tells them
// apart. A record's value stays under markBatchMax bytes; a batch with more
// ids is written as several records.
const (
	markBatchV1  = 0x01
	markBatchMax = 256 << 10
	// maxMarkIDLen bounds an id's length as the decoder reads it.
	maxMarkIDLen = 1 << 20
)

// idMarkRecords encodes marks (runs of one store and partition, as a
// partition's batch yields them) into batch records stamped nowMs.
func idMarkRecords(ms []idMark, nowMs int64) []*kgo.Record {
	var recs []*kgo.Record
	for i := 0; i < len(ms); {
		s, p := ms[i].s, ms[i].p
		size := 1 + 2*binary.MaxVarintLen64
		j := i
		for j < len(ms) && ms[j].s == s && ms[j].p == p &&
			(j == i || size+binary.MaxVarintLen64+len(ms[j].id) <= markBatchMax) {
			size += binary.MaxVarintLen64 + len(ms[j].id)
			j++
		}
		s.clock() // sets keyNonce
		key := make([]byte, 0, len(s.group)+2+28)
		key = append(append(key, s.group...), 0, 0)
		key = strconv.AppendUint(key, s.keyNonce, 36)
		key = append(key, '.')
		key = strconv.AppendUint(key, s.seq.Add(1), 36)
		v := make([]byte, 0, size)
		v = append(v, markBatchV1)
		v = binary.AppendUvarint(v, uint64(nowMs))
		v = binary.AppendUvarint(v, uint64(j-i))
		for _, m := range ms[i:j] {
			v = binary.AppendUvarint(v, uint64(len(m.id)))
			v = append(v, m.id...)
		}
		recs = append(recs, &kgo.Record{Topic: s.topic, Partition: p, Key: key, Value: v})
		i = j
	}
	return recs
}

// decodeMarkBatch calls fn for each id of a batch record's value, with the
// batch's time. It reports a malformed value (truncated, a length past the
// end, trailing bytes) without calling fn for any id.
func decodeMarkBatch(v []byte, fn func(id []byte, ms int64)) error {
	if len(v) == 0 || v[0] != markBatchV1 {
		return errors.New("processed-id batch: not version 1")
	}
	b := v[1:]
	ms, n := binary.Uvarint(b)
	if n <= 0 || ms > math.MaxInt64 {
		return errors.New("processed-id batch: bad time")
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) { // NB: each id takes at least its length byte
		return errors.New("processed-id batch: bad count")
	}
	b = b[n:]
	// Validate everything before reporting anything.
	rest := b
	for range count {
		l, n := binary.Uvarint(rest)
		if n <= 0 || l > maxMarkIDLen || l > uint64(len(rest)-n) {
			return errors.New("processed-id batch: id length past the end")
		}
		rest = rest[n+int(l):]
	}
	if len(rest) != 0 {
		return fmt.Errorf("processed-id batch: %d trailing bytes", len(rest))
	}
	for range count {
		l, n := binary.Uvarint(b)
		fn(b[n:n+int(l)], int64(ms))
		b = b[n+int(l):]
	}
	return nil
}

// loadIdle bounds the wait for a record that will never come: read_committed
// end offsets count transaction markers, which are never returned.
// loadFirst is that bound before the first record, which on a loaded
// machine can take longer than loadIdle to arrive.
const (
	loadIdle  = 300 * time.Millisecond
	loadFirst = 3 * time.Second
)

func (s *topicStore) load(ctx context.Context, p int32) (*idTable, error) {
	start := time.Now()
	c := s.clock()
	now := s.now()
	nowTick := c.at(now.UnixMilli())
	t := newIDTable(0, nowTick-c.live)
	var ends kadm.ListedOffsets
	var err error
	if s.readCommitted {
		ends, err = s.adm.ListCommittedOffsets(ctx, s.topic)
	} else {
		ends, err = s.adm.ListEndOffsets(ctx, s.topic)
	}
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, err
	}
	end := int64(0)
	if o, ok := ends.Lookup(s.topic, p); ok {
		end = o.Offset
	}
	if end <= 0 {
		return t, nil
	}
	iso := kgo.ReadUncommitted()
	if s.readCommitted {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(append(s.loaderOpts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.topic: {p: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(iso))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	prefix := s.group + "\x00"
	// NB: first-layout records can withdraw an id (a tombstone, or an
	// expired time), so ids are gathered in a map before the table, which
	// never deletes, is built.
	ids := make(map[idKey]int64)
	add := func(id string, ms int64) {
		if ms <= now.UnixMilli() && now.Sub(time.UnixMilli(ms)) >= s.ttl {
			return
		}
		if k := keyOf(id); ms > ids[k] {
			ids[k] = ms
		}
	}
	next, n, bad := int64(0), 0, 0
	for next < end {
		idle := loadIdle
		if next == 0 {
			idle = loadFirst // NB: the first fetch also connects and reads metadata
		}
		pctx, cancel := context.WithTimeout(ctx, idle)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		got := 0
		fs.EachRecord(func(r *kgo.Record) {
			got++
			next = r.Offset + 1
			if !bytes.HasPrefix(r.Key, []byte(prefix)) {
				return
			}
			if len(r.Value) > 0 && r.Value[0] == markBatchV1 {
				if err := decodeMarkBatch(r.Value, func(id []byte, ms int64) { add(string(id), ms); n++ }); err != nil {
					bad++
				}
				return
			}
			id := string(r.Key[len(prefix):])
			ms, err := strconv.ParseInt(string(r.Value), 10, 64)
			if err != nil || r.Value == nil {
				delete(ids, keyOf(id))
				return
			}
			n++
			if now.Sub(time.UnixMilli(ms)) < s.ttl {
				ids[keyOf(id)] = ms
			} else {
				delete(ids, keyOf(id))
			}
		})
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				return nil, fe.Err
			}
		}
		if got == 0 {
			break // the rest up to end are markers or aborted records
		}
	}
	if bad > 0 {
		s.logger.Warn("skipped malformed processed-id records", "topic", s.topic, "partition", p, "records", bad)
	}
	t = newIDTable(len(ids), nowTick-c.live)
	for k, ms := range ids {
		t.put(k, min(max(c.at(ms), t.base), t.base+tickMask))
	}
	s.logger.Debug("loaded processed ids", "topic", s.topic, "partition", p, "ids", len(ids), "marks", n, "took", time.Since(start))
	return t, nil
}

// ensureProcessedTopic creates the store's topic (compacted, retention =
// ttl) if it is missing and returns its partition count.
func ensureProcessedTopic(ctx context.Context, adm *kadm.Client, topic string, parts int32, ttl time.Duration, logger *slog.Logger) (int32, error) {
	ms := strconv.FormatInt(ttl.Milliseconds(), 10)
	cfg := map[string]*string{"cleanup.policy": kadm.StringPtr("compact,delete"), "retention.ms": &ms}
	resp, err := adm.CreateTopic(ctx, parts, -1, cfg, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		// NB: a broker that does not know these configs still gets a topic,
		// only without compaction; say so rather than fail.
		logger.Warn("creating the processed-id topic with compaction failed; creating it plain", "topic", topic, "err", err)
		resp, err = adm.CreateTopic(ctx, parts, -1, nil, topic)
		if err == nil {
			err = resp.Err
		}
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return 0, fmt.Errorf("create processed-id topic %s: %w", topic, err)
	}
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe processed-id topic %s: %w", topic, err)
	}
	t, ok := td[topic]
	if !ok || t.Err != nil || len(t.Partitions) == 0 {
		return 0, fmt.Errorf("describe processed-id topic %s: %v", topic, t.Err)
	}
	return int32(len(t.Partitions)), nil
}

// storePartitioner honours Record.Partition for the processed-id topic and
// hashes keys (murmur2, like every Kafka client) everywhere else.
type storePartitioner struct {
	manual string
	def    kgo.Partitioner
}

func (p storePartitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t == p.manual {
		return kgo.ManualPartitioner().ForTopic(t)
	}
	return p.def.ForTopic(t)
}

// dropAll forgets every loaded partition (after an aborted transaction).
func (s *topicStore) dropAll() {
	for i := range s.parts {
		s.parts[i].Store(nil)
	}
}
