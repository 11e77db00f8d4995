package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeRegistryAddr runs herald serve with --registry-addr as a real
// process: registrations (net/http, after a handoff) and pipelined
// lookups (the registry's own loop) on its port, the fast path counted in
// /metrics, herald bench schema-lookups against it as another process, and
// a clean stop on SIGTERM with a keep-alive connection still open.
func TestServeRegistryAddr(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := heraldBinary(t)
	httpAddr, regAddr := freeAddr(t), freeAddr(t)
	var serveLog bytes.Buffer
	serve := exec.Command(bin, "serve", "--data", filepath.Join(dir, "data"), "--kafka-addr", freeAddr(t),
		"--http-addr", httpAddr, "--registry-addr", regAddr, "--log-level", "warn")
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- serve.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			serve.Process.Kill()
			<-served
		}
	})
	waitReady(t, httpAddr)

	c, err := net.Dial("tcp", regAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	// Lookups pipelined on a fresh connection (the fast loop: a miss is
	// handed to net/http, so register first on another connection).
	for i := range 3 {
		body := fmt.Sprintf(`{"schema":"{\"type\":\"record\",\"name\":\"P%d\",\"fields\":[{\"name\":\"a\",\"type\":\"long\"}]}"}`, i)
		resp, err := http.Post(fmt.Sprintf("http://%s/subjects/p%d-value/versions", regAddr, i), "application/vnd.schemaregistry.v1+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf(`{"id":%d}`, i+1); resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("register p%d-value: %s %s, want %s", i, resp.Status, b, want)
		}
	}
	io.WriteString(c, "GET /schemas/ids/1 HTTP/1.1\r\nHost: r\r\n\r\nGET /subjects/p2-value/versions/latest HTTP/1.1\r\nHost: r\r\n\r\nGET /schemas/ids/3/schema?fetchMaxId=false HTTP/1.1\r\nHost: r\r\n\r\n")
	for i, want := range []string{`"schema":"{\"type\":\"record\",\"name\":\"P0\"`, `{"subject":"p2-value","version":1,"id":3,`, `{"type":"record","name":"P2"`} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("pipelined response %d: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) || resp.Header.Get("Date") == "" ||
			resp.Header.Get("Content-Type") != "application/vnd.schemaregistry.v1+json" {
			t.Fatalf("pipelined response %d: %s %v %s, want a body with %s", i+1, resp.Status, resp.Header, b, want)
		}
	}
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`herald_schema_registry_fast_path_requests_total{route="schema_by_id"} 1`,
		`herald_schema_registry_fast_path_requests_total{route="subject_version"} 1`,
		`herald_schema_registry_fast_path_requests_total{route="schema_text_by_id"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}

	bench := exec.Command(bin, "bench", "schema-lookups", "--registry", "http://"+regAddr, "--duration", "500ms",
		"--server-pid", fmt.Sprint(serve.Process.Pid), "-o", "json")
	var stderr bytes.Buffer
	bench.Stderr = &stderr
	out, err := bench.Output()
	if err != nil {
		t.Fatalf("herald bench schema-lookups: %v\n%s", err, stderr.String())
	}
	var rep benchSchemaReport
	if err := json.Unmarshal(out, &rep); err != nil || rep.Lookups != 3 || rep.Best.Lookups == 0 {
		t.Fatalf("herald bench schema-lookups: %v\n%s", err, out)
	}

	// c is still open, idle on the fast loop: SIGTERM must not wait for it.
	serve.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-served:
		stopped = true
		if err != nil {
			t.Fatalf("herald serve: %v\n%s", err, serveLog.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("herald serve did not stop on SIGTERM with an idle registry connection\n%s", serveLog.String())
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the idle registry connection survived the shutdown")
	}
}
