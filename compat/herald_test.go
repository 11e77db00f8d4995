package compat

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// heraldBin is the herald binary TestMain builds once from the repository
// root (with -race when the suite runs with -race); every test runs its
// own server process from it.
var heraldBin string

func TestMain(m *testing.M) {
	// A re-executed child (see franz_test.go) runs its role and exits
	// without building anything or running tests.
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	dir, err := os.MkdirTemp("", "herald-compat-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "compat:", err)
		os.Exit(1)
	}
	heraldBin = filepath.Join(dir, "herald")
	args := []string{"build", "-o", heraldBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/herald")...)
	build.Dir = ".." // the Herald module, via the replace in go.mod
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "compat: go build ./cmd/herald: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one `herald serve` process. Restart keeps its data directory
// and ports, so clients configured with its address reconnect to it.
type server struct {
	t         *testing.T
	dataDir   string
	kafkaAddr string // 127.0.0.1:PORT
	httpAddr  string
	args      []string
	logPath   string
	// With a secure server (startSecureServer): TLS for /readyz, and the
	// options that let s.client in.
	httpTLS *tls.Config
	kgoOpts []kgo.Opt

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's result, set before done closes
}

// startServer starts herald on spare loopback ports with a fresh data
// directory and waits until /readyz answers. extra flags are appended to
// serve's command line. The server is stopped when the test ends and its
// log is printed if the test failed.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	return startServerWith(t, &server{args: extra})
}

// startServerWith is startServer for s's args, TLS and client options.
func startServerWith(t *testing.T, s *server) *server {
	t.Helper()
	dir := t.TempDir()
	s.t, s.dataDir, s.logPath = t, filepath.Join(dir, "data"), filepath.Join(dir, "herald.log")
	var err error
	// NB: a spare port found by binding :0 can be taken by someone else
	// before herald binds it; a start that fails that way is retried on
	// new ports.
	for range 3 {
		s.kafkaAddr, s.httpAddr = sparePort(t), sparePort(t)
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		s.dumpLog()
		t.Fatalf("start herald: %v", err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		running := s.cmd != nil
		s.mu.Unlock()
		if running {
			s.kill()
		}
		s.checkLog()
		if t.Failed() {
			s.dumpLog()
		}
	})
	return s
}

func sparePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a spare port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the process and waits for readiness; the caller holds no lock.
func (s *server) start() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "---- herald serve starting at %s\n", time.Now().Format(time.RFC3339Nano))
	args := append([]string{"serve", "--data", s.dataDir, "--kafka-addr", s.kafkaAddr, "--http-addr", s.httpAddr}, s.args...)
	cmd := exec.Command(heraldBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done, s.err = cmd, done, nil
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(done)
	}()

	url, hc := "http://"+s.httpAddr+"/readyz", http.DefaultClient
	if s.httpTLS != nil {
		url, hc = "https://"+s.httpAddr+"/readyz", &http.Client{Transport: &http.Transport{TLSClientConfig: s.httpTLS}}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			s.mu.Lock()
			s.cmd = nil
			err := s.err
			s.mu.Unlock()
			return fmt.Errorf("herald exited before it was ready: %v", err)
		default:
		}
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return errors.New("herald was not ready after 30s")
}

// stop sends SIGTERM and requires a clean exit.
func (s *server) stop() {
	s.t.Helper()
	if err := s.signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("herald did not stop cleanly on SIGTERM: %v", err)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *server) kill() {
	s.t.Helper()
	s.signal(syscall.SIGKILL)
}

func (s *server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return errors.New("herald is not running")
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("herald did not exit within 45s of %v", sig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// restart starts the server again on the same data directory and ports.
func (s *server) restart() {
	s.t.Helper()
	var err error
	// The ports were just released; nothing else should take them, but a
	// bind can race with the old socket's teardown, so allow a few tries.
	for range 5 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("restart herald: %v", err)
}

// checkLog fails the test if the server's log shows a data race (the
// binary is built with -race under -race) or a panicking handler: clients
// may recover from either, so the test itself might not notice.
func (s *server) checkLog() {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		s.t.Errorf("read herald log: %v", err)
		return
	}
	for _, bad := range []string{"WARNING: DATA RACE", "panicked", "panic:"} {
		if bytes.Contains(b, []byte(bad)) {
			s.t.Errorf("herald's log contains %q", bad)
		}
	}
}

func (s *server) dumpLog() {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return
	}
	const max = 64 << 10
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	s.t.Logf("herald log (%s):\n%s", s.logPath, b)
}

// client returns a franz-go client for the server, closed when the test ends.
func (s *server) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(s.kafkaAddr)}, s.kgoOpts...), opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// createTopic creates a topic with kadm and fails the test if it cannot.
func (s *server) createTopic(t *testing.T, topic string, partitions int32) {
	t.Helper()
	adm := kadm.NewClient(s.client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// committed returns a group's committed offsets for a topic, by partition.
func (s *server) committed(t *testing.T, group, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(s.client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		t.Fatalf("fetch offsets of group %s: %v", group, err)
	}
	out := map[int32]int64{}
	for p, o := range offs[topic] {
		out[p] = o.At
	}
	return out
}

// endOffsets returns a topic's high watermarks, by partition.
func (s *server) endOffsets(t *testing.T, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(s.client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	offs, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	for p, o := range offs[topic] {
		out[p] = o.Offset
	}
	return out
}

// waitFor polls cond until it returns nil or timeout passes, then fails
// the test with cond's last error.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireTool fails the test, loudly, when an external tool is missing:
// CI installs every tool through test.sh, so a missing one is a broken
// environment, not a reason to skip.
func requireTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (%v); install it with: %s (test.sh does)", name, err, install)
	}
	return p
}

// runCmd runs a command with a deadline and returns its stdout; a failure
// includes stderr.
func runCmd(t *testing.T, timeout time.Duration, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v after %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err,
			time.Since(start).Round(time.Millisecond), stdout.String(), stderr.String())
	}
	return stdout.String()
}

func itoa[T ~int | ~int32 | ~int64](v T) string { return strconv.FormatInt(int64(v), 10) }
