package groups

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func commitErr(e *env, group, member, instance string, gen int32) error {
	res, err := e.c.CommitOffsets(e.ctx, group, member, instance, gen, map[TopicPartition]Offset{{"t1", 0}: {Offset: 5}})
	if err != nil {
		return err
	}
	return res[TopicPartition{"t1", 0}]
}

func TestCommitValidation(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.TopicExists = func(topic string, p int32) bool { return topic != "missing" }
		c.MaxMetadataBytes = 8
	})
	ids, gen := e.stableGroup("g", 2)
	for _, tc := range []struct {
		name, group, member, instance string
		gen                           int32
		want                          error
	}{
		{"member", "g", ids[1], "", gen, nil},
		{"old generation", "g", ids[1], "", gen - 1, ErrIllegalGeneration},
		{"unknown member", "g", "ghost", "", gen, ErrUnknownMemberID},
		{"simple commit to a live group", "g", "", "", -1, ErrUnknownMemberID},
		{"simple commit to a new group", "simple", "", "", -1, nil},
		{"simple commit to an empty group", "simple", "", "", -1, nil},
		{"member of an unknown group", "nope", "m", "", 3, ErrIllegalGeneration},
		{"invalid group", "", "", "", -1, ErrInvalidGroupID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, "commit", commitErr(e, tc.group, tc.member, tc.instance, tc.gen), tc.want)
		})
	}
	res, err := e.c.CommitOffsets(e.ctx, "g", ids[0], "", gen, map[TopicPartition]Offset{
		{"t1", 1}:      {Offset: 7, LeaderEpoch: 3, Metadata: "meta"},
		{"t1", 2}:      {Offset: 8, Metadata: "too long metadata"},
		{"missing", 0}: {Offset: 9},
	})
	if err != nil || res[TopicPartition{"t1", 1}] != nil || res[TopicPartition{"t1", 2}] != ErrOffsetMetadataTooLarge ||
		res[TopicPartition{"missing", 0}] != ErrUnknownTopic {
		t.Fatalf("commit: %v %v", res, err)
	}
	got, err := e.c.FetchOffsets(e.ctx, "g", nil)
	if err != nil || len(got) != 2 || got[TopicPartition{"t1", 0}].Offset != 5 {
		t.Fatalf("fetch all: %v %v", got, err)
	}
	if o := got[TopicPartition{"t1", 1}]; o.Offset != 7 || o.LeaderEpoch != 3 || o.Metadata != "meta" || !o.CommitTime.Equal(e.clk.Now()) {
		t.Fatalf("fetched %+v", o)
	}
	got, _ = e.c.FetchOffsets(e.ctx, "g", []TopicPartition{{"t1", 1}, {"t1", 9}})
	if len(got) != 1 || got[TopicPartition{"t1", 1}].Offset != 7 {
		t.Fatalf("fetch some: %v", got)
	}
	if got, err := e.c.FetchOffsets(e.ctx, "unknown", nil); err != nil || len(got) != 0 {
		t.Fatalf("fetch unknown group: %v %v", got, err)
	}

	// During CompletingRebalance members must wait for their assignment.
	e.rebalance("g", ids)
	wantErr(t, "completing", commitErr(e, "g", ids[1], "", gen+1), ErrRebalanceInProgress)
}

func TestCommitDuringPreparing(t *testing.T) {
	e := newEnv(t, nil)
	ids, gen := e.stableGroup("g", 2)
	ch := e.joinAsync(e.ctx, joinReq("g", ids[0]))
	e.waitParked("g", 1)
	wantErr(t, "commit while preparing", commitErr(e, "g", ids[1], "", gen), nil)
	e.advance(20 * time.Second)
	recv(t, ch)
}

func TestDeleteOffsets(t *testing.T) {
	e := newEnv(t, nil)
	_, gen := e.stableGroup("g", 1) // subscribed to t1
	ids := e.c.Describe("g").Members
	res, err := e.c.CommitOffsets(e.ctx, "g", ids[0].MemberID, "", gen, map[TopicPartition]Offset{{"t1", 0}: {Offset: 1}, {"t2", 0}: {Offset: 2}})
	if err != nil || res[TopicPartition{"t2", 0}] != nil {
		t.Fatal(res, err)
	}
	del, err := e.c.DeleteOffsets(e.ctx, "g", []TopicPartition{{"t1", 0}, {"t2", 0}})
	if err != nil || del[TopicPartition{"t1", 0}] != ErrGroupSubscribedToTopic || del[TopicPartition{"t2", 0}] != nil {
		t.Fatalf("delete offsets of a live group: %v %v", del, err)
	}
	got, _ := e.c.FetchOffsets(e.ctx, "g", nil)
	if len(got) != 1 || got[TopicPartition{"t1", 0}].Offset != 1 {
		t.Fatalf("after delete: %v", got)
	}
	if _, err := e.c.DeleteOffsets(e.ctx, "nope", []TopicPartition{{"t1", 0}}); !errors.Is(err, ErrGroupIDNotFound) {
		t.Fatalf("unknown group: %v", err)
	}
	e.c.Leave(e.ctx, "g", []LeaveMember{{MemberID: ids[0].MemberID}})
	del, err = e.c.DeleteOffsets(e.ctx, "g", []TopicPartition{{"t1", 0}})
	if err != nil || del[TopicPartition{"t1", 0}] != nil {
		t.Fatalf("delete offsets of an empty group: %v %v", del, err)
	}
	if got, _ := e.c.FetchOffsets(e.ctx, "g", nil); len(got) != 0 {
		t.Fatalf("left: %v", got)
	}

	// A live group of another protocol type refuses outright.
	other := joinReq("connect", "")
	other.ProtocolType = "connect"
	if r := e.c.Join(e.ctx, other); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := e.c.DeleteOffsets(e.ctx, "connect", []TopicPartition{{"t1", 0}}); !errors.Is(err, ErrNonEmptyGroup) {
		t.Fatalf("non-consumer live group: %v", err)
	}
}

func TestDeleteAndSetOffsets(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TopicExists = func(topic string, _ int32) bool { return topic != "missing" } })
	ids, _ := e.stableGroup("g", 1)
	wantErr(t, "delete live", e.c.Delete(e.ctx, "g"), ErrNonEmptyGroup)
	wantErr(t, "set live", e.c.SetOffsets(e.ctx, "g", map[TopicPartition]Offset{{"t1", 0}: {Offset: 1}}), ErrNonEmptyGroup)
	wantErr(t, "delete unknown", e.c.Delete(e.ctx, "nope"), ErrGroupIDNotFound)
	e.c.Leave(e.ctx, "g", []LeaveMember{{MemberID: ids[0]}})

	wantErr(t, "set", e.c.SetOffsets(e.ctx, "g", map[TopicPartition]Offset{{"t1", 0}: {Offset: 10}, {"t1", 1}: {Offset: 11}}), nil)
	err := e.c.SetOffsets(e.ctx, "g", map[TopicPartition]Offset{{"t1", 0}: {Offset: 99}, {"missing", 0}: {Offset: 1}})
	if !errors.Is(err, ErrUnknownTopic) || !strings.Contains(err.Error(), "missing/0") {
		t.Fatalf("set unknown topic: %v", err)
	}
	got, _ := e.c.FetchOffsets(e.ctx, "g", nil)
	if len(got) != 2 || got[TopicPartition{"t1", 0}].Offset != 10 {
		t.Fatalf("after set: %v", got)
	}
	wantErr(t, "set new group", e.c.SetOffsets(e.ctx, "fresh", map[TopicPartition]Offset{{"t1", 0}: {Offset: 3}}), nil)
	if d := e.c.Describe("fresh"); d.State != "Empty" {
		t.Fatalf("set created %+v", d)
	}

	wantErr(t, "delete", e.c.Delete(e.ctx, "g"), nil)
	if d := e.c.Describe("g"); d.State != "Dead" || d.Err != nil {
		t.Fatalf("describe deleted: %+v", d)
	}
	if got, _ := e.c.FetchOffsets(e.ctx, "g", nil); len(got) != 0 {
		t.Fatalf("offsets after delete: %v", got)
	}
	wantErr(t, "delete again", e.c.Delete(e.ctx, "g"), ErrGroupIDNotFound)
}

func TestListDescribe(t *testing.T) {
	e := newEnv(t, nil)
	e.stableGroup("b", 1)
	ch := e.joinAsync(e.ctx, joinReq("a", "")) // completes at once: CompletingRebalance
	recv(t, ch)
	if err := commitErr(e, "c", "", "", -1); err != nil {
		t.Fatal(err)
	}
	all := e.c.List(nil)
	want := []GroupSummary{{"a", "consumer", "CompletingRebalance"}, {"b", "consumer", "Stable"}, {"c", "", "Empty"}}
	if len(all) != 3 || all[0] != want[0] || all[1] != want[1] || all[2] != want[2] {
		t.Fatalf("list %v", all)
	}
	if l := e.c.List([]string{"stable", "Empty"}); len(l) != 2 || l[0].Group != "b" || l[1].Group != "c" {
		t.Fatalf("list filtered %v", l)
	}
	d := e.c.Describe("a")
	if d.Protocol != "" || len(d.Members) != 1 || d.Members[0].Metadata != nil || d.Members[0].ClientID != "client" {
		t.Fatalf("describe of a group that is not Stable shows metadata: %+v", d)
	}
	if d := e.c.Describe("zzz"); d.State != "Dead" || d.Err != nil || d.Group != "zzz" {
		t.Fatalf("describe unknown %+v", d)
	}
	// Empty groups without offsets are forgotten after a while.
	id := e.c.Describe("b").Members[0].MemberID
	e.c.Leave(e.ctx, "b", []LeaveMember{{MemberID: id}})
	e.advance(emptyGroupRetention)
	if d := e.c.Describe("b"); d.State != "Dead" {
		t.Fatalf("empty group kept: %+v", d)
	}
	if d := e.c.Describe("c"); d.State != "Empty" {
		t.Fatalf("group with offsets forgotten: %+v", d)
	}
}

func TestStoreFailure(t *testing.T) {
	ms := NewMemoryStore()
	e := newEnv(t, func(c *Config) { c.Store = ms })
	ids, gen := e.stableGroup("g", 1)
	boom := errors.New("disk on fire")
	ms.FailAppends(boom)
	_, err := e.c.CommitOffsets(e.ctx, "g", ids[0], "", gen, map[TopicPartition]Offset{{"t1", 0}: {Offset: 5}})
	if !errors.Is(err, boom) {
		t.Fatalf("commit with a failing store: %v", err)
	}
	if got, _ := e.c.FetchOffsets(e.ctx, "g", nil); len(got) != 0 {
		t.Fatalf("a failed commit was applied: %v", got)
	}
	// A leader's sync whose assignment cannot be stored fails the sync.
	recv(t, e.joinAsync(e.ctx, joinReq("g", ids[0])))
	s := e.c.Sync(e.ctx, SyncRequest{Group: "g", MemberID: ids[0], Generation: gen + 1})
	if !errors.Is(s.Err, boom) {
		t.Fatalf("sync with a failing store: %+v", s)
	}
	ms.FailAppends(nil)
	if err := commitErr(e, "other", "", "", -1); err != nil {
		t.Fatalf("healed store: %v", err)
	}
}
