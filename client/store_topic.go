package client

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultProcessedTopic is the compacted topic WithIdempotency keeps
// processed event ids in, unless WithProcessedTopic names another.
const DefaultProcessedTopic = "__herald_processed"

// topicStore is the durable ProcessedStore behind WithIdempotency.
//
// Layout: one record per handled event in the compacted topic, key =
// group + "\x00" + event id, value = the handled time in Unix milliseconds
// (base 10). The record of an event read from input partition p goes to
// partition p mod N of the topic, so a member that is assigned p loads only
// that one partition, lazily, when it first handles an event of p. Entries
// older than the TTL are ignored on load and on lookup; the topic is created
// with retention.ms = TTL so old ids also leave the disk.
//
// A mark is pending (visible to Seen, so a redelivery within the batch is
// skipped) from the handler's success until its record is durable or has
// failed; the subscriber writes the records of a batch after the batch's
// outputs are durable and before it commits offsets. Under ExactlyOnce the
// records are written in the batch's transaction and loaded with
// read_committed, so a mark exists iff its outputs and offset commit do.
type topicStore struct {
	topic, group  string
	ttl           time.Duration
	nparts        int32
	readCommitted bool
	adm           *kadm.Client
	loaderOpts    []kgo.Opt
	logger        *slog.Logger
	now           func() time.Time

	// parts[p] is the state of store partition p, nil until first used
	// and after it is dropped. NB: atomic, not under one mutex, so the
	// handlers of different partitions do not meet on a lock per event.
	parts []atomic.Pointer[procPart]
}

type procPart struct {
	mu      sync.Mutex
	loaded  bool
	ids     map[idKey]int64 // handled time, Unix milliseconds
	pending map[idKey]int   // marks not yet durable: how many
}

// idKey is an event id hashed to 128 bits with per-process seeds. NB: a map
// keyed and valued without pointers is not scanned by the garbage
// collector, which a map of a million id strings would be on every cycle,
// stealing CPU from handlers; at 128 bits a collision (an event wrongly
// taken as handled) is as likely as a random UUID repeating.
type idKey [2]uint64

var idSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func keyOf(id string) idKey {
	return idKey{maphash.String(idSeeds[0], id), maphash.String(idSeeds[1], id)}
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

func (s *topicStore) Seen(ctx context.Context, id string) (bool, error) {
	p := deliveryPartition(ctx) % s.nparts
	pp := s.part(p)
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if !pp.loaded {
		ids, err := s.load(ctx, p)
		if err != nil {
			return false, fmt.Errorf("load processed ids: %w", err)
		}
		pp.ids, pp.loaded = ids, true
	}
	k := keyOf(id)
	if len(pp.pending) > 0 && pp.pending[k] > 0 {
		return true, nil
	}
	ms, ok := pp.ids[k]
	return ok && s.now().UnixMilli()-ms < s.ttl.Milliseconds(), nil
}

func (s *topicStore) Mark(ctx context.Context, id string) error {
	ob, ok := ctx.Value(outboxKey).(*outbox)
	if !ok {
		return errors.New("processed-id store used outside a subscriber")
	}
	p := deliveryPartition(ctx) % s.nparts
	pp := s.part(p)
	m := &topicMark{s: s, pp: pp, p: p, id: id, key: keyOf(id)}
	ob.addMark(m)
	return nil
}

// topicMark is a topicStore mark: one record, pending until it is durable.
// NB: the record is built when the subscriber writes it, after the batch is
// handled, so the handler path pays for no encoding, and one small
// allocation. NB: carving marks from 64 KiB slabs was tried and made the
// tail worse: every 256th mark paid for zeroing a large object.
type topicMark struct {
	s   *topicStore
	pp  *procPart
	p   int32
	id  string
	key idKey
	now time.Time
}

func (m *topicMark) record() *kgo.Record {
	s := m.s
	m.now = s.now()
	// One allocation for key and value: group NUL id | unix millis.
	k := len(s.group) + 1 + len(m.id)
	buf := make([]byte, 0, k+20)
	buf = append(append(append(buf, s.group...), 0), m.id...)
	buf = strconv.AppendInt(buf, m.now.UnixMilli(), 10)
	return &kgo.Record{Topic: s.topic, Partition: m.p, Key: buf[:k:k], Value: buf[k:]}
}

func (m *topicMark) pending() {
	pp := m.pp
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.pending == nil {
		pp.pending = make(map[idKey]int)
	}
	pp.pending[m.key]++
}

func (m *topicMark) commit() {
	pp := m.pp
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.unpendLocked(m.key)
	if pp.ids != nil { // else dropped or never loaded: a later load reads the record
		if m.now.IsZero() {
			m.now = m.s.now()
		}
		pp.ids[m.key] = m.now.UnixMilli()
	}
}

func (m *topicMark) undo() {
	pp := m.pp
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.unpendLocked(m.key)
}

func deliveryPartition(ctx context.Context) int32 {
	if d, ok := ctx.Value(deliveryKey).(*Delivery); ok {
		return d.Partition
	}
	return 0
}

func (pp *procPart) unpendLocked(k idKey) {
	if pp.pending[k]--; pp.pending[k] <= 0 {
		delete(pp.pending, k)
	}
}

// loadIdle bounds the wait for a record that will never come: read_committed
// end offsets count transaction markers, which are never returned.
const loadIdle = 300 * time.Millisecond

func (s *topicStore) load(ctx context.Context, p int32) (map[idKey]int64, error) {
	start := time.Now()
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
	ids := make(map[idKey]int64)
	if end <= 0 {
		return ids, nil
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
	now := s.now()
	next, n := int64(0), 0
	for next < end {
		pctx, cancel := context.WithTimeout(ctx, loadIdle)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		got := 0
		fs.EachRecord(func(r *kgo.Record) {
			got++
			next = r.Offset + 1
			k := string(r.Key)
			if !strings.HasPrefix(k, prefix) {
				return
			}
			id := k[len(prefix):]
			ms, err := strconv.ParseInt(string(r.Value), 10, 64)
			if err != nil || r.Value == nil {
				delete(ids, keyOf(id))
				return
			}
			if now.Sub(time.UnixMilli(ms)) < s.ttl {
				ids[keyOf(id)] = ms
				n++
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
	s.logger.Debug("loaded processed ids", "topic", s.topic, "partition", p, "ids", len(ids), "records", n, "took", time.Since(start))
	return ids, nil
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
