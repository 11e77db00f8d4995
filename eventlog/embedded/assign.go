package embedded

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/eventlog"
)

// The group protocol: Kafka's consumer protocol type and range assignor,
// so tools describe the group as any Kafka consumer group.
const (
	protocolType = "consumer"
	protocolName = "range"
)

func encodeSubscription(topics []string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Version = 0
	m.Topics = slices.Clone(topics)
	return m.AppendTo(nil)
}

func decodeSubscription(b []byte) ([]string, error) {
	m := kmsg.NewConsumerMemberMetadata()
	if err := m.ReadFrom(b); err != nil {
		return nil, fmt.Errorf("decode member subscription: %w", err)
	}
	return m.Topics, nil
}

func encodeAssignment(tps []eventlog.TopicPartition) []byte {
	a := kmsg.NewConsumerMemberAssignment()
	a.Version = 0
	for _, tp := range tps {
		if n := len(a.Topics); n == 0 || a.Topics[n-1].Topic != tp.Topic {
			t := kmsg.NewConsumerMemberAssignmentTopic()
			t.Topic = tp.Topic
			a.Topics = append(a.Topics, t)
		}
		t := &a.Topics[len(a.Topics)-1]
		t.Partitions = append(t.Partitions, tp.Partition)
	}
	return a.AppendTo(nil)
}

// decodeAssignment decodes a member's assignment; empty bytes (the
// coordinator's answer for a member the leader left out) are no
// partitions.
func decodeAssignment(b []byte) ([]eventlog.TopicPartition, error) {
	if len(b) == 0 {
		return nil, nil
	}
	a := kmsg.NewConsumerMemberAssignment()
	if err := a.ReadFrom(b); err != nil {
		return nil, fmt.Errorf("decode assignment: %w", err)
	}
	var out []eventlog.TopicPartition
	for _, t := range a.Topics {
		for _, p := range t.Partitions {
			out = append(out, eventlog.TopicPartition{Topic: t.Topic, Partition: p})
		}
	}
	eventlog.SortPartitions(out)
	return out, nil
}

// rangeAssign is Kafka's RangeAssignor: for each topic, the members
// subscribed to it, sorted by member id, get consecutive ranges of its
// partitions, the first n%members one larger. partitions gives a topic's
// partition count (0 or less: unknown, not assigned). A member whose
// metadata does not decode gets nothing. Deterministic: no I/O, no clock.
func rangeAssign(members []groups.Member, partitions func(topic string) int) map[string][]eventlog.TopicPartition {
	subs := map[string][]string{} // topic -> member ids
	out := make(map[string][]eventlog.TopicPartition, len(members))
	for _, m := range members {
		out[m.MemberID] = nil
		topics, err := decodeSubscription(m.Metadata)
		if err != nil {
			continue
		}
		for _, t := range topics {
			if !slices.Contains(subs[t], m.MemberID) {
				subs[t] = append(subs[t], m.MemberID)
			}
		}
	}
	for t, ids := range subs {
		n := partitions(t)
		if n <= 0 {
			continue
		}
		slices.SortFunc(ids, cmp.Compare[string])
		per, extra := n/len(ids), n%len(ids)
		for i, id := range ids {
			start := i*per + min(i, extra)
			count := per
			if i < extra {
				count++
			}
			for p := start; p < start+count; p++ {
				out[id] = append(out[id], eventlog.TopicPartition{Topic: t, Partition: int32(p)})
			}
		}
	}
	for id := range out {
		eventlog.SortPartitions(out[id])
	}
	return out
}
