package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldhq/herald/httpapi/openapitest"
)

func TestTopicsLifecycle(t *testing.T) {
	e := newEnv(t)
	var created topicDescription
	e.must(e.doJSON("POST", "/v1/topics", map[string]any{
		"name": "orders", "partitions": 3, "configs": map[string]string{"retention.ms": "3600000"},
	}), 201, &created)
	if created.Name != "orders" || len(created.Partitions) != 3 || created.ID == "" {
		t.Fatalf("created %+v", created)
	}
	expectError(t, e.doJSON("POST", "/v1/topics", map[string]any{"name": "orders"}), 409, "name", "already exists")

	cfg := func(d topicDescription, name string) topicConfig {
		for _, c := range d.Configs {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("no config %s in %+v", name, d.Configs)
		return topicConfig{}
	}
	if c := cfg(created, "retention.ms"); c.Value != "3600000" || c.Source != "topic" {
		t.Errorf("retention.ms %+v", c)
	}
	if c := cfg(created, CfgDedupWindowMs); c.Value != "120000" || c.Source != "default" {
		t.Errorf("%s %+v", CfgDedupWindowMs, c)
	}

	// Alter: set one config, reset another, grow partitions.
	var altered topicDescription
	e.must(e.doJSON("PATCH", "/v1/topics/orders", map[string]any{
		"configs": map[string]any{"retention.ms": nil, "segment.ms": "60000"}, "partitions": 4,
	}), 200, &altered)
	if c := cfg(altered, "retention.ms"); c.Source != "default" {
		t.Errorf("retention.ms after reset %+v", c)
	}
	if c := cfg(altered, "segment.ms"); c.Value != "60000" {
		t.Errorf("segment.ms %+v", c)
	}
	if len(altered.Partitions) != 4 {
		t.Errorf("partitions after growing: %d", len(altered.Partitions))
	}
	// A bad config changes nothing, partitions included.
	expectError(t, e.doJSON("PATCH", "/v1/topics/orders", map[string]any{
		"configs": map[string]any{"retention.ms": "soon"}, "partitions": 6,
	}), 400, "configs", "retention.ms")
	var d topicDescription
	e.must(e.do("GET", "/v1/topics/orders", nil, nil), 200, &d)
	if len(d.Partitions) != 4 {
		t.Errorf("a refused alter grew the topic to %d partitions", len(d.Partitions))
	}
	expectError(t, e.doJSON("PATCH", "/v1/topics/orders", map[string]any{"partitions": 2}), 400, "partitions", "only grow")

	// Pagination over 5 topics, 2 a page.
	for _, n := range []string{"a", "b", "c", "d"} {
		e.createTopic(n, 1, nil)
	}
	var names []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		var l struct {
			Topics        []topicSummary
			NextPageToken string
		}
		e.must(e.do("GET", "/v1/topics?pageSize=2&pageToken="+token, nil, nil), 200, &l)
		for _, tp := range l.Topics {
			names = append(names, tp.Name)
		}
		if token = l.NextPageToken; token == "" {
			break
		}
	}
	if strings.Join(names, ",") != "a,b,c,d,orders" {
		t.Errorf("paged listing: %v", names)
	}
	var withInternal struct{ Topics []topicSummary }
	e.must(e.do("GET", "/v1/topics?internal=true&pageSize=1000", nil, nil), 200, &withInternal)
	if len(withInternal.Topics) <= 5 {
		t.Errorf("internal=true lists no internal topics: %+v", withInternal.Topics)
	}

	e.must(e.do("DELETE", "/v1/topics/orders", nil, nil), 204, nil)
	expectError(t, e.do("GET", "/v1/topics/orders", nil, nil), 404, "topic", `no topic "orders"`)
	expectError(t, e.do("DELETE", "/v1/topics/orders", nil, nil), 404, "topic")
	expectError(t, e.do("DELETE", "/v1/topics/__consumer_offsets", nil, nil), 400, "topic", "internal")
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxPublishBytes = 4096; c.MaxBodyBytes = 512 })
	e.createTopic("t", 2, nil)
	ce := http.Header{"Content-Type": {"application/cloudevents+json"}}
	batchCT := http.Header{"Content-Type": {"application/cloudevents-batch+json"}}
	js := http.Header{"Content-Type": {"application/json"}}
	big := strings.Repeat("x", 5000)
	for _, tc := range []struct {
		name         string
		method, path string
		header       http.Header
		body         string
		status       int
		field        string
		msg          string
	}{
		{"malformed JSON (admin)", "POST", "/v1/topics", js, `{"name":`, 400, "", "truncated"},
		{"malformed JSON (event)", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0",`, 400, "", "malformed JSON"},
		{"unknown field", "POST", "/v1/topics", js, `{"name":"x","partition":1}`, 400, "partition", "unknown field"},
		{"wrong JSON type", "POST", "/v1/topics", js, `{"name":"x","partitions":"two"}`, 400, "partitions", "want a JSON int"},
		{"bad topic name", "POST", "/v1/topics", js, `{"name":"a/b"}`, 400, "name", ""},
		{"zero partitions", "POST", "/v1/topics", js, `{"name":"x","partitions":0}`, 400, "partitions", "want 1 to"},
		{"unknown config", "POST", "/v1/topics", js, `{"name":"x","configs":{"retention":"1"}}`, 400, "configs", "unknown config"},
		{"missing source", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0","id":"1","type":"t"}`, 400, "source", "required"},
		{"missing type", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0","id":"1","source":"s"}`, 400, "type", "required"},
		{"missing specversion", "POST", "/v1/topics/t/events", ce, `{"id":"1","source":"s","type":"t"}`, 400, "specversion", "required"},
		{"wrong specversion", "POST", "/v1/topics/t/events", ce, `{"specversion":"0.3","id":"1","source":"s","type":"t"}`, 400, "specversion", "1.0"},
		{"bad time", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}`, 400, "time", "RFC 3339"},
		{"time not a string", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0","id":"1","source":"s","type":"t","time":12}`, 400, "time", "want a JSON string"},
		{"bad attribute name", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0","id":"1","source":"s","type":"t","Bad_Name":"x"}`, 400, "Bad_Name", "[a-z0-9]"},
		{"object extension", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0","id":"1","source":"s","type":"t","ext":{"a":1}}`, 400, "ext", "object"},
		{"data and data_base64", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}`, 400, "data_base64", "both"},
		{"bad base64", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"!!"}`, 400, "data_base64", "base64"},
		{"bad traceparent", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0","source":"s","type":"t","traceparent":"nope"}`, 400, "traceparent", ""},
		{"batch item error", "POST", "/v1/topics/t/events", batchCT, `[{"specversion":"1.0","source":"s","type":"t"},{"specversion":"1.0","source":"s"}]`, 400, "[1].type", "required"},
		{"empty batch", "POST", "/v1/topics/t/events", batchCT, `[]`, 400, "", "empty batch"},
		{"batch not an array", "POST", "/v1/topics/t/events", batchCT, `{}`, 400, "", "JSON array"},
		{"binary bad time", "POST", "/v1/topics/t/events", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}, "Ce-Time": {"noon"}}, "x", 400, "time", "RFC 3339"},
		{"binary missing source", "POST", "/v1/topics/t/events", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Type": {"t"}}, "x", 400, "source", "required"},
		{"binary bad percent", "POST", "/v1/topics/t/events", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Source": {"s"}, "Ce-Type": {"a%zz"}}, "x", 400, "type", "percent"},
		{"binary repeated header", "POST", "/v1/topics/t/events", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Source": {"s", "t"}, "Ce-Type": {"t"}}, "x", 400, "source", "repeated"},
		{"binary partition key not UTF-8", "POST", "/v1/topics/t/events", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}, "Ce-Partitionkey": {"%F4"}}, "x", 400, "partitionkey", "UTF-8"},
		{"records value and base64", "POST", "/v1/topics/t/events", js, `{"records":[{"value":1,"valueBase64":"AA=="}]}`, 400, "records[0].valueBase64", "both"},
		{"records truncated", "POST", "/v1/topics/t/events", js, `{"records":[`, 400, "", "truncated"},
		{"records unknown field", "POST", "/v1/topics/t/events", js, `{"records":[{"val":1}]}`, 400, "val", "unknown field"},
		{"records wrong type", "POST", "/v1/topics/t/events", js, `{"records":[{"key":1}]}`, 400, "records.key", "want a JSON string"},
		{"records empty", "POST", "/v1/topics/t/events", js, `{"records":[]}`, 400, "records", "at least one"},
		{"records trailing data", "POST", "/v1/topics/t/events", js, `{"records":[{"value":1}]}]`, 400, "", "after the JSON value"},
		{"records bad partition", "POST", "/v1/topics/t/events", js, `{"records":[{"value":1,"partition":7}]}`, 400, "records[0].partition", "0 to 1"},
		{"no content type", "POST", "/v1/topics/t/events", nil, `x`, 415, "Content-Type", ""},
		{"unsupported content type", "POST", "/v1/topics/t/events", http.Header{"Content-Type": {"text/plain"}}, `x`, 415, "Content-Type", "ce-specversion"},
		{"oversize event body", "POST", "/v1/topics/t/events", ce, `{"specversion":"1.0","source":"s","type":"t","data":"` + big + `"}`, 413, "", "limit of 4096 bytes"},
		{"oversize admin body", "POST", "/v1/topics", js, `{"name":"` + big + `"}`, 413, "", "limit of 512 bytes"},
		{"unknown topic (publish)", "POST", "/v1/topics/nope/events", ce, `{"specversion":"1.0","source":"s","type":"t"}`, 404, "topic", `no topic "nope"`},
		{"unknown topic (read)", "GET", "/v1/topics/nope/events", nil, ``, 404, "topic", ""},
		{"unknown topic (describe)", "GET", "/v1/topics/nope", nil, ``, 404, "topic", ""},
		{"publish to an internal topic", "POST", "/v1/topics/__consumer_offsets/events", ce, `{"specversion":"1.0","source":"s","type":"t"}`, 400, "topic", "internal"},
		{"publish partition out of range", "POST", "/v1/topics/t/events?partition=2", ce, `{"specversion":"1.0","source":"s","type":"t"}`, 400, "partition", "0 to 1"},
		{"read numeric offset without partition", "GET", "/v1/topics/t/events?offset=3", nil, ``, 400, "offset", "needs partition"},
		{"read bad page token", "GET", "/v1/topics/t/events?pageToken=zz", nil, ``, 400, "pageToken", ""},
		{"read page token and offset", "GET", "/v1/topics/t/events?pageToken=MDow&offset=earliest", nil, ``, 400, "pageToken", "alone"},
		{"read page token of another topic", "GET", "/v1/topics/t/events?pageToken=OTow", nil, ``, 400, "pageToken", "recreated"},
		{"read page token with partition", "GET", "/v1/topics/t/events?pageToken=MDow&partition=0", nil, ``, 400, "pageToken", "without partition"},
		{"read bad partition", "GET", "/v1/topics/t/events?partition=x", nil, ``, 400, "partition", ""},
		{"read bad limit", "GET", "/v1/topics/t/events?partition=0&limit=0", nil, ``, 400, "limit", "1 to 1000"},
		{"read limit too big", "GET", "/v1/topics/t/events?partition=0&limit=5000", nil, ``, 400, "limit", ""},
		{"read offset and time", "GET", "/v1/topics/t/events?partition=0&offset=0&time=0", nil, ``, 400, "time", "not both"},
		{"read bad offset", "GET", "/v1/topics/t/events?partition=0&offset=-3", nil, ``, 400, "offset", ""},
		{"read offset out of range", "GET", "/v1/topics/t/events?partition=0&offset=99", nil, ``, 400, "offset", "out of range"},
		{"read bad time", "GET", "/v1/topics/t/events?partition=0&time=later", nil, ``, 400, "time", "RFC 3339"},
		{"read bad wait", "GET", "/v1/topics/t/events?partition=0&wait=1h", nil, ``, 400, "wait", ""},
		{"read unknown parameter", "GET", "/v1/topics/t/events?partition=0&from=0", nil, ``, 400, "from", "unknown query parameter"},
		{"bad pageSize", "GET", "/v1/topics?pageSize=0", nil, ``, 400, "pageSize", ""},
		{"bad pageToken", "GET", "/v1/topics?pageToken=%25%25", nil, ``, 400, "pageToken", ""},
		{"bad internal", "GET", "/v1/topics?internal=maybe", nil, ``, 400, "internal", ""},
		{"unknown route", "GET", "/v1/nothing", nil, ``, 404, "", "no route"},
		{"outside /v1", "GET", "/topics", nil, ``, 404, "", "no route"},
		{"wrong method", "PUT", "/v1/topics/t", nil, ``, 405, "", "GET, HEAD, PATCH, DELETE"},
		{"wrong method on events", "DELETE", "/v1/topics/t/events", nil, ``, 405, "", "POST"},
		{"reset bad to", "POST", "/v1/groups/g/offsets:reset", js, `{"to":"start","allTopics":true}`, 400, "to", "earliest"},
		{"reset bad time", "POST", "/v1/groups/g/offsets:reset", js, `{"to":"time","time":"x","allTopics":true}`, 400, "time", ""},
		{"reset no topics", "POST", "/v1/groups/g/offsets:reset", js, `{"to":"earliest"}`, 400, "topics", ""},
		{"reset unknown topic", "POST", "/v1/groups/g/offsets:reset", js, `{"to":"earliest","topics":[{"topic":"nope"}]}`, 404, "topics[0].topic", ""},
		{"unknown group", "GET", "/v1/groups/nope", nil, ``, 404, "group", ""},
		{"delete unknown group", "DELETE", "/v1/groups/nope", nil, ``, 404, "group", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.header, []byte(tc.body))
			expectError(t, r, tc.status, tc.field, tc.msg)
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	// Nothing of the above was stored.
	for p := 0; p < 2; p++ {
		if got := e.read("t", fmt.Sprintf("partition=%d", p)); len(got.Events) != 0 {
			t.Errorf("partition %d holds %d events after refused publishes", p, len(got.Events))
		}
	}
}

func TestRequestIDMetricsAndOpenAPI(t *testing.T) {
	e := newEnv(t)
	e.createTopic("m", 1, nil)
	r := e.do("GET", "/v1/topics/m", http.Header{"X-Request-Id": {"abc-123"}}, nil)
	if r.header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("X-Request-Id not echoed: %q", r.header.Get("X-Request-Id"))
	}
	r = e.do("GET", "/v1/topics/m", nil, nil)
	if len(r.header.Get("X-Request-Id")) != 24 {
		t.Errorf("no generated X-Request-Id: %q", r.header.Get("X-Request-Id"))
	}
	e.do("GET", "/v1/topics/nope", nil, nil)
	e.do("GET", "/v1/zzz", nil, nil)
	if n := testutil.ToFloat64(e.api.m.requests.WithLabelValues("GET /v1/topics/{topic}", "200")); n != 2 {
		t.Errorf("requests{route=GET /v1/topics/{topic},code=200} = %v, want 2", n)
	}
	if n := testutil.ToFloat64(e.api.m.requests.WithLabelValues("GET /v1/topics/{topic}", "404")); n != 1 {
		t.Errorf("404 count %v", n)
	}
	if n := testutil.ToFloat64(e.api.m.requests.WithLabelValues("unmatched", "404")); n != 1 {
		t.Errorf("unmatched count %v", n)
	}
	if n, err := testutil.GatherAndCount(e.reg, "herald_http_request_duration_seconds"); err != nil || n == 0 {
		t.Errorf("latency histogram: %d series, %v", n, err)
	}

	// The served document is the embedded one, and it matches the routes.
	r = e.do("GET", "/v1/openapi.json", nil, nil)
	if r.status != 200 || string(r.body) != string(OpenAPI) || string(e.api.Document()) != string(OpenAPI) {
		t.Fatalf("GET /v1/openapi.json: %d", r.status)
	}
	if bad := e.api.OpenAPIMismatches(); len(bad) > 0 {
		t.Errorf("OpenAPI document and routes disagree:\n%s", strings.Join(bad, "\n"))
	}
	// A mounted route that is not documented is reported.
	e.api.Handle("GET /v1/undocumented", http.NotFoundHandler())
	bad := e.api.OpenAPIMismatches()
	if len(bad) != 1 || bad[0] != "routed but not documented: GET /v1/undocumented" {
		t.Errorf("after mounting: %q", bad)
	}
	// A documented operation no route reaches is reported, unless its
	// service is skipped.
	if err := e.api.AddOpenAPI([]byte(`{"paths":{"/v1/unrouted/{x}:act":{"post":{"operationId":"unrouted","x-herald-service":"other","parameters":[{"name":"x","in":"path","required":true,"schema":{"type":"string"}}],"responses":{"204":{"description":"ok"}}}}}}`)); err != nil {
		t.Fatal(err)
	}
	bad = e.api.OpenAPIMismatches()
	if len(bad) != 2 || !strings.Contains(strings.Join(bad, "\n"), "documented but not routed: POST /v1/unrouted/{x}:act") {
		t.Errorf("with an unrouted operation: %q", bad)
	}
	if bad = e.api.OpenAPIMismatches("other"); len(bad) != 1 {
		t.Errorf("skipping its service: %q", bad)
	}
	e.api.Handle("POST /v1/unrouted/{xAction}", http.NotFoundHandler()) // x:act, as subscriptions route name:pull
	// A service documents its routes with a fragment.
	frag := `{"paths":{"/v1/undocumented":{"get":{"operationId":"undoc","x-herald-service":"test","responses":{"200":{"description":"ok","content":{"application/json":{"schema":{"$ref":"#/components/schemas/Thing"}}}}}}}},
		"components":{"schemas":{"Thing":{"type":"object"}}}}`
	if err := e.api.AddOpenAPI([]byte(frag)); err != nil {
		t.Fatal(err)
	}
	if bad = e.api.OpenAPIMismatches(); len(bad) != 0 {
		t.Errorf("after documenting: %q", bad)
	}
	if err := e.api.AddOpenAPI([]byte(frag)); err == nil || !strings.Contains(err.Error(), "already documented") {
		t.Errorf("adding a path twice: %v", err)
	}
	if err := e.api.AddOpenAPI([]byte(`{"paths":{},"components":{"schemas":{"Topic":{}}}}`)); err == nil || !strings.Contains(err.Error(), "components.schemas.Topic") {
		t.Errorf("redefining a schema: %v", err)
	}
	if r := e.do("GET", "/v1/openapi.json", nil, nil); !strings.Contains(string(r.body), `"undoc"`) || !strings.Contains(string(r.body), `"Thing"`) {
		t.Errorf("served document lacks the fragment")
	}
	if _, err := openapitest.Load(e.api.Document()); err != nil {
		t.Errorf("merged document: %v", err)
	}

	// Every $ref resolves.
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Errorf("openapi version %q", v)
	}
	comps := doc["components"].(map[string]any)
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
				if sec, ok := comps[parts[0]].(map[string]any); !ok || sec[parts[1]] == nil {
					t.Errorf("dangling $ref %s", ref)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRequestLog(t *testing.T) {
	var buf syncBuffer
	e := newEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	e.do("GET", "/v1/topics", http.Header{"X-Request-Id": {"req-7"}}, nil)
	e.do("GET", "/v1/topics/missing", http.Header{"X-Request-Id": {"req-8"}}, nil)
	// HEAD of a GET route answers without a body.
	if r := e.do("HEAD", "/v1/topics", nil, nil); r.status != 200 || len(r.body) != 0 {
		t.Errorf("HEAD: %d %q", r.status, r.body)
	}
	waitFor(t, "two log lines", 5*time.Second, func() bool { return strings.Count(buf.String(), "msg=\"http request\"") >= 3 })
	logs := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="http request" request_id=req-7 method=GET path=/v1/topics route="GET /v1/topics" status=200`,
		`level=INFO msg="http request" request_id=req-8 method=GET path=/v1/topics/missing route="GET /v1/topics/{topic}" status=404`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}
