package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkRegistryLookupByID measures GET /schemas/ids/{id} against a
// real herald serve process on --registry-addr: keep-alive connections,
// pipelined 32 deep, 50 schemas. Besides lookups/s it reports the server
// process's own CPU time per lookup (from /proc), so the rate two cores
// of server give can be read off even when the load generator shares the
// machine: lookups/server-cpu-s.
func BenchmarkRegistryLookupByID(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "herald")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
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
	for i := range 50 {
		body := fmt.Sprintf(`{"schema":"{\"type\":\"record\",\"name\":\"R%d\",\"fields\":[{\"name\":\"a\",\"type\":\"long\"}]}"}`, i)
		resp, err := http.Post(fmt.Sprintf("%s/subjects/s%d-value/versions", base, i), "application/vnd.schemaregistry.v1+json", strings.NewReader(body))
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("register: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	cpu0 := procCPU(b, cmd.Process.Pid)
	const depth = 32
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", regAddr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br, bw := bufio.NewReaderSize(c, 64<<10), bufio.NewWriterSize(c, 64<<10)
		n, id := 0, 1
		flush := func() bool {
			if err := bw.Flush(); err != nil {
				b.Error(err)
				return false
			}
			for ; n > 0; n-- {
				if err := readOK(br); err != nil {
					b.Error(err)
					return false
				}
			}
			return true
		}
		for pb.Next() {
			fmt.Fprintf(bw, "GET /schemas/ids/%d HTTP/1.1\r\nHost: r\r\n\r\n", id)
			id = id%50 + 1
			if n++; n == depth && !flush() {
				return
			}
		}
		flush()
	})
	b.StopTimer()
	server := procCPU(b, cmd.Process.Pid) - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	if server > 0 {
		b.ReportMetric(float64(b.N)/server.Seconds(), "lookups/server-cpu-s")
	}
}

// procCPU is a process's user + system CPU time from /proc/PID/stat.
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in parens.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz
}

func readOK(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", line)
	}
	n := -1
	for {
		if line, err = br.ReadSlice('\n'); err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return errors.New("no Content-Length")
	}
	_, err = br.Discard(n)
	return err
}
