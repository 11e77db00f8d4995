package rules

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func do(t *testing.T, srv *httptest.Server, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, v
}

func errField(v map[string]any) (code, field, msg string) {
	e, _ := v["error"].(map[string]any)
	code, _ = e["code"].(string)
	field, _ = e["field"].(string)
	msg, _ = e["message"].(string)
	return
}

func TestHTTPAPI(t *testing.T) {
	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	mux := http.NewServeMux()
	e.Routes(mux)
	srv := httptest.NewServer(checkedAgainstOpenAPI(t, mux))
	defer srv.Close()
	createTopic(t, l, "out")

	st, v := do(t, srv, "GET", "/v1/buses", "")
	if st != 200 || len(v["buses"].([]any)) != 2 {
		t.Fatalf("buses: %d %v", st, v)
	}
	if st, _ := do(t, srv, "POST", "/v1/buses", `{"name":"orders"}`); st != 201 {
		t.Fatalf("create bus %d", st)
	}
	if st, v := do(t, srv, "POST", "/v1/buses", `{"name":"orders"}`); st != 409 {
		t.Fatalf("duplicate bus %d %v", st, v)
	}
	rule := `{"name":"big","bus":"orders","event_pattern":{"source":["shop"]},"targets":[{"id":"t","topic":"out"}]}`
	if st, v := do(t, srv, "POST", "/v1/rules", rule); st != 201 {
		t.Fatalf("create rule %d %v", st, v)
	}
	if st, _ := do(t, srv, "POST", "/v1/rules", rule); st != 409 {
		t.Fatalf("duplicate rule %d", st)
	}
	// Invalid patterns name the path inside the pattern.
	st, v = do(t, srv, "POST", "/v1/rules", `{"name":"bad","event_pattern":{"detail":{"n":[{"numeric":["<",1,">",0]}]}},"targets":[]}`)
	code, field, msg := errField(v)
	if st != 400 || code != "INVALID_ARGUMENT" || field != "event_pattern" || !strings.Contains(msg, "$.detail.n[0].numeric[0]") {
		t.Fatalf("bad pattern: %d %v", st, v)
	}
	st, v = do(t, srv, "POST", "/v1/rules", `{"name":"bad","schedule":"rate(0 minutes)","targets":[]}`)
	if _, field, _ := errField(v); st != 400 || field != "schedule" {
		t.Fatalf("bad schedule: %d %v", st, v)
	}
	st, v = do(t, srv, "POST", "/v1/rules", `{"name":"bad","event_pattern":{"a":["b"]},"targets":[{"id":"x","topic":"out","input_transformer":{"input_template":"<nope>"}}]}`)
	if _, field, _ := errField(v); st != 400 || field != "targets[0].input_transformer.input_template" {
		t.Fatalf("bad template: %d %v", st, v)
	}
	st, v = do(t, srv, "GET", "/v1/rules/big?bus=orders", "")
	if st != 200 || v["name"] != "big" || v["metrics"] == nil {
		t.Fatalf("describe: %d %v", st, v)
	}
	if st, v := do(t, srv, "POST", "/v1/rules/big/disable?bus=orders", ""); st != 200 || v["state"] != "DISABLED" {
		t.Fatalf("disable: %d %v", st, v)
	}
	if st, v := do(t, srv, "POST", "/v1/rules/big/enable?bus=orders", ""); st != 200 || v["state"] != "ENABLED" {
		t.Fatalf("enable: %d %v", st, v)
	}
	st, v = do(t, srv, "GET", "/v1/rules?bus=orders", "")
	if st != 200 || len(v["rules"].([]any)) != 1 {
		t.Fatalf("list: %d %v", st, v)
	}
	if st, v := do(t, srv, "POST", "/v1/buses/orders/events", `{"source":"shop","type":"order.placed","data":{"total":5}}`); st != 202 {
		t.Fatalf("publish %d %v", st, v)
	}
	waitFor(t, 5*time.Second, "delivery", func() bool { return len(readAll(t, l, "out")) == 1 })
	if st, _ := do(t, srv, "DELETE", "/v1/buses/orders", ""); st != 412 {
		t.Fatalf("delete bus with rules: %d", st)
	}
	if st, _ := do(t, srv, "DELETE", "/v1/rules/big?bus=orders", ""); st != 204 {
		t.Fatalf("delete rule %d", st)
	}
	if st, _ := do(t, srv, "GET", "/v1/rules/big?bus=orders", ""); st != 404 {
		t.Fatalf("deleted rule %d", st)
	}
	if st, _ := do(t, srv, "DELETE", "/v1/buses/orders", ""); st != 204 {
		t.Fatalf("delete bus %d", st)
	}
	st, v = do(t, srv, "POST", "/v1/rules:test", `{"pattern":{"source":["a"]},"event":{"source":"b"}}`)
	if st != 200 || v["match"] != false || !strings.Contains(v["reasons"].([]any)[0].(string), `source: value "b" does not match`) {
		t.Fatalf("test: %d %v", st, v)
	}
	// A plain ServeMux answers a wrong method with 405 (herald serve's API
	// gives it the error shape).
	req, _ := http.NewRequest("PATCH", srv.URL+"/v1/rules", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("PATCH %d", resp.StatusCode)
	}
}

func TestValidateRule(t *testing.T) {
	two := 200
	cases := []struct {
		r     Rule
		field string
	}{
		{Rule{Name: "", EventPattern: json.RawMessage(`{"a":["b"]}`)}, "name"},
		{Rule{Name: "a b", EventPattern: json.RawMessage(`{"a":["b"]}`)}, "name"},
		{Rule{Name: "r"}, "event_pattern"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Schedule: "rate(1 minute)"}, "schedule"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":[{"prefix":3}]}`)}, "event_pattern"},
		{Rule{Name: "r", Schedule: "cron(0 12 * * * *)"}, "schedule"},
		{Rule{Name: "r", Schedule: "every day"}, "schedule"},
		{Rule{Name: "r", Schedule: "rate(5 minute)"}, "schedule"},
		{Rule{Name: "r", Schedule: "cron(0 0 31 2 ? *)"}, "schedule"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), State: "ON"}, "state"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: make([]Target, 6)}, "targets"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t"}}}, "targets[0]"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Topic: "x", Webhook: "http://h"}}}, "targets[0]"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Webhook: "ftp://h"}}}, "targets[0].webhook"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Topic: "x"}, {ID: "t", Topic: "y"}}}, "targets[1].id"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Topic: "x", RetryPolicy: &RetryPolicy{MaximumEventAgeSeconds: 59}}}}, "targets[0].retry_policy.maximum_event_age_seconds"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Topic: "x", RetryPolicy: &RetryPolicy{MaximumEventAgeSeconds: 86401}}}}, "targets[0].retry_policy.maximum_event_age_seconds"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Topic: "x", RetryPolicy: &RetryPolicy{MaximumRetryAttempts: &two}}}}, "targets[0].retry_policy.maximum_retry_attempts"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Topic: "x", InputTransformer: &InputTransformer{InputTemplate: ""}}}}, "targets[0].input_transformer.input_template"},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Topic: "x", InputTransformer: &InputTransformer{InputPaths: map[string]string{"v": "data.x"}, InputTemplate: "<v>"}}}}, `targets[0].input_transformer.input_paths["v"]`},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Topic: "x", InputTransformer: &InputTransformer{InputPaths: map[string]string{"herald.x": "$.a"}, InputTemplate: "x"}}}}, `targets[0].input_transformer.input_paths["herald.x"]`},
		{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Topic: "x", InputTransformer: &InputTransformer{InputPaths: map[string]string{"v": "$.a[?(@.x)]"}, InputTemplate: "<v>"}}}}, `targets[0].input_transformer.input_paths["v"]`},
	}
	many := map[string]string{}
	for i := 0; i < 101; i++ {
		many[string(rune('a'+i%26))+strings.Repeat("x", i/26)] = "$.a"
	}
	cases = append(cases, struct {
		r     Rule
		field string
	}{Rule{Name: "r", EventPattern: json.RawMessage(`{"a":["b"]}`), Targets: []Target{{ID: "t", Topic: "x", InputTransformer: &InputTransformer{InputPaths: many, InputTemplate: "x"}}}}, "targets[0].input_transformer.input_paths"})
	for _, c := range cases {
		_, err := validate(c.r)
		if err == nil {
			t.Errorf("%+v accepted", c.r)
			continue
		}
		if got := err.(interface{ Error() string }); !strings.HasPrefix(got.Error(), c.field+": ") {
			t.Errorf("%+v: error %q does not name %q", c.r, err, c.field)
		}
	}
	if _, err := validate(Rule{Name: "ok", Schedule: "cron(0/15 9-17 ? * MON-FRI *)", Targets: []Target{{ID: "t", Webhook: "https://example.com/hook"}}}); err != nil {
		t.Fatal(err)
	}
}

func TestSchedules(t *testing.T) {
	base := time.Date(2026, 11, 26, 7, 3, 30, 0, time.UTC) // a Thursday
	cases := []struct {
		s    string
		from time.Time
		want time.Time
	}{
		{"cron(0 12 * * ? *)", base, time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)},
		{"cron(15 10 ? * 6L 2027)", base, time.Time{}}, // refused below
		{"cron(0/15 * * * ? *)", base, time.Date(2026, 11, 26, 7, 15, 0, 0, time.UTC)},
		{"cron(0 8 ? * MON-FRI *)", time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)},
		{"cron(0 0 L * ? *)", base, time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)},
		{"cron(30 6 1 JAN,JUL ? 2027-2028)", base, time.Date(2027, 1, 1, 6, 30, 0, 0, time.UTC)},
		{"cron(0 0 29 2 ? *)", base, time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		s, err := ParseSchedule(c.s)
		if c.want.IsZero() {
			if err == nil {
				t.Errorf("%s accepted", c.s)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.s, err)
			continue
		}
		if got := s.Next(c.from, time.Time{}); !got.Equal(c.want) {
			t.Errorf("%s from %v: got %v want %v", c.s, c.from, got, c.want)
		}
	}
	s, err := ParseSchedule("rate(5 minutes)")
	if err != nil {
		t.Fatal(err)
	}
	anchor := base
	if got := s.Next(base.Add(7*time.Minute), anchor); !got.Equal(base.Add(10 * time.Minute)) {
		t.Errorf("rate: got %v", got)
	}
	for _, bad := range []string{"rate(1 minutes)", "rate(2 hour)", "rate(x minutes)", "rate(5 weeks)", "cron(* * * * *)", "cron(60 * * * ? *)",
		"cron(0 0 ? * ? *)", "cron(0 0 1 * 1 *)", "cron(0 0 1W * ? *)", "cron(0 0 ? * 2#1 *)", "cron(0 0 1 13 ? *)", "cron(0 0 5-1 * ? *)"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestScheduledRuleFires(t *testing.T) {
	l := newLog(t, t.TempDir())
	e := newEngine(t, l, nil)
	createTopic(t, l, "ticks")
	// A cron rule every minute fires within a minute; rather than wait,
	// check the schedule loop with a rate anchored so the first tick is now.
	c, err := validate(Rule{Name: "tick", Schedule: "rate(1 minute)", Targets: []Target{{ID: "t", Topic: "ticks"}}})
	if err != nil {
		t.Fatal(err)
	}
	c.Created = time.Now().Add(-time.Minute + 200*time.Millisecond)
	e.mu.Lock()
	bs := e.mu.buses[DefaultBus]
	e.mu.Unlock()
	e.installRule(bs, c)
	waitFor(t, 5*time.Second, "scheduled event", func() bool { return len(readAll(t, l, "ticks")) == 1 })
	r := readAll(t, l, "ticks")[0]
	var data map[string]string
	json.Unmarshal(r.Value, &data)
	if data["rule"] != "tick" {
		t.Fatalf("tick data %s", r.Value)
	}
}

func TestTransformer(t *testing.T) {
	tr, err := compileTransformer(&InputTransformer{
		InputPaths: map[string]string{"id": "$.data.order.id", "first": "$.data.items[0].sku", "n": "$.data.n",
			"src": "$.source", "obj": "$.data.order", "q": "$.data['odd key']", "gone": "$.data.none"},
		InputTemplate: `{"id":"<id>","first":"<first>","n":<n>,"src":"<src>","obj":<obj>,"q":"<q>","gone":<gone>,"g":"<gone>","text":"obj is <obj>","rule":"<herald.rule-name>","event":<herald.event>}`,
	}, "t")
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte(`{"source":"shop","data":{"order":{"id":"o-1"},"items":[{"sku":"A\"1"}],"n":3.5,"odd key":"v"}}`)
	out := tr.apply(doc, "r1")
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("output %s: %v", out, err)
	}
	if v["id"] != "o-1" || v["first"] != `A"1` || v["n"] != 3.5 || v["src"] != "shop" || v["q"] != "v" || v["gone"] != nil ||
		v["g"] != "" || v["rule"] != "r1" || v["text"] != `obj is {"id":"o-1"}` || v["obj"].(map[string]any)["id"] != "o-1" ||
		v["event"].(map[string]any)["source"] != "shop" {
		t.Fatalf("output %s", out)
	}
	// A plain-text template.
	tr, err = compileTransformer(&InputTransformer{InputPaths: map[string]string{"s": "$.source"}, InputTemplate: `Event from <s> (a < b > c)`}, "t")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(tr.apply(doc, "r")); got != "Event from shop (a < b > c)" {
		t.Fatalf("text template: %q", got)
	}
}
