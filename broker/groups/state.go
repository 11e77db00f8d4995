package groups

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupState is a group's state, as Kafka's GroupState.
type groupState int8

const (
	stateEmpty groupState = iota
	statePreparing
	stateCompleting
	stateStable
	stateDead
)

var stateNames = [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"}

func (s groupState) String() string { return stateNames[s] }

const (
	// newMemberJoinTimeout bounds how long a new member may wait in a join
	// without heartbeating (Kafka's GroupCoordinator.NewMemberJoinTimeoutMs).
	newMemberJoinTimeout = 5 * time.Minute
	// emptyGroupRetention is how long a group with no members and no
	// offsets is kept (Listed as Empty) before it is forgotten.
	emptyGroupRetention = 10 * time.Minute
)

// joinWaiter and syncWaiter receive the answer of a parked Join or Sync.
// Their channels have room for exactly the one answer the core sends.
type joinWaiter struct{ ch chan JoinResponse }
type syncWaiter struct{ ch chan SyncResponse }

func newJoinWaiter() *joinWaiter { return &joinWaiter{ch: make(chan JoinResponse, 1)} }
func newSyncWaiter() *syncWaiter { return &syncWaiter{ch: make(chan SyncResponse, 1)} }

type member struct {
	id, instanceID       string
	clientID, clientHost string
	protocols            []Protocol
	session, rebalance   time.Duration
	assignment           []byte
	joinW                *joinWaiter // set while the member awaits a join answer
	syncW                *syncWaiter // set while the member awaits a sync answer
	isNew                bool        // joined during this rebalance, not yet in a generation
	lastSeen             time.Time   // last join, sync or heartbeat
}

// matches reports whether protos are exactly the member's (names and
// metadata, in order), as Kafka's MemberMetadata.matches.
func (m *member) matches(protos []Protocol) bool {
	return slices.EqualFunc(m.protocols, protos, func(a, b Protocol) bool {
		return a.Name == b.Name && string(a.Metadata) == string(b.Metadata)
	})
}

func (m *member) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

type group struct {
	id           string
	state        groupState
	stateSince   time.Time
	protocolType string
	protocol     string // selected protocol of the current generation
	generation   int32
	leader       string
	members      map[string]*member
	order        []*member            // members in join order: leader succession, listings
	static       map[string]string    // instance id -> member id
	pending      map[string]time.Time // member ids handed out with ErrMemberIDRequired -> expiry
	pendingSync  map[string]bool      // members of the generation that have not synced yet
	syncDeadline time.Time
	joinDeadline time.Time // PreparingRebalance completes by then at the latest
	initial      struct {  // Kafka's InitialDelayedJoin
		active         bool
		remaining      time.Duration
		newMemberAdded bool
	}
	offsets map[TopicPartition]Offset
}

func (g *group) isPending(id string) bool { _, ok := g.pending[id]; return ok }

func (g *group) add(m *member, protocolType string) {
	if len(g.members) == 0 {
		g.protocolType = protocolType
	}
	g.members[m.id] = m
	g.order = append(g.order, m)
	if g.leader == "" {
		g.leader = m.id
	}
	if m.instanceID != "" {
		g.static[m.instanceID] = m.id
	}
}

func (g *group) remove(id string) {
	m := g.members[id]
	if m == nil {
		return
	}
	delete(g.members, id)
	g.order = slices.DeleteFunc(g.order, func(o *member) bool { return o == m })
	if m.instanceID != "" && g.static[m.instanceID] == id {
		delete(g.static, m.instanceID)
	}
	delete(g.pendingSync, id)
	if g.leader == id {
		g.leader = ""
		if len(g.order) > 0 {
			g.leader = g.order[0].id
		}
	}
}

// candidates are the protocols every member supports.
func (g *group) candidates() map[string]bool {
	count := map[string]int{}
	for _, m := range g.order {
		for _, p := range m.protocols {
			count[p.Name]++
		}
	}
	c := map[string]bool{}
	for name, n := range count {
		if n == len(g.members) {
			c[name] = true
		}
	}
	return c
}

// supports is Kafka's supportsProtocols: an empty group takes any
// non-empty protocol type and protocol list; otherwise the type must match
// and the member must support one protocol every member supports.
func (g *group) supports(protocolType string, protos []Protocol) bool {
	if len(g.members) == 0 {
		return protocolType != "" && len(protos) > 0
	}
	if protocolType != g.protocolType {
		return false
	}
	c := g.candidates()
	for _, p := range protos {
		if c[p.Name] {
			return true
		}
	}
	return false
}

// selectProtocol is Kafka's vote: each member votes for the first protocol
// in its preference order that every member supports; most votes wins.
// Ties go to the protocol the leader prefers (Kafka leaves them to hash
// order).
func (g *group) selectProtocol() string {
	c := g.candidates()
	votes := map[string]int{}
	for _, m := range g.order {
		for _, p := range m.protocols {
			if c[p.Name] {
				votes[p.Name]++
				break
			}
		}
	}
	rank := func(name string) int {
		if l := g.members[g.leader]; l != nil {
			if i := slices.IndexFunc(l.protocols, func(p Protocol) bool { return p.Name == name }); i >= 0 {
				return i
			}
		}
		return len(c)
	}
	var best string
	for name, n := range votes {
		if best == "" || n > votes[best] || n == votes[best] && (rank(name) < rank(best) || rank(name) == rank(best) && name < best) {
			best = name
		}
	}
	return best
}

// validateMember is Kafka's validateCurrentMember: with an instance id,
// the instance must map to memberID (else fenced, or unknown if the
// instance is not in the group); without, the member must exist.
func (g *group) validateMember(memberID, instanceID string) error {
	if instanceID != "" {
		cur, ok := g.static[instanceID]
		switch {
		case !ok:
			return ErrUnknownMemberID
		case cur != memberID:
			return ErrFencedInstanceID
		}
		return nil
	}
	if g.members[memberID] == nil {
		return ErrUnknownMemberID
	}
	return nil
}

// subscribedTo reports whether a live group's members consume topic: for
// consumer groups it parses each member's subscription (the metadata of the
// selected protocol, or of every protocol before the first generation);
// anything it cannot parse counts as subscribed, as Kafka does.
func (g *group) subscribedTo(topic string) bool {
	if g.protocolType != "consumer" {
		return true
	}
	var md kmsg.ConsumerMemberMetadata
	for _, m := range g.order {
		for _, p := range m.protocols {
			if g.protocol != "" && p.Name != g.protocol {
				continue
			}
			if err := md.ReadFrom(p.Metadata); err != nil || slices.Contains(md.Topics, topic) {
				return true
			}
		}
	}
	return false
}

func (g *group) record(now time.Time) *groupRecord {
	r := &groupRecord{generation: g.generation, protocolType: g.protocolType, protocol: g.protocol, leader: g.leader, stateTime: now}
	for _, m := range g.order {
		r.members = append(r.members, memberRecord{
			id: m.id, instanceID: m.instanceID, clientID: m.clientID, clientHost: m.clientHost,
			session: m.session, rebalance: m.rebalance, protocols: m.protocols, assignment: m.assignment,
		})
	}
	return r
}

// write is a queued Store append and what to do once it returned. apply
// runs on the actor, in queue order, with the Append's error.
type write struct {
	group string
	recs  []KV
	apply func(err error)
}

// state is the deterministic core: every group, driven by calls on the
// actor goroutine with the time from now. It does no I/O: writes are queued
// in queue for the actor to hand to the flusher, and answers go to waiter
// channels that always have room.
type state struct {
	cfg      *Config
	log      *slog.Logger
	m        *metrics
	newID    func(prefix string) string
	groups   map[string]*group
	queue    []*write
	inflight map[string]int // queued or flushing writes per group id
	// txnPending holds transactional offset commits (txn.go).
	txnPending txnPending
}

func newState(cfg *Config, m *metrics, newID func(string) string) *state {
	return &state{cfg: cfg, log: cfg.Logger, m: m, newID: newID, groups: map[string]*group{}, inflight: map[string]int{}}
}

func (s *state) now() time.Time { return s.cfg.Now() }

func (s *state) newGroup(id string) *group {
	g := &group{
		id: id, stateSince: s.now(), members: map[string]*member{}, static: map[string]string{},
		pending: map[string]time.Time{}, pendingSync: map[string]bool{}, offsets: map[TopicPartition]Offset{},
	}
	s.groups[id] = g
	return g
}

func (s *state) getOrCreate(id string) *group {
	if g := s.groups[id]; g != nil {
		return g
	}
	return s.newGroup(id)
}

func (s *state) enqueue(group string, recs []KV, apply func(error)) {
	s.inflight[group]++
	s.queue = append(s.queue, &write{group: group, recs: recs, apply: func(err error) {
		if s.inflight[group]--; s.inflight[group] == 0 {
			delete(s.inflight, group)
		}
		apply(err)
	}})
}

func (s *state) transition(g *group, to groupState) {
	g.state, g.stateSince = to, s.now()
}

func validGroupID(id string) bool { return id != "" && len(id) <= maxKeyString }

// join handles a JoinGroup. It returns the answer, or parked when the
// answer will arrive on w.
func (s *state) join(req JoinRequest, w *joinWaiter) (resp JoinResponse, parked bool) {
	if !validGroupID(req.Group) {
		return JoinResponse{Err: ErrInvalidGroupID, MemberID: req.MemberID}, false
	}
	if req.SessionTimeout < s.cfg.MinSessionTimeout || req.SessionTimeout > s.cfg.MaxSessionTimeout {
		return JoinResponse{Err: ErrInvalidSessionTimeout, MemberID: req.MemberID}, false
	}
	g := s.groups[req.Group]
	if req.MemberID == "" {
		g = s.getOrCreate(req.Group)
		resp, parked = s.joinNew(g, req, w)
	} else if g == nil {
		return JoinResponse{Err: ErrUnknownMemberID, MemberID: req.MemberID}, false
	} else {
		resp, parked = s.joinCurrent(g, req, w)
	}
	s.tryCompleteJoin(g)
	if g.generation == 0 && len(g.members) == 0 && len(g.pending) == 0 && len(g.offsets) == 0 && s.inflight[g.id] == 0 {
		delete(s.groups, g.id) // a refused first join leaves nothing behind
	}
	return resp, parked
}

func (s *state) joinNew(g *group, req JoinRequest, w *joinWaiter) (JoinResponse, bool) {
	if !g.supports(req.ProtocolType, req.Protocols) {
		return JoinResponse{Err: ErrInconsistentProtocol}, false
	}
	prefix := req.ClientID
	if req.InstanceID != "" {
		prefix = req.InstanceID // as Kafka's generateMemberId
	}
	id := s.newID(prefix)
	if req.InstanceID != "" {
		if old, ok := g.static[req.InstanceID]; ok {
			return s.replaceStatic(g, old, id, req, w)
		}
		return s.addMemberAndRebalance(g, id, req, w)
	}
	if req.RequireKnownMemberID {
		g.pending[id] = s.now().Add(req.SessionTimeout)
		return JoinResponse{Err: ErrMemberIDRequired, MemberID: id}, false
	}
	return s.addMemberAndRebalance(g, id, req, w)
}

func (s *state) joinCurrent(g *group, req JoinRequest, w *joinWaiter) (JoinResponse, bool) {
	fail := func(err error) (JoinResponse, bool) { return JoinResponse{Err: err, MemberID: req.MemberID}, false }
	if !g.supports(req.ProtocolType, req.Protocols) {
		return fail(ErrInconsistentProtocol)
	}
	if g.isPending(req.MemberID) && req.InstanceID == "" {
		return s.addMemberAndRebalance(g, req.MemberID, req, w)
	}
	if err := g.validateMember(req.MemberID, req.InstanceID); err != nil {
		return fail(err)
	}
	m := g.members[req.MemberID]
	m.lastSeen = s.now()
	switch g.state {
	case statePreparing:
		return s.updateMemberAndRebalance(g, m, req, w)
	case stateCompleting:
		if m.matches(req.Protocols) {
			// The member lost our answer; send it again.
			return s.currentJoinResponse(g, m), false
		}
		return s.updateMemberAndRebalance(g, m, req, w)
	case stateStable:
		if g.leader == m.id || !m.matches(req.Protocols) {
			// A leader's join means it wants a new assignment (for
			// example its subscription changed).
			return s.updateMemberAndRebalance(g, m, req, w)
		}
		return s.currentJoinResponse(g, m), false
	}
	return fail(ErrUnknownMemberID)
}

func (s *state) currentJoinResponse(g *group, m *member) JoinResponse {
	r := JoinResponse{Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader, MemberID: m.id}
	if m.id == g.leader {
		r.Members = g.memberList()
	}
	return r
}

func (g *group) memberList() []Member {
	ms := make([]Member, 0, len(g.order))
	for _, m := range g.order {
		ms = append(ms, Member{MemberID: m.id, InstanceID: m.instanceID, Metadata: m.metadata(g.protocol)})
	}
	return ms
}

func (s *state) setJoinWaiter(m *member, w *joinWaiter) {
	if m.joinW != nil && m.joinW != w {
		// A duplicate join supersedes the first; Kafka drops the first
		// answer, we tell it to rejoin.
		m.joinW.ch <- JoinResponse{Err: ErrRebalanceInProgress, MemberID: m.id}
	}
	m.joinW = w
}

func (s *state) addMemberAndRebalance(g *group, id string, req JoinRequest, w *joinWaiter) (JoinResponse, bool) {
	m := &member{
		id: id, instanceID: req.InstanceID, clientID: req.ClientID, clientHost: req.ClientHost,
		protocols: req.Protocols, session: req.SessionTimeout, rebalance: req.RebalanceTimeout,
		isNew: true, lastSeen: s.now(), joinW: w,
	}
	if g.state == statePreparing && g.generation == 0 {
		g.initial.newMemberAdded = true
	}
	g.add(m, req.ProtocolType)
	delete(g.pending, id)
	s.maybePrepareRebalance(g, "member "+id+" joined")
	return JoinResponse{}, true
}

func (s *state) updateMemberAndRebalance(g *group, m *member, req JoinRequest, w *joinWaiter) (JoinResponse, bool) {
	m.protocols, m.session, m.rebalance = req.Protocols, req.SessionTimeout, req.RebalanceTimeout
	s.setJoinWaiter(m, w)
	s.maybePrepareRebalance(g, "member "+m.id+" rejoined")
	return JoinResponse{}, true
}

// replaceStatic gives a known static instance a new member id (Kafka's
// updateStaticMemberAndRebalance). The old id is fenced.
func (s *state) replaceStatic(g *group, oldID, newID string, req JoinRequest, w *joinWaiter) (JoinResponse, bool) {
	oldLeader := g.leader
	m := g.members[oldID]
	if m.joinW != nil {
		m.joinW.ch <- JoinResponse{Err: ErrFencedInstanceID, MemberID: oldID}
		m.joinW = nil
	}
	if m.syncW != nil {
		m.syncW.ch <- SyncResponse{Err: ErrFencedInstanceID}
		m.syncW = nil
	}
	delete(g.members, oldID)
	m.id = newID
	g.members[newID] = m
	g.static[req.InstanceID] = newID
	if g.leader == oldID {
		g.leader = newID
	}
	if g.pendingSync[oldID] {
		delete(g.pendingSync, oldID)
		g.pendingSync[newID] = true
	}
	m.lastSeen = s.now()
	m.protocols, m.session, m.rebalance = req.Protocols, req.SessionTimeout, req.RebalanceTimeout
	m.clientID, m.clientHost = req.ClientID, req.ClientHost
	s.log.Info("static member replaced", "group", g.id, "instance", req.InstanceID, "old_member", oldID, "member", newID, "state", g.state.String())
	switch g.state {
	case stateStable:
		// Kafka's rule: no rebalance unless the protocol the next
		// generation would select changes. The subscription itself is
		// not compared: consumers' metadata carries owned partitions and
		// the generation, which differ after every restart.
		if g.selectProtocol() != g.protocol {
			s.setJoinWaiter(m, w)
			s.prepareRebalance(g, "static member "+newID+" changed the group's protocol")
			return JoinResponse{}, true
		}
		// The answer names the old leader id: were the new id the leader,
		// the client would compute an assignment that a Stable group never
		// relays. Persist the new id first, as Kafka does.
		resp := JoinResponse{Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: oldLeader, MemberID: newID}
		s.persistGroup(g, func(err error) {
			if err != nil {
				resp = JoinResponse{Err: err, MemberID: newID}
			}
			w.ch <- resp
		})
		return JoinResponse{}, true
	case stateCompleting:
		// The leader may be assigning to the old id; start over.
		s.setJoinWaiter(m, w)
		s.prepareRebalance(g, "static member "+newID+" rejoined during CompletingRebalance")
		return JoinResponse{}, true
	default: // PreparingRebalance: wait in the rebalance under the new id
		s.setJoinWaiter(m, w)
		return JoinResponse{}, true
	}
}

func (s *state) maybePrepareRebalance(g *group, reason string) {
	switch g.state {
	case stateStable, stateCompleting, stateEmpty:
		s.prepareRebalance(g, reason)
	}
}

func (g *group) rebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.order {
		d = max(d, m.rebalance)
	}
	return d
}

func (s *state) prepareRebalance(g *group, reason string) {
	if g.state == stateCompleting {
		s.propagateSync(g, ErrRebalanceInProgress, true)
	}
	clear(g.pendingSync)
	now := s.now()
	rt := g.rebalanceTimeout()
	if delay := s.cfg.InitialRebalanceDelay; g.state == stateEmpty && delay > 0 {
		g.initial.active, g.initial.remaining, g.initial.newMemberAdded = true, max(rt-delay, 0), false
		g.joinDeadline = now.Add(delay)
	} else {
		g.initial.active = false
		g.joinDeadline = now.Add(rt)
	}
	s.transition(g, statePreparing)
	s.log.Info("preparing to rebalance group", "group", g.id, "generation", g.generation, "members", len(g.members), "reason", reason)
	s.tryCompleteJoin(g)
}

// propagateSync answers every member awaiting a sync with err (or, for a
// nil err, its assignment).
func (s *state) propagateSync(g *group, err error, clearAssignments bool) {
	now := s.now()
	for _, m := range g.order {
		if clearAssignments {
			m.assignment = nil
		}
		if m.syncW == nil {
			continue
		}
		r := SyncResponse{Err: err}
		if err == nil {
			r = SyncResponse{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: m.assignment}
		}
		m.syncW.ch <- r
		m.syncW = nil
		m.lastSeen = now
	}
}

func (g *group) allJoined() bool {
	if len(g.pending) > 0 {
		return false
	}
	for _, m := range g.order {
		if m.joinW == nil {
			return false
		}
	}
	return true
}

func (s *state) tryCompleteJoin(g *group) {
	if g.state == statePreparing && !g.initial.active && g.allJoined() {
		s.completeJoin(g)
	}
}

// joinDeadlinePassed runs when a PreparingRebalance group's deadline passes.
func (s *state) joinDeadlinePassed(g *group) {
	if g.initial.active {
		if g.initial.newMemberAdded && g.initial.remaining > 0 {
			d := min(s.cfg.InitialRebalanceDelay, g.initial.remaining)
			g.initial.newMemberAdded, g.initial.remaining = false, g.initial.remaining-d
			g.joinDeadline = s.now().Add(d)
			return
		}
		g.initial.active = false
	}
	s.completeJoin(g)
}

// completeJoin is Kafka's onCompleteJoin: members that did not rejoin are
// removed (static ones stay until their session expires), the next
// generation starts, and every waiting member gets its answer.
func (s *state) completeJoin(g *group) {
	now := s.now()
	for _, m := range slices.Clone(g.order) {
		if m.joinW == nil && m.instanceID == "" {
			s.log.Info("removing member that did not rejoin in time", "group", g.id, "member", m.id)
			s.m.removals.WithLabelValues("rebalance_timeout").Inc()
			s.dropMember(g, m)
		}
	}
	if len(g.members) > 0 && !s.electJoinedLeader(g) {
		// Only static members that did not rejoin are left: wait another
		// rebalance timeout for them to rejoin or expire.
		s.log.Error("group could not complete rebalance because no members rejoined", "group", g.id)
		g.joinDeadline = now.Add(g.rebalanceTimeout())
		return
	}
	g.generation++
	s.m.rebalances.Inc()
	if len(g.members) == 0 {
		g.protocol = ""
		s.transition(g, stateEmpty)
		s.log.Info("group is empty", "group", g.id, "generation", g.generation)
		s.persistGroup(g, nil)
		s.cfg.OnEvent.Emit(context.Background(), SystemSource, TypeGroupRebalanced, g.id,
			RebalanceEvent{Group: g.id, Generation: g.generation, ProtocolType: g.protocolType, Members: []string{}})
		return
	}
	g.protocol = g.selectProtocol()
	s.transition(g, stateCompleting)
	ids := make([]string, 0, len(g.order))
	for _, m := range g.order {
		ids = append(ids, m.id)
	}
	s.log.Info("group rebalanced", "group", g.id, "generation", g.generation, "protocol", g.protocol,
		"leader", g.leader, "members", len(g.members), "member_ids", strings.Join(ids, ","))
	s.cfg.OnEvent.Emit(context.Background(), SystemSource, TypeGroupRebalanced, g.id,
		RebalanceEvent{Group: g.id, Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader, Members: ids})
	for _, m := range g.order {
		if m.joinW != nil {
			m.joinW.ch <- s.currentJoinResponse(g, m)
			m.joinW = nil
		}
		m.lastSeen = now
		m.isNew = false
		g.pendingSync[m.id] = true
	}
	g.syncDeadline = now.Add(g.rebalanceTimeout())
}

func (s *state) electJoinedLeader(g *group) bool {
	if l := g.members[g.leader]; l != nil && l.joinW != nil {
		return true
	}
	for _, m := range g.order {
		if m.joinW != nil {
			g.leader = m.id
			return true
		}
	}
	return false
}

// dropMember removes a member, answering its waiters with
// ErrUnknownMemberID so a live client rejoins.
func (s *state) dropMember(g *group, m *member) {
	if m.joinW != nil {
		m.joinW.ch <- JoinResponse{Err: ErrUnknownMemberID, MemberID: m.id}
		m.joinW = nil
	}
	if m.syncW != nil {
		m.syncW.ch <- SyncResponse{Err: ErrUnknownMemberID}
		m.syncW = nil
	}
	g.remove(m.id)
}

// removeMember is Kafka's removeMemberAndUpdateGroup.
func (s *state) removeMember(g *group, m *member, reason string) {
	s.dropMember(g, m)
	switch g.state {
	case stateStable, stateCompleting:
		s.maybePrepareRebalance(g, reason)
	case statePreparing:
		s.tryCompleteJoin(g)
	}
}

// cancelJoin withdraws a parked join whose ctx ended. A member that joined
// for the first time in this rebalance is removed (it never got its id);
// an existing member counts as not having rejoined. Kafka instead keeps
// answering a closed connection; withdrawing keeps the group from
// completing a generation with a member that never learns of it.
func (s *state) cancelJoin(groupID string, w *joinWaiter) {
	g := s.groups[groupID]
	if g == nil {
		return
	}
	for _, m := range g.order {
		if m.joinW != w {
			continue
		}
		m.joinW = nil
		if m.isNew {
			s.removeMember(g, m, "joining member "+m.id+" went away")
		}
		return
	}
}

// cancelSync withdraws a parked sync whose ctx ended; the member's session
// timer runs again.
func (s *state) cancelSync(groupID string, w *syncWaiter) {
	if g := s.groups[groupID]; g != nil {
		for _, m := range g.order {
			if m.syncW == w {
				m.syncW = nil
				m.lastSeen = s.now()
			}
		}
	}
}

// sync handles a SyncGroup; see join for parked.
func (s *state) sync(req SyncRequest, w *syncWaiter) (SyncResponse, bool) {
	fail := func(err error) (SyncResponse, bool) { return SyncResponse{Err: err}, false }
	if !validGroupID(req.Group) {
		return fail(ErrInvalidGroupID)
	}
	g := s.groups[req.Group]
	if g == nil {
		return fail(ErrUnknownMemberID)
	}
	if err := g.validateMember(req.MemberID, req.InstanceID); err != nil {
		return fail(err)
	}
	switch {
	case req.Generation != g.generation:
		return fail(ErrIllegalGeneration)
	case req.ProtocolType != "" && req.ProtocolType != g.protocolType,
		req.Protocol != "" && req.Protocol != g.protocol:
		return fail(ErrInconsistentProtocol)
	}
	m := g.members[req.MemberID]
	switch g.state {
	case statePreparing:
		return fail(ErrRebalanceInProgress)
	case stateStable:
		delete(g.pendingSync, m.id)
		m.lastSeen = s.now()
		return SyncResponse{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: m.assignment}, false
	case stateCompleting:
	default:
		return fail(ErrUnknownMemberID)
	}
	m.lastSeen = s.now()
	if m.syncW != nil && m.syncW != w {
		m.syncW.ch <- SyncResponse{Err: ErrRebalanceInProgress}
	}
	m.syncW = w
	delete(g.pendingSync, m.id)
	if m.id != g.leader {
		return SyncResponse{}, true
	}
	s.log.Info("assignment received from leader", "group", g.id, "generation", g.generation, "leader", m.id, "members", len(g.members))
	assignment := make(map[string][]byte, len(g.members))
	for _, o := range g.order {
		assignment[o.id] = req.Assignments[o.id] // missing members get an empty assignment
	}
	gen := g.generation
	rec := g.record(s.now())
	for i := range rec.members {
		rec.members[i].assignment = assignment[rec.members[i].id]
	}
	s.enqueue(g.id, []KV{{Key: groupKey(g.id), Value: encodeGroup(rec)}}, func(err error) {
		// Another member may have joined while the record was written:
		// only the generation it describes may become Stable.
		if s.groups[g.id] != g || g.state != stateCompleting || g.generation != gen {
			return
		}
		if err != nil {
			s.propagateSync(g, err, true)
			s.maybePrepareRebalance(g, "storing the assignment failed")
			return
		}
		for _, o := range g.order {
			o.assignment = assignment[o.id]
		}
		s.propagateSync(g, nil, false)
		s.transition(g, stateStable)
		s.log.Info("group is stable", "group", g.id, "generation", g.generation, "members", len(g.members))
	})
	return SyncResponse{}, true
}

// persistGroup queues the group's record; then, if set, calls done.
func (s *state) persistGroup(g *group, done func(error)) {
	s.enqueue(g.id, []KV{{Key: groupKey(g.id), Value: encodeGroup(g.record(s.now()))}}, func(err error) {
		if err != nil {
			s.log.Error("storing group metadata failed", "group", g.id, "err", err)
		}
		if done != nil {
			done(err)
		}
	})
}

func (s *state) heartbeat(groupID, memberID, instanceID string, generation int32) error {
	if !validGroupID(groupID) {
		return ErrInvalidGroupID
	}
	g := s.groups[groupID]
	if g == nil {
		return ErrUnknownMemberID
	}
	if err := g.validateMember(memberID, instanceID); err != nil {
		return err
	}
	m := g.members[memberID]
	switch {
	case g.state == stateEmpty:
		return ErrUnknownMemberID
	case g.state == statePreparing:
		// Members still on the old generation learn of the rebalance here.
		m.lastSeen = s.now()
		return ErrRebalanceInProgress
	case generation != g.generation:
		return ErrIllegalGeneration
	}
	m.lastSeen = s.now()
	return nil
}

func (s *state) leave(groupID string, leaving []LeaveMember) ([]error, error) {
	if !validGroupID(groupID) {
		return nil, ErrInvalidGroupID
	}
	errs := make([]error, len(leaving))
	g := s.groups[groupID]
	for i, l := range leaving {
		switch {
		case g == nil:
			errs[i] = ErrUnknownMemberID
		case l.MemberID == "":
			// Administrative removal by instance id.
			id, ok := g.static[l.InstanceID]
			if l.InstanceID == "" || !ok {
				errs[i] = ErrUnknownMemberID
				continue
			}
			s.log.Info("member left", "group", g.id, "member", id, "instance", l.InstanceID, "reason", l.Reason)
			s.removeMember(g, g.members[id], "member "+id+" left")
		case g.isPending(l.MemberID):
			delete(g.pending, l.MemberID)
			s.tryCompleteJoin(g)
		default:
			if errs[i] = g.validateMember(l.MemberID, l.InstanceID); errs[i] == nil {
				s.log.Info("member left", "group", g.id, "member", l.MemberID, "reason", l.Reason)
				s.removeMember(g, g.members[l.MemberID], "member "+l.MemberID+" left")
			}
		}
	}
	return errs, nil
}

// tick expires sessions, pending members, and rebalance and sync timeouts,
// and forgets long-empty groups. Groups are visited in id order so a
// scripted run is repeatable.
func (s *state) tick() {
	now := s.now()
	for _, id := range slices.Sorted(maps.Keys(s.groups)) {
		g := s.groups[id]
		for pid, exp := range g.pending {
			if !now.Before(exp) {
				delete(g.pending, pid)
				s.tryCompleteJoin(g)
			}
		}
		for _, m := range slices.Clone(g.order) {
			if g.members[m.id] == m && !s.keepAlive(m, now) {
				s.log.Info("member session expired", "group", g.id, "member", m.id, "session_timeout", m.session)
				s.m.removals.WithLabelValues("session_timeout").Inc()
				s.removeMember(g, m, "session of "+m.id+" expired")
			}
		}
		if g.state == statePreparing && !now.Before(g.joinDeadline) {
			s.joinDeadlinePassed(g)
		}
		if (g.state == stateCompleting || g.state == stateStable) && len(g.pendingSync) > 0 && !now.Before(g.syncDeadline) {
			for _, mid := range slices.Sorted(maps.Keys(g.pendingSync)) {
				s.log.Info("removing member that did not sync in time", "group", g.id, "member", mid)
				s.m.removals.WithLabelValues("sync_timeout").Inc()
				s.dropMember(g, g.members[mid])
			}
			s.prepareRebalance(g, "members did not sync in time")
		}
		if g.state == stateEmpty && len(g.members) == 0 && len(g.pending) == 0 && len(g.offsets) == 0 &&
			s.inflight[g.id] == 0 && !now.Before(g.stateSince.Add(emptyGroupRetention)) {
			delete(s.groups, g.id)
			if g.generation > 0 {
				// Its Empty record was stored; forget it durably too.
				s.enqueue(g.id, []KV{{Key: groupKey(g.id)}}, func(error) {})
			}
		}
	}
}

// keepAlive is Kafka's shouldKeepAlive: a member awaiting a join answer is
// kept (a new one for newMemberJoinTimeout), one awaiting a sync answer is
// kept, others live for their session timeout after they were last seen.
func (s *state) keepAlive(m *member, now time.Time) bool {
	switch {
	case m.joinW != nil:
		return !m.isNew || now.Before(m.lastSeen.Add(newMemberJoinTimeout))
	case m.syncW != nil:
		return true
	}
	return now.Before(m.lastSeen.Add(m.session))
}

// shutdown answers every parked call and queued write with ErrClosed.
func (s *state) shutdown() {
	for _, g := range s.groups {
		for _, m := range g.order {
			if m.joinW != nil {
				m.joinW.ch <- JoinResponse{Err: ErrClosed, MemberID: m.id}
				m.joinW = nil
			}
			if m.syncW != nil {
				m.syncW.ch <- SyncResponse{Err: ErrClosed}
				m.syncW = nil
			}
		}
	}
	for _, w := range s.queue {
		w.apply(ErrClosed)
	}
	s.queue = nil
}

func (s *state) list(states []string) []GroupSummary {
	var out []GroupSummary
	for _, id := range slices.Sorted(maps.Keys(s.groups)) {
		g := s.groups[id]
		if len(states) > 0 && !slices.ContainsFunc(states, func(st string) bool { return strings.EqualFold(st, g.state.String()) }) {
			continue
		}
		out = append(out, GroupSummary{Group: g.id, ProtocolType: g.protocolType, State: g.state.String()})
	}
	return out
}

// describe is Kafka's GroupMetadata.summary: the protocol, member metadata
// and assignments only for a Stable group.
func (s *state) describe(id string) GroupDescription {
	if !validGroupID(id) {
		return GroupDescription{Group: id, Err: ErrInvalidGroupID, State: stateDead.String()}
	}
	g := s.groups[id]
	if g == nil {
		return GroupDescription{Group: id, State: stateDead.String()}
	}
	d := GroupDescription{Group: id, State: g.state.String(), ProtocolType: g.protocolType, Generation: g.generation}
	stable := g.state == stateStable
	if stable {
		d.Protocol = g.protocol
	}
	for _, m := range g.order {
		md := MemberDescription{MemberID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost}
		if stable {
			md.Metadata, md.Assignment = m.metadata(g.protocol), m.assignment
		}
		d.Members = append(d.Members, md)
	}
	return d
}
