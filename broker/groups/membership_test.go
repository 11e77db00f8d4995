package groups

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// All members join inside the initial rebalance delay: one generation, the
// first joiner leads and sees everyone's metadata, everyone gets the
// leader's assignment.
func TestJoinTogether(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(string(rune('0'+n))+"members", func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.InitialRebalanceDelay = 3 * time.Second })
			var chs []<-chan JoinResponse
			for i := range n {
				chs = append(chs, e.joinAsync(e.ctx, joinReq("g", "")))
				e.waitFor("member", func(s *state) bool { return nmembers(s, "g") == i+1 })
			}
			notYet(t, chs[0])
			e.advance(3 * time.Second) // a member joined during the delay: wait once more
			notYet(t, chs[0])
			e.advance(3 * time.Second)
			var leader string
			var ids []string
			for i, ch := range chs {
				r := recv(t, ch)
				wantErr(t, "join", r.Err, nil)
				if r.Generation != 1 || r.Protocol != "range" || r.ProtocolType != "consumer" {
					t.Fatalf("join answer %+v", r)
				}
				if i == 0 {
					leader = r.MemberID
					if len(r.Members) != n {
						t.Fatalf("leader sees %d members, want %d", len(r.Members), n)
					}
				} else if len(r.Members) != 0 {
					t.Fatalf("follower got members %v", r.Members)
				}
				if r.Leader != leader {
					t.Fatalf("leader %q, want first joiner %q", r.Leader, leader)
				}
				ids = append(ids, r.MemberID)
			}
			e.syncAll("g", ids, 1)
			d := e.c.Describe("g")
			if len(d.Members) != n || string(d.Members[1].Assignment) != "a-"+ids[1] || d.Protocol != "range" {
				t.Fatalf("describe %+v", d)
			}
		})
	}
}

// Members join one at a time: every newcomer starts a rebalance the
// existing members take part in; the leader stays the first member.
func TestJoinOneByOne(t *testing.T) {
	e := newEnv(t, nil)
	ids, gen := e.stableGroup("g", 3)
	if gen != 3 {
		t.Fatalf("generation %d, want 3", gen)
	}
	d := e.c.Describe("g")
	if d.Generation != 3 || len(d.Members) != 3 {
		t.Fatalf("describe %+v", d)
	}
	// A follower that rejoins with the same protocols in a Stable group
	// gets the current generation back without a rebalance.
	r := e.c.Join(e.ctx, joinReq("g", ids[1]))
	if r.Err != nil || r.Generation != 3 || r.Leader != ids[0] || len(r.Members) != 0 {
		t.Fatalf("follower rejoin %+v", r)
	}
	if e.state("g") != "Stable" {
		t.Fatal("follower rejoin started a rebalance")
	}
}

func TestLeaveTriggersRebalance(t *testing.T) {
	e := newEnv(t, nil)
	ids, gen := e.stableGroup("g", 3)
	errs, err := e.c.Leave(e.ctx, "g", []LeaveMember{{MemberID: ids[0], Reason: "shutdown"}, {MemberID: "nobody"}})
	if err != nil || errs[0] != nil || errs[1] != ErrUnknownMemberID {
		t.Fatalf("leave: %v %v", errs, err)
	}
	for _, id := range ids[1:] {
		wantErr(t, "heartbeat", e.c.Heartbeat(e.ctx, "g", id, "", gen), ErrRebalanceInProgress)
	}
	a, b := e.joinAsync(e.ctx, joinReq("g", ids[1])), e.joinAsync(e.ctx, joinReq("g", ids[2]))
	ra, rb := recv(t, a), recv(t, b)
	if ra.Generation != gen+1 || rb.Generation != gen+1 || ra.Leader != ids[1] {
		t.Fatalf("after leave: %+v %+v", ra, rb)
	}
	if len(ra.Members) != 2 {
		t.Fatalf("new leader sees %d members", len(ra.Members))
	}
	e.syncAll("g", ids[1:], gen+1)
	wantErr(t, "left member heartbeat", e.c.Heartbeat(e.ctx, "g", ids[0], "", gen+1), ErrUnknownMemberID)

	// The last members leaving empty the group: a new generation, Empty.
	if _, err := e.c.Leave(e.ctx, "g", []LeaveMember{{MemberID: ids[1]}, {MemberID: ids[2]}}); err != nil {
		t.Fatal(err)
	}
	if d := e.c.Describe("g"); d.State != "Empty" || d.Generation != gen+2 || len(d.Members) != 0 {
		t.Fatalf("describe after all left: %+v", d)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t, nil)
	ids, gen := e.stableGroup("g", 2) // session timeouts 10s
	for range 2 {
		e.advance(4 * time.Second)
		wantErr(t, "heartbeat", e.c.Heartbeat(e.ctx, "g", ids[1], "", gen), nil)
	}
	if st := e.state("g"); st != "Stable" {
		t.Fatalf("state %s after 8s, want Stable", st)
	}
	e.advance(2 * time.Second) // ids[0] has been silent for its 10s session
	if st := e.state("g"); st != "PreparingRebalance" {
		t.Fatalf("state %s, want PreparingRebalance", st)
	}
	wantErr(t, "expired heartbeat", e.c.Heartbeat(e.ctx, "g", ids[0], "", gen), ErrUnknownMemberID)
	wantErr(t, "survivor heartbeat", e.c.Heartbeat(e.ctx, "g", ids[1], "", gen), ErrRebalanceInProgress)
	r := e.c.Join(e.ctx, joinReq("g", ids[1]))
	if r.Err != nil || r.Generation != gen+1 || r.Leader != ids[1] || len(r.Members) != 1 {
		t.Fatalf("rejoin %+v", r)
	}
}

func TestRebalanceTimeoutRemovesMember(t *testing.T) {
	e := newEnv(t, nil)
	ids, gen := e.stableGroup("g", 2) // rebalance timeouts 20s
	// The leader rejoins, which starts a rebalance; the follower never does.
	ch := e.joinAsync(e.ctx, joinReq("g", ids[0]))
	e.waitParked("g", 1)
	for range 3 {
		e.advance(6 * time.Second)
		notYet(t, ch)
		wantErr(t, "heartbeat", e.c.Heartbeat(e.ctx, "g", ids[1], "", gen), ErrRebalanceInProgress)
	}
	e.advance(2 * time.Second) // 20s since the rebalance started
	r := recv(t, ch)
	if r.Err != nil || r.Generation != gen+1 || len(r.Members) != 1 {
		t.Fatalf("join after timeout %+v", r)
	}
	wantErr(t, "removed member", e.c.Heartbeat(e.ctx, "g", ids[1], "", gen), ErrUnknownMemberID)
}

// A member that gets its join answer but never syncs is removed after the
// rebalance timeout and the others rebalance again.
func TestPendingSyncExpiry(t *testing.T) {
	e := newEnv(t, nil)
	ids, gen := e.stableGroup("g", 2)
	e.rebalance("g", ids)
	s := e.syncAsync(e.ctx, SyncRequest{Group: "g", MemberID: ids[1], Generation: gen + 1})
	e.waitSyncParked("g", 1)
	e.advance(20 * time.Second)
	wantErr(t, "follower sync", recv(t, s).Err, ErrRebalanceInProgress)
	if d := e.c.Describe("g"); d.State != "PreparingRebalance" || len(d.Members) != 1 {
		t.Fatalf("describe %+v", d)
	}
}

func TestMemberIDRequired(t *testing.T) {
	e := newEnv(t, nil)
	req := joinReq("g", "")
	req.RequireKnownMemberID = true
	req.ClientID = "app"
	r := e.c.Join(e.ctx, req)
	wantErr(t, "first join", r.Err, ErrMemberIDRequired)
	if len(r.MemberID) != len("app-")+36 || r.MemberID[:4] != "app-" {
		t.Fatalf("member id %q", r.MemberID)
	}
	if e.state("g") != "Empty" {
		t.Fatal("a member-id-required answer must not start a rebalance")
	}
	req.MemberID = r.MemberID
	r2 := e.c.Join(e.ctx, req)
	if r2.Err != nil || r2.MemberID != r.MemberID || r2.Leader != r.MemberID || r2.Generation != 1 {
		t.Fatalf("second join %+v", r2)
	}

	// A pending member holds up a rebalance until it joins or its session
	// passes.
	req.MemberID = ""
	p := e.c.Join(e.ctx, req)
	wantErr(t, "pending", p.Err, ErrMemberIDRequired)
	ch := e.joinAsync(e.ctx, joinReq("g", r.MemberID, "range", "other")) // changed protocols: rebalance
	e.waitParked("g", 1)
	notYet(t, ch)
	e.advance(10 * time.Second)
	if j := recv(t, ch); j.Err != nil || j.Generation != 2 || len(j.Members) != 1 {
		t.Fatalf("join after pending expiry %+v", j)
	}
	req.MemberID = p.MemberID
	wantErr(t, "expired pending member", e.c.Join(e.ctx, req).Err, ErrUnknownMemberID)
}

func TestProtocols(t *testing.T) {
	e := newEnv(t, nil)
	bad := joinReq("g", "")
	bad.ProtocolType = ""
	wantErr(t, "no protocol type", e.c.Join(e.ctx, bad).Err, ErrInconsistentProtocol)
	bad = joinReq("g", "")
	bad.Protocols = nil
	wantErr(t, "no protocols", e.c.Join(e.ctx, bad).Err, ErrInconsistentProtocol)

	ids, gen := e.stableGroup("g", 1)
	bad = joinReq("g", "")
	bad.ProtocolType = "connect"
	wantErr(t, "other protocol type", e.c.Join(e.ctx, bad).Err, ErrInconsistentProtocol)
	wantErr(t, "unshared protocol", e.c.Join(e.ctx, joinReq("g", "", "sticky")).Err, ErrInconsistentProtocol)
	wantErr(t, "sync other type", e.c.Sync(e.ctx, SyncRequest{Group: "g", MemberID: ids[0], Generation: gen, ProtocolType: "connect"}).Err, ErrInconsistentProtocol)
	wantErr(t, "sync other protocol", e.c.Sync(e.ctx, SyncRequest{Group: "g", MemberID: ids[0], Generation: gen, Protocol: "sticky"}).Err, ErrInconsistentProtocol)

	tooShort := joinReq("g2", "")
	tooShort.SessionTimeout = time.Second
	wantErr(t, "short session", e.c.Join(e.ctx, tooShort).Err, ErrInvalidSessionTimeout)
	tooShort.SessionTimeout = time.Hour
	wantErr(t, "long session", e.c.Join(e.ctx, tooShort).Err, ErrInvalidSessionTimeout)
	wantErr(t, "no group", e.c.Join(e.ctx, joinReq("", "")).Err, ErrInvalidGroupID)
}

// Kafka's vote: each member votes for its most preferred protocol that all
// members support.
func TestProtocolVote(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InitialRebalanceDelay = time.Second })
	prefs := [][]string{{"range", "roundrobin", "sticky"}, {"roundrobin", "range"}, {"sticky", "roundrobin", "range"}, {"roundrobin", "range", "sticky"}}
	var chs []<-chan JoinResponse
	for i, p := range prefs {
		chs = append(chs, e.joinAsync(e.ctx, joinReq("g", "", p...)))
		e.waitFor("member", func(s *state) bool { return nmembers(s, "g") == i+1 })
	}
	e.advance(time.Second)
	e.advance(time.Second)
	for _, ch := range chs {
		if r := recv(t, ch); r.Protocol != "roundrobin" {
			t.Fatalf("protocol %q, want roundrobin", r.Protocol)
		}
	}
}

func TestHeartbeatErrors(t *testing.T) {
	e := newEnv(t, nil)
	ids, gen := e.stableGroup("g", 2)
	for _, tc := range []struct {
		name, group, member, instance string
		gen                           int32
		want                          error
	}{
		{"ok", "g", ids[1], "", gen, nil},
		{"unknown group", "nope", ids[1], "", gen, ErrUnknownMemberID},
		{"unknown member", "g", "ghost", "", gen, ErrUnknownMemberID},
		{"old generation", "g", ids[1], "", gen - 1, ErrIllegalGeneration},
		{"future generation", "g", ids[1], "", gen + 1, ErrIllegalGeneration},
		{"unknown instance", "g", ids[1], "i1", gen, ErrUnknownMemberID},
		{"invalid group", "", ids[1], "", gen, ErrInvalidGroupID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, "heartbeat", e.c.Heartbeat(e.ctx, tc.group, tc.member, tc.instance, tc.gen), tc.want)
		})
	}
	wantErr(t, "sync old generation", e.c.Sync(e.ctx, SyncRequest{Group: "g", MemberID: ids[1], Generation: gen - 1}).Err, ErrIllegalGeneration)
	wantErr(t, "sync unknown", e.c.Sync(e.ctx, SyncRequest{Group: "g", MemberID: "ghost", Generation: gen}).Err, ErrUnknownMemberID)
	ch := e.joinAsync(e.ctx, joinReq("g", ids[0])) // the leader rejoins: rebalance
	e.waitParked("g", 1)
	wantErr(t, "during rebalance", e.c.Heartbeat(e.ctx, "g", ids[1], "", gen), ErrRebalanceInProgress)
	wantErr(t, "sync during rebalance", e.c.Sync(e.ctx, SyncRequest{Group: "g", MemberID: ids[1], Generation: gen}).Err, ErrRebalanceInProgress)
	recv(t, e.joinAsync(e.ctx, joinReq("g", ids[1])))
	recv(t, ch)
	// CompletingRebalance: heartbeats of the new generation are fine.
	wantErr(t, "completing", e.c.Heartbeat(e.ctx, "g", ids[1], "", gen+1), nil)
}

func TestStaticMembership(t *testing.T) {
	e := newEnv(t, nil)
	static := func(inst, member string) JoinRequest {
		r := joinReq("g", member)
		r.InstanceID = inst
		return r
	}
	r1 := e.c.Join(e.ctx, static("i1", ""))
	wantErr(t, "join i1", r1.Err, nil)
	if r1.MemberID[:3] != "i1-" {
		t.Fatalf("static member id %q", r1.MemberID)
	}
	ch := e.joinAsync(e.ctx, static("i2", ""))
	e.waitFor("rebalance", func(s *state) bool { return s.groups["g"] != nil && s.groups["g"].state == statePreparing })
	r1 = e.c.Join(e.ctx, static("i1", r1.MemberID))
	r2 := recv(t, ch)
	ids, gen := []string{r1.MemberID, r2.MemberID}, r2.Generation
	e.syncAll("g", ids, gen)

	// i2 restarts: a new member id at once, same generation, no rebalance.
	nr := e.c.Join(e.ctx, static("i2", ""))
	if nr.Err != nil || nr.MemberID == ids[1] || nr.Generation != gen || nr.Leader != ids[0] || len(nr.Members) != 0 {
		t.Fatalf("static rejoin %+v", nr)
	}
	if e.state("g") != "Stable" {
		t.Fatal("static rejoin started a rebalance")
	}
	s := e.c.Sync(e.ctx, SyncRequest{Group: "g", MemberID: nr.MemberID, InstanceID: "i2", Generation: gen})
	if s.Err != nil || string(s.Assignment) != "a-"+ids[1] {
		t.Fatalf("sync of the new id %+v", s)
	}
	wantErr(t, "old id heartbeat", e.c.Heartbeat(e.ctx, "g", ids[1], "i2", gen), ErrFencedInstanceID)
	wantErr(t, "old id sync", e.c.Sync(e.ctx, SyncRequest{Group: "g", MemberID: ids[1], InstanceID: "i2", Generation: gen}).Err, ErrFencedInstanceID)
	wantErr(t, "old id join", e.c.Join(e.ctx, static("i2", ids[1])).Err, ErrFencedInstanceID)
	wantErr(t, "old id commit", commitErr(e, "g", ids[1], "i2", gen), ErrFencedInstanceID)
	wantErr(t, "new id heartbeat", e.c.Heartbeat(e.ctx, "g", nr.MemberID, "i2", gen), nil)

	// The leader restarting keeps the group Stable too.
	lr := e.c.Join(e.ctx, static("i1", ""))
	if lr.Err != nil || lr.Generation != gen || e.state("g") != "Stable" {
		t.Fatalf("static leader rejoin %+v (%s)", lr, e.state("g"))
	}

	// Leave by instance id alone.
	errs, err := e.c.Leave(e.ctx, "g", []LeaveMember{{InstanceID: "i2"}, {InstanceID: "i9"}})
	if err != nil || errs[0] != nil || errs[1] != ErrUnknownMemberID {
		t.Fatalf("leave by instance: %v %v", errs, err)
	}
	d := e.c.Describe("g")
	if d.State != "PreparingRebalance" || len(d.Members) != 1 || d.Members[0].InstanceID != "i1" {
		t.Fatalf("describe after leave %+v", d)
	}
}

// A static member that does not rejoin is not removed by the rebalance
// timeout (Kafka keeps it for its session); it is removed when it expires.
func TestStaticMemberSurvivesRebalanceTimeout(t *testing.T) {
	e := newEnv(t, nil)
	static := func(inst, member string) JoinRequest {
		r := joinReq("g", member)
		r.InstanceID = inst
		r.SessionTimeout = 30 * time.Second
		return r
	}
	a := e.c.Join(e.ctx, static("i1", ""))
	ch := e.joinAsync(e.ctx, static("i2", ""))
	e.waitFor("rebalance", func(s *state) bool { return s.groups["g"] != nil && s.groups["g"].state == statePreparing })
	e.advance(20 * time.Second) // i1 never rejoins
	b := recv(t, ch)
	if b.Err != nil || len(b.Members) != 2 || b.Leader != b.MemberID {
		t.Fatalf("join %+v (want i2 to lead both members)", b)
	}
	if !slices.ContainsFunc(e.c.Describe("g").Members, func(m MemberDescription) bool { return m.MemberID == a.MemberID }) {
		t.Fatal("static member was removed by the rebalance timeout")
	}
}

func TestJoinContextCancel(t *testing.T) {
	e := newEnv(t, nil)
	ids, gen := e.stableGroup("g", 1)
	ctx, cancel := context.WithCancel(e.ctx)
	ch := e.joinAsync(ctx, joinReq("g", ""))
	e.waitParked("g", 1)
	cancel()
	r := recv(t, ch)
	wantErr(t, "cancelled join", r.Err, context.Canceled)
	e.waitParked("g", 0)
	if d := e.c.Describe("g"); len(d.Members) != 1 {
		t.Fatalf("the cancelled newcomer is still a member: %+v", d)
	}
	// The rebalance it started completes with the existing member alone.
	j := e.c.Join(e.ctx, joinReq("g", ids[0]))
	if j.Err != nil || j.Generation != gen+1 || len(j.Members) != 1 {
		t.Fatalf("rejoin %+v", j)
	}

	// A cancelled sync is withdrawn too.
	ids2, gen2 := e.stableGroup("h", 2)
	e.rebalance("h", ids2)
	ctx2, cancel2 := context.WithCancel(e.ctx)
	s := e.syncAsync(ctx2, SyncRequest{Group: "h", MemberID: ids2[1], Generation: gen2 + 1})
	e.waitSyncParked("h", 1)
	cancel2()
	wantErr(t, "cancelled sync", recv(t, s).Err, context.Canceled)
	e.waitSyncParked("h", 0)
}

func TestCloseUnblocksWaiters(t *testing.T) {
	e := newEnv(t, nil)
	e.stableGroup("g", 2)
	j := e.joinAsync(e.ctx, joinReq("g", "")) // waits for the others to rejoin
	e.waitParked("g", 1)
	ids, gen := e.stableGroup("h", 2)
	e.rebalance("h", ids)
	s := e.syncAsync(e.ctx, SyncRequest{Group: "h", MemberID: ids[1], Generation: gen + 1}) // waits for the leader
	e.waitSyncParked("h", 1)
	if err := e.c.Close(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "parked join", recv(t, j).Err, ErrClosed)
	wantErr(t, "parked sync", recv(t, s).Err, ErrClosed)
	wantErr(t, "join after close", e.c.Join(e.ctx, joinReq("g", "")).Err, ErrClosed)
	wantErr(t, "heartbeat after close", e.c.Heartbeat(e.ctx, "h", ids[0], "", gen), ErrClosed)
	_, err := e.c.CommitOffsets(e.ctx, "x", "", "", -1, map[TopicPartition]Offset{{"t", 0}: {Offset: 1}})
	wantErr(t, "commit after close", err, ErrClosed)
	wantErr(t, "describe after close", e.c.Describe("h").Err, ErrClosed)
	if e.c.List(nil) != nil {
		t.Fatal("List after close returned groups")
	}
	if err := e.c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A static member restarting while the group rebalances: during
// PreparingRebalance it takes part under its new id (a join parked under
// the old id is fenced); during CompletingRebalance a new rebalance starts.
func TestStaticReplaceDuringRebalance(t *testing.T) {
	static := func(inst, member string, protos ...string) JoinRequest {
		r := joinReq("g", member, protos...)
		r.InstanceID = inst
		return r
	}
	e := newEnv(t, nil)
	a := e.c.Join(e.ctx, static("i1", ""))
	bch := e.joinAsync(e.ctx, static("i2", ""))
	e.waitFor("rebalance", func(s *state) bool { return s.groups["g"].state == statePreparing })
	old := e.joinAsync(e.ctx, static("i1", a.MemberID))
	b := recv(t, bch)
	recv(t, old)
	gen := b.Generation
	e.syncAll("g", []string{a.MemberID, b.MemberID}, gen)

	// PreparingRebalance: i2 rejoins with other protocols (a rebalance);
	// before the leader rejoins, i2 restarts.
	parkedOld := e.joinAsync(e.ctx, static("i2", b.MemberID, "range", "other"))
	e.waitParked("g", 1)
	nb := e.joinAsync(e.ctx, static("i2", ""))
	wantErr(t, "old id's parked join", recv(t, parkedOld).Err, ErrFencedInstanceID)
	e.waitParked("g", 1)
	l := e.joinAsync(e.ctx, static("i1", a.MemberID))
	r1, r2 := recv(t, l), recv(t, nb)
	if r1.Err != nil || r2.Err != nil || r2.MemberID == b.MemberID || r2.Generation != gen+1 || len(r1.Members) != 2 {
		t.Fatalf("rebalance with a replaced member: %+v %+v", r1, r2)
	}
	if !slices.ContainsFunc(r1.Members, func(m Member) bool { return m.MemberID == r2.MemberID }) {
		t.Fatalf("leader does not see the new id: %+v", r1.Members)
	}

	// CompletingRebalance: i2's sync is parked; i2 restarts: its old sync
	// is fenced and the group rebalances again.
	s := e.syncAsync(e.ctx, SyncRequest{Group: "g", MemberID: r2.MemberID, InstanceID: "i2", Generation: gen + 1})
	e.waitSyncParked("g", 1)
	nb2 := e.joinAsync(e.ctx, static("i2", ""))
	wantErr(t, "old id's parked sync", recv(t, s).Err, ErrFencedInstanceID)
	e.waitFor("rebalance", func(s *state) bool { return s.groups["g"].state == statePreparing })
	l2 := e.c.Join(e.ctx, static("i1", a.MemberID))
	r3 := recv(t, nb2)
	if l2.Generation != gen+2 || r3.Generation != gen+2 || r3.Err != nil {
		t.Fatalf("after replacement in CompletingRebalance: %+v %+v", l2, r3)
	}
	e.syncAll("g", []string{a.MemberID, r3.MemberID}, gen+2)

	// Stable: a restart whose metadata changed but whose protocols do not
	// change the group's choice keeps the group Stable (Kafka's rule; the
	// consumer's metadata differs after every restart).
	req := static("i2", "")
	req.Protocols[0].Metadata = consumerMeta("t1", "t2")
	if r := e.c.Join(e.ctx, req); r.Err != nil || r.Generation != gen+2 || e.state("g") != "Stable" {
		t.Fatalf("static restart with new metadata: %+v (%s)", r, e.state("g"))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no store", Config{}, "Store is required"},
		{"bounds", Config{Store: NewMemoryStore(), MinSessionTimeout: time.Minute, MaxSessionTimeout: time.Second}, "session timeout bounds"},
		{"delay", Config{Store: NewMemoryStore(), InitialRebalanceDelay: -1}, "initial rebalance delay"},
		{"metadata", Config{Store: NewMemoryStore(), MaxMetadataBytes: -1}, "max metadata bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
}
