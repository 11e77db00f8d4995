package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/broker/txn"
)

// txnEnv is a server with durable groups and transactions on a data
// directory, restartable on the same address.
type txnEnv struct {
	t    *testing.T
	dir  string
	addr string
	b    *broker.Broker
	g    *groups.Coordinator
	tc   *txn.Coordinator
	s    *Server
	done chan error
}

func newTxnEnv(t *testing.T) *txnEnv {
	e := &txnEnv{t: t, dir: t.TempDir(), addr: "127.0.0.1:0"}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *txnEnv) start() {
	t := e.t
	t.Helper()
	b, err := broker.Open(broker.Config{DataDir: e.dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := b.GroupStore()
	if err != nil {
		t.Fatal(err)
	}
	g, err := groups.New(context.Background(), groups.Config{Store: gs, Logger: testLogger(t),
		TopicExists: func(topic string, p int32) bool { return b.PartitionExists(topic, p) }})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := b.TxnStore()
	if err != nil {
		t.Fatal(err)
	}
	tc, err := txn.New(context.Background(), txn.Config{Store: ts, Markers: b, Groups: g, NewProducerID: b.NewProducerID,
		CheckInterval: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	b.SetTxnVerifier(tc)
	e.b, e.g, e.tc = b, g, tc
	e.s = New(Config{Broker: b, Groups: g, Txns: tc, Logger: testLogger(t)})
	e.s.maxWait = time.Second
	var ln net.Listener
	for i := 0; ; i++ {
		if ln, err = net.Listen("tcp", e.addr); err == nil || i == 50 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.done = make(chan error, 1)
	go func() { e.done <- e.s.Serve(ln) }()
}

func (e *txnEnv) stop() {
	if e.s == nil {
		return
	}
	e.s.Close()
	<-e.done
	e.tc.Close()
	e.g.Close()
	if err := e.b.Close(); err != nil {
		e.t.Errorf("broker.Close: %v", err)
	}
	e.s = nil
}

func (e *txnEnv) restart() { e.stop(); e.start() }

func (e *txnEnv) client(opts ...kgo.Opt) *kgo.Client {
	e.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.addr), kgo.FetchMaxWait(300 * time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond })}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cl.Close)
	return cl
}

// readAll reads topic from the start until two polls in a row return
// nothing, and returns the values sorted.
func (e *txnEnv) readAll(topic string, committed bool) []string {
	e.t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := e.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso))
	var out []string
	deadline := time.Now().Add(15 * time.Second)
	for empty := 0; empty < 2 && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			empty++
			continue
		}
		empty = 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
	}
	slices.Sort(out)
	return out
}

func (e *txnEnv) endOffsets(topic string, committed bool) map[int32]int64 {
	e.t.Helper()
	adm := kadm.NewClient(e.client())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var offs kadm.ListedOffsets
	var err error
	if committed {
		offs, err = adm.ListCommittedOffsets(ctx, topic)
	} else {
		offs, err = adm.ListEndOffsets(ctx, topic)
	}
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		e.t.Fatalf("list offsets: %v", err)
	}
	out := map[int32]int64{}
	for p, o := range offs[topic] {
		out[p] = o.Offset
	}
	return out
}

// TestTxnGroupTransactSession: a consume-transform-produce loop that
// commits and aborts alternately. read_committed consumers see exactly the
// committed outputs, each input transformed once; read_uncommitted ones
// see the aborted outputs too; the group's offset is the end of the input.
func TestTxnGroupTransactSession(t *testing.T) {
	e := newTxnEnv(t)
	ctx := context.Background()
	for _, topic := range []string{"in", "out"} {
		if err := e.b.CreateTopic(ctx, topic, 2, nil); err != nil {
			t.Fatal(err)
		}
	}
	const n = 60
	var inputs []*kgo.Record
	for i := range n {
		inputs = append(inputs, &kgo.Record{Topic: "in", Value: fmt.Appendf(nil, "v%03d", i)})
	}
	if err := e.client().ProduceSync(ctx, inputs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(e.addr), kgo.TransactionalID("ctp"), kgo.ConsumerGroup("ctp-group"), kgo.ConsumeTopics("in"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(300*time.Millisecond), kgo.FetchMaxPartitionBytes(200), kgo.RequireStableFetchOffsets(),
		kgo.TransactionTimeout(30*time.Second),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var committed, all []string
	seen := map[string]int{} // input value -> times committed
	deadline := time.Now().Add(30 * time.Second)
	for round := 0; len(seen) < n; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d rounds only %d of %d inputs committed", round, len(seen), n)
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := sess.PollFetches(pctx)
		cancel()
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatalf("Begin: %v", err)
		}
		var outs, ins []string
		fs.EachRecord(func(r *kgo.Record) {
			v := fmt.Sprintf("%s-r%d", r.Value, round)
			outs, ins = append(outs, v), append(ins, string(r.Value))
			sess.Produce(ctx, &kgo.Record{Topic: "out", Value: []byte(v)}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("produce: %v", err)
				}
			})
		})
		commit := round%2 == 1
		// Flush first, so that an aborted round's outputs are in the log
		// (aborting drops records still buffered).
		if err := sess.Client().Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		ok, err := sess.End(ctx, kgo.TransactionEndTry(commit))
		if err != nil {
			t.Fatalf("End(commit=%v): %v", commit, err)
		}
		all = append(all, outs...)
		if ok != commit {
			t.Fatalf("round %d: End(commit=%v) committed=%v", round, commit, ok)
		}
		if ok {
			committed = append(committed, outs...)
			for _, in := range ins {
				seen[in]++
			}
		}
	}
	for in, k := range seen {
		if k != 1 {
			t.Errorf("input %s committed %d times", in, k)
		}
	}
	slices.Sort(committed)
	slices.Sort(all)
	if len(all) == len(committed) {
		t.Fatal("no round was aborted")
	}
	if got := e.readAll("out", true); !slices.Equal(got, committed) {
		t.Fatalf("read_committed read %d records, want the %d committed:\n got %v\nwant %v", len(got), len(committed), got, committed)
	}
	if got := e.readAll("out", false); !slices.Equal(got, all) {
		t.Fatalf("read_uncommitted read %d records, want all %d produced", len(got), len(all))
	}
	offs, err := kadm.NewClient(e.client()).FetchOffsets(ctx, "ctp-group")
	if err != nil {
		t.Fatal(err)
	}
	end := e.endOffsets("in", false)
	for p, o := range end {
		if got, _ := offs.Lookup("in", p); got.At != o {
			t.Errorf("group offset of in/%d is %d, want %d", p, got.At, o)
		}
	}
}

// TestTxnFencing: a second producer with the same transactional id fences
// the first, whose open transaction is aborted and whose produce and
// commit then fail.
func TestTxnFencing(t *testing.T) {
	e := newTxnEnv(t)
	ctx := context.Background()
	e.b.CreateTopic(ctx, "f", 1, nil)
	a := e.client(kgo.TransactionalID("fence"), kgo.DefaultProduceTopic("f"))
	if err := a.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := a.ProduceSync(ctx, kgo.StringRecord("zombie-1")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	b := e.client(kgo.TransactionalID("fence"), kgo.DefaultProduceTopic("f"))
	if err := b.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := b.ProduceSync(ctx, kgo.StringRecord("winner")).FirstErr(); err != nil {
		t.Fatalf("new producer: %v", err)
	}
	perr := a.ProduceSync(ctx, kgo.StringRecord("zombie-2")).FirstErr()
	cerr := a.EndTransaction(ctx, kgo.TryCommit)
	if !isFenced(perr) && !isFenced(cerr) {
		t.Fatalf("zombie produce: %v, commit: %v; want a fencing error", perr, cerr)
	}
	if err := b.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("new producer's commit: %v", err)
	}
	if got := e.readAll("f", true); !slices.Equal(got, []string{"winner"}) {
		t.Fatalf("read_committed: %v", got)
	}
}

func isFenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch)
}

// TestTxnTimeout: a transaction open longer than its timeout is aborted
// by the coordinator; the producer's commit then fails.
func TestTxnTimeout(t *testing.T) {
	e := newTxnEnv(t)
	ctx := context.Background()
	e.b.CreateTopic(ctx, "to", 1, nil)
	cl := e.client(kgo.TransactionalID("slow"), kgo.DefaultProduceTopic("to"), kgo.TransactionTimeout(300*time.Millisecond))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, kgo.StringRecord("late")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the timeout abort", func() bool {
		tx, err := e.tc.Describe("slow")
		return err == nil && tx.State == txn.CompleteAbort
	})
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("commit after the timeout succeeded")
	}
	if got := e.readAll("to", true); len(got) != 0 {
		t.Fatalf("read_committed after the timeout: %v", got)
	}
	if got := e.readAll("to", false); !slices.Equal(got, []string{"late"}) {
		t.Fatalf("read_uncommitted after the timeout: %v", got)
	}
	// kadm sees the abort through DescribeTransactions and ListTransactions.
	adm := kadm.NewClient(e.client())
	d, err := adm.DescribeTransactions(ctx, "slow")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := d.On("slow", nil); s.State != "CompleteAbort" {
		t.Fatalf("DescribeTransactions: %+v", s)
	}
	l, err := adm.ListTransactions(ctx, nil, []string{"CompleteAbort"})
	if err != nil || len(l) != 1 {
		t.Fatalf("ListTransactions: %v %v", l, err)
	}
}

// TestTxnLSOBlocksReadCommitted: an open transaction holds read_committed
// consumers (and ListOffsets) at its first offset, records after it
// included, until it commits.
func TestTxnLSOBlocksReadCommitted(t *testing.T) {
	e := newTxnEnv(t)
	ctx := context.Background()
	e.b.CreateTopic(ctx, "lso", 1, nil)
	plain := e.client(kgo.DefaultProduceTopic("lso"))
	if err := plain.ProduceSync(ctx, kgo.StringRecord("before")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tx := e.client(kgo.TransactionalID("lso-tx"), kgo.DefaultProduceTopic("lso"))
	tx.BeginTransaction()
	if err := tx.ProduceSync(ctx, kgo.StringRecord("t1"), kgo.StringRecord("t2")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := plain.ProduceSync(ctx, kgo.StringRecord("after")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := e.endOffsets("lso", true)[0]; got != 1 {
		t.Fatalf("read_committed end offset %d with a transaction open at 1, want 1", got)
	}
	if got := e.endOffsets("lso", false)[0]; got != 4 {
		t.Fatalf("read_uncommitted end offset %d, want 4", got)
	}
	cons := e.client(kgo.ConsumeTopics("lso"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var got []string
	pctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	for pctx.Err() == nil {
		cons.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	cancel()
	if !slices.Equal(got, []string{"before"}) {
		t.Fatalf("read_committed while open: %v, want [before]", got)
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	pctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(got) < 4 && pctx.Err() == nil {
		cons.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if !slices.Equal(got, []string{"before", "t1", "t2", "after"}) {
		t.Fatalf("read_committed after the commit: %v", got)
	}
}

// TestTxnRestart: a transaction open across a server restart holds the
// LSO after it and commits correctly; one aborted before the restart stays
// aborted (the aborted-transaction index survives).
func TestTxnRestart(t *testing.T) {
	e := newTxnEnv(t)
	ctx := context.Background()
	e.b.CreateTopic(ctx, "rs", 1, nil)
	cl := e.client(kgo.TransactionalID("rs-tx"), kgo.DefaultProduceTopic("rs"))
	cl.BeginTransaction()
	cl.ProduceSync(ctx, kgo.StringRecord("aborted"))
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	cl.BeginTransaction()
	if err := cl.ProduceSync(ctx, kgo.StringRecord("kept")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if got := e.endOffsets("rs", true)[0]; got != 2 {
		t.Fatalf("read_committed end after restart %d, want 2 (the open transaction's start)", got)
	}
	if tx, _ := e.tc.Describe("rs-tx"); tx.State != txn.Ongoing {
		t.Fatalf("state after restart %v, want Ongoing", tx.State)
	}
	// The same client reconnects and commits.
	if err := cl.ProduceSync(ctx, kgo.StringRecord("kept2")).FirstErr(); err != nil {
		t.Fatalf("produce after restart: %v", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit after restart: %v", err)
	}
	e.restart()
	if got := e.readAll("rs", true); !slices.Equal(got, []string{"kept", "kept2"}) {
		t.Fatalf("read_committed: %v", got)
	}
	if got := strings.Join(e.readAll("rs", false), ","); got != "aborted,kept,kept2" {
		t.Fatalf("read_uncommitted: %v", got)
	}
}
