package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/server"
)

// cliServer is an in-process Herald server for the client commands'
// tests, wired as herald serve wires it.
type cliServer struct {
	addr string
	b    *broker.Broker
}

func startCLITestServer(t *testing.T) *cliServer {
	t.Helper()
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: t.TempDir()},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
	})
	return &cliServer{addr: srv.KafkaAddr(), b: srv.Broker}
}

// cliResult is what a command printed and the exit code main would use.
type cliResult struct {
	stdout, stderr string
	code           int
}

// exitCodeOf is main's mapping of a command's error to an exit code.
func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// run runs herald with args against the server, as main does, with stdin
// as standard input. Client commands get --brokers and a short --timeout.
func (s *cliServer) run(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	return s.runContext(t, context.Background(), strings.NewReader(stdin), nil, args...)
}

func (s *cliServer) runContext(t *testing.T, ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) cliResult {
	t.Helper()
	root := newRootCmd()
	switch args[0] {
	case "topic", "produce", "consume", "group":
		if s.addr != "" {
			args = append(args, "--brokers", s.addr, "--timeout", "10s")
		}
	}
	root.SetArgs(args)
	var out, errb bytes.Buffer
	if stdout == nil {
		stdout = &out
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(&errb)
	err := root.ExecuteContext(ctx)
	if err != nil {
		errb.WriteString("herald: " + err.Error() + "\n")
	}
	return cliResult{stdout: out.String(), stderr: errb.String(), code: exitCodeOf(err)}
}

// ok runs a command that must succeed and returns its standard output.
func (s *cliServer) ok(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := s.run(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("herald %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must fail with code and a message containing
// want.
func (s *cliServer) fails(t *testing.T, code int, want string, stdin string, args ...string) cliResult {
	t.Helper()
	r := s.run(t, stdin, args...)
	if r.code != code || !strings.Contains(r.stderr, want) {
		t.Fatalf("herald %s: exit %d, stderr %q; want exit %d and %q", strings.Join(args, " "), r.code, r.stderr, code, want)
	}
	return r
}

func (s *cliServer) admin(t *testing.T) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.addr))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	t.Cleanup(adm.Close)
	return adm
}

// committed returns a group's committed offsets of a topic by partition.
func (s *cliServer) committed(t *testing.T, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ors, err := s.admin(t).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for p, r := range ors[topic] {
		if r.Err != nil {
			t.Fatalf("offset %s/%d: %v", topic, p, r.Err)
		}
		out[p] = r.At
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExitCodesHelpTopic(t *testing.T) {
	s := &cliServer{}
	out := s.ok(t, "", "help", "exit-codes")
	for _, want := range []string{"0  success", "1  failure", "2  usage", "3  not found", "4  conflict"} {
		if !strings.Contains(out, want) {
			t.Errorf("herald help exit-codes lacks %q:\n%s", want, out)
		}
	}
}

// TestUsageErrors: a bad command line exits 2 and names the flag and the
// value.
func TestUsageErrors(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "t", "--partitions", "2")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"topic", "bogus"}, `topic: unknown command "bogus"`},
		{[]string{"topic", "create"}, "topic create: accepts 1 arg(s), received 0"},
		{[]string{"topic", "list", "--bogus"}, "topic list: unknown flag: --bogus"},
		{[]string{"topic", "list", "-o", "yaml"}, `topic list: -o "yaml": want table or json`},
		{[]string{"topic", "create", "x", "--partitions", "0"}, "topic create: --partitions 0: want at least 1"},
		{[]string{"topic", "create", "x", "--config", "retention.ms"}, `topic create: --config "retention.ms": want KEY=VALUE`},
		{[]string{"topic", "create", "x", "--config", "retention.ms=soon"}, `topic create: topic "x": invalid config: retention.ms="soon"`},
		{[]string{"topic", "create", "x", "--config", "no.such.config=1"}, `topic create: topic "x": invalid config: unknown config "no.such.config"`},
		{[]string{"topic", "alter", "t"}, "topic alter: nothing to change"},
		{[]string{"topic", "alter", "t", "--partitions", "1"}, "topic alter: topic \"t\""},
		{[]string{"produce", "t", "--acks", "2"}, `produce: --acks "2": want all, 1 or 0`},
		{[]string{"produce", "t", "--compression", "brotli"}, `produce: --compression "brotli"`},
		{[]string{"produce", "t", "--key", "k", "--key-separator", ":"}, "produce: --key and --key-separator"},
		{[]string{"produce", "t", "--header", "novalue"}, `produce: --header "novalue": want KEY=VALUE`},
		{[]string{"produce", "t", "--partition", "2"}, "produce: --partition 2: topic t has 2 partitions (0 to 1)"},
		{[]string{"consume", "t", "--from", "yesterday"}, `consume: --from "yesterday": want earliest, latest, an offset or an RFC3339 time`},
		{[]string{"consume", "t", "--format", "%q"}, "consume: --format \"%q\": unknown directive %q"},
		{[]string{"consume", "t", "--partition", "5"}, "consume: --partition 5: topic t has 2 partitions"},
		{[]string{"consume", "t", "--group", "g", "--partition", "0"}, "consume: --partition and --group"},
		{[]string{"consume", "t", "--max", "-1"}, "consume: --max -1"},
		{[]string{"group", "reset", "g", "--topic", "t"}, "group reset: say where to"},
		{[]string{"group", "reset", "g", "--topic", "t", "--to-earliest", "--to-latest"}, "group reset: --to-earliest and --to-latest: give only one"},
		{[]string{"group", "reset", "g", "--to-earliest"}, "group reset: give --topic (one or more) or --all-topics"},
		{[]string{"group", "reset", "g", "--topic", "t", "--all-topics", "--to-earliest"}, "group reset: give --topic (one or more) or --all-topics"},
		{[]string{"group", "reset", "g", "--topic", "t:x", "--to-earliest"}, `group reset: --topic "t:x": "x" is not a partition number`},
		{[]string{"group", "reset", "g", "--topic", "t:7", "--to-earliest"}, "group reset: --topic t: partition 7: topic t has 2 partitions"},
		{[]string{"group", "reset", "g", "--topic", "t", "--to-datetime", "noon"}, `group reset: --to-datetime "noon": want an RFC3339 time`},
		{[]string{"group", "reset", "g", "--topic", "t", "--to-offset", "-3"}, "group reset: --to-offset -3"},
		{[]string{"group", "reset", "g", "--topic", "t", "--shift-by", "1"}, `group reset: --shift-by: group "g" has no committed offset in t/0`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			s.fails(t, exitUsage, "herald: "+tc.want, "", tc.args...)
		})
	}
}

// TestUnreachableServer: a connection failure is a runtime error (exit 1)
// that says which address.
func TestUnreachableServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &cliServer{}
	r := s.run(t, "", "topic", "list", "--brokers", addr, "--timeout", "2s")
	if r.code != exitFailure || !strings.Contains(r.stderr, "herald: topic list: ") || !strings.Contains(r.stderr, addr) {
		t.Fatalf("exit %d, stderr %q; want exit 1 naming %s", r.code, r.stderr, addr)
	}
}
