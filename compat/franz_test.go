package compat

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Tests with franz-go (github.com/twmb/franz-go/pkg/kgo), the client
// Herald's own tests use, driving a real server process.

// groupSessionTimeout is the coordinator's minimum session timeout: the
// shortest wait for a SIGKILLed member to be noticed.
const groupSessionTimeout = 6 * time.Second

func TestFranzProduceConsume(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const topic = "franz-roundtrip"
	s.createTopic(t, topic, 3)

	want := makeRecords("franz", 300)
	prod := s.client(t) // idempotent and acks=all: franz-go's defaults
	produceSync(t, prod, topic, want)

	cons := s.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := pollN(t, cons, len(want), 30*time.Second)
	requireSameRecords(t, "franz-go consume", want, got, true)
	requireOrderedByPartition(t, "franz-go consume", want, got)
	if n := pollMore(cons, 300*time.Millisecond); n != 0 {
		t.Fatalf("consumer read %d records beyond the %d produced", n, len(want))
	}
}

// TestFranzGroupRebalance: three members split six partitions; one leaves
// and the other two take its share; a member in a separate process is
// SIGKILLed and, after its session timeout, the others take its share.
func TestFranzGroupRebalance(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const topic, group, parts = "franz-group", "franz-group", 6
	s.createTopic(t, topic, parts)
	phase1 := makeRecords("franz-p1", 600)
	produceSync(t, s.client(t), topic, phase1)

	seen := newSeenRecords()
	a := newGroupMember(t, s, "a", topic, group, seen)
	b := newGroupMember(t, s, "b", topic, group, seen)
	c := newGroupMember(t, s, "c", topic, group, seen)
	adm := kadm.NewClient(s.client(t))

	waitAssignment(t, adm, group, parts, map[string]func() []int32{"a": a.owned, "b": b.owned, "c": c.owned})
	waitFor(t, 30*time.Second, func() error {
		if n := seen.distinct("franz-p1"); n < len(phase1) {
			return fmt.Errorf("the group consumed %d of %d distinct records", n, len(phase1))
		}
		return nil
	})
	t.Logf("three members: a=%v b=%v c=%v", a.owned(), b.owned(), c.owned())

	c.close() // leaves the group
	waitAssignment(t, adm, group, parts, map[string]func() []int32{"a": a.owned, "b": b.owned})
	t.Logf("c left: a=%v b=%v", a.owned(), b.owned())

	child := startChildMember(t, s, topic, group)
	waitAssignment(t, adm, group, parts, map[string]func() []int32{"a": a.owned, "b": b.owned, "child": child.owned})
	t.Logf("child joined: a=%v b=%v child=%v", a.owned(), b.owned(), child.owned())

	killed := time.Now()
	child.kill()
	waitAssignment(t, adm, group, parts, map[string]func() []int32{"a": a.owned, "b": b.owned})
	t.Logf("child SIGKILLed: a=%v b=%v after %v (session timeout %v)",
		a.owned(), b.owned(), time.Since(killed).Round(100*time.Millisecond), groupSessionTimeout)

	// With ownership stable, new records reach exactly one member, once.
	phase2 := makeRecords("franz-p2", 120)
	produceSync(t, s.client(t), topic, phase2)
	waitFor(t, 30*time.Second, func() error {
		if n := seen.distinct("franz-p2"); n < len(phase2) {
			return fmt.Errorf("the surviving members consumed %d of %d new records", n, len(phase2))
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // a duplicate would show up here
	requireSameRecords(t, "records produced after the last rebalance", phase2, seen.withPrefix("franz-p2"), true)
	if d := seen.duplicates("franz-p1"); d > 0 {
		// At-least-once across rebalances: allowed, but worth seeing.
		t.Logf("%d records of phase 1 were consumed twice across rebalances", d)
	}
}

// TestFranzCommittedOffsetsSurviveRestart: offsets a group committed are
// there after a clean restart, and a new member continues exactly there.
func TestFranzCommittedOffsetsSurviveRestart(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const topic, group = "franz-resume", "franz-resume"
	s.createTopic(t, topic, 3)

	batchA := makeRecords("franz-a", 150)
	produceSync(t, s.client(t), topic, batchA)
	first := s.client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.SessionTimeout(groupSessionTimeout))
	gotA := pollN(t, first, len(batchA), 30*time.Second)
	requireSameRecords(t, "first member", batchA, gotA, true)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := first.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	first.Close()
	committed := s.committed(t, group, topic)
	if end := s.endOffsets(t, topic); !mapsEqual(committed, end) {
		t.Fatalf("committed offsets %v, want the end offsets %v", committed, end)
	}

	s.stop() // SIGTERM: a clean exit is required
	s.restart()
	if after := s.committed(t, group, topic); !mapsEqual(after, committed) {
		t.Fatalf("committed offsets after restart %v, want %v", after, committed)
	}

	batchB := makeRecords("franz-b", 150)
	produceSync(t, s.client(t), topic, batchB)
	second := s.client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.SessionTimeout(groupSessionTimeout))
	gotB := pollN(t, second, len(batchB), 30*time.Second)
	requireSameRecords(t, "new member after restart", batchB, gotB, true)
	firstOffset := map[int32]int64{}
	for _, r := range gotB {
		if o, ok := firstOffset[r.Partition]; !ok || r.Offset < o {
			firstOffset[r.Partition] = r.Offset
		}
	}
	for p, o := range firstOffset {
		if o != committed[p] {
			t.Errorf("partition %d: the new member started at offset %d, want the committed %d", p, o, committed[p])
		}
	}
	if n := pollMore(second, 300*time.Millisecond); n != 0 {
		t.Fatalf("new member read %d records beyond batch B", n)
	}
}

// TestFranzIdempotentProducerSurvivesServerKill: an idempotent producer
// keeps producing while the server is SIGKILLed and restarted; its retries
// must neither lose an acknowledged record nor write one twice, and every
// partition keeps the order records were produced in.
func TestFranzIdempotentProducerSurvivesServerKill(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const topic = "franz-kill"
	s.createTopic(t, topic, 3)

	prod := s.client(t, kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }))
	all := makeRecords("franz-kill", 3000)
	var (
		mu     sync.Mutex
		acked  []record
		failed []error
	)
	var wg sync.WaitGroup
	allProduced := make(chan struct{})
	// One goroutine produces at a steady pace, so that the SIGKILL lands
	// while batches are in flight and the outage is produced through.
	go func() {
		for i, r := range all {
			wg.Add(1)
			prod.Produce(context.Background(), toKgo(topic, r), func(_ *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = append(failed, err)
				} else {
					acked = append(acked, r)
				}
			})
			if i%20 == 19 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		close(allProduced)
	}()
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}

	waitFor(t, 30*time.Second, func() error {
		if n := ackedCount(); n < 700 {
			return fmt.Errorf("%d records acknowledged", n)
		}
		return nil
	})
	s.kill()
	beforeKill := ackedCount()
	time.Sleep(300 * time.Millisecond)
	s.restart()
	<-allProduced
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := prod.Flush(ctx); err != nil {
		t.Fatalf("flush after restart: %v", err)
	}
	wg.Wait()
	t.Logf("%d acknowledged before the SIGKILL, %d in all, %d failed", beforeKill, len(acked), len(failed))
	if len(failed) > 0 {
		t.Errorf("%d records failed (retries are unlimited, so none should): first %v", len(failed), failed[0])
	}

	cons := s.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := pollN(t, cons, len(acked), 30*time.Second)
	if n := pollMore(cons, 500*time.Millisecond); n != 0 {
		got = append(got, pollN(t, cons, n, time.Second)...)
	}
	requireSameRecords(t, "records after SIGKILL and restart", acked, got, true)
	requireOrderedByPartition(t, "records after SIGKILL and restart", all, got)
}

// TestFranzTransactions: a transactional producer against a real herald
// serve: an aborted and a committed transaction, read back by
// read_committed (the committed only) and read_uncommitted (both) consumers.
func TestFranzTransactions(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const topic = "franz-txn"
	s.createTopic(t, topic, 1)
	produceTxns(t, s, topic, "franz")
	for _, tc := range []struct {
		iso  kgo.IsolationLevel
		want []string
	}{
		{kgo.ReadCommitted(), []string{"franz-committed-0", "franz-committed-1"}},
		{kgo.ReadUncommitted(), []string{"franz-aborted-0", "franz-aborted-1", "franz-committed-0", "franz-committed-1"}},
	} {
		cl := s.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(tc.iso))
		var got []string
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		for len(got) < len(tc.want) && ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		}
		cancel()
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Fatalf("read %v, want %v", got, tc.want)
		}
	}
}

// produceTxns writes, with a franz-go transactional producer, one aborted
// and then one committed transaction of two records each to partition 0.
func produceTxns(t *testing.T, s *server, topic, prefix string) {
	t.Helper()
	cl := s.client(t, kgo.TransactionalID(prefix+"-txn"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, end := range []kgo.TransactionEndTry{kgo.TryAbort, kgo.TryCommit} {
		what := "aborted"
		if end == kgo.TryCommit {
			what = "committed"
		}
		if err := cl.BeginTransaction(); err != nil {
			t.Fatalf("BeginTransaction: %v", err)
		}
		for i := range 2 {
			r := kgo.StringRecord(fmt.Sprintf("%s-%s-%d", prefix, what, i))
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
		}
		if err := cl.EndTransaction(ctx, end); err != nil {
			t.Fatalf("EndTransaction(%s): %v", what, err)
		}
	}
}

// produceSync produces recs in order and fails the test on any error.
func produceSync(t *testing.T, cl *kgo.Client, topic string, recs []record) {
	t.Helper()
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krs[i] = toKgo(topic, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

func toKgo(topic string, r record) *kgo.Record {
	kr := &kgo.Record{Topic: topic, Key: []byte(r.Key), Value: []byte(r.Value)}
	for _, h := range r.Headers {
		kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
	}
	return kr
}

func fromKgo(kr *kgo.Record) record {
	r := record{Key: string(kr.Key), Value: string(kr.Value), Partition: kr.Partition, Offset: kr.Offset}
	for _, h := range kr.Headers {
		r.Headers = append(r.Headers, header{h.Key, string(h.Value)})
	}
	return r
}

// pollN polls until n records arrived or the timeout passed.
func pollN(t *testing.T, cl *kgo.Client, n int, timeout time.Duration) []record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("after %v: polled %d of %d records", timeout, len(out), n)
		}
		for _, fe := range fs.Errors() {
			t.Fatalf("fetch %s[%d]: %v", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(kr *kgo.Record) { out = append(out, fromKgo(kr)) })
	}
	return out
}

// pollMore returns how many more records arrive within d.
func pollMore(cl *kgo.Client, d time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	n := 0
	for ctx.Err() == nil {
		n += cl.PollFetches(ctx).NumRecords()
	}
	return n
}

func mapsEqual(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// seenRecords collects what every member of a group consumed.
type seenRecords struct {
	mu   sync.Mutex
	recs []record
}

func newSeenRecords() *seenRecords { return &seenRecords{} }

func (s *seenRecords) add(r record) {
	s.mu.Lock()
	s.recs = append(s.recs, r)
	s.mu.Unlock()
}

func (s *seenRecords) withPrefix(p string) []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []record
	for _, r := range s.recs {
		if strings.HasPrefix(r.Key, p+"-") {
			out = append(out, r)
		}
	}
	return out
}

func (s *seenRecords) distinct(p string) int {
	keys := map[string]bool{}
	for _, r := range s.withPrefix(p) {
		keys[r.Key] = true
	}
	return len(keys)
}

func (s *seenRecords) duplicates(p string) int { return len(s.withPrefix(p)) - s.distinct(p) }

// groupMember is an in-process franz-go group member that tracks the
// partitions it owns from its assignment callbacks and consumes into seen.
type groupMember struct {
	cl   *kgo.Client
	done chan struct{}

	mu  sync.Mutex
	own map[int32]bool
}

func memberOpts(topic, group string) []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(groupSessionTimeout), kgo.HeartbeatInterval(500 * time.Millisecond),
	}
}

func newGroupMember(t *testing.T, s *server, name, topic, group string, seen *seenRecords) *groupMember {
	t.Helper()
	m := &groupMember{done: make(chan struct{}), own: map[int32]bool{}}
	opts := append(memberOpts(topic, group),
		kgo.ClientID("member-"+name),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) { m.update(a[topic], true) }),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			// Commit what was consumed so the next owner does not
			// consume it again.
			cl.CommitUncommittedOffsets(ctx)
			m.update(r[topic], false)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) { m.update(l[topic], false) }),
	)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.kafkaAddr)}, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	m.cl = cl
	go func() {
		defer close(m.done)
		for {
			fs := cl.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(kr *kgo.Record) { seen.add(fromKgo(kr)) })
		}
	}()
	t.Cleanup(m.close)
	return m
}

func (m *groupMember) update(ps []int32, own bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range ps {
		if own {
			m.own[p] = true
		} else {
			delete(m.own, p)
		}
	}
}

func (m *groupMember) owned() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int32, 0, len(m.own))
	for p := range m.own {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// close leaves the group and waits for the polling goroutine.
func (m *groupMember) close() {
	m.cl.Close()
	<-m.done
	m.update(m.owned(), false)
}

// waitAssignment waits until exactly the given members own every partition
// of the topic, each partition once, every member at least one, and the
// coordinator reports a stable group of that many members.
func waitAssignment(t *testing.T, adm *kadm.Client, group string, parts int32, members map[string]func() []int32) {
	t.Helper()
	waitFor(t, 4*groupSessionTimeout, func() error {
		owner := map[int32]string{}
		for name, owned := range members {
			ps := owned()
			if len(ps) == 0 {
				return fmt.Errorf("member %s owns no partition", name)
			}
			for _, p := range ps {
				if o, dup := owner[p]; dup {
					return fmt.Errorf("partition %d is owned by both %s and %s", p, o, name)
				}
				owner[p] = name
			}
		}
		if len(owner) != int(parts) {
			return fmt.Errorf("%d of %d partitions are owned: %v", len(owner), parts, owner)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return fmt.Errorf("describe group: %v", err)
		}
		d := dg[group]
		if d.Err != nil || d.State != "Stable" || len(d.Members) != len(members) {
			return fmt.Errorf("group is %q with %d members (err %v), want Stable with %d", d.State, len(d.Members), d.Err, len(members))
		}
		return nil
	})
}

// The child process: a franz-go group member in a separate process, so the
// test can SIGKILL it. It prints "owns P,P,..." whenever its assignment
// changes and consumes until killed.

const (
	childRoleEnv   = "HERALD_COMPAT_CHILD"
	childBrokerEnv = "HERALD_COMPAT_BROKER"
	childTopicEnv  = "HERALD_COMPAT_TOPIC"
	childGroupEnv  = "HERALD_COMPAT_GROUP"
)

func runChild(role string) int {
	if role != "franz-group-member" {
		fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
		return 2
	}
	topic := os.Getenv(childTopicEnv)
	var mu sync.Mutex
	owned := map[int32]bool{}
	report := func(ps []int32, own bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range ps {
			if own {
				owned[p] = true
			} else {
				delete(owned, p)
			}
		}
		var s []string
		for p := range owned {
			s = append(s, strconv.Itoa(int(p)))
		}
		sort.Strings(s)
		fmt.Printf("owns %s\n", strings.Join(s, ","))
	}
	opts := append(memberOpts(topic, os.Getenv(childGroupEnv)),
		kgo.SeedBrokers(os.Getenv(childBrokerEnv)), kgo.ClientID("member-child"),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) { report(a[topic], true) }),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			cl.CommitUncommittedOffsets(ctx)
			report(r[topic], false)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) { report(l[topic], false) }),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		if cl.PollFetches(context.Background()).IsClientClosed() {
			return 0
		}
	}
}

type childMember struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu   sync.Mutex
	last []int32
}

// startChildMember re-executes this test binary as a group member.
func startChildMember(t *testing.T, s *server, topic, group string) *childMember {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childRoleEnv+"=franz-group-member", childBrokerEnv+"="+s.kafkaAddr,
		childTopicEnv+"="+topic, childGroupEnv+"="+group)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child member: %v", err)
	}
	c := &childMember{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "owns ")
			if !ok {
				continue
			}
			var ps []int32
			for f := range strings.SplitSeq(line, ",") {
				if p, err := strconv.Atoi(f); err == nil {
					ps = append(ps, int32(p))
				}
			}
			c.mu.Lock()
			c.last = ps
			c.mu.Unlock()
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
	}()
	t.Cleanup(c.kill)
	return c
}

func (c *childMember) owned() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.last)
}

// kill SIGKILLs the child: it neither commits nor leaves the group.
func (c *childMember) kill() {
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		panic(err)
	}
	<-c.done
	c.mu.Lock()
	c.last = nil
	c.mu.Unlock()
}
