package cep

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

func crashJobConfig(brokers string) JobConfig {
	p, err := ParseJSON([]byte(fraudJSON("Fraud")))
	if err != nil {
		panic(err)
	}
	return JobConfig{Name: "crashjob", Brokers: []string{brokers}, Pattern: p, Input: "logins", Output: "alerts",
		TimeoutTopic: "timeouts", MaxPollRecords: 4, KgoOptions: testKgo, Logger: slog.New(slog.DiscardHandler)}
}

// TestCEPJobCrashChild is the job process TestCEPJobCrash SIGKILLs.
func TestCEPJobCrashChild(t *testing.T) {
	if os.Getenv("HERALD_CEP_CRASH_CHILD") != "1" {
		t.Skip("run by TestCEPJobCrash")
	}
	j, err := NewJob(crashJobConfig(os.Getenv("HERALD_CEP_CRASH_BROKERS")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := j.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

type crashSink struct{ matches, timeouts []string }

func (s *crashSink) Match(m *Match)              { s.matches = append(s.matches, m.Key+": "+matchIDs(*m)) }
func (s *crashSink) Timeout(m *Match)            { s.timeouts = append(s.timeouts, m.Key+": "+matchIDs(*m)) }
func (s *crashSink) Invalid(*event.Event, error) {}

// TestCEPJobCrash SIGKILLs a job process (this test binary, re-executed)
// at random points, lets a last one finish, and demands that the committed
// alerts and timeouts equal those of an uninterrupted in-process engine:
// none lost, none twice.
func TestCEPJobCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	brokers, cl := withLogins(t, 1)
	rng := rand.New(rand.NewPCG(3, 4))
	var input []*kgo.Record
	at := time.Duration(0)
	for i := 0; i < 3000; i++ {
		at += time.Duration(rng.IntN(20)) * time.Second
		ty := "LoginFailed"
		if rng.IntN(4) == 0 {
			ty = "LoginSuccess"
		}
		input = append(input, login(fmt.Sprint("e", i), ty, fmt.Sprint("u", rng.IntN(12)), at))
	}
	produce(t, cl, input...)

	ref, err := NewEngine(crashJobConfig(brokers).Pattern)
	if err != nil {
		t.Fatal(err)
	}
	ref.c.p.EmitTimeouts = true
	var want crashSink
	var maxT time.Time
	for _, r := range input {
		hs := make([]event.Header, len(r.Headers))
		for i, h := range r.Headers {
			hs[i] = event.Header{Key: h.Key, Value: h.Value}
		}
		e, err := event.Decode(event.Message{Key: r.Key, Value: r.Value, Headers: hs})
		if err != nil {
			t.Fatal(err)
		}
		maxT = e.Time
		ref.Process(e, &want)
	}
	ref.Advance(maxT, &want)
	if len(want.matches) < 20 || len(want.timeouts) < 20 {
		t.Fatalf("reference run too tame: %d matches, %d timeouts", len(want.matches), len(want.timeouts))
	}

	read := func(topic string) []string {
		var out []string
		for _, a := range readUntil(t, brokers, topic, 300*time.Millisecond, func([]alert) bool { return false }) {
			out = append(out, a.match.Key+": "+matchIDs(a.match))
		}
		return out
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCEPJobCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "HERALD_CEP_CRASH_CHILD=1", "HERALD_CEP_CRASH_BROKERS="+brokers)
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
		t.Logf("round %d: killed with %d of %d matches committed", r, len(read("alerts")), len(want.matches))
	}
	cmd := start()
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(90 * time.Second)
	var got []string
	for {
		got = read("alerts")
		if len(got) >= len(want.matches) || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would commit after the check
	got = read("alerts")
	if strings.Join(got, "\n") != strings.Join(want.matches, "\n") {
		t.Fatalf("alerts differ from the uninterrupted run:\n got  %d %q\n want %d %q", len(got), got, len(want.matches), want.matches)
	}
	// Timeouts: the same set (batches advance time at their own ends, so
	// the order across keys may differ).
	var gotT []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		gotT = read("timeouts")
		if len(gotT) >= len(want.timeouts) || time.Now().After(deadline) {
			break
		}
	}
	slices.Sort(gotT)
	slices.Sort(want.timeouts)
	if strings.Join(gotT, "\n") != strings.Join(want.timeouts, "\n") {
		t.Fatalf("timeouts differ from the uninterrupted run: got %d, want %d", len(gotT), len(want.timeouts))
	}
	t.Logf("after %d kills: %d alerts and %d timeouts, equal to the uninterrupted run", rounds, len(got), len(gotT))
}
