package groups

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"
)

func sortedParts[V any](m map[TopicPartition]V) []TopicPartition {
	return slices.SortedFunc(maps.Keys(m), func(a, b TopicPartition) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
}

// validateCommit is Kafka's validateOffsetCommit plus the state check of
// doCommitOffsets. A commit naming a member or generation must come from the
// current generation's member; a simple commit (generation < 0, no member,
// no instance) only while the group has no members.
func (g *group) validateCommit(memberID, instanceID string, generation int32) error {
	if generation >= 0 || memberID != "" || instanceID != "" {
		if err := g.validateMember(memberID, instanceID); err != nil {
			return err
		}
		if generation != g.generation {
			return ErrIllegalGeneration
		}
	} else if g.state != stateEmpty {
		return ErrUnknownMemberID
	}
	if g.state == stateCompleting {
		// The member has its new generation but not its assignment yet.
		return ErrRebalanceInProgress
	}
	return nil
}

// commit handles an OffsetCommit whose partitions in unknown do not exist.
// reply gets the per-partition errors, or a store error, once the accepted
// offsets are durable and applied.
func (s *state) commit(groupID, memberID, instanceID string, generation int32, offsets map[TopicPartition]Offset,
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
	g := s.groups[groupID]
	if g == nil {
		if generation >= 0 {
			// A member of a group we do not know: it is from an older
			// generation (or an older coordinator).
			all(ErrIllegalGeneration)
			return
		}
		g = s.newGroup(groupID)
	}
	if err := g.validateCommit(memberID, instanceID, generation); err != nil {
		all(err)
		return
	}
	now := s.now()
	if m := g.members[memberID]; m != nil {
		m.lastSeen = now
	}
	accepted, recs := s.acceptOffsets(offsets, unknown, now, res, func(tp TopicPartition) []byte { return offsetKey(groupID, tp) })
	if len(recs) == 0 {
		reply(res, nil)
		return
	}
	s.enqueue(groupID, recs, func(err error) {
		if err != nil {
			reply(nil, err)
			return
		}
		// By id, not g: a Delete queued earlier may have dropped g, and
		// replay would recreate the group from these records too.
		gg := s.getOrCreate(groupID)
		maps.Copy(gg.offsets, accepted)
		s.m.commits.Add(float64(len(accepted)))
		reply(res, nil)
	})
}

func (s *state) fetch(groupID string, parts []TopicPartition) (map[TopicPartition]Offset, error) {
	if !validGroupID(groupID) {
		return nil, ErrInvalidGroupID
	}
	out := map[TopicPartition]Offset{}
	g := s.groups[groupID]
	if g == nil {
		return out, nil
	}
	if parts == nil {
		maps.Copy(out, g.offsets)
		return out, nil
	}
	for _, tp := range parts {
		if o, ok := g.offsets[tp]; ok {
			out[tp] = o
		}
	}
	return out, nil
}

// deleteOffsets is Kafka's handleDeleteOffsets: any partition of an empty
// group; for a live consumer group the partitions of topics no member is
// subscribed to; nothing of another live group (ErrNonEmptyGroup).
func (s *state) deleteOffsets(groupID string, parts []TopicPartition, reply func(map[TopicPartition]error, error)) {
	if !validGroupID(groupID) {
		reply(nil, ErrInvalidGroupID)
		return
	}
	g := s.groups[groupID]
	if g == nil {
		reply(nil, ErrGroupIDNotFound)
		return
	}
	if g.state != stateEmpty && g.protocolType != "consumer" {
		reply(nil, ErrNonEmptyGroup)
		return
	}
	res := make(map[TopicPartition]error, len(parts))
	var recs []KV
	var gone []TopicPartition
	for _, tp := range parts {
		if g.state != stateEmpty && g.subscribedTo(tp.Topic) {
			res[tp] = ErrGroupSubscribedToTopic
			continue
		}
		res[tp] = nil
		if _, ok := g.offsets[tp]; ok {
			recs = append(recs, KV{Key: offsetKey(groupID, tp)})
			gone = append(gone, tp)
		}
	}
	if len(recs) == 0 {
		reply(res, nil)
		return
	}
	s.enqueue(groupID, recs, func(err error) {
		if err != nil {
			reply(nil, err)
			return
		}
		if gg := s.groups[groupID]; gg != nil {
			for _, tp := range gone {
				delete(gg.offsets, tp)
			}
		}
		reply(res, nil)
	})
}

// deleteGroup is Kafka's handleDeleteGroups for one group: only an Empty
// group is deleted, with a tombstone for each offset and for the group.
func (s *state) deleteGroup(groupID string, reply func(error)) {
	if !validGroupID(groupID) {
		reply(ErrInvalidGroupID)
		return
	}
	g := s.groups[groupID]
	switch {
	case g == nil:
		reply(ErrGroupIDNotFound)
		return
	case g.state != stateEmpty || len(g.members) > 0:
		reply(ErrNonEmptyGroup)
		return
	}
	parts := sortedParts(g.offsets)
	recs := []KV{{Key: groupKey(groupID)}}
	for _, tp := range parts {
		recs = append(recs, KV{Key: offsetKey(groupID, tp)})
	}
	s.enqueue(groupID, recs, func(err error) {
		if err != nil {
			reply(err)
			return
		}
		// Apply exactly the tombstones: an offset committed by a write
		// queued in between for another partition precedes no tombstone
		// in the store either, so it survives both here and in replay.
		if gg := s.groups[groupID]; gg != nil {
			for _, tp := range parts {
				delete(gg.offsets, tp)
			}
			if len(gg.members) == 0 && len(gg.pending) == 0 && len(gg.offsets) == 0 {
				delete(s.groups, groupID)
			}
		}
		s.log.Info("group deleted", "group", groupID)
		reply(nil)
	})
}

// setOffsets stores offsets for the given partitions of a group without
// members (creating the group if needed); other partitions keep theirs.
func (s *state) setOffsets(groupID string, offsets map[TopicPartition]Offset, unknown map[TopicPartition]bool, reply func(error)) {
	if !validGroupID(groupID) {
		reply(ErrInvalidGroupID)
		return
	}
	if g := s.groups[groupID]; g != nil && len(g.members) > 0 {
		reply(ErrNonEmptyGroup)
		return
	}
	now := s.now()
	var recs []KV
	accepted := map[TopicPartition]Offset{}
	for _, tp := range sortedParts(offsets) {
		o := offsets[tp]
		switch {
		case unknown[tp]:
			reply(fmt.Errorf("%w: %s/%d", ErrUnknownTopic, tp.Topic, tp.Partition))
			return
		case len(o.Metadata) > s.cfg.MaxMetadataBytes:
			reply(fmt.Errorf("%w: %s/%d", ErrOffsetMetadataTooLarge, tp.Topic, tp.Partition))
			return
		}
		if o.CommitTime.IsZero() {
			o.CommitTime = now
		}
		accepted[tp] = o
		recs = append(recs, KV{Key: offsetKey(groupID, tp), Value: encodeOffset(o)})
	}
	if len(recs) == 0 {
		reply(nil)
		return
	}
	s.getOrCreate(groupID) // visible (Empty) at once, so it is not cleaned away
	s.enqueue(groupID, recs, func(err error) {
		if err == nil {
			maps.Copy(s.getOrCreate(groupID).offsets, accepted)
			s.m.commits.Add(float64(len(accepted)))
		}
		reply(err)
	})
}

// restore loads replayed records: offsets, and each group's last Stable or
// Empty record, whose members get a fresh session.
func (s *state) restore(offsets map[string]map[TopicPartition]Offset, recs map[string]*groupRecord) {
	now := s.now()
	for id, r := range recs {
		g := s.getOrCreate(id)
		g.generation, g.protocolType, g.protocol, g.leader = r.generation, r.protocolType, r.protocol, r.leader
		for _, mr := range r.members {
			m := &member{id: mr.id, instanceID: mr.instanceID, clientID: mr.clientID, clientHost: mr.clientHost,
				session: mr.session, rebalance: mr.rebalance, protocols: mr.protocols, assignment: mr.assignment, lastSeen: now}
			g.add(m, r.protocolType)
		}
		if len(g.members) > 0 {
			if g.members[g.leader] == nil {
				g.leader = g.order[0].id
			}
			s.transition(g, stateStable)
		} else {
			g.leader, g.protocol = "", ""
		}
	}
	for id, offs := range offsets {
		g := s.getOrCreate(id)
		maps.Copy(g.offsets, offs)
	}
}

// acceptOffsets applies the per-partition rules of a commit (known
// partition, metadata size), filling res, and returns the accepted offsets
// with the records that store them under key.
func (s *state) acceptOffsets(offsets map[TopicPartition]Offset, unknown map[TopicPartition]bool, now time.Time,
	res map[TopicPartition]error, key func(TopicPartition) []byte) (map[TopicPartition]Offset, []KV) {
	accepted := map[TopicPartition]Offset{}
	var recs []KV
	for _, tp := range sortedParts(offsets) {
		o := offsets[tp]
		switch {
		case unknown[tp]:
			res[tp] = ErrUnknownTopic
		case len(o.Metadata) > s.cfg.MaxMetadataBytes:
			res[tp] = ErrOffsetMetadataTooLarge
		default:
			if o.CommitTime.IsZero() {
				o.CommitTime = now
			}
			res[tp] = nil
			accepted[tp] = o
			recs = append(recs, KV{Key: key(tp), Value: encodeOffset(o)})
		}
	}
	return accepted, recs
}
