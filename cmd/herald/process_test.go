package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain removes the herald binary that heraldBinary built, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// heraldBinary builds the herald binary once for the whole test run (the
// process tests share it) and returns its path.
func heraldBinary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "herald-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "herald")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestProcesses builds the binary and runs herald serve, then the client
// commands against it, as real processes: stdin, stdout, stderr and exit
// codes as a shell sees them.
func TestProcesses(t *testing.T) {
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
	served := make(chan error, 1)
	go func() { served <- serve.Wait() }()
	t.Cleanup(func() {
		serve.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("herald serve: %v\n%s", err, serveLog.String())
			}
		case <-time.After(30 * time.Second):
			serve.Process.Kill()
			t.Errorf("herald serve did not stop on SIGTERM")
		}
	})
	waitReady(t, httpAddr)

	run := func(stdin string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		return runBinary(t, bin, []string{"HERALD_BROKERS=" + kafkaAddr}, stdin, args...)
	}

	if out, errOut, code := run("", "topic", "create", "events", "--partitions", "2"); code != 0 || out != "created topic events (2 partitions)\n" {
		t.Fatalf("topic create: exit %d, %q %q", code, out, errOut)
	}
	if _, errOut, code := run("", "topic", "create", "events"); code != exitConflict || errOut != "herald: topic create: topic \"events\" already exists\n" {
		t.Errorf("topic create again: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code := run("alice:hello\nbob:world\n", "produce", "events", "--key-separator", ":", "--header", "via=process")
	if code != 0 || !strings.HasPrefix(errOut, "produced 2 records (") {
		t.Fatalf("produce: exit %d, stderr %q", code, errOut)
	}
	out, errOut, code := run("", "consume", "events", "--group", "proc", "-o", "json")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"key":"alice","value":"hello","headers":[{"key":"via","value":"process"}]`) {
		t.Errorf("consume: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, _, code := run("", "consume", "events", "--group", "proc"); code != 0 || out != "" {
		t.Errorf("second consume of the group: exit %d, %q", code, out)
	}
	if out, _, code := run("", "group", "describe", "proc"); code != 0 || !strings.Contains(out, "Total lag: 0") {
		t.Errorf("group describe: exit %d\n%s", code, out)
	}
	if _, errOut, code := run("", "consume", "nope"); code != exitNotFound || errOut != "herald: consume: topic \"nope\" not found\n" {
		t.Errorf("consume of an unknown topic: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := run("", "consume", "events", "--from", "soon"); code != exitUsage || !strings.Contains(errOut, `--from "soon"`) {
		t.Errorf("bad --from: exit %d, stderr %q", code, errOut)
	}
}

// waitReady waits up to 30 s for herald serve's /readyz at httpAddr to
// answer 200.
func waitReady(t *testing.T, httpAddr string) {
	t.Helper()
	waitFor(t, "herald serve to be ready", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// runBinary runs bin with args, the environment plus env, and stdin; it
// returns what the process wrote and its exit code.
func runBinary(t *testing.T, bin string, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("herald %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// serveOn starts bin serve on the data directory data, with fresh Kafka
// and HTTP listen addresses and the extra arguments, and waits until it is
// ready. The caller stops it; log collects its output.
func serveOn(t *testing.T, bin, data string, args ...string) (cmd *exec.Cmd, httpAddr string, log *syncBuffer) {
	t.Helper()
	httpAddr = freeAddr(t)
	log = &syncBuffer{}
	cmd = exec.Command(bin, append([]string{"serve", "--data", data, "--kafka-addr", freeAddr(t), "--http-addr", httpAddr}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, httpAddr)
	return cmd, httpAddr, log
}
