package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/srload"
	"github.com/heraldhq/herald/schema/registry"
)

// BenchmarkRegistryLookupByID measures GET /schemas/ids/{id} (50 schemas)
// against a real herald serve process on --registry-addr, with
// internal/srload as the client: pipelined raw TCP, unpipelined raw TCP,
// and net/http's client. Every body is checked. Besides lookups/s (wall,
// the load generator sharing the machine) it reports the server process's
// own CPU time per lookup (from /proc): server-cpu-us/lookup, the figure
// that says what the server costs however busy the machine is.
func BenchmarkRegistryLookupByID(b *testing.B) {
	dir := b.TempDir()
	bin := heraldBinary(b)
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	regAddr := free()
	cmd := exec.Command(bin, "serve", "--data", filepath.Join(dir, "data"), "--kafka-addr", free(), "--http-addr", free(),
		"--registry-addr", regAddr, "--log-level", "warn")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	base := "http://" + regAddr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/schemas/types")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("registry not up: %v\n%s", err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := context.Background()
	if err := benchRegister(ctx, base, 50); err != nil {
		b.Fatal(err)
	}
	reqs, err := srload.Discover(ctx, base, []string{srload.KindID}, 50)
	if err != nil || len(reqs) != 50 {
		b.Fatalf("discover: %d lookups, %v", len(reqs), err)
	}
	for _, c := range []struct {
		client          string
		conns, pipeline int
	}{{srload.Raw, 2, 32}, {srload.Raw, 8, 1}, {srload.NetHTTP, 8, 1}} {
		b.Run(fmt.Sprintf("client=%s/conns=%d/pipeline=%d", strings.ReplaceAll(c.client, "/", ""), c.conns, c.pipeline), func(b *testing.B) {
			cpu0, err := srload.ProcCPU(cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			res, err := srload.Run(ctx, srload.Config{Addr: regAddr, Requests: reqs, Conns: c.conns, Pipeline: c.pipeline,
				Client: c.client, Lookups: uint64(b.N)})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			cpu1, err := srload.ProcCPU(cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.PerSecond(), "lookups/s")
			// /proc counts in 10 ms ticks: meaningful over runs of a second
			// or more (-benchtime 2s).
			b.ReportMetric((cpu1-cpu0).Seconds()*1e6/float64(res.Lookups), "server-cpu-us/lookup")
		})
	}
}

// TestBenchSchemaLookups runs herald bench schema-lookups against the
// registry's own Server: it registers schemas, loads them for a moment,
// checks every body and reports; bad flags are usage errors, an empty
// registry is "not found".
func TestBenchSchemaLookups(t *testing.T) {
	_, reg, _ := registryServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := reg.NewServer(registry.ServerConfig{})
	go rs.Serve(ln)
	t.Cleanup(func() { rs.Close() })
	url := "http://" + ln.Addr().String()
	var s cliServer

	r := s.run(t, "", "bench", "schema-lookups", "--registry", url, "--duration", "300ms")
	if r.code != exitNotFound || !strings.Contains(r.stderr, "--register 50") {
		t.Fatalf("empty registry: exit %d, stderr %s", r.code, r.stderr)
	}
	r = s.run(t, "", "bench", "schema-lookups", "--registry", url, "--register", "5", "--kind", "ids,versions-schema",
		"--duration", "300ms", "--runs", "2", "--server-pid", fmt.Sprint(os.Getpid()), "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var rep benchSchemaReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, r.stdout)
	}
	if rep.Lookups != 10 || len(rep.Runs) != 2 || rep.Best.Lookups == 0 || rep.Best.LookupsPerSec <= 0 || !strings.Contains(r.stderr, "lookups/s") {
		t.Fatalf("report %+v\nstderr %s", rep, r.stderr)
	}
	r = s.run(t, "", "bench", "schema-lookups", "--registry", url, "--client", "net/http", "--conns", "2", "--duration", "300ms")
	if r.code != 0 || !strings.Contains(r.stdout, "LOOKUPS/S") {
		t.Fatalf("net/http client: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{
		{"--client", "net/http", "--pipeline", "4"}, // net/http's client does not pipeline
		{"--conns", "0"}, {"--kind", "bogus"}, {"--registry", "ftp://x"}, {"-o", "yaml"}, {"--duration", "0s"},
	} {
		r = s.run(t, "", append([]string{"bench", "schema-lookups", "--registry", url}, args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "invalid --") {
			t.Fatalf("%v: exit %d, stderr %s", args, r.code, r.stderr)
		}
	}
}
