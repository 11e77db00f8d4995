package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/broker/txn"
	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/commitlog/batch"
)

// Transactions on the data path: what a partition knows of the
// transactions writing to it (KIP-98).
//
// Per partition, under partition.pmu (and partTxns.mu for readers that do
// not take pmu): the first offset of each producer's ongoing transaction,
// and the aborted-transaction index (producer id, first offset, marker
// offset). The last stable offset (LSO) is the smallest first offset of
// an ongoing transaction, or the high-water mark. Both are saved with the
// producer state snapshot and rebuilt from the log after it: transactional
// batch headers open a transaction, control batches (markers) close it.

// TxnStateTopic is the internal, compacted topic that keeps the
// transaction coordinator's state.
const TxnStateTopic = "__transaction_state"

// AbortedTxn is one entry of a partition's aborted-transaction index: the
// producer's data from FirstOffset up to the abort marker at LastOffset is
// to be skipped by read_committed consumers.
type AbortedTxn struct {
	ProducerID  int64 `json:"pid"`
	FirstOffset int64 `json:"first"`
	LastOffset  int64 `json:"last"`
}

// TxnVerifier checks a transactional batch before it is appended (the
// transaction coordinator): the producer must own an ongoing transaction
// that added the partition. It is called under the partition's produce
// mutex, so that a produce it accepts is appended before the marker that
// ends the transaction.
type TxnVerifier interface {
	VerifyProduce(producerID int64, epoch int16, topic string, partition int32) error
}

// SetTxnVerifier installs the transaction coordinator's check. Without
// one, transactional batches are refused with txn.ErrInvalidTxnState.
func (b *Broker) SetTxnVerifier(v TxnVerifier) {
	b.txnVerifier.Store(&v)
}

// partTxns is a partition's transaction state.
type partTxns struct {
	mu      sync.Mutex
	ongoing map[int64]int64 // producer id -> first offset of its ongoing transaction
	aborted []AbortedTxn    // by LastOffset
}

// lso is the last stable offset given the high-water mark.
func (t *partTxns) lso(hwm int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, first := range t.ongoing {
		hwm = min(hwm, first)
	}
	return hwm
}

// begin notes a transactional batch at offset; pmu is held.
func (t *partTxns) begin(pid, offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.ongoing[pid]; ok {
		return false
	}
	if t.ongoing == nil {
		t.ongoing = map[int64]int64{}
	}
	t.ongoing[pid] = offset
	return true
}

// end notes a marker at offset; pmu is held. It reports whether anything
// changed.
func (t *partTxns) end(pid int64, commit bool, offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	first, ok := t.ongoing[pid]
	if !ok {
		return false
	}
	delete(t.ongoing, pid)
	if !commit {
		t.aborted = append(t.aborted, AbortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: offset})
	}
	return true
}

// abortedIn lists the aborted transactions overlapping [from, to].
func (t *partTxns) abortedIn(from, to int64) []AbortedTxn {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, _ := slices.BinarySearchFunc(t.aborted, from, func(a AbortedTxn, off int64) int {
		if a.LastOffset < off {
			return -1
		}
		return 1
	})
	var out []AbortedTxn
	for _, a := range t.aborted[i:] {
		if a.FirstOffset <= to {
			out = append(out, a)
		}
	}
	return out
}

// snapshot copies the state, dropping index entries before start.
func (t *partTxns) snapshot(start int64) (map[string]int64, []AbortedTxn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := 0
	for i < len(t.aborted) && t.aborted[i].LastOffset < start {
		i++
	}
	t.aborted = slices.Clip(t.aborted[i:])
	var on map[string]int64
	for pid, first := range t.ongoing {
		if on == nil {
			on = map[string]int64{}
		}
		on[fmt.Sprint(pid)] = first
	}
	return on, slices.Clone(t.aborted)
}

// observe replays one stored batch into the state (rebuild on open).
func (t *partTxns) observe(h batch.Header, raw []byte) {
	if !h.Transactional() || h.ProducerID < 0 {
		return
	}
	if !h.Control() {
		t.begin(h.ProducerID, h.BaseOffset)
		return
	}
	if commit, ok := controlType(raw); ok {
		t.end(h.ProducerID, commit, h.BaseOffset)
	}
}

// Control record layout (Kafka's): key version i16 = 0 | type i16 (0 abort,
// 1 commit); value version i16 = 0 | coordinator epoch i32.
func controlKey(commit bool) []byte {
	var typ uint16
	if commit {
		typ = 1
	}
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 0), typ)
}

// controlType reads a control batch's marker type.
func controlType(raw []byte) (commit, ok bool) {
	var it batch.Iter
	if it.Reset(raw) != nil || !it.Next() {
		return false, false
	}
	k := it.Record().Key
	if len(k) < 4 || binary.BigEndian.Uint16(k) != 0 {
		return false, false
	}
	switch binary.BigEndian.Uint16(k[2:]) {
	case 0:
		return false, true
	case 1:
		return true, true
	}
	return false, false
}

// verifyTxnBatches checks the transactional batches of a produce request
// with the coordinator; p.pmu is held.
func (b *Broker) verifyTxnBatches(p *partition, heads []batch.Header) error {
	for _, h := range heads {
		if !h.Transactional() {
			continue
		}
		v := b.txnVerifier.Load()
		if v == nil {
			return fmt.Errorf("%w: no transaction coordinator", txn.ErrInvalidTxnState)
		}
		if err := (*v).VerifyProduce(h.ProducerID, h.ProducerEpoch, p.t.name, p.index); err != nil {
			if errors.Is(err, txn.ErrProducerFenced) {
				return fmt.Errorf("%w: %v", ErrInvalidProducerEpoch, err)
			}
			return err
		}
	}
	return nil
}

// trackTxnBatches notes appended transactional batches; p.pmu is held.
func (p *partition) trackTxnBatches(heads []batch.Header, base int64) {
	off := base
	for _, h := range heads {
		if h.Transactional() && p.txns.begin(h.ProducerID, off) {
			p.pdirty = true
		}
		off += int64(h.LastOffsetDelta) + 1
	}
}

// WriteTxnMarkers appends a commit or abort marker for the producer to
// every partition and returns once all are durable (whatever the topics'
// durability mode, as the coordinator's decision depends on them).
// Partitions that no longer exist are skipped. It implements txn.Markers.
func (b *Broker) WriteTxnMarkers(ctx context.Context, pid int64, epoch int16, commit bool, parts []txn.TopicPartition) error {
	raw, err := batch.Encode(nil, batch.BuildOptions{
		Producer: true, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: batch.NoSequence,
		Transactional: true, Control: true,
	}, []batch.Rec{{Timestamp: time.Now().UnixMilli(), Key: controlKey(commit), Value: []byte{0, 0, 0, 0, 0, 0}}})
	if err != nil {
		return err
	}
	var pends []commitlog.Pending
	for _, tp := range parts {
		p, err := b.partition(tp.Topic, tp.Partition, false)
		if errors.Is(err, ErrUnknownTopic) {
			b.logger.Warn("skipping transaction marker for a missing partition", "topic", tp.Topic, "partition", tp.Partition)
			continue
		}
		if err != nil {
			return err
		}
		pend, err := p.appendMarker(ctx, bytes.Clone(raw), pid, epoch, commit)
		if err != nil {
			return fmt.Errorf("marker to %s: %w", p.name, err)
		}
		pends = append(pends, pend)
	}
	for _, pend := range pends {
		if err := pend.Wait(ctx); err != nil {
			return fmt.Errorf("%w: %v", ErrStorage, err)
		}
	}
	return nil
}

func (p *partition) appendMarker(ctx context.Context, raw []byte, pid int64, epoch int16, commit bool) (commitlog.Pending, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	p.pmu.Lock()
	defer p.pmu.Unlock()
	pend, err := p.log.AppendAsync(ctx, raw)
	if err != nil {
		return pend, mapLogError(err)
	}
	// NB: the index changes as soon as the marker is written, before it
	// is durable: the coordinator's decision is durable already and a
	// lost marker is written again, so readers up to the high-water mark
	// never see a different outcome.
	if p.txns.end(pid, commit, pend.BaseOffset) {
		p.pdirty = true
	}
	// A marker with a newer epoch fences the producer's older epochs here.
	if st := p.producers[pid]; st == nil || epoch > st.Epoch {
		p.producers[pid] = &producerState{Epoch: epoch}
		p.pdirty = true
	}
	return pend, nil
}

// StableOffsets returns a partition's log start offset, high-water mark and
// last stable offset. It never auto-creates the topic.
func (b *Broker) StableOffsets(topic string, part int32) (start, hwm, lso int64, err error) {
	p, err := b.partition(topic, part, false)
	if err != nil {
		return -1, -1, -1, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	hwm = p.log.HighWatermark()
	return p.log.StartOffset(), hwm, p.txns.lso(hwm), nil
}

// FetchCommitted is Fetch for read_committed consumers: it returns batches
// below the last stable offset only, and the aborted transactions whose
// data overlaps what it returns.
func (b *Broker) FetchCommitted(ctx context.Context, topic string, part int32, offset int64, maxBytes int, dst []byte) (Fetched, error) {
	p, err := b.partition(topic, part, false)
	if err != nil {
		return Fetched{HighWatermark: -1, LogStartOffset: -1, LastStableOffset: -1}, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	hwm := p.log.HighWatermark()
	out := Fetched{HighWatermark: hwm, LogStartOffset: p.log.StartOffset(), LastStableOffset: p.txns.lso(hwm)}
	if offset >= out.LastStableOffset && offset <= hwm {
		return out, nil
	}
	recs, err := p.log.Read(ctx, offset, maxBytes, dst)
	if err != nil {
		return out, mapLogError(err)
	}
	// The LSO is a batch boundary (a transaction's first batch, or the
	// high-water mark): cut before the first batch at or past it.
	n, last := 0, int64(-1)
	for n < len(recs) {
		h, err := batch.ParseHeader(recs[n:])
		if err != nil || h.BaseOffset >= out.LastStableOffset {
			break
		}
		last = h.LastOffset()
		n += h.Size()
	}
	out.Records = recs[:n]
	if n > 0 {
		out.Aborted = p.txns.abortedIn(offset, last)
	}
	b.m.fetchBytes.Add(float64(n))
	p.counters.fetched.Add(countFetched(recs[:n], offset))
	return out, nil
}

// TxnStore returns the txn.Store backed by the internal transaction state
// topic, creating the topic on first use. Records are durable (fsynced)
// before Append returns.
func (b *Broker) TxnStore() (txn.Store, error) {
	err := b.createTopic(TxnStateTopic, 1, map[string]string{
		CfgCleanupPolicy: "compact",
		CfgDurability:    "always",
		CfgSegmentBytes:  fmt.Sprint(64 << 20),
	}, true)
	if err != nil && !errors.Is(err, ErrTopicExists) {
		return nil, err
	}
	return &txnStore{b: b}, nil
}

type txnStore struct{ b *Broker }

func (s *txnStore) Append(ctx context.Context, recs []txn.KV) error {
	gs := &groupStore{b: s.b}
	kvs := make([]groupsKV, len(recs))
	for i, r := range recs {
		kvs[i] = groupsKV{Key: r.Key, Value: r.Value}
	}
	return gs.appendTo(ctx, TxnStateTopic, kvs)
}

func (s *txnStore) Replay(ctx context.Context, fn func(txn.KV) error) error {
	gs := &groupStore{b: s.b}
	return gs.replayFrom(ctx, TxnStateTopic, func(kv groupsKV) error { return fn(txn.KV{Key: kv.Key, Value: kv.Value}) })
}

// NewProducerID allocates an idempotent producer id (for the transaction
// coordinator's Config.NewProducerID).
func (b *Broker) NewProducerID(ctx context.Context) (int64, error) {
	id, _, err := b.InitProducerID(ctx, "")
	return id, err
}
