package subscription

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCrashDeliveryAttempts SIGKILLs a process serving an at-least-once
// subscription right after each pull, five times. After each restart
// every ack id handed out before the kill is still valid (the nack of
// all of them is accepted) and every message comes back with its delivery
// attempt one higher: the attempt count never goes backwards or
// under-counts, because it is durable before the pull answers.
func TestCrashDeliveryAttempts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a process five times")
	}
	const n = 300
	dir := t.TempDir()
	var cmd *exec.Cmd
	start := func(init bool) *env {
		cmd = exec.Command(os.Args[0], "-test.run=^TestServeProcess$", "-test.v=false")
		cmd.Env = append(os.Environ(), "HERALD_SUB_SERVE_DIR="+dir, fmt.Sprintf("HERALD_SUB_SERVE_INIT=%v", init), fmt.Sprintf("HERALD_SUB_SERVE_N=%d", n))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.StdinPipe(); err != nil { // the child ends when it closes
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "http://") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("serving process: %q %v", line, err)
		}
		// A client of the process's API: env's request helpers need only
		// the URL.
		return &env{t: t, srv: &httptest.Server{URL: strings.TrimSpace(line)}}
	}
	kill := func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	defer func() {
		if cmd != nil && cmd.ProcessState == nil {
			kill()
		}
	}()
	attempts := map[string]int{} // message id -> deliveries seen
	var outstanding []string
	for round := range 5 {
		api := start(round == 0)
		if len(outstanding) > 0 {
			if inv := api.modack("s", 0, outstanding...); len(inv) != 0 {
				t.Fatalf("round %d: %d of %d ack ids handed out before the kill are invalid after it (first %s)", round, len(inv), len(outstanding), inv[0])
			}
		}
		outstanding = outstanding[:0]
		got := 0
		deadline := time.Now().Add(20 * time.Second)
		for got < n {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: pulled %d of %d", round, got, n)
			}
			for _, r := range api.pull("s", n-got, false) {
				attempts[r.Message.MessageID]++
				if r.DeliveryAttempt != attempts[r.Message.MessageID] {
					t.Fatalf("round %d: message %s delivery attempt %d, but this is its delivery %d", round, r.Message.MessageID, r.DeliveryAttempt, attempts[r.Message.MessageID])
				}
				outstanding = append(outstanding, r.AckID)
				got++
			}
		}
		kill() // at once: nothing else makes the attempts durable
	}
}

// TestServeProcess serves a subscription manager over HTTP on the broker
// in HERALD_SUB_SERVE_DIR until killed (TestCrashDeliveryAttempts); with
// HERALD_SUB_SERVE_INIT=true it first creates topic t, subscription s and
// HERALD_SUB_SERVE_N events. It does nothing otherwise.
func TestServeProcess(t *testing.T) {
	dir := os.Getenv("HERALD_SUB_SERVE_DIR")
	if dir == "" {
		return
	}
	e := &env{t: t, dir: dir}
	e.openLog()
	e.openManager()
	if os.Getenv("HERALD_SUB_SERVE_INIT") == "true" {
		var n int
		fmt.Sscan(os.Getenv("HERALD_SUB_SERVE_N"), &n)
		e.topic("t", 2)
		if _, err := e.m.Create(context.Background(), "s", Subscription{Topic: "t", AckDeadlineSeconds: 600}); err != nil {
			t.Fatal(err)
		}
		keys := make([]string, n)
		e.publish("t", "E", "src", keys...)
	}
	fmt.Println(e.srv.URL)
	exitWithParent()
}

// exitWithParent blocks until the parent test process closes our stdin
// (it exits or is killed), then exits: a child process never outlives
// the test that started it.
func exitWithParent() {
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
