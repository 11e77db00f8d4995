package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/schema/registry"
	"github.com/heraldhq/herald/server"
)

// registryServer starts a server and its schema registry served over HTTP,
// wired as herald serve wires them; validator, when not nil, is the
// broker's record validator.
func registryServer(t *testing.T, validator *registry.Hook) (*server.Server, *registry.Registry, *httptest.Server) {
	t.Helper()
	cfg := server.Config{Broker: broker.Config{DataDir: t.TempDir()}, Logger: slog.New(slog.DiscardHandler)}
	if validator != nil {
		cfg.Broker.Validator = validator
	}
	srv, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	elog, err := embedded.New(embedded.Config{Broker: srv.Broker, Groups: srv.Groups})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { elog.Close() })
	reg, err := openRegistry(context.Background(), elog, &registry.Hook{}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(reg.Handler())
	t.Cleanup(hs.Close)
	return srv, reg, hs
}

// TestSchemaCommands drives herald schema against a registry wired as
// herald serve wires it: register, list, get, check, diff, config, delete,
// with their outputs and exit codes.
func TestSchemaCommands(t *testing.T) {
	_, _, hs := registryServer(t, &registry.Hook{})

	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := write("user.avsc", `{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}`)
	v2 := write("user2.avsc", `{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"email","type":["null","string"],"default":null}]}`)
	bad := write("user3.avsc", `{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"age","type":"int"}]}`)
	js := write("event.json", `{"type":"object","properties":{"id":{"type":"string"}}}`)

	var s cliServer
	run := func(stdin string, args ...string) cliResult {
		t.Helper()
		return s.run(t, stdin, append(args, "--registry", hs.URL)...)
	}
	want := func(r cliResult, code int, out string) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stdout+r.stderr, out) {
			t.Fatalf("exit %d (want %d), output lacks %q:\nstdout:\n%s\nstderr:\n%s", r.code, code, out, r.stdout, r.stderr)
		}
	}
	want(run("", "schema", "register", "users-value", v1), 0, "registered users-value version 1, schema id 1")
	want(run("", "schema", "register", "users-value", v1), 0, "version 1, schema id 1")
	want(run("", "schema", "check", "users-value", v2), 0, "compatible")
	want(run("", "schema", "check", "users-value", bad), 4, "READER_FIELD_MISSING_DEFAULT_VALUE")
	want(run("", "schema", "register", "users-value", bad), 4, "/age")
	want(run("", "schema", "register", "users-value", v2, "-o", "json"), 0, `"version": 2`)
	want(run("", "schema", "register", "events-value", js), 0, "schema id 3")
	want(run(`"string"`, "schema", "register", "plain", "-"), 0, "schema id 4")
	want(run("", "schema", "register", "x", write("broken.avsc", `{"type":`)), 2, "line 1 column 9")
	want(run("", "schema", "register", "x", v1, "--type", "xml"), 2, `--type "xml"`)
	want(run("", "schema", "register", "x", v1, "--ref", "nonsense"), 2, "NAME=SUBJECT:VERSION")

	r := run("", "schema", "list")
	want(r, 0, "SUBJECT")
	if !strings.Contains(r.stdout, "events-value  1        3   JSON") || !strings.Contains(r.stdout, "users-value   2        2   AVRO") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	r = run("", "schema", "list", "-o", "json", "--prefix", "users")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 1 || rows[0]["id"] != float64(2) {
		t.Fatalf("list json: %v %s", err, r.stdout)
	}
	want(run("", "schema", "get", "users-value", "1"), 0, `"name":"id","type":"long"}]}`)
	want(run("", "schema", "get", "--id", "3"), 0, `"properties"`)
	want(run("", "schema", "get", "nobody"), 3, "Subject 'nobody' not found")
	want(run("", "schema", "get", "users-value", "9"), 3, "Version 9 not found")
	want(run("", "schema", "get", "users-value", "zero"), 2, "want a positive number or latest")

	r = run("", "schema", "diff", "users-value", "1", "2")
	want(r, 0, `+       "name": "email",`)
	want(r, 0, "backward (version 2 reads 1): compatible")
	want(r, 0, "forward (version 1 reads 2): compatible")

	want(run("", "schema", "config"), 0, "BACKWARD")
	want(run("", "schema", "config", "users-value"), 0, "the global level")
	want(run("", "schema", "config", "users-value", "FULL"), 0, `compatibility of subject "users-value" set to FULL`)
	want(run("", "schema", "config", "users-value"), 0, "FULL")
	want(run("", "schema", "config", "users-value", "SIDEWAYS"), 2, "SIDEWAYS")

	want(run("", "schema", "delete", "users-value", "1", "--permanent"), 4, "not deleted first")
	want(run("", "schema", "delete", "users-value", "1"), 0, "soft-deleted users-value versions [1]")
	want(run("", "schema", "delete", "users-value"), 0, "soft-deleted users-value versions [2]")
	want(run("", "schema", "delete", "users-value", "--permanent", "-o", "json"), 0, `"permanent": true`)
	want(run("", "schema", "get", "users-value"), 3, "not found")
	want(s.run(t, "", "schema", "list", "--registry", "ftp://x"), 2, "--registry")
	want(run("", "schema", "frobnicate"), 2, "unknown command")
}

// TestSchemaDiscover infers a JSON Schema from a topic's events and
// registers it.
func TestSchemaDiscover(t *testing.T) {
	srv, reg, hs := registryServer(t, nil)
	s := cliServer{addr: srv.KafkaAddr(), b: srv.Broker}
	s.ok(t, "", "topic", "create", "orders", "--partitions", "2")
	var lines []string
	for i := range 40 {
		lines = append(lines, fmt.Sprintf(`{"id":"o-%d","at":"2026-11-26T07:%02d:00Z","cents":%d}`, i, i, 100*i))
	}
	lines = append(lines, "not json")
	s.ok(t, strings.Join(lines, "\n")+"\n", "produce", "orders")

	r := s.run(t, "", "schema", "discover", "orders", "--brokers", srv.KafkaAddr(), "--registry", hs.URL, "--register", "-o", "json")
	if r.code != 0 {
		t.Fatalf("discover: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var out struct {
		Samples, NotJSON, ID int
		Schema               map[string]any
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	props, _ := out.Schema["properties"].(map[string]any)
	at, _ := props["at"].(map[string]any)
	if out.Samples != 40 || out.NotJSON != 1 || out.ID != 1 || at["format"] != "date-time" || len(out.Schema["required"].([]any)) != 3 {
		t.Fatalf("discover: %+v", out)
	}
	if _, schemaReg, ok := reg.Latest("orders-value"); !ok || schemaReg.Type() != "JSON" {
		t.Fatalf("orders-value not registered as JSON")
	}
	want := func(r cliResult, code int, text string) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stdout+r.stderr, text) {
			t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", r.code, code, text, r.stdout, r.stderr)
		}
	}
	want(s.run(t, "", "schema", "discover", "nothere", "--brokers", srv.KafkaAddr(), "--registry", hs.URL), 3, "nothere")
	want(s.run(t, "", "schema", "discover", "orders", "--max", "0", "--registry", hs.URL), 2, "--max 0")
}

// TestSchemaAsyncAPI generates the AsyncAPI document of a server with a
// schema'd topic carrying CloudEvents.
func TestSchemaAsyncAPI(t *testing.T) {
	srv, reg, hs := registryServer(t, nil)
	s := cliServer{addr: srv.KafkaAddr(), b: srv.Broker}
	s.ok(t, "", "topic", "create", "payments", "--partitions", "2", "--config", "retention.ms=3600000")
	s.ok(t, "", "topic", "create", "plain")
	if _, err := reg.Register(context.Background(), "payments-value", registry.RegisterRequest{Schema: `{"type":"object","properties":{"cents":{"type":"integer"}}}`, SchemaType: "JSON"}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i, et := range []string{"shop.payment.made", "shop.payment.refunded", "shop.payment.made"} {
		r := &kgo.Record{Topic: "payments", Value: []byte(fmt.Sprintf(`{"cents":%d}`, i)), Headers: []kgo.RecordHeader{{Key: "ce_type", Value: []byte(et)}}}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	r := s.run(t, "", "schema", "asyncapi", "--brokers", srv.KafkaAddr(), "--registry", hs.URL)
	if r.code != 0 {
		t.Fatalf("asyncapi: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var doc struct {
		AsyncAPI string `json:"asyncapi"`
		Channels map[string]struct {
			Address  string
			Messages map[string]any
			Bindings struct {
				Kafka struct {
					Partitions         int
					TopicConfiguration map[string]any
				}
			}
		}
		Components struct {
			Schemas map[string]struct {
				SchemaFormat string
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	p := doc.Channels["payments"]
	if doc.AsyncAPI != "3.0.0" || len(doc.Channels) != 2 || p.Bindings.Kafka.Partitions != 2 || p.Bindings.Kafka.TopicConfiguration["retention.ms"] != float64(3600000) {
		t.Fatalf("document: %s", r.stdout)
	}
	if _, ok := p.Messages["payments.shop.payment.refunded"]; !ok || len(p.Messages) != 2 {
		t.Fatalf("payments messages: %v", p.Messages)
	}
	if !strings.HasPrefix(doc.Components.Schemas["payments-value"].SchemaFormat, "application/schema+json") {
		t.Fatalf("schemas: %+v", doc.Components.Schemas)
	}

	// The same document from GET /v1/asyncapi.json, built in-process.
	h, err := asyncAPIHandler(srv, reg, srv.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/asyncapi.json", nil))
	var served map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &served); err != nil || rec.Code != 200 {
		t.Fatalf("GET /v1/asyncapi.json: %d %v", rec.Code, err)
	}
	var cli map[string]any
	json.Unmarshal([]byte(r.stdout), &cli)
	delete(served, "info")
	delete(cli, "info")
	sb, _ := json.Marshal(served)
	cb, _ := json.Marshal(cli)
	if string(sb) != string(cb) {
		t.Fatalf("served document differs from the CLI's:\n%s\n%s", sb, cb)
	}
}
