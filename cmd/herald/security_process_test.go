package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/tlstest"
)

// TestSecureServe runs herald serve with --users and TLS as a real process
// and uses it as a client would: the CLI over SASL and TLS, HTTPS with
// Basic credentials on the API, metrics and registry, health probes
// without, users added and removed while it runs, and the web console in
// headless Chromium behind the browser's login (console/e2e/auth.mjs).
// It fails, never skips, when Chromium, node or playwright-core is missing.
func TestSecureServe(t *testing.T) {
	dir := t.TempDir()
	bin := heraldBinary(t)
	files := tlstest.New(t, dir)
	users := filepath.Join(dir, "users.json")

	run := func(env []string, stdin string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		return runBinary(t, bin, env, stdin, args...)
	}
	if out, errOut, code := run(nil, "s3cret\n", "user", "add", "alice", "--users", users, "--iterations", "4096"); code != 0 || out != `user "alice" added in `+users+"\n" {
		t.Fatalf("user add: exit %d, %q %q", code, out, errOut)
	}
	if st, err := os.Stat(users); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("users file: %v, mode %v", err, st.Mode())
	}

	kafkaAddr, httpAddr, regAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	log := &syncBuffer{}
	serve := exec.Command(bin, "serve", "--data", filepath.Join(dir, "data"), "--kafka-addr", kafkaAddr, "--http-addr", httpAddr,
		"--registry-addr", regAddr, "--users", users, "--tls-cert", files.Cert, "--tls-key", files.Key)
	serve.Stdout, serve.Stderr = log, log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
		if t.Failed() {
			t.Logf("serve log:\n%s", log.String())
		}
	})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: files.ClientConfig(t, false)}, Timeout: 10 * time.Second}
	get := func(url, user, pass string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error(), nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	base := "https://" + httpAddr
	waitFor(t, "herald serve to be ready", 30*time.Second, func() bool {
		code, _, _ := get(base+"/readyz", "", "")
		return code == http.StatusOK
	})

	// HTTP: probes are open, everything else wants credentials.
	if code, body, _ := get(base+"/healthz", "", ""); code != 200 {
		t.Errorf("/healthz without credentials: %d %s", code, body)
	}
	code, body, h := get(base+"/v1/topics", "", "")
	var e struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal([]byte(body), &e)
	if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") || e.Error.Code != "UNAUTHENTICATED" {
		t.Errorf("/v1/topics without credentials: %d %q %s", code, h.Get("WWW-Authenticate"), body)
	}
	if code, body, _ := get(base+"/v1/topics", "alice", "nope"); code != 401 || !strings.Contains(body, "wrong user name or password") {
		t.Errorf("/v1/topics with a wrong password: %d %s", code, body)
	}
	if code, body, _ := get(base+"/v1/topics", "alice", "s3cret"); code != 200 {
		t.Errorf("/v1/topics: %d %s", code, body)
	}
	if code, _, _ := get("http://"+httpAddr+"/healthz", "", ""); code == 200 {
		t.Error("plain HTTP answered on the TLS listener")
	}
	// The registry's own listener: TLS and credentials too, fast path or not.
	reg := "https://" + regAddr
	if code, body, _ := get(reg+"/subjects", "", ""); code != 401 {
		t.Errorf("registry /subjects without credentials: %d %s", code, body)
	}
	if code, body, _ := get(reg+"/schemas/ids/1", "", ""); code != 401 {
		t.Errorf("registry /schemas/ids/1 without credentials: %d %s", code, body)
	}
	if code, body, _ := get(reg+"/subjects", "alice", "s3cret"); code != 200 || body != "[]" {
		t.Errorf("registry /subjects: %d %s", code, body)
	}

	// The CLI over SASL and TLS.
	env := []string{"HERALD_BROKERS=" + kafkaAddr, "HERALD_HTTP=" + base, "HERALD_TLS_CA=" + files.CA, "HERALD_USER=alice", "HERALD_PASSWORD=s3cret"}
	if out, errOut, code := run(env, "", "topic", "create", "events"); code != 0 || out != "created topic events (1 partitions)\n" {
		t.Fatalf("topic create: exit %d, %q %q", code, out, errOut)
	}
	if _, errOut, code := run(env, "k:v\n", "produce", "events", "--key-separator", ":"); code != 0 {
		t.Fatalf("produce: exit %d, %q", code, errOut)
	}
	for _, mech := range []string{"SCRAM-SHA-256", "PLAIN"} {
		out, errOut, code := run(append(env, "HERALD_SASL_MECHANISM="+mech), "", "consume", "events", "-o", "json")
		if code != 0 || !strings.Contains(out, `"key":"k","value":"v"`) {
			t.Errorf("consume with %s: exit %d, %q %q", mech, code, out, errOut)
		}
	}
	if out, errOut, code := run(env, "", "rule", "list"); code != 0 {
		t.Errorf("rule list over HTTPS: exit %d, %q %q", code, out, errOut)
	}
	if out, errOut, code := run(env, `{"n":1}`, "store", "append", "acct-1", "--type", "Opened"); code != 0 || out != "0\n" {
		t.Errorf("store append over HTTPS: exit %d, %q %q", code, out, errOut)
	}
	if out, errOut, code := run(env, "", "store", "read", "acct-1"); code != 0 || !strings.Contains(out, "Opened") {
		t.Errorf("store read over HTTPS: exit %d, %q %q", code, out, errOut)
	}
	if out, errOut, code := run(env, "", "schema", "list", "--registry", reg); code != 0 {
		t.Errorf("schema list over HTTPS: exit %d, %q %q", code, out, errOut)
	}
	if _, errOut, code := run(append(env, "HERALD_PASSWORD=nope"), "", "topic", "list", "--timeout", "3s"); code != exitFailure || !strings.Contains(errOut, "SASL_AUTHENTICATION_FAILED") {
		t.Errorf("topic list with a wrong password: exit %d, %q", code, errOut)
	}
	if _, errOut, code := run(append(env, "HERALD_PASSWORD=nope"), "", "rule", "list"); code != exitFailure || !strings.Contains(errOut, "wrong user name or password") {
		t.Errorf("rule list with a wrong password: exit %d, %q", code, errOut)
	}
	if _, errOut, code := run(append(env, "HERALD_PASSWORD="), "", "topic", "list"); code != exitUsage || !strings.Contains(errOut, "--user alice: no password") {
		t.Errorf("topic list without a password: exit %d, %q", code, errOut)
	}

	// Users change while the server runs.
	if _, errOut, code := run(nil, "b0b\n", "user", "add", "bob", "--users", users, "--iterations", "4096"); code != 0 {
		t.Fatalf("user add bob: %d %q", code, errOut)
	}
	if _, errOut, code := run(nil, "", "user", "remove", "alice", "--users", users); code != 0 {
		t.Fatalf("user remove alice: %d %q", code, errOut)
	}
	bob := append(env, "HERALD_USER=bob", "HERALD_PASSWORD=b0b")
	waitFor(t, "bob to be let in", 10*time.Second, func() bool {
		_, _, code := run(bob, "", "topic", "list", "--timeout", "3s")
		return code == 0
	})
	if _, _, code := run(env, "", "topic", "list", "--timeout", "3s"); code == 0 {
		t.Error("alice still authenticates after being removed")
	}
	if code, _, _ := get(base+"/v1/topics", "alice", "s3cret"); code != 401 {
		t.Errorf("alice's cached HTTP credentials still work after her removal: %d", code)
	}

	// The console behind the login, in a browser.
	if !testing.Short() {
		chromium, node, e2e := browserTools(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		artifacts := filepath.Join(repoRoot(t), "test-artifacts", "console")
		cmd := exec.CommandContext(ctx, node, "auth.mjs", base, "bob", "b0b", artifacts)
		cmd.Dir = e2e
		cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("\nPASS")) {
			t.Errorf("auth.mjs (%v):\n%s", err, out)
		}
	}

	// The metrics count both ways of authenticating.
	_, metrics, _ := get(base+"/metrics", "bob", "b0b")
	for _, want := range []string{`herald_auth_successes_total{mechanism="SCRAM-SHA-512"}`, `herald_auth_successes_total{mechanism="http-basic"}`,
		`herald_auth_failures_total{mechanism="http-basic"}`, "herald_auth_users 1", "herald_auth_users_reloads_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
