package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/heraldhq/herald/examples/orders"
)

// TestDemoOrders runs herald demo orders in both modes against an
// in-process server and checks the summary it prints.
func TestDemoOrders(t *testing.T) {
	s := startCLITestServer(t)
	for _, mode := range []string{"choreography", "orchestration"} {
		out := s.ok(t, "", "demo", "orders", "--mode", mode, "--orders", "60", "--payment-decline-rate", "0.2",
			"--shipping-failure-rate", "0.2", "--seed", "7", "--brokers", s.addr, "-o", "json")
		var sum orders.Summary
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, out)
		}
		if sum.Mode != mode || sum.Completed+sum.Compensated != 60 || sum.Stuck != 0 || sum.Compensated == 0 || len(sum.Problems) != 0 {
			t.Errorf("%s: %+v", mode, sum)
		}
	}
	out := s.ok(t, "", "demo", "orders", "--orders", "10", "--brokers", s.addr)
	for _, want := range []string{"Mode:          orchestration", "Stuck:         0", "Balances:      OK", "HOUR"} {
		if !strings.Contains(out, want) {
			t.Errorf("table output lacks %q:\n%s", want, out)
		}
	}
	s.fails(t, exitUsage, `--mode "both": want choreography or orchestration`, "", "demo", "orders", "--mode", "both")
	s.fails(t, exitUsage, `--payment-decline-rate 2: want a fraction`, "", "demo", "orders", "--payment-decline-rate", "2")
}

// TestDemoOrdersProcess is the newcomer's path: the real binary serves,
// and one command runs the order flow against it, with crashes, and exits
// 0 with a sound summary.
func TestDemoOrdersProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := heraldBinary(t)
	kafkaAddr, httpAddr := freeAddr(t), freeAddr(t)
	var serveLog bytes.Buffer
	serve := exec.Command(bin, "serve", "--data", filepath.Join(dir, "data"), "--kafka-addr", kafkaAddr, "--http-addr", httpAddr)
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	waitReady(t, httpAddr)
	cmd := exec.Command(bin, "demo", "orders", "--brokers", kafkaAddr, "--orders", "2000", "--crash-every", "150ms")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("herald demo orders: %v\nstdout:\n%s\nstderr:\n%s\nserver:\n%s", err, out.String(), errb.String(), serveLog.String())
	}
	for _, want := range []string{"Stuck:         0", "Balances:      OK", "Crashes:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.HasPrefix(errb.String(), "running the order flow (orchestration) with 2000 orders against "+kafkaAddr) {
		t.Errorf("stderr: %q", errb.String())
	}
}
