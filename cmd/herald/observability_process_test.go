package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/saga"
)

// heraldProcess is a real `herald serve` built from this tree.
type heraldProcess struct {
	bin, dir, kafkaAddr, httpAddr string
	log                           *syncBuffer
}

func startHeraldProcess(t *testing.T) *heraldProcess {
	t.Helper()
	dir := t.TempDir()
	p := &heraldProcess{bin: heraldBinary(t), dir: dir, kafkaAddr: freeAddr(t), httpAddr: freeAddr(t), log: &syncBuffer{}}
	serve := exec.Command(p.bin, "serve", "--data", filepath.Join(dir, "data"), "--kafka-addr", p.kafkaAddr,
		"--http-addr", p.httpAddr, "--registry-addr", "")
	serve.Stdout, serve.Stderr = p.log, p.log
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
				t.Errorf("herald serve: %v\n%s", err, p.log.String())
			}
		case <-time.After(30 * time.Second):
			serve.Process.Kill()
			t.Errorf("herald serve did not stop on SIGTERM")
		}
	})
	waitReady(t, p.httpAddr)
	return p
}

// call makes an HTTP request to the server and fails the test unless the
// answer has the status wanted.
func (p *heraldProcess) call(t *testing.T, method, path, ctype, body string, want int) []byte {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.httpAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	return b
}

// cli runs a herald client command against the server.
func (p *heraldProcess) cli(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(p.bin, args...)
	cmd.Env = append(os.Environ(), "HERALD_BROKERS="+p.kafkaAddr, "HERALD_HTTP=http://"+p.httpAddr)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("herald %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestConsoleInBrowser serves the web console from a real herald serve and
// drives it in Debian's headless Chromium with playwright-core
// (console/e2e/console.mjs): every page loads without console errors; a topic
// is created, an event carrying HTML and script is produced and found (shown
// as text, no script runs); API errors read as messages; a group's reset dry
// run, a rule test, a schema diff and compatibility check, an event-store
// stream, a flow's lineage graph, sagas started from the console with their
// steps and timeline (commands, replies, a compensation) and the overview's
// charts. Screenshots go to test-artifacts/console.
// It fails, never skips, when Chromium, node or playwright-core is missing.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a browser")
	}
	chromium, node, e2e := browserTools(t)
	root := repoRoot(t)
	p := startHeraldProcess(t)

	// What the pages will show: a group with committed offsets, a subject
	// with two versions, an event-store stream.
	p.call(t, "POST", "/v1/topics", "application/json", `{"name":"console-orders","partitions":2}`, 201)
	p.cli(t, "one\ntwo\n", "produce", "console-orders")
	p.cli(t, "", "consume", "console-orders", "--group", "console-e2e-group")
	const ctype = "application/vnd.schemaregistry.v1+json"
	p.call(t, "POST", "/registry/subjects/console-e2e-value/versions", ctype,
		`{"schemaType":"JSON","schema":"{\"type\":\"object\",\"properties\":{\"total\":{\"type\":\"number\"}},\"additionalProperties\":false}"}`, 200)
	p.call(t, "POST", "/registry/subjects/console-e2e-value/versions", ctype,
		`{"schemaType":"JSON","schema":"{\"type\":\"object\",\"properties\":{\"total\":{\"type\":\"number\"},\"currency\":{\"type\":\"string\"}},\"additionalProperties\":false}"}`, 200)
	p.call(t, "POST", "/v1/topics/console-orders/events", "application/cloudevents-batch+json", `[
		{"specversion":"1.0","id":"console-flow-1","source":"/shop","type":"order.placed"},
		{"specversion":"1.0","id":"console-flow-2","source":"/orders","type":"payment.requested","correlationid":"console-flow-1","causationid":"console-flow-1"},
		{"specversion":"1.0","id":"console-flow-3","source":"/payments","type":"payment.ok","correlationid":"console-flow-1","causationid":"console-flow-2"},
		{"specversion":"1.0","id":"console-flow-4","source":"/stock","type":"stock.reserved","correlationid":"console-flow-1","causationid":"console-flow-1"}]`, 200)
	p.call(t, "POST", "/v1/topics", "application/json", `{"name":"console-orders-dlq","partitions":1}`, 201)
	p.call(t, "POST", "/v1/topics/console-orders-dlq/events", "application/json", `{"records":[{"key":"k1","value":{"total":5},"headers":{
		"herald-dlq-topic":"console-orders","herald-dlq-partition":"0","herald-dlq-offset":"0","herald-dlq-group":"billing",
		"herald-dlq-error":"card declined <b>x</b>","herald-dlq-reason":"failed","herald-dlq-attempts":"3",
		"herald-dlq-first-failure":"2026-11-26T08:00:00Z","herald-dlq-last-failure":"2026-11-26T08:01:00Z"}}]}`, 200)
	p.call(t, "POST", "/v1/streams/console-e2e-1", "application/json", `{"events":[{"type":"ConsoleTested","data":{"ok":true}}]}`, 200)

	// A saga definition and its participant: reserve stock, then charge
	// (declined when the input asks), so a saga run from the console has
	// commands, replies and, when declined, a compensation to show.
	p.call(t, "POST", "/v1/topics", "application/json", `{"name":"console-saga-stock","partitions":1}`, 201)
	p.call(t, "POST", "/v1/topics", "application/json", `{"name":"console-saga-pay","partitions":1}`, 201)
	p.call(t, "POST", "/v1/sagas/definitions", "application/json", `{"name":"console-order","steps":[
		{"name":"reserve","command":{"type":"ConsoleReserve","topic":"console-saga-stock"},"success":["Reserved"],
		 "compensation":{"type":"ConsoleRelease","topic":"console-saga-stock","success":["Released"]}},
		{"name":"charge","command":{"type":"ConsoleCharge","topic":"console-saga-pay"},"success":["Charged"],"failure":["Declined"]}]}`, 201)
	stopParticipant := runSagaParticipant(t, p.kafkaAddr)
	defer stopParticipant()

	// 10,000 more topics: every page must stay fast and usable with them
	// (the many-topics step times the topics page).
	createBulkTopics(t, p.kafkaAddr, 10000)

	artifacts := filepath.Join(root, "test-artifacts", "console")
	os.RemoveAll(artifacts)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "console.mjs", "http://"+p.httpAddr, artifacts)
	cmd.Dir = e2e
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("console.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the browser test failed (%v); screenshots in %s; server log:\n%s", err, artifacts, p.log.String())
	}
	if !bytes.Contains(out, []byte("\nPASS")) {
		t.Fatalf("console.mjs ended without PASS")
	}
	shots, _ := filepath.Glob(filepath.Join(artifacts, "*.png"))
	if len(shots) < 20 {
		t.Errorf("%d screenshots in %s, want one a step", len(shots), artifacts)
	}
	// The lineage index is kept in the data directory for the next start.
	idx := filepath.Join(p.dir, "data", "lineage", "lineage.idx")
	waitFor(t, "the lineage index file to hold the flow", 15*time.Second, func() bool {
		b, err := os.ReadFile(idx)
		return err == nil && bytes.Contains(b, []byte("console-flow-3"))
	})
}

// browserTools finds Chromium, node and console/e2e with playwright-core,
// failing the test (never skipping it) when one is missing.
func browserTools(t *testing.T) (chromium, node, e2e string) {
	t.Helper()
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		var err error
		if chromium, err = exec.LookPath("chromium"); err != nil {
			t.Fatal("Chromium is missing: apt-get install -y chromium (or set CHROMIUM to its path)")
		}
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is missing: apt-get install -y nodejs npm")
	}
	e2e = filepath.Join(repoRoot(t), "console", "e2e")
	if _, err := os.Stat(filepath.Join(e2e, "node_modules", "playwright-core")); err != nil {
		t.Fatal("playwright-core is missing: run (cd console/e2e && npm ci) as test.sh does")
	}
	return chromium, node, e2e
}

// TestPrometheusScrapesHerald runs Debian's Prometheus against a real herald
// serve and checks the main series with PromQL over Prometheus's HTTP API:
// records per topic, consumer lag per group and partition, HTTP requests and
// publishes. It fails, never skips, when Prometheus is missing.
func TestPrometheusScrapesHerald(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Prometheus")
	}
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("Prometheus is missing: apt-get install -y prometheus")
	}
	p := startHeraldProcess(t)

	// Traffic: 5 events over HTTP and 3 records over Kafka to a 2-partition
	// topic; a group consumes the first 5, leaving a lag of 3.
	p.call(t, "POST", "/v1/topics", "application/json", `{"name":"prom-orders","partitions":2}`, 201)
	for i := range 5 {
		p.call(t, "POST", "/v1/topics/prom-orders/events", "application/cloudevents+json",
			fmt.Sprintf(`{"specversion":"1.0","source":"/prom","type":"order.placed","id":"o-%d","data":{"n":%d}}`, i, i), 200)
	}
	p.cli(t, "", "consume", "prom-orders", "--group", "prom-group")
	p.cli(t, "a\nb\nc\n", "produce", "prom-orders")
	// A dead-letter topic (named by the convention) holding 2 records.
	p.call(t, "POST", "/v1/topics", "application/json", `{"name":"prom-orders.dlq","partitions":1}`, 201)
	p.cli(t, "x\ny\n", "produce", "prom-orders.dlq")

	dir := t.TempDir()
	promAddr := freeAddr(t)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: herald\n    static_configs:\n      - targets: ['%s']\n", p.httpAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	promLog := &syncBuffer{}
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = promLog, promLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	// query returns the value of a PromQL expression that yields one
	// sample, or false while it yields none.
	query := func(expr string) (float64, bool) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(expr))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Value [2]any
				}
			}
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Status != "success" || len(r.Data.Result) != 1 {
			return 0, false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		var v float64
		_, err = fmt.Sscan(s, &v)
		return v, err == nil
	}
	for _, c := range []struct {
		expr string
		want func(float64) bool
		says string
	}{
		{`up{job="herald"}`, func(v float64) bool { return v == 1 }, "1: Prometheus scrapes herald"},
		{`sum by (topic) (herald_broker_partition_high_watermark{topic="prom-orders"})`, func(v float64) bool { return v == 8 }, "8 records in prom-orders"},
		{`count(herald_broker_partition_high_watermark{topic="prom-orders"})`, func(v float64) bool { return v == 2 }, "2 partitions"},
		{`sum by (group, topic) (herald_group_lag{group="prom-group",topic="prom-orders"})`, func(v float64) bool { return v == 3 }, "a lag of 3"},
		{`count(herald_group_lag{group="prom-group",topic="prom-orders",partition=~"0|1"})`, func(v float64) bool { return v == 2 }, "lag per partition"},
		{`herald_http_published_events_total`, func(v float64) bool { return v == 5 }, "5 events published over HTTP"},
		{`herald_broker_records_appended_total{topic="prom-orders"}`, func(v float64) bool { return v == 8 }, "8 records appended to prom-orders (HTTP and Kafka)"},
		{`herald_broker_records_fetched_total{topic="prom-orders"}`, func(v float64) bool { return v >= 5 }, "the 5 consumed records fetched"},
		{`herald_broker_records_appended_total{topic="prom-orders.dlq"}`, func(v float64) bool { return v == 2 }, "2 records appended to the DLQ"},
		{`herald_broker_dlq_records{topic="prom-orders.dlq"}`, func(v float64) bool { return v == 2 }, "a DLQ depth of 2"},
		{`count(herald_broker_dlq_records)`, func(v float64) bool { return v == 1 }, "only the .dlq topic counted as a DLQ"},
		{`max by (group, topic) (herald_group_lag_seconds{group="prom-group",topic="prom-orders"})`, func(v float64) bool { return v > 0 && v < 600 }, "lag in seconds: the age of the oldest unconsumed record"},
		{`count(herald_group_lag_seconds{group="prom-group",topic="prom-orders"} == 0) + count(herald_group_lag_seconds{group="prom-group",topic="prom-orders"} > 0)`, func(v float64) bool { return v == 2 }, "lag in seconds per partition"},
		{`sum(herald_http_requests_total{route="POST /v1/topics/{topic}/events",code="200"})`, func(v float64) bool { return v == 5 }, "5 publish requests"},
		{`herald_broker_produce_records_total`, func(v float64) bool { return v >= 8 }, "at least 8 records produced"},
		{`herald_group_offset_commits_total`, func(v float64) bool { return v >= 1 }, "offset commits counted"},
		{`herald_lineage_events`, func(v float64) bool { return v == 5 }, "the 5 CloudEvents in the lineage index (the raw records are not events)"},
		{`sum(herald_commitlog_fsync_seconds_count)`, func(v float64) bool { return v >= 1 }, "an fsync latency histogram"},
		{`count(herald_http_request_duration_seconds_bucket{route="POST /v1/topics/{topic}/events"})`, func(v float64) bool { return v > 1 }, "a request latency histogram"},
	} {
		var got float64
		var ok bool
		deadline := time.Now().Add(30 * time.Second)
		for {
			if got, ok = query(c.expr); ok && c.want(got) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("PromQL %s = %v (answered %v), want %s\nprometheus log:\n%s", c.expr, got, ok, c.says, promLog.String())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	// Every query of the Grafana dashboard in docs/ is valid PromQL over
	// these series (Prometheus answers "success", with or without samples).
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	vars := strings.NewReplacer("$job", "herald", "$group", ".*", "$__rate_interval", "1m")
	var exprs int
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs++
			resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(vars.Replace(tg.Expr)))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"status":"success"`)) {
				t.Errorf("dashboard panel %q: %s: %s", p.Title, tg.Expr, body)
			}
		}
	}
	if exprs < 20 {
		t.Errorf("the dashboard has %d queries", exprs)
	}
}

// runSagaParticipant answers the console-order saga's commands until the
// returned func is called: Reserved, Released, and Charged or, when the
// saga's input holds "decline", Declined.
func runSagaParticipant(t *testing.T, kafkaAddr string) func() {
	t.Helper()
	sub, err := client.NewSubscriber([]string{kafkaAddr}, "console-saga-svc", []string{"console-saga-stock", "console-saga-pay"},
		func(ctx context.Context, cmd *event.Event) error {
			typ := map[string]string{"ConsoleReserve": "Reserved", "ConsoleRelease": "Released", "ConsoleCharge": "Charged"}[cmd.Type]
			if typ == "" {
				return nil
			}
			if typ == "Charged" && bytes.Contains(cmd.Data, []byte("decline")) {
				typ = "Declined"
			}
			return client.Publish(ctx, saga.ReplyTopic(cmd), saga.Reply(cmd, "/console-e2e", typ, nil))
		})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("saga participant: %v", err)
		}
	}
}

// createBulkTopics creates n one-partition topics named zz-bulk-00000 on,
// a thousand to a CreateTopics request.
func createBulkTopics(t *testing.T, kafkaAddr string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	for from := 0; from < n; from += 1000 {
		var names []string
		for i := from; i < min(n, from+1000); i++ {
			names = append(names, fmt.Sprintf("zz-bulk-%05d", i))
		}
		res, err := adm.CreateTopics(ctx, 1, 1, nil, names...)
		if err == nil {
			err = res.Error()
		}
		if err != nil {
			t.Fatalf("creating topics %s..: %v", names[0], err)
		}
	}
	t.Logf("created %d topics in %v", n, time.Since(start).Round(time.Millisecond))
}
