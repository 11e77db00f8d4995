package groups

import (
	"context"
	"encoding/binary"
	"github.com/heraldhq/herald/internal/binrec"
	"maps"
)

// Transactional offset commits (KIP-98, KIP-447): TxnOffsetCommit stores a
// group's offsets as pending for the producer; they become the group's
// committed offsets when the transaction commits and are dropped when it
// aborts (CompleteTxnOffsets, called by the transaction coordinator).
//
// Pending offsets are stored durably as their own records, so that a
// transaction whose commit decision survives a crash still commits them:
//
//	txn offset key: version u16 = 1 | kind u8 = 3 | group len u16 | group |
//	                producer id i64 | topic len u16 | topic | partition i32
//	value:          the offset value (package doc)
//
// Completing writes, in one append, a tombstone for each pending record and
// (on commit) the offset records. Builds before this kind skip its records
// on replay as undecodable.

const kindTxnOffset byte = 3

// txnPending is group id -> producer id -> pending offsets; actor-owned.
type txnPending map[string]map[int64]map[TopicPartition]Offset

func txnOffsetKey(group string, pid int64, tp TopicPartition) []byte {
	b := make([]byte, 0, 2+1+2+len(group)+8+2+len(tp.Topic)+4)
	b = binary.BigEndian.AppendUint16(b, recordVersion)
	b = append(b, kindTxnOffset)
	b = binrec.AppendStr16(b, group)
	b = binary.BigEndian.AppendUint64(b, uint64(pid))
	b = binrec.AppendStr16(b, tp.Topic)
	return binary.BigEndian.AppendUint32(b, uint32(tp.Partition))
}

// decodeTxnOffsetKey decodes a pending-offset key; ok is false for keys of
// other kinds.
func decodeTxnOffsetKey(b []byte) (group string, pid int64, tp TopicPartition, ok bool, err error) {
	if len(b) < 3 || b[2] != kindTxnOffset {
		return "", 0, tp, false, nil
	}
	r := newReader(b)
	r.Version("key")
	r.U8("key kind")
	group = r.Str16("group id")
	pid = int64(r.U64("producer id"))
	tp.Topic = r.Str16("topic")
	tp.Partition = int32(r.U32("partition"))
	return group, pid, tp, true, r.End("key")
}

func (p txnPending) set(group string, pid int64, tp TopicPartition, o Offset) {
	if p[group] == nil {
		p[group] = map[int64]map[TopicPartition]Offset{}
	}
	if p[group][pid] == nil {
		p[group][pid] = map[TopicPartition]Offset{}
	}
	p[group][pid][tp] = o
}

func (p txnPending) drop(group string, pid int64, tp TopicPartition) {
	if offs := p[group][pid]; offs != nil {
		delete(offs, tp)
		if len(offs) == 0 {
			delete(p[group], pid)
		}
		if len(p[group]) == 0 {
			delete(p, group)
		}
	}
}

// replayTxnOffset applies a pending-offset record; it reports whether kv
// was one (decodable or not).
func (c *Coordinator) replayTxnOffset(kv KV, pending txnPending, skip func(KV, error)) bool {
	group, pid, tp, ok, err := decodeTxnOffsetKey(kv.Key)
	if !ok {
		return false
	}
	if err != nil {
		skip(kv, err)
		return true
	}
	if kv.Value == nil {
		pending.drop(group, pid, tp)
		return true
	}
	o, err := decodeOffset(kv.Value)
	if err != nil {
		skip(kv, err)
		return true
	}
	pending.set(group, pid, tp, o)
	return true
}

// TxnCommitOffsets handles TxnOffsetCommit: the offsets are stored as
// pending for producer pid, durably, and invisible to OffsetFetch until
// CompleteTxnOffsets commits them. A request naming a member or generation
// (v3+) is validated as OffsetCommit is; one without (older clients) is
// not. The transaction coordinator has checked that the group is in the
// producer's transaction. Results are as CommitOffsets'.
func (c *Coordinator) TxnCommitOffsets(ctx context.Context, group, memberID, instanceID string, generation int32, pid int64, offsets map[TopicPartition]Offset) (map[TopicPartition]error, error) {
	unknown := c.unknownParts(offsets)
	ch := make(chan offsetsReply, 1)
	err := c.do(ctx, func() {
		c.st.txnCommit(group, memberID, instanceID, generation, pid, offsets, unknown, func(res map[TopicPartition]error, err error) {
			ch <- offsetsReply{res, err}
		})
	})
	if err != nil {
		return nil, err
	}
	r, err := await(c, ctx, ch, nil)
	if err != nil {
		return nil, err
	}
	return r.res, r.err
}

// CompleteTxnOffsets commits (or drops) the producer's pending offsets of
// the group, durably; with none pending it does nothing. It implements
// txn.Groups.
func (c *Coordinator) CompleteTxnOffsets(ctx context.Context, group string, pid int64, commit bool) error {
	ch := make(chan error, 1)
	if err := c.do(ctx, func() { c.st.txnComplete(group, pid, commit, func(err error) { ch <- err }) }); err != nil {
		return err
	}
	r, err := await(c, ctx, ch, nil)
	if err != nil {
		return err
	}
	return r
}

func (s *state) txnCommit(groupID, memberID, instanceID string, generation int32, pid int64, offsets map[TopicPartition]Offset,
	unknown map[TopicPartition]bool, reply func(map[TopicPartition]error, error)) {
	res := make(map[TopicPartition]error, len(offsets))
	all := func(err error) {
		for tp := range offsets {
			res[tp] = err
		}
		reply(res, nil)
	}
	if !validGroupID(groupID) {
		all(ErrInvalidGroupID)
		return
	}
	if generation >= 0 || memberID != "" || instanceID != "" {
		g := s.groups[groupID]
		if g == nil {
			all(ErrIllegalGeneration)
			return
		}
		if err := g.validateCommit(memberID, instanceID, generation); err != nil {
			all(err)
			return
		}
	}
	now := s.now()
	accepted, recs := s.acceptOffsets(offsets, unknown, now, res, func(tp TopicPartition) []byte { return txnOffsetKey(groupID, pid, tp) })
	if len(recs) == 0 {
		reply(res, nil)
		return
	}
	s.enqueue(groupID, recs, func(err error) {
		if err != nil {
			reply(nil, err)
			return
		}
		if s.txnPending == nil {
			s.txnPending = txnPending{}
		}
		for tp, o := range accepted {
			s.txnPending.set(groupID, pid, tp, o)
		}
		reply(res, nil)
	})
}

func (s *state) txnComplete(groupID string, pid int64, commit bool, reply func(error)) {
	offs := maps.Clone(s.txnPending[groupID][pid])
	if len(offs) == 0 {
		reply(nil)
		return
	}
	var recs []KV
	for _, tp := range sortedParts(offs) {
		recs = append(recs, KV{Key: txnOffsetKey(groupID, pid, tp)})
		if commit {
			recs = append(recs, KV{Key: offsetKey(groupID, tp), Value: encodeOffset(offs[tp])})
		}
	}
	s.enqueue(groupID, recs, func(err error) {
		if err == nil {
			for tp := range offs {
				s.txnPending.drop(groupID, pid, tp)
			}
			if commit {
				maps.Copy(s.getOrCreate(groupID).offsets, offs)
				s.m.commits.Add(float64(len(offs)))
			}
		}
		reply(err)
	})
}
