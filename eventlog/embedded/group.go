package embedded

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/internal/recbatch"
)

// JoinGroup implements eventlog.Log.
func (l *Log) JoinGroup(ctx context.Context, group string, topics []string, opts eventlog.GroupOptions) (eventlog.GroupConsumer, error) {
	if l.closed() {
		return nil, eventlog.ErrClosed
	}
	g, err := l.coordinator()
	if err != nil {
		return nil, err
	}
	if group == "" || len(topics) == 0 {
		return nil, fmt.Errorf("%w: a group needs an id and topics", eventlog.ErrInvalidArgument)
	}
	m := &member{l: l, g: g, group: group, topics: slices.Clone(topics), opts: opts.WithDefaults(), done: make(chan struct{})}
	slices.Sort(m.topics)
	m.topics = slices.Compact(m.topics)
	m.ctx, m.cancel = context.WithCancel(l.ctx)
	m.mu.owned = map[eventlog.TopicPartition]*partState{}
	m.mu.changed = make(chan struct{})
	m.mu.generation = -1
	go m.run()
	return m, nil
}

// member is one GroupConsumer. Its run goroutine owns the membership
// (join, sync, heartbeat, leave) and calls the callbacks; Poll and Commit
// read the membership under mu.
type member struct {
	l      *Log
	g      *groups.Coordinator
	group  string
	topics []string
	opts   eventlog.GroupOptions

	ctx    context.Context // canceled by Close or Log.Close
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	pollMu sync.Mutex // one Poll at a time
	rr     int        // where the next Poll starts; under pollMu

	mu struct {
		sync.Mutex
		memberID   string
		generation int32
		// owned maps each owned partition to its read state. A partition
		// revoked and assigned again gets a new *partState, so a Poll
		// that fetched under the old one drops what it read.
		owned map[eventlog.TopicPartition]*partState
		// changed is closed (and replaced) when owned changes or the
		// member stops.
		changed chan struct{}
		err     error // set when the member stopped
	}
}

type partState struct{ next int64 }

func (m *member) setErr(err error) {
	m.mu.Lock()
	if m.mu.err == nil {
		m.mu.err = err
	}
	close(m.mu.changed)
	m.mu.changed = make(chan struct{})
	m.mu.Unlock()
}

// Close implements eventlog.GroupConsumer.
func (m *member) Close() error {
	m.cancel()
	<-m.done
	return nil
}

// Assignment implements eventlog.GroupConsumer.
func (m *member) Assignment() []eventlog.TopicPartition {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]eventlog.TopicPartition, 0, len(m.mu.owned))
	for tp := range m.mu.owned {
		out = append(out, tp)
	}
	eventlog.SortPartitions(out)
	return out
}

// fatal reports join errors no retry can fix.
func fatal(err error) bool {
	return errors.Is(err, groups.ErrInvalidGroupID) || errors.Is(err, groups.ErrInvalidSessionTimeout) ||
		errors.Is(err, groups.ErrInconsistentProtocol) || errors.Is(err, groups.ErrClosed)
}

func (m *member) run() {
	defer close(m.done)
	const retry = 50 * time.Millisecond
	for m.ctx.Err() == nil {
		if err := m.joinAndSync(); err != nil {
			if m.ctx.Err() != nil {
				break
			}
			if fatal(err) {
				m.setErr(fmt.Errorf("group %q: %w", m.group, mapErr(err)))
				m.revoke()
				return
			}
			select {
			case <-time.After(retry):
			case <-m.ctx.Done():
			}
			continue
		}
		m.heartbeat()
		// Eager rebalance: give up everything before rejoining, so no
		// partition is ever owned by two members.
		m.revoke()
	}
	m.revoke()
	m.leave()
	m.setErr(eventlog.ErrClosed)
}

// callbackCtx bounds a callback: the rebalance timeout, not Close (Close
// waits for OnRevoked so its commits can land).
func (m *member) callbackCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.l.ctx, m.opts.RebalanceTimeout)
}

func (m *member) joinAndSync() error {
	for {
		m.mu.Lock()
		id := m.mu.memberID
		m.mu.Unlock()
		resp := m.g.Join(m.ctx, groups.JoinRequest{
			Group:            m.group,
			MemberID:         id,
			ProtocolType:     protocolType,
			Protocols:        []groups.Protocol{{Name: protocolName, Metadata: encodeSubscription(m.topics)}},
			SessionTimeout:   m.opts.SessionTimeout,
			RebalanceTimeout: m.opts.RebalanceTimeout,
			ClientID:         m.l.clientID,
			ClientHost:       "in-process",
		})
		switch {
		case resp.Err == nil:
		case errors.Is(resp.Err, groups.ErrMemberIDRequired):
			m.setMember(resp.MemberID, -1)
			continue
		case errors.Is(resp.Err, groups.ErrUnknownMemberID):
			m.setMember("", -1)
			return resp.Err
		default:
			return resp.Err
		}
		m.setMember(resp.MemberID, resp.Generation)
		var assignments map[string][]byte
		if resp.Leader == resp.MemberID {
			plan := rangeAssign(resp.Members, func(topic string) int {
				ti, err := m.l.b.Topic(topic)
				if err != nil {
					return 0
				}
				return ti.Partitions
			})
			assignments = make(map[string][]byte, len(plan))
			for id, tps := range plan {
				assignments[id] = encodeAssignment(tps)
			}
		}
		s := m.g.Sync(m.ctx, groups.SyncRequest{
			Group: m.group, MemberID: resp.MemberID, Generation: resp.Generation,
			ProtocolType: protocolType, Protocol: resp.Protocol, Assignments: assignments,
		})
		if errors.Is(s.Err, groups.ErrRebalanceInProgress) {
			continue
		}
		if s.Err != nil {
			return s.Err
		}
		tps, err := decodeAssignment(s.Assignment)
		if err != nil {
			return err
		}
		return m.assign(tps)
	}
}

func (m *member) setMember(id string, gen int32) {
	m.mu.Lock()
	m.mu.memberID, m.mu.generation = id, gen
	m.mu.Unlock()
}

// assign starts tps at their committed offsets, calls OnAssigned, then
// makes them visible to Poll.
func (m *member) assign(tps []eventlog.TopicPartition) error {
	states := make(map[eventlog.TopicPartition]*partState, len(tps))
	if len(tps) > 0 {
		req := make([]groups.TopicPartition, len(tps))
		for i, tp := range tps {
			req[i] = groups.TopicPartition{Topic: tp.Topic, Partition: tp.Partition}
		}
		committed, err := m.g.FetchOffsets(m.ctx, m.group, req)
		if err != nil {
			return err
		}
		for _, tp := range tps {
			c, ok := committed[groups.TopicPartition{Topic: tp.Topic, Partition: tp.Partition}]
			next := int64(-1)
			if ok {
				next = c.Offset
			}
			states[tp] = &partState{next: m.resetOffset(tp, next)}
		}
		if m.opts.OnAssigned != nil {
			ctx, cancel := m.callbackCtx()
			m.opts.OnAssigned(ctx, slices.Clone(tps))
			cancel()
		}
	}
	m.mu.Lock()
	m.mu.owned = states
	close(m.mu.changed)
	m.mu.changed = make(chan struct{})
	m.mu.Unlock()
	return nil
}

// resetOffset returns next if it is in the partition's log, else where
// StartAt says.
func (m *member) resetOffset(tp eventlog.TopicPartition, next int64) int64 {
	start, end, err := m.l.b.Offsets(tp.Topic, tp.Partition)
	if err != nil {
		return max(next, 0)
	}
	switch {
	case next >= start && next <= end:
		return next
	case m.opts.StartAt == eventlog.StartLatest:
		return end
	}
	return start
}

// revoke gives up every owned partition, then calls OnRevoked.
func (m *member) revoke() {
	m.mu.Lock()
	tps := make([]eventlog.TopicPartition, 0, len(m.mu.owned))
	for tp := range m.mu.owned {
		tps = append(tps, tp)
	}
	m.mu.owned = map[eventlog.TopicPartition]*partState{}
	close(m.mu.changed)
	m.mu.changed = make(chan struct{})
	m.mu.Unlock()
	if len(tps) > 0 && m.opts.OnRevoked != nil {
		eventlog.SortPartitions(tps)
		ctx, cancel := m.callbackCtx()
		m.opts.OnRevoked(ctx, tps)
		cancel()
	}
}

// heartbeat keeps the session until a rebalance needs the member to
// rejoin, or the member stops.
func (m *member) heartbeat() {
	t := time.NewTicker(m.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		id, gen := m.mu.memberID, m.mu.generation
		m.mu.Unlock()
		err := m.g.Heartbeat(m.ctx, m.group, id, "", gen)
		switch {
		case err == nil:
		case errors.Is(err, groups.ErrUnknownMemberID):
			// The session expired: rejoin as a new member.
			m.setMember("", -1)
			return
		case errors.Is(err, groups.ErrRebalanceInProgress), errors.Is(err, groups.ErrIllegalGeneration),
			errors.Is(err, groups.ErrFencedInstanceID), errors.Is(err, groups.ErrClosed):
			return
		}
	}
}

// leave removes the member from the group so its partitions move at once.
func (m *member) leave() {
	m.mu.Lock()
	id := m.mu.memberID
	m.mu.memberID, m.mu.generation = "", -1
	m.mu.Unlock()
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(m.l.ctx, 5*time.Second)
	defer cancel()
	m.g.Leave(ctx, m.group, []groups.LeaveMember{{MemberID: id, Reason: "consumer closed"}})
}

// Commit implements eventlog.GroupConsumer.
func (m *member) Commit(ctx context.Context, offsets map[eventlog.TopicPartition]int64) error {
	ctx, done, err := m.l.callCtx(ctx)
	if err != nil {
		return err
	}
	defer done()
	select {
	case <-m.done:
		return eventlog.ErrClosed
	default:
	}
	m.mu.Lock()
	id, gen := m.mu.memberID, m.mu.generation
	m.mu.Unlock()
	if id == "" || gen < 0 {
		return fmt.Errorf("%w: member of group %q has no generation", eventlog.ErrRebalanced, m.group)
	}
	return m.l.mapErr(ctx, commit(ctx, m.g, m.group, id, gen, offsets))
}

type pollTarget struct {
	tp eventlog.TopicPartition
	ps *partState
}

// Poll implements eventlog.GroupConsumer.
func (m *member) Poll(ctx context.Context) ([]eventlog.Record, error) {
	m.pollMu.Lock()
	defer m.pollMu.Unlock()
	for {
		m.mu.Lock()
		if err := m.mu.err; err != nil {
			m.mu.Unlock()
			return nil, err
		}
		targets := make([]pollTarget, 0, len(m.mu.owned))
		for tp, ps := range m.mu.owned {
			targets = append(targets, pollTarget{tp, ps})
		}
		changed := m.mu.changed
		m.mu.Unlock()
		slices.SortFunc(targets, func(a, b pollTarget) int {
			return cmp.Or(cmp.Compare(a.tp.Topic, b.tp.Topic), cmp.Compare(a.tp.Partition, b.tp.Partition))
		})

		recs, err := m.fetch(ctx, targets)
		if err != nil {
			return nil, err
		}
		if len(recs) > 0 {
			if out := m.accept(recs, targets); len(out) > 0 {
				return out, nil
			}
			continue
		}
		if err := m.wait(ctx, targets, changed); err != nil {
			return nil, err
		}
	}
}

// fetch reads from targets, starting at a rotating index so no partition
// starves, until MaxPollBytes. It reads each partition's next offset under
// mu: pollMu keeps other Polls out, and the run goroutine only replaces
// partStates.
func (m *member) fetch(ctx context.Context, targets []pollTarget) ([]eventlog.Record, error) {
	var out []eventlog.Record
	budget := m.opts.MaxPollBytes
	for i := range targets {
		t := targets[(m.rr+i)%len(targets)]
		m.mu.Lock()
		next := t.ps.next
		m.mu.Unlock()
		_, end, err := m.l.b.Offsets(t.tp.Topic, t.tp.Partition)
		if err != nil || next >= end {
			continue // deleted topic, or nothing new
		}
		f, err := m.l.b.Fetch(ctx, t.tp.Topic, t.tp.Partition, next, budget, nil)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, m.l.mapErr(ctx, err)
		}
		if err != nil {
			if errors.Is(err, eventlog.ErrOffsetOutOfRange) || errors.Is(mapErr(err), eventlog.ErrOffsetOutOfRange) {
				m.mu.Lock()
				if m.mu.owned[t.tp] == t.ps {
					t.ps.next = m.resetOffset(t.tp, -1)
				}
				m.mu.Unlock()
			}
			continue
		}
		recs, after, err := recbatch.Decode(f.Records, t.tp.Topic, t.tp.Partition, next)
		if err != nil {
			return nil, fmt.Errorf("embedded: poll %s/%d at %d: %w", t.tp.Topic, t.tp.Partition, next, err)
		}
		if len(recs) == 0 && after > next {
			// Control batches or compaction gaps only: step over them.
			m.mu.Lock()
			if m.mu.owned[t.tp] == t.ps && t.ps.next == next {
				t.ps.next = after
			}
			m.mu.Unlock()
		}
		out = append(out, recs...)
		budget -= len(f.Records)
		if budget <= 0 {
			break
		}
	}
	if len(targets) > 0 {
		m.rr = (m.rr + 1) % len(targets)
	}
	return out, nil
}

// accept keeps the records of partitions still owned under the same
// assignment and moves their next offsets past them.
func (m *member) accept(recs []eventlog.Record, targets []pollTarget) []eventlog.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := recs[:0]
	for _, r := range recs {
		tp := eventlog.TopicPartition{Topic: r.Topic, Partition: r.Partition}
		ps := m.mu.owned[tp]
		if ps == nil || r.Offset < ps.next {
			continue
		}
		if !slices.ContainsFunc(targets, func(t pollTarget) bool { return t.ps == ps }) {
			continue // revoked and assigned again since the fetch
		}
		ps.next = r.Offset + 1
		out = append(out, r)
	}
	return out
}

// wait blocks until a target partition may have records, the assignment
// changes, ctx ends or the member stops.
func (m *member) wait(ctx context.Context, targets []pollTarget, changed <-chan struct{}) error {
	wake := make(chan struct{}, 1)
	stopAll := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stopAll)
		wg.Wait()
	}()
	for _, t := range targets {
		m.mu.Lock()
		next := t.ps.next
		m.mu.Unlock()
		ch, stop, err := m.l.b.Watch(t.tp.Topic, t.tp.Partition, next)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stop()
			select {
			case <-ch:
				select {
				case wake <- struct{}{}:
				default:
				}
			case <-stopAll:
			}
		}()
	}
	select {
	case <-wake:
		return nil
	case <-changed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return nil // the loop sees mu.err
	case <-m.l.ctx.Done():
		return eventlog.ErrClosed
	}
}
