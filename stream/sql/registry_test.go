package sql

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/server"
)

func TestRegistryHTTP(t *testing.T) {
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
	cfg := RegistryConfig{Brokers: []string{srv.KafkaAddr()}, Logger: slog.New(slog.DiscardHandler)}
	reg, err := NewRegistry(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Routes(mux, reg)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(sql string) (int, string) {
		b, _ := json.Marshal(map[string]string{"sql": sql})
		return call("POST", "/v1/queries", string(b))
	}
	if code, body := post(hourly); code != 400 || !strings.Contains(body, `unknown topic \"orders\"`) || !strings.Contains(body, `"field":"sql"`) {
		t.Fatalf("unknown topic: %d %s", code, body)
	}
	if code, body := post("CREATE TABLE t AS SELECT COUNT(*) FORM orders"); code != 400 || !strings.Contains(body, "line 1, column 35: expected FROM") {
		t.Fatalf("parse error: %d %s", code, body)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr()), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	for _, e := range orders() {
		m, _ := event.Encode(e)
		r := &kgo.Record{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := post(hourly); code != 201 || !strings.Contains(body, `"name":"hourly_orders"`) || !strings.Contains(body, `"status":"running"`) {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := post(hourly); code != 409 {
		t.Fatalf("create twice: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/queries", ""); code != 200 || !strings.Contains(body, `"input":"orders"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	// The table topic fills.
	rd, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeTopics("hourly_orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	n := 0
	for deadline := time.Now().Add(20 * time.Second); n < 2 && time.Now().Before(deadline); {
		pctx, pc := context.WithTimeout(ctx, time.Second)
		rd.PollFetches(pctx).EachRecord(func(*kgo.Record) { n++ })
		pc()
	}
	if n != 2 {
		t.Fatalf("table topic has %d records, want 2", n)
	}
	// Pull queries answer from the table.
	pull := func(sql string) (int, string) {
		b, _ := json.Marshal(map[string]string{"sql": sql})
		return call("POST", "/v1/queries/pull", string(b))
	}
	// NB: the job's table in memory takes a commit a moment after a
	// reader of the topic may see it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, body := pull("SELECT * FROM hourly_orders")
		if code == 200 && strings.Count(body, "window_start") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pull all: %d %s", code, body)
		}
	}
	if code, body := pull("SELECT * FROM hourly_orders WHERE window_start >= '2026-03-01T11:00:00Z' AND order_count = 1"); code != 200 ||
		body != `{"rows":[{"order_count":1,"total_revenue":7,"window_end":"2026-03-01T12:00:00Z","window_start":"2026-03-01T11:00:00Z"}]}`+"\n" {
		t.Fatalf("pull range: %d %q", code, body)
	}
	if code, body := pull("SELECT * FROM nope"); code != 404 {
		t.Fatalf("pull unknown table: %d %s", code, body)
	}
	if code, body := pull("SELECT a FROM hourly_orders"); code != 400 || !strings.Contains(body, `line 1, column 8: expected \"*\"`) {
		t.Fatalf("pull parse error: %d %s", code, body)
	}
	// A push query streams its results over SSE.
	pb, _ := json.Marshal(map[string]string{"from": "earliest", "sql": "SELECT data.user, COUNT(*) AS n FROM orders WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) GROUP BY data.user EMIT CHANGES"})
	pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
	preq, _ := http.NewRequestWithContext(pctx, "POST", hs.URL+"/v1/queries/push", strings.NewReader(string(pb)))
	presp, err := http.DefaultClient.Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	if presp.StatusCode != 200 || presp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("push: %d %s", presp.StatusCode, presp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(presp.Body)
	var pushed []string
	for len(pushed) < 6 && sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			pushed = append(pushed, d)
		}
	}
	pcancel()
	presp.Body.Close()
	if len(pushed) != 6 || pushed[0] != `{"window_start":"2026-03-01T10:00:00Z","window_end":"2026-03-01T11:00:00Z","data_user":"ann","n":1}` {
		t.Fatalf("pushed %q", pushed)
	}
	if code, body := call("POST", "/v1/queries/push", `{"sql":"SELECT COUNT(*) FROM nope WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS)"}`); code != 400 || !strings.Contains(body, "unknown topic") {
		t.Fatalf("push on unknown topic: %d %s", code, body)
	}
	// A restart runs the registered query again.
	reg.Close()
	reg2, err := NewRegistry(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Close()
	if info, err := reg2.Get("hourly_orders"); err != nil || info.Status != "running" {
		t.Fatalf("after restart: %+v %v", info, err)
	}
	mux2 := http.NewServeMux()
	Routes(mux2, reg2)
	hs.Config.Handler = mux2
	if code, body := call("DELETE", "/v1/queries/hourly_orders", ""); code != 204 {
		t.Fatalf("drop: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/queries/hourly_orders", ""); code != 404 || !strings.Contains(body, "NOT_FOUND") {
		t.Fatalf("describe after drop: %d %s", code, body)
	}
	if code, _ := call("DELETE", "/v1/queries/hourly_orders", ""); code != 404 {
		t.Fatalf("drop twice: %d", code)
	}
	reg3, err := NewRegistry(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg3.Close()
	if l := reg3.List(); len(l) != 0 {
		t.Fatalf("dropped query came back: %+v", l)
	}
}
