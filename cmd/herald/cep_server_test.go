package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/cep"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/server"
)

// TestCEPServerCommands drives herald cep create|list|delete against a
// real server and reads the alert the created pattern writes.
func TestCEPServerCommands(t *testing.T) {
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: t.TempDir()},
		Groups: groups.Config{MinSessionTimeout: 100 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	reg, err := cep.NewRegistry(ctx, cep.RegistryConfig{Brokers: []string{srv.KafkaAddr()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	mux := http.NewServeMux()
	cep.Routes(mux, reg)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr()))
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "logins"); err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(t.TempDir(), "fraud.json")
	os.WriteFile(pf, []byte(`{"name":"Fraud","type":"FraudAlert","key":"data.user","within":"10m","skip":"skip_past_last_event",
 "steps":[{"name":"failures","match":{"type":["LoginFailed"]},"min":3,"max":3},
          {"name":"success","match":{"type":["LoginSuccess"]},"contiguity":"strict"}]}`), 0o644)
	api := "--http=" + hs.URL

	if r := runRule(t, "cep", "create", "--pattern", "@"+pf, "--input", "logins", api); r.code != 2 || !strings.Contains(r.stderr, "--output are required") {
		t.Fatalf("create without --output: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runRule(t, "cep", "create", "--pattern", `{"name":"x","within":"soon","steps":[{"name":"a"}]}`, "--input", "logins", "--output", "o", api); r.code != 2 || !strings.Contains(r.stderr, "within") {
		t.Fatalf("create with a bad pattern: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runRule(t, "cep", "create", "--pattern", "@"+pf, "--input", "nothing", "--output", "o", api); r.code != 2 || !strings.Contains(r.stderr, `unknown topic "nothing"`) {
		t.Fatalf("create on an unknown topic: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runRule(t, "cep", "create", "--pattern", "@"+pf, "--input", "logins", "--output", "alerts", "--timeout-topic", "late", api); r.code != 0 ||
		!strings.Contains(r.stdout, `pattern "Fraud" running: logins -> alerts (timeouts -> late)`) {
		t.Fatalf("create: exit %d, stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runRule(t, "cep", "create", "--pattern", "@"+pf, "--input", "logins", "--output", "alerts", api); r.code != 4 {
		t.Fatalf("create twice: exit %d, stderr %q", r.code, r.stderr)
	}
	yf := filepath.Join(t.TempDir(), "fraud.yaml")
	os.WriteFile(yf, []byte("name: FraudY\ntype: FraudAlert\nkey: data.user\nwithin: 10m\nsteps:\n  - {name: failures, match: {type: [LoginFailed]}, min: 3, max: 3}\n  - {name: success, match: {type: [LoginSuccess]}, contiguity: strict}\n"), 0o644)
	if r := runRule(t, "cep", "create", "--pattern", "@"+yf, "--input", "logins", "--output", "alerts-y", api); r.code != 0 || !strings.Contains(r.stdout, `pattern "FraudY" running`) {
		t.Fatalf("create from YAML: exit %d, stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runRule(t, "cep", "create", "--pattern", "name: [", "--input", "logins", "--output", "o", api); r.code != 2 || !strings.Contains(r.stderr, "bad YAML") {
		t.Fatalf("create from bad YAML: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runRule(t, "cep", "delete", "FraudY", api); r.code != 0 {
		t.Fatalf("delete FraudY: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runRule(t, "cep", "list", api); r.code != 0 || !strings.Contains(r.stdout, "Fraud") || !strings.Contains(r.stdout, "running") {
		t.Fatalf("list: exit %d, stdout %q", r.code, r.stdout)
	}
	var recs []*kgo.Record
	for i, ty := range []string{"LoginFailed", "LoginFailed", "LoginFailed", "LoginSuccess"} {
		e := event.New("/auth", ty)
		e.ID, e.Time = "m"+string(rune('1'+i)), time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC)
		e.DataContentType, e.Data = "application/json", []byte(`{"user":"mallory"}`)
		m, _ := event.Encode(e)
		r := &kgo.Record{Topic: "logins", Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rd, _ := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr()), kgo.ConsumeTopics("alerts"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer rd.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var got *kgo.Record
	for got == nil && pctx.Err() == nil {
		rd.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got = r })
	}
	if got == nil {
		t.Fatal("no alert")
	}
	hs2 := make([]event.Header, len(got.Headers))
	for i, h := range got.Headers {
		hs2[i] = event.Header{Key: h.Key, Value: h.Value}
	}
	alert, err := event.Decode(event.Message{Key: got.Key, Value: got.Value, Headers: hs2})
	if err != nil {
		t.Fatal(err)
	}
	var m cep.Match
	if err := json.Unmarshal(alert.Data, &m); err != nil || alert.Type != "FraudAlert" || alert.CausationID != "m4" || len(m.Events) != 4 {
		t.Fatalf("alert %q causation %q data %s (%v)", alert.Type, alert.CausationID, alert.Data, err)
	}
	if r := runRule(t, "cep", "delete", "Fraud", "nope", api); r.code != 3 || !strings.Contains(r.stdout, `pattern "Fraud" deleted`) {
		t.Fatalf("delete: exit %d, stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runRule(t, "cep", "delete", "--if-exists", "Fraud", api); r.code != 0 {
		t.Fatalf("delete --if-exists: exit %d", r.code)
	}
	if r := runRule(t, "cep", "list", api, "-o", "json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("list after delete: exit %d, stdout %q", r.code, r.stdout)
	}
}
