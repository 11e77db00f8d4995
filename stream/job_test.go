package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/server"
)

// crashJobConfig is the job TestJobCrash runs, in the child and (as a
// Processor) in the reference run.
func crashJobConfig(brokers string) JobConfig {
	return JobConfig{
		Name: "crashjob", Brokers: []string{brokers}, Input: "orders", Output: "hourly",
		Processor: Config{Key: "data.user", Window: TumblingWindow(10 * time.Second),
			Aggs: []Agg{{Kind: Count}, {Kind: Sum, Field: "data.total", Name: "revenue"},
				{Kind: CountDistinct, Field: "data.item", Name: "items"}},
			MaxOutOfOrder: time.Second, Grace: Grace(time.Second), Emit: EmitFinal},
		MaxPollRecords: 25,
		KgoOptions: []kgo.Opt{kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100 * time.Millisecond),
			kgo.RebalanceTimeout(2 * time.Second)},
		Logger: slog.New(slog.DiscardHandler),
	}
}

// TestJobCrashChild is the job process TestJobCrash SIGKILLs.
func TestJobCrashChild(t *testing.T) {
	if os.Getenv("HERALD_STREAM_CRASH_CHILD") != "1" {
		t.Skip("run by TestJobCrash")
	}
	j, err := NewJob(crashJobConfig(os.Getenv("HERALD_STREAM_CRASH_BROKERS")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := j.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// crashInput is the input: orders over 8 users, out of order by up to 6s
// (so some are late), a few without a usable time, and a last event far
// ahead that closes every window.
func crashInput(n int) []*kgo.Record {
	rng := rand.New(rand.NewPCG(5, 6))
	var recs []*kgo.Record
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		e := event.New("/shop", "OrderCreated")
		e.ID = fmt.Sprintf("o%d", i)
		e.Time = base.Add(time.Duration(i)*200*time.Millisecond - time.Duration(rng.IntN(6000))*time.Millisecond)
		if i%97 == 13 {
			e.Time = time.Time{} // counted and sent to the error topic
		}
		e.DataContentType = "application/json"
		e.Data = fmt.Appendf(nil, `{"user":"u%d","total":%d,"item":"i%d"}`, rng.IntN(8), rng.IntN(100), rng.IntN(20))
		recs = append(recs, toKgo(e))
	}
	end := event.New("/shop", "OrderCreated")
	end.ID, end.Time, end.Data = "end", base.Add(time.Hour), []byte(`{"user":"zz","total":0,"item":"x"}`)
	recs = append(recs, toKgo(end))
	recs = append(recs, &kgo.Record{Value: []byte("not an event")})
	return recs
}

func toKgo(e *event.Event) *kgo.Record {
	m, err := event.Encode(e)
	if err != nil {
		panic(err)
	}
	r := &kgo.Record{Topic: "orders", Partition: 0, Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return r
}

// TestJobCrash SIGKILLs a job process (this test binary, re-executed) at
// random points, lets a last one finish, and demands that the committed
// output, late and error topics equal those of an uninterrupted run.
func TestJobCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	brokers, cl := startServer(t, kgo.DefaultProduceTopic("orders"))
	ctx := context.Background()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	input := crashInput(40000)
	if err := cl.ProduceSync(ctx, input...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The reference: the same Processor over the same input, in-process.
	cfg := crashJobConfig(brokers)
	ref, err := New(cfg.Processor)
	if err != nil {
		t.Fatal(err)
	}
	var want recSink
	for _, r := range input {
		hs := make([]event.Header, len(r.Headers))
		for i, h := range r.Headers {
			hs[i] = event.Header{Key: h.Key, Value: h.Value}
		}
		e, err := event.DecodeAny(event.Message{Key: r.Key, Value: r.Value, Headers: hs})
		if err != nil {
			want.errors++
			continue
		}
		ref.Process(0, e, &want)
	}
	if want.late == 0 || want.errors < 2 || len(want.out) < 50 {
		t.Fatalf("reference run too tame: %d results, %d late, %d errors", len(want.out), want.late, want.errors)
	}

	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestJobCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "HERALD_STREAM_CRASH_CHILD=1", "HERALD_STREAM_CRASH_BROKERS="+brokers)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	rounds := 3
	if os.Getenv("HERALD_LONG") == "1" {
		rounds = 15
	}
	for r := 0; r < rounds; r++ {
		cmd := start()
		time.Sleep(time.Duration(1200+rand.IntN(1200)) * time.Millisecond) // startup (fencing, rebalance) takes about a second
		cmd.Process.Kill()
		cmd.Wait()
		got := readCommitted(t, brokers, "hourly", 200*time.Millisecond)
		t.Logf("round %d: killed with %d of %d results committed", r, len(got), len(want.out))
	}
	cmd := start()
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	var got []string
	for {
		got = readCommitted(t, brokers, "hourly", 300*time.Millisecond)
		if len(got) >= len(want.out) || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would commit after the check
	got = readCommitted(t, brokers, "hourly", 300*time.Millisecond)
	if strings.Join(got, "\n") != strings.Join(want.out, "\n") {
		n := min(len(got), len(want.out))
		for i := 0; i < n; i++ {
			if got[i] != want.out[i] {
				t.Fatalf("output differs at record %d of %d (want %d):\n got  %s\n want %s", i, len(got), len(want.out), got[i], want.out[i])
			}
		}
		t.Fatalf("output has %d records, want %d", len(got), len(want.out))
	}
	if late := readCommitted(t, brokers, "crashjob.late", 200*time.Millisecond); len(late) != want.late {
		t.Fatalf("late topic has %d records, want %d", len(late), want.late)
	}
	if errs := readCommitted(t, brokers, "crashjob.errors", 200*time.Millisecond); len(errs) != want.errors {
		t.Fatalf("error topic has %d records, want %d", len(errs), want.errors)
	}
	// Checkpoints are incremental: key records and global records only.
	state := readCommitted(t, brokers, "crashjob.state", 200*time.Millisecond)
	keyRecs := 0
	for _, r := range state {
		switch {
		case strings.HasPrefix(r, "crashjob/k/"):
			keyRecs++
		case strings.HasPrefix(r, "crashjob/g "):
		default:
			t.Fatalf("state record %.40q: neither a key's nor the global one", r)
		}
	}
	if keyRecs == 0 {
		t.Fatal("no key records in the state topic")
	}
	t.Logf("after %d kills: %d results, %d late, %d errors, all equal to the uninterrupted run", rounds, len(got), want.late, want.errors)
}

type recSink struct {
	out          []string
	late, errors int
}

func (s *recSink) Result(r *Result)                   { s.out = append(s.out, r.Key+" "+string(EncodeResult(r))) }
func (s *recSink) Late(*event.Event, int32)           { s.late++ }
func (s *recSink) Invalid(*event.Event, int32, error) { s.errors++ }

// readCommitted reads a topic's committed records (partition 0) until
// no record comes for quiet once it has read to the topic's committed end
// (or, when the end holds no readable record, for 10s); each as "key
// value".
func readCommitted(t *testing.T, brokers, topic string, quiet time.Duration) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	var out []string
	var last int64 = -1
	for {
		// NB: a loaded machine can take longer than quiet to answer a new
		// client's first fetch: wait longer until the end is reached (the
		// last committed records end before the commit marker at end-1).
		wait := quiet
		if last < end.Offset-2 {
			wait = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			last = r.Offset
			out = append(out, string(r.Key)+" "+string(r.Value))
		})
		if n == 0 {
			return out
		}
	}
}

// TestJobRestartAfterIdleCommits stops a job after idle ticks closed its
// windows (transactions that commit results without new input offsets, so
// two snapshots carry the same offsets) and restarts it reading its state
// one record batch per fetch: it must restore the newest snapshot, not
// emit those windows again.
func TestJobRestartAfterIdleCommits(t *testing.T) {
	brokers, cl := startServer(t)
	ctx := context.Background()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	produce := orderProducer(t, cl, base)
	cfg := JobConfig{Name: "idlejob", Brokers: []string{brokers}, Input: "orders", Output: "counts",
		Processor: Config{Key: "data.user", Window: TumblingWindow(time.Second), Aggs: []Agg{{Kind: Count}},
			IdleTimeout: 200 * time.Millisecond, Grace: Grace(0), Emit: EmitFinal},
		KgoOptions: []kgo.Opt{kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100 * time.Millisecond),
			kgo.RebalanceTimeout(2 * time.Second)},
		Logger: slog.New(slog.DiscardHandler)}
	run := func(cfg JobConfig) (stop func()) { return startJob(t, cfg, nil) }
	waitFor := func(n int) []string {
		t.Helper()
		var got []string
		for deadline := time.Now().Add(30 * time.Second); len(got) < n && time.Now().Before(deadline); {
			got = readCommitted(t, brokers, "counts", 300*time.Millisecond)
		}
		return got
	}
	produce("a", 100*time.Millisecond)
	produce("b", 200*time.Millisecond)
	stop := run(cfg)
	if got := waitFor(2); len(got) != 2 {
		t.Fatalf("before the restart: %q, want the windows of a and b", got)
	}
	stop()
	// One record batch per fetch: the restore reads the state topic in
	// many polls.
	cfg.KgoOptions = append(cfg.KgoOptions, kgo.FetchMaxBytes(1), kgo.FetchMaxPartitionBytes(1))
	stop = run(cfg)
	defer stop()
	produce("c", 5*time.Second)
	got := waitFor(3)
	if len(got) < 3 || !strings.HasPrefix(got[len(got)-1], "c ") {
		t.Fatalf("after the restart: %q, want c's window", got)
	}
	if len(got) != 3 {
		t.Fatalf("after the restart: %d results %q, want 3: windows emitted twice", len(got), got)
	}
}

// orderProducer returns a function producing an OrderCreated event of
// user at base+at to topic orders.
func orderProducer(t *testing.T, cl *kgo.Client, base time.Time) func(user string, at time.Duration) {
	return func(user string, at time.Duration) {
		e := event.New("/shop", "OrderCreated")
		e.Time, e.Data = base.Add(at), fmt.Appendf(nil, `{"user":%q}`, user)
		if err := cl.ProduceSync(context.Background(), toKgo(e)).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// startJob runs the job cfg describes (changed by mod, if not nil) until
// the stop it returns, which fails the test if Run returned an error.
func startJob(t *testing.T, cfg JobConfig, mod func(*Job)) (stop func()) {
	j, err := NewJob(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(j)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// startServer starts an in-process server and a client of it with opts,
// both closed when the test ends, and returns the server's address.
func startServer(tb testing.TB, opts ...kgo.Opt) (string, *kgo.Client) {
	tb.Helper()
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: tb.TempDir()},
		Groups: groups.Config{MinSessionTimeout: 100 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(srv.KafkaAddr())}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return srv.KafkaAddr(), cl
}

// TestJobUpgradesFromFullSnapshots: a job whose state topic holds full
// snapshots (what versions before incremental checkpoints wrote) restores
// from them, then checkpoints incrementally, and restores from those
// after another restart; open windows keep their counts throughout.
func TestJobUpgradesFromFullSnapshots(t *testing.T) {
	brokers, cl := startServer(t)
	ctx := context.Background()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	produce := orderProducer(t, cl, base)
	cfg := JobConfig{Name: "upgraded", Brokers: []string{brokers}, Input: "orders", Output: "counts",
		Processor: Config{Key: "data.user", Window: TumblingWindow(time.Hour), Aggs: []Agg{{Kind: Count}},
			Grace: Grace(0), Emit: EmitChanges},
		KgoOptions: []kgo.Opt{kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100 * time.Millisecond),
			kgo.RebalanceTimeout(2 * time.Second)},
		Logger: slog.New(slog.DiscardHandler)}
	run := func(full bool) (stop func()) {
		return startJob(t, cfg, func(j *Job) {
			if full {
				j.Runner.cfg.RestoreKeyed = nil // the earlier version: full snapshots
			}
		})
	}
	// counts waits for n committed results and returns the last count of
	// each user.
	counts := func(n int) map[string]float64 {
		t.Helper()
		var got []string
		for deadline := time.Now().Add(30 * time.Second); len(got) < n && time.Now().Before(deadline); {
			got = readCommitted(t, brokers, "counts", 300*time.Millisecond)
		}
		if len(got) != n {
			t.Fatalf("%d results %q, want %d", len(got), got, n)
		}
		last := map[string]float64{}
		for _, g := range got {
			_, v, _ := strings.Cut(g, " ")
			var r struct {
				Key   string  `json:"key"`
				Count float64 `json:"count"`
			}
			if err := json.Unmarshal([]byte(v), &r); err != nil {
				t.Fatalf("result %q: %v", v, err)
			}
			last[r.Key] = r.Count
		}
		return last
	}
	produce("a", time.Minute)
	produce("a", 2*time.Minute)
	produce("b", 3*time.Minute)
	stop := run(true)
	if c := counts(3); c["a"] != 2 || c["b"] != 1 {
		t.Fatalf("full-snapshot job: counts %v", c)
	}
	stop()

	stop = run(false) // restores the full snapshot, then checkpoints by key
	produce("a", 4*time.Minute)
	if c := counts(4); c["a"] != 3 {
		t.Fatalf("after the upgrade: a counts %v, want 3 (the window restored from the full snapshot)", c["a"])
	}
	stop()

	stop = run(false) // restores the incremental checkpoints
	defer stop()
	produce("b", 5*time.Minute)
	if c := counts(5); c["b"] != 2 || c["a"] != 3 {
		t.Fatalf("after a restart from incremental checkpoints: counts %v, want a 3 and b 2", c)
	}
}
