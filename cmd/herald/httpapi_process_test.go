package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestServeHTTPAPI runs herald serve as a process and uses the HTTP API it
// mounts under /v1/: a topic, a CloudEvent published, then the server
// SIGKILLed and started again on the same data directory, where the
// repeated event is acknowledged with its original offset (the
// deduplication window is rebuilt from the log) and the event reads back.
func TestServeHTTPAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := heraldBinary(t)
	data := filepath.Join(dir, "data")
	var httpAddr string
	start := func() *exec.Cmd {
		cmd, addr, _ := serveOn(t, bin, data)
		httpAddr = addr
		return cmd
	}
	call := func(method, path, ct, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+httpAddr+path, strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	serve := start()
	// herald serve wires the components' own events to herald-system: a
	// rule there sees the topic created below.
	if code, body := call("POST", "/v1/topics", "application/json", `{"name":"topic-audit"}`); code != 201 {
		t.Fatalf("create topic: %d %s", code, body)
	}
	if code, body := call("POST", "/v1/rules", "application/json", `{"name":"new-topics","bus":"herald-system",
		"event_pattern":{"source":["herald/broker"],"type":["herald.topic.created"],"subject":["orders"]},
		"targets":[{"id":"audit","topic":"topic-audit"}]}`); code != 201 {
		t.Fatalf("create rule: %d %s", code, body)
	}
	if code, body := call("POST", "/v1/topics", "application/json", `{"name":"orders","partitions":2}`); code != 201 {
		t.Fatalf("create topic: %d %s", code, body)
	}
	waitFor(t, "herald.topic.created on the rule's target", 30*time.Second, func() bool {
		_, body := call("GET", "/v1/topics/topic-audit/events?partition=0", "", "")
		return strings.Contains(body, `"source":"herald/broker"`) && strings.Contains(body, `"subject":"orders"`) &&
			strings.Contains(body, `"partitions":2`)
	})
	ev := `{"specversion":"1.0","id":"o-1","source":"/shop","type":"order.placed","partitionkey":"cust-7","data":{"total":5}}`
	code, first := call("POST", "/v1/topics/orders/events", "application/cloudevents+json", ev)
	if code != 200 {
		t.Fatalf("publish: %d %s", code, first)
	}
	if code, body := call("GET", "/v1/nope", "", ""); code != 404 || !strings.Contains(body, `"code":"NOT_FOUND"`) {
		t.Errorf("unknown route: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/openapi.json", "", ""); code != 200 || !strings.Contains(body, `"openapi"`) {
		t.Errorf("openapi.json: %d", code)
	}
	if code, body := call("GET", "/metrics", "", ""); code != 200 || !strings.Contains(body, `herald_http_requests_total{code="201",route="POST /v1/topics"} 2`) {
		t.Errorf("metrics lack the API's requests: %d", code)
	}
	serve.Process.Signal(syscall.SIGKILL)
	serve.Wait()

	serve = start()
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	code, again := call("POST", "/v1/topics/orders/events", "application/cloudevents+json", ev)
	var a, b struct {
		Results []struct {
			Partition, Offset int64
			Duplicate         bool
		}
	}
	json.Unmarshal([]byte(first), &a)
	json.Unmarshal([]byte(again), &b)
	if code != 200 || len(b.Results) != 1 || !b.Results[0].Duplicate || b.Results[0].Offset != a.Results[0].Offset || b.Results[0].Partition != a.Results[0].Partition {
		t.Fatalf("repeat after SIGKILL and restart: %d %s (first %s)", code, again, first)
	}
	code, body := call("GET", "/v1/topics/orders/events?partition="+itoa64(a.Results[0].Partition), "", "")
	if code != 200 || strings.Count(body, `"id":"o-1"`) != 1 || !strings.Contains(body, `"data":{"total":5}`) {
		t.Errorf("read after restart: %d %s", code, body)
	}
}

func itoa64(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestServeHTTPPublishCrashRetry publishes events over HTTP from several
// clients, SIGKILLs herald serve mid-way, restarts it on the same data
// directory and has every client retry every event, as a client that
// cannot tell what was stored would. The deduplication window, rebuilt
// from the log, must leave each event stored exactly once, at the position
// acknowledged before the crash where there was one.
func TestServeHTTPPublishCrashRetry(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := heraldBinary(t)
	data := filepath.Join(dir, "data")
	httpAddr := freeAddr(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--data", data, "--kafka-addr", freeAddr(t), "--http-addr", httpAddr, "--log-level", "warn")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitReady(t, httpAddr)
		return cmd
	}
	type pos struct{ Partition, Offset int64 }
	publish := func(id string) (pos, bool, error) {
		body := `{"specversion":"1.0","source":"/crash","type":"t","id":"` + id + `","data":{"id":"` + id + `"}}`
		resp, err := http.Post("http://"+httpAddr+"/v1/topics/crash/events", "application/cloudevents+json", strings.NewReader(body))
		if err != nil {
			return pos{}, false, err
		}
		defer resp.Body.Close()
		var out struct {
			Results []struct {
				Partition, Offset int64
				Duplicate         bool
			}
		}
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil || len(out.Results) != 1 {
			return pos{}, false, errors.New(resp.Status)
		}
		return pos{out.Results[0].Partition, out.Results[0].Offset}, out.Results[0].Duplicate, nil
	}

	serve := start()
	resp, err := http.Post("http://"+httpAddr+"/v1/topics", "application/json", strings.NewReader(`{"name":"crash","partitions":3}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create topic: %v %v", err, resp)
	}
	const clients, each = 4, 400
	var mu sync.Mutex
	acked := map[string]pos{}
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id := fmt.Sprintf("c%d-%d", c, i)
				p, _, err := publish(id)
				if err != nil {
					return // the server is gone
				}
				mu.Lock()
				acked[id] = p
				mu.Unlock()
			}
		}()
	}
	waitFor(t, "some acknowledgements", 30*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 200 })
	serve.Process.Signal(syscall.SIGKILL)
	serve.Wait()
	wg.Wait()
	if len(acked) == clients*each {
		t.Fatal("every publish finished before the kill; the test proves nothing")
	}

	serve = start()
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	for c := 0; c < clients; c++ {
		for i := 0; i < each; i++ {
			id := fmt.Sprintf("c%d-%d", c, i)
			p, dup, err := publish(id)
			if err != nil {
				t.Fatalf("retry of %s: %v", id, err)
			}
			if first, ok := acked[id]; ok && (!dup || p != first) {
				t.Fatalf("%s was acknowledged at %+v before the crash; the retry got %+v duplicate=%v", id, first, p, dup)
			}
		}
	}
	// Every event is stored exactly once.
	seen := map[string]int{}
	for part := 0; part < 3; part++ {
		for off := 0; ; {
			resp, err := http.Get(fmt.Sprintf("http://%s/v1/topics/crash/events?partition=%d&offset=%d&limit=1000", httpAddr, part, off))
			if err != nil {
				t.Fatal(err)
			}
			var page struct {
				Events []struct {
					Event struct{ ID string }
				}
				NextOffset    int
				HighWatermark int
			}
			json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			for _, ev := range page.Events {
				seen[ev.Event.ID]++
			}
			off = page.NextOffset
			if off >= page.HighWatermark {
				break
			}
		}
	}
	if len(seen) != clients*each {
		t.Errorf("%d distinct events stored, want %d", len(seen), clients*each)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	t.Logf("%d of %d acknowledged before the kill; all stored exactly once after the retry", len(acked), clients*each)
}
