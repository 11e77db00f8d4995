package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// resetFixture is a topic t with two partitions of ten records each, the
// first five older than mid, and group g having read everything.
func resetFixture(t *testing.T) (s *cliServer, mid time.Time) {
	s = startCLITestServer(t)
	s.ok(t, "", "topic", "create", "t", "--partitions", "2")
	for p := range 2 {
		s.ok(t, "0\n1\n2\n3\n4\n", "produce", "t", "--partition", fmt.Sprint(p), "-q")
	}
	time.Sleep(5 * time.Millisecond)
	mid = time.Now()
	time.Sleep(5 * time.Millisecond)
	for p := range 2 {
		s.ok(t, "5\n6\n7\n8\n9\n", "produce", "t", "--partition", fmt.Sprint(p), "-q")
	}
	s.ok(t, "", "consume", "t", "--group", "g")
	if c := s.committed(t, "g", "t"); c[0] != 10 || c[1] != 10 {
		t.Fatalf("fixture: committed %v", c)
	}
	return s, mid
}

func TestGroupResetDryRun(t *testing.T) {
	s, _ := resetFixture(t)
	r := s.run(t, "", "group", "reset", "g", "--topic", "t", "--to-earliest")
	want := "TOPIC  PARTITION  CURRENT-OFFSET  NEW-OFFSET  LAG-AFTER\nt      0          10              0           10\nt      1          10              0           10\n"
	if r.code != 0 || r.stdout != want || !strings.Contains(r.stderr, "dry run: nothing changed; add --execute to commit these offsets") {
		t.Errorf("dry run: exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %q", r.code, r.stdout, want, r.stderr)
	}
	out := s.ok(t, "", "group", "reset", "g", "--all-topics", "--shift-by", "-4", "-o", "json")
	var plan struct {
		Group      string     `json:"group"`
		Executed   bool       `json:"executed"`
		Partitions []resetRow `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	if plan.Group != "g" || plan.Executed || len(plan.Partitions) != 2 || *plan.Partitions[0].Current != 10 ||
		plan.Partitions[0].New != 6 || plan.Partitions[0].LagAfter != 4 {
		t.Errorf("dry run -o json: %s", out)
	}
	if c := s.committed(t, "g", "t"); c[0] != 10 || c[1] != 10 {
		t.Errorf("a dry run changed the offsets: %v", c)
	}
}

func TestGroupResetExecute(t *testing.T) {
	s, mid := resetFixture(t)
	for _, tc := range []struct {
		args []string
		want map[int32]int64
	}{
		{[]string{"--topic", "t", "--to-earliest"}, map[int32]int64{0: 0, 1: 0}},
		{[]string{"--topic", "t", "--to-offset", "7"}, map[int32]int64{0: 7, 1: 7}},
		{[]string{"--topic", "t", "--to-latest"}, map[int32]int64{0: 10, 1: 10}},
		{[]string{"--topic", "t", "--to-datetime", mid.UTC().Format(time.RFC3339Nano)}, map[int32]int64{0: 5, 1: 5}},
		{[]string{"--all-topics", "--shift-by", "2"}, map[int32]int64{0: 7, 1: 7}},
		{[]string{"--topic", "t:1", "--shift-by", "-3"}, map[int32]int64{0: 7, 1: 4}},
		// Clamped to the partition's start and end.
		{[]string{"--topic", "t", "--shift-by", "-100"}, map[int32]int64{0: 0, 1: 0}},
		{[]string{"--topic", "t:0", "--to-offset", "500"}, map[int32]int64{0: 10, 1: 0}},
		{[]string{"--topic", "t", "--to-datetime", mid.Add(time.Hour).Format(time.RFC3339)}, map[int32]int64{0: 10, 1: 10}},
		{[]string{"--topic", "t", "--to-datetime", "2000-01-01T00:00:00Z"}, map[int32]int64{0: 0, 1: 0}},
	} {
		args := append([]string{"group", "reset", "g", "--execute"}, tc.args...)
		out := s.ok(t, "", args...)
		if !strings.Contains(out, "NEW-OFFSET") || !strings.Contains(out, "reset the offsets of group g in ") {
			t.Errorf("%v printed:\n%s", tc.args, out)
		}
		if got := s.committed(t, "g", "t"); !maps.Equal(got, tc.want) {
			t.Errorf("after %v: committed %v, want %v", tc.args, got, tc.want)
		}
	}

	// The group replays from the new offsets.
	s.ok(t, "", "group", "reset", "g", "--topic", "t:0", "--to-offset", "8", "--execute")
	s.ok(t, "", "group", "reset", "g", "--topic", "t:1", "--to-latest", "--execute")
	if got := values(consumeJSON(t, s, "t", "--group", "g")); strings.Join(got, ",") != "8,9" {
		t.Errorf("consume after reset to 8: %q", got)
	}

	// A group without offsets can be given some; --all-topics needs some.
	s.ok(t, "", "group", "reset", "fresh", "--topic", "t", "--to-offset", "3", "--execute", "-o", "json")
	if got := s.committed(t, "fresh", "t"); got[0] != 3 || got[1] != 3 {
		t.Errorf("new group: committed %v", got)
	}
	s.fails(t, exitNotFound, `herald: group reset: group "nobody" has no committed offsets (name the topics with --topic)`, "",
		"group", "reset", "nobody", "--all-topics", "--to-earliest")
	s.fails(t, exitNotFound, `herald: group reset: topic "nope" not found`, "", "group", "reset", "g", "--topic", "nope", "--to-earliest")
}

// TestGroupRefusedWhileLive: reset and delete are refused (exit 4) while a
// member is in the group, and work once it left.
func TestGroupRefusedWhileLive(t *testing.T) {
	s, _ := resetFixture(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.addr), kgo.ClientID("live-consumer"), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for ctx.Err() == nil {
			cl.PollFetches(ctx)
		}
	}()
	defer func() {
		cancel()
		<-polled
		cl.Close()
	}()
	waitFor(t, "the consumer to join", 15*time.Second, func() bool {
		var d groupDescription
		r := s.run(t, "", "group", "describe", "g", "-o", "json")
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &d) == nil && d.State == "Stable" && len(d.Members) == 1
	})

	const refused = `herald: group reset: group "g" has 1 live member(s) (state Stable); offsets can be reset only while it is empty: stop its consumers first`
	s.fails(t, exitConflict, refused, "", "group", "reset", "g", "--topic", "t", "--to-earliest")
	s.fails(t, exitConflict, refused, "", "group", "reset", "g", "--topic", "t", "--to-earliest", "--execute")
	s.fails(t, exitConflict, `herald: group delete: group "g" has live members`, "", "group", "delete", "g")
	if c := s.committed(t, "g", "t"); c[0] != 10 || c[1] != 10 {
		t.Errorf("refused resets changed the offsets: %v", c)
	}

	var d groupDescription
	if err := json.Unmarshal([]byte(s.ok(t, "", "group", "describe", "g", "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	m := d.Members[0]
	if m.ClientID != "live-consumer" || len(m.Assignment) != 1 || m.Assignment[0].Topic != "t" || len(m.Assignment[0].Partitions) != 2 ||
		d.Offsets[0].MemberID != m.MemberID {
		t.Errorf("describe of a live group: %+v", d)
	}
	out := s.ok(t, "", "group", "list")
	if !strings.Contains(out, "g      Stable  consumer       1\n") {
		t.Errorf("group list:\n%s", out)
	}

	cancel()
	<-polled
	cl.Close()
	waitFor(t, "the group to empty", 15*time.Second, func() bool {
		return strings.Contains(s.ok(t, "", "group", "describe", "g"), "State:     Empty")
	})
	s.ok(t, "", "group", "reset", "g", "--topic", "t", "--to-earliest", "--execute")
	if c := s.committed(t, "g", "t"); c[0] != 0 || c[1] != 0 {
		t.Errorf("reset after the member left: %v", c)
	}
	if out := s.ok(t, "", "group", "delete", "g", "-o", "json"); !strings.Contains(out, `"deleted": true`) {
		t.Errorf("group delete -o json: %s", out)
	}
	s.fails(t, exitNotFound, `herald: group delete: group "g" not found`, "", "group", "delete", "g")
}

// TestResetCommitRefused: a member joining between the state check and
// the commit makes the coordinator refuse the commit; that is the same
// conflict as a live group.
func TestResetCommitRefused(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		want string
	}{
		{nil, 0, ""},
		{kerr.UnknownMemberID, exitConflict, `group "g" has live members now`},
		{kerr.RebalanceInProgress, exitConflict, `group "g" has live members now`},
		{kerr.UnknownTopicOrPartition, exitNotFound, "partition t/1 not found"},
		{kerr.CoordinatorNotAvailable, exitFailure, "partition t/1: "},
	} {
		err := resetCommitError("g", kadm.OffsetResponse{Offset: kadm.Offset{Topic: "t", Partition: 1}, Err: tc.err})
		if tc.err == nil {
			if err != nil {
				t.Errorf("no error: got %v", err)
			}
			continue
		}
		// commandError gives every command's error its code this way.
		if got := exitCodeOf(commandError(newRootCmd(), err)); got != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: exit %d, %v; want exit %d and %q", tc.err, got, err, tc.code, tc.want)
		}
	}
}
