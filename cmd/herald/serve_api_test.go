package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/httpapi/openapitest"
	"github.com/heraldhq/herald/schema/registry"
	"github.com/heraldhq/herald/server"
)

// startServedAPI assembles the /v1 API exactly as herald serve does, over
// an in-process server with its Kafka listener (the saga engine uses it).
func startServedAPI(t *testing.T) *servedAPI {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	hook := &registry.Hook{}
	data := t.TempDir()
	srv, err := server.Start(ctx, server.Config{
		Broker: broker.Config{DataDir: data, Validator: hook}, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	elog, err := embedded.New(embedded.Config{Broker: srv.Broker, Groups: srv.Groups, ClientID: "herald-serve"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { elog.Close() })
	reg := prometheus.NewRegistry()
	sreg, err := openRegistry(ctx, elog, hook, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := buildAPI(ctx, srv, elog, sreg, apiConfig{
		Data: data, Durability: commitlog.Durability{}, Logger: logger, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing the API's services: %v", err)
		}
	})
	return s
}

// TestOpenAPIMatchesServedAPI checks the OpenAPI document herald serve
// serves at /v1/openapi.json: a valid OpenAPI 3 document whose operations
// are exactly the routes of the assembled API (every service mounted, none
// skipped), and whose schemas the real responses of each service match.
func TestOpenAPIMatchesServedAPI(t *testing.T) {
	s := startServedAPI(t)
	doc := s.API.Document()
	if _, err := openapitest.Load(doc); err != nil {
		t.Fatalf("the served OpenAPI document is not valid: %v", err)
	}
	if bad := s.API.OpenAPIMismatches(); len(bad) > 0 {
		t.Errorf("OpenAPI document and routes disagree:\n%s", strings.Join(bad, "\n"))
	}
	// Every service is in the document.
	for _, p := range []string{"/v1/topics", "/v1/subscriptions/{name}:streamingPull", "/v1/snapshots/{name}", "/v1/rules/{name}/enable",
		"/v1/rules:test", "/v1/replays/{name}/cancel", "/v1/sagas/{id}/retry", "/v1/streams/{stream}", "/v1/persistent-subscriptions/{group}/next",
		"/v1/admin/scavenge", "/v1/asyncapi.json", "/v1/queries/{name}", "/v1/queries/pull", "/v1/queries/push"} {
		if !strings.Contains(string(doc), `"`+p+`"`) {
			t.Errorf("document lacks %s", p)
		}
	}

	// Real responses of each service, checked against the document.
	hs := httptest.NewServer(openapitest.Handler(t, doc, s.API))
	defer hs.Close()
	do := func(method, path, body string, want int) map[string]any {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, hs.URL+path, rd)
		switch {
		case strings.Contains(body, `"specversion"`): // a structured CloudEvent
			req.Header.Set("Content-Type", "application/cloudevents+json")
		case body != "":
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
		}
		var v map[string]any
		json.Unmarshal(b, &v)
		return v
	}
	served := do("GET", "/v1/openapi.json", "", 200)
	if paths, _ := served["paths"].(map[string]any); paths["/v1/sagas/{id}"] == nil || paths["/v1/all/head"] == nil {
		t.Errorf("GET /v1/openapi.json is not the merged document: %d paths", len(paths))
	}
	do("POST", "/v1/topics", `{"name":"orders","partitions":1}`, 201)
	do("GET", "/v1/asyncapi.json", "", 200)
	do("GET", "/v1/nowhere", "", 404)

	// Subscriptions and snapshots.
	do("PUT", "/v1/subscriptions/s1", `{"topic":"orders","ackDeadlineSeconds":30}`, 200)
	do("GET", "/v1/subscriptions/s1", "", 200)
	do("POST", "/v1/topics/orders/events", `{"specversion":"1.0","id":"e1","source":"shop","type":"order.placed","data":{"n":1}}`, 200)
	do("GET", "/v1/subscriptions", "", 200)
	// NB: the subscription reads the topic in the background, so a pull
	// returning immediately may come before the event: pull again.
	var pulled map[string]any
	var msgs []any
	for deadline := time.Now().Add(10 * time.Second); len(msgs) == 0 && time.Now().Before(deadline); {
		pulled = do("POST", "/v1/subscriptions/s1:pull", `{"maxMessages":10,"returnImmediately":true}`, 200)
		msgs, _ = pulled["receivedMessages"].([]any)
	}
	if len(msgs) != 1 {
		t.Fatalf("pull: %v", pulled)
	}
	{
		ack := msgs[0].(map[string]any)["ackId"].(string)
		do("POST", "/v1/subscriptions/s1:modifyAckDeadline", `{"ackIds":["`+ack+`"],"ackDeadlineSeconds":60}`, 200)
		do("POST", "/v1/subscriptions/s1:acknowledge", `{"ackIds":["`+ack+`"]}`, 200)
	}
	do("POST", "/v1/subscriptions/s1:pull", `{"maxMessages":0}`, 400)
	do("PUT", "/v1/snapshots/snap1", `{"subscription":"s1"}`, 200)
	do("GET", "/v1/snapshots", "", 200)
	do("GET", "/v1/snapshots/snap1", "", 200)
	do("POST", "/v1/subscriptions/s1:seek", `{"snapshot":"snap1"}`, 200)
	do("DELETE", "/v1/snapshots/snap1", "", 200)
	do("DELETE", "/v1/subscriptions/s1", "", 200)
	do("GET", "/v1/subscriptions/s1", "", 404)

	// The event bus.
	do("GET", "/v1/buses", "", 200)
	do("POST", "/v1/buses", `{"name":"shop"}`, 201)
	do("GET", "/v1/buses/shop", "", 200)
	do("POST", "/v1/rules", `{"name":"big","bus":"shop","event_pattern":{"source":["shop"]},"targets":[{"id":"t","topic":"orders"}]}`, 201)
	do("GET", "/v1/rules?bus=shop", "", 200)
	do("GET", "/v1/rules/big?bus=shop", "", 200)
	do("POST", "/v1/rules/big/disable?bus=shop", "", 200)
	do("POST", "/v1/buses/shop/events", `{"source":"shop","type":"order.placed","data":{"n":1}}`, 202)
	do("POST", "/v1/rules:test", `{"pattern":{"source":["a"]},"event":{"source":"b"}}`, 200)
	do("POST", "/v1/archives", `{"name":"a1","bus":"shop"}`, 201)
	do("GET", "/v1/archives", "", 200)
	do("GET", "/v1/archives/a1", "", 200)
	do("GET", "/v1/replays", "", 200)
	do("GET", "/v1/replays/none", "", 404)
	do("DELETE", "/v1/rules/big?bus=shop", "", 204)

	// Sagas.
	do("POST", "/v1/sagas/definitions", `{"name":"order","steps":[{"name":"pay","command":{"type":"pay","topic":"orders"},"success":["paid"]}]}`, 201)
	do("GET", "/v1/sagas/definitions", "", 200)
	do("GET", "/v1/sagas", "", 200)
	do("GET", "/v1/sagas?status=bogus", "", 400)
	do("GET", "/v1/sagas/none", "", 404)

	// The event store.
	do("POST", "/v1/streams/order-1", `{"expectedVersion":"no-stream","events":[{"id":"e1","type":"placed","data":{"n":1}}]}`, 200)
	do("POST", "/v1/streams", `{"appends":[{"stream":"order-2","events":[{"id":"e2","type":"placed"}]}]}`, 200)
	do("GET", "/v1/streams", "", 200)
	do("GET", "/v1/streams/order-1", "", 200)
	do("GET", "/v1/streams/order-1/info", "", 200)
	do("PUT", "/v1/streams/order-1/metadata", `{"maxCount":10}`, 204)
	do("GET", "/v1/all?max=10", "", 200)
	do("GET", "/v1/all/head", "", 200)
	do("PUT", "/v1/persistent-subscriptions/g1", `{"stream":"order-1"}`, 201)
	do("GET", "/v1/persistent-subscriptions/g1/next?waitMs=1000", "", 200)
	do("POST", "/v1/persistent-subscriptions/g1/replay-parked", "", 200)
	do("DELETE", "/v1/persistent-subscriptions/g1", "", 204)
	do("DELETE", "/v1/streams/order-2", "", 204)
	do("POST", "/v1/admin/scavenge", "", 200)

	// Continuous queries over the orders topic (the events above have no
	// time, which a windowed query needs: it skips them).
	do("POST", "/v1/topics/orders/events", `{"specversion":"1.0","id":"e3","source":"shop","type":"order.placed","time":"2026-03-01T10:00:00Z","data":{"n":1}}`, 200)
	bad := do("POST", "/v1/queries", `{"sql":"CREATE TABLE t AS SELECT COUNT(*) FORM orders"}`, 400)
	if e, _ := bad["error"].(map[string]any); e["field"] != "sql" || !strings.Contains(fmt.Sprint(e["message"]), "line 1, column 35") {
		t.Errorf("a bad query: %v, want field sql and line 1, column 35", bad)
	}
	do("POST", "/v1/queries", `{"sql":"CREATE TABLE c AS SELECT COUNT(*) AS n FROM nowhere WINDOW TUMBLING (SIZE 1 HOUR) EMIT CHANGES"}`, 400)
	const counts = `{"sql":"CREATE TABLE order_counts AS SELECT COUNT(*) AS n FROM orders WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) EMIT CHANGES"}`
	if info := do("POST", "/v1/queries", counts, 201); info["name"] != "order_counts" || info["input"] != "orders" || info["status"] != "running" {
		t.Errorf("created query: %v", info)
	}
	do("POST", "/v1/queries", counts, 409)
	if l := do("GET", "/v1/queries", "", 200); len(l["queries"].([]any)) != 1 {
		t.Errorf("list: %v", l)
	}
	do("GET", "/v1/queries/order_counts", "", 200)
	do("GET", "/v1/queries/none", "", 404)
	var rows []any
	for deadline := time.Now().Add(20 * time.Second); len(rows) == 0 && time.Now().Before(deadline); {
		rows, _ = do("POST", "/v1/queries/pull", `{"sql":"SELECT * FROM order_counts WHERE n >= 1"}`, 200)["rows"].([]any)
	}
	if len(rows) != 1 || rows[0].(map[string]any)["n"] != 1.0 {
		t.Errorf("pull: %v, want one row with n 1", rows)
	}
	do("POST", "/v1/queries/pull", `{"sql":"SELECT * FROM none"}`, 404)
	do("POST", "/v1/queries/pull", `{"sql":"SELECT * FRM order_counts"}`, 400)
	do("POST", "/v1/queries/push", `{"sql":"SELECT COUNT(*) AS n FROM orders","from":"yesterday"}`, 400)
	do("POST", "/v1/queries/push", `{"sql":"CREATE TABLE x AS SELECT COUNT(*) AS n FROM orders"}`, 400)
	// A push query streams server-sent events through the API's writer
	// (not the validating recorder, which would wait for the end).
	live := httptest.NewServer(s.API)
	defer live.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer pcancel()
	preq, _ := http.NewRequestWithContext(pctx, "POST", live.URL+"/v1/queries/push",
		strings.NewReader(`{"sql":"SELECT COUNT(*) AS n FROM orders WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) EMIT CHANGES","from":"earliest"}`))
	preq.Header.Set("Content-Type", "application/json")
	presp, err := http.DefaultClient.Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	if presp.StatusCode != 200 || presp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(presp.Body)
		t.Fatalf("push: %d %s: %s", presp.StatusCode, presp.Header.Get("Content-Type"), b)
	}
	sc := bufio.NewScanner(presp.Body)
	var pushed string
	for pushed == "" && sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			pushed = d
		}
	}
	pcancel()
	presp.Body.Close()
	if want := `{"window_start":"2026-03-01T10:00:00Z","window_end":"2026-03-01T11:00:00Z","n":1}`; pushed != want {
		t.Errorf("pushed %q, want %q", pushed, want)
	}
	do("DELETE", "/v1/queries/order_counts", "", 204)
	do("DELETE", "/v1/queries/order_counts", "", 404)
}
