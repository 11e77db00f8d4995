package saga

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHTTP checks the API's answers, bad input above all: each refusal
// names the field and, for definitions, the step.
func TestHTTP(t *testing.T) {
	brokers := startServer(t)
	createTopics(t, brokers, 4, testTopics...)
	e := startEngine(t, brokers, nil)
	defer e.Close()
	mux := http.NewServeMux()
	e.Routes(mux)
	srv := httptest.NewServer(checkedAgainstOpenAPI(t, mux))
	defer srv.Close()
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: not JSON: %s", method, path, b)
		}
		return resp.StatusCode, m
	}
	errOf := func(m map[string]any) (code, field, msg string) {
		e, _ := m["error"].(map[string]any)
		code, _ = e["code"].(string)
		field, _ = e["field"].(string)
		msg, _ = e["message"].(string)
		return
	}
	def, _ := json.Marshal(orderDef(time.Second))
	bad := []struct {
		name, body        string
		status            int
		field, step, want string
	}{
		{"cycle", strings.Replace(string(def), `"name":"payment",`, `"name":"payment","after":["shipping"],`, 1), 400, "after", "payment", "cycle: payment -> shipping -> inventory -> payment"},
		{"unknown topic", strings.Replace(string(def), `"t.inventory"`, `"t.nowhere"`, 1), 400, "steps[1].command.topic", "inventory", `unknown topic "t.nowhere"`},
		{"unknown field", strings.Replace(string(def), `"compensation":{"type":"CancelShipment"`, `"x":{"type":"CancelShipment"`, 1), 400, "definition", "", `unknown field "x"`},
		{"truncated", `{"name":`, 400, "definition", "", "bad JSON"},
	}
	for _, tc := range bad {
		status, m := call("POST", "/v1/sagas/definitions", tc.body)
		code, field, msg := errOf(m)
		if status != tc.status || code != "INVALID_ARGUMENT" || field != tc.field || !strings.Contains(msg, tc.want) ||
			(tc.step != "" && !strings.Contains(msg, `step "`+tc.step+`"`)) {
			t.Errorf("%s: %d %s %q %q", tc.name, status, code, field, msg)
		}
	}
	d := orderDef(time.Second)
	d.Steps[2].Compensation = nil
	b, _ := json.Marshal(d)
	if status, m := call("POST", "/v1/sagas/definitions", string(b)); status != 400 {
		t.Errorf("missing compensation: %d %v", status, m)
	} else if _, field, msg := errOf(m); field != "steps[2].compensation" || !strings.Contains(msg, `step "shipping"`) {
		t.Errorf("missing compensation: %q %q", field, msg)
	}
	if status, m := call("POST", "/v1/sagas/definitions", string(def)); status != 201 || m["version"] != float64(1) {
		t.Fatalf("register: %d %v", status, m)
	}
	yamlDef := "name: solo\nsteps:\n  - name: only\n    command: {type: Do, topic: t.orders}\n    success: [Done]\n"
	req, _ := http.NewRequest("POST", srv.URL+"/v1/sagas/definitions", strings.NewReader(yamlDef))
	req.Header.Set("Content-Type", "application/yaml")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("register YAML: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if status, m := call("GET", "/v1/sagas/definitions", ""); status != 200 || len(m["definitions"].([]any)) != 2 {
		t.Errorf("definitions: %d %v", status, m)
	}
	if status, m := call("POST", "/v1/sagas", `{"definition":"nope","id":"a"}`); status != 404 {
		t.Errorf("start of an unknown definition: %d %v", status, m)
	}
	if status, m := call("POST", "/v1/sagas", `{"definition":"order","id":""}`); status != 400 {
		t.Errorf("start without an id: %d %v", status, m)
	} else if _, field, _ := errOf(m); field != "id" {
		t.Errorf("start without an id: field %q", field)
	}
	if status, m := call("POST", "/v1/sagas", `{"definition":"order","id":"h-1","input":{"amount":3}}`); status != 202 {
		t.Fatalf("start: %d %v", status, m)
	}
	waitUntil(t, "h-1 in the view", 10*time.Second, func() bool { _, err := e.Get("h-1"); return err == nil })
	if status, m := call("GET", "/v1/sagas/h-1", ""); status != 200 || m["id"] != "h-1" || m["currentStep"] != "payment" {
		t.Errorf("get: %d %v", status, m)
	}
	if status, _ := call("GET", "/v1/sagas/nope", ""); status != 404 {
		t.Errorf("get of an unknown saga: %d", status)
	}
	if status, m := call("GET", "/v1/sagas?status=running&limit=5", ""); status != 200 || len(m["sagas"].([]any)) != 1 {
		t.Errorf("list: %d %v", status, m)
	}
	if status, m := call("GET", "/v1/sagas?limit=0", ""); status != 400 {
		t.Errorf("list limit=0: %d %v", status, m)
	}
	if status, m := call("POST", "/v1/sagas/h-1/retry", `{"step":"payment"}`); status != 412 {
		t.Errorf("retry of a running step: %d %v", status, m)
	}
	if status, m := call("POST", "/v1/sagas/h-1/retry", `{}`); status != 400 {
		t.Errorf("retry without a step: %d %v", status, m)
	}
	if status, m := call("POST", "/v1/sagas/h-1/abort", ``); status != 202 {
		t.Errorf("abort: %d %v", status, m)
	}
}
