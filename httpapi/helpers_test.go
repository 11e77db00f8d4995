package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/httpapi/openapitest"
	"github.com/heraldhq/herald/server"
)

// env is a real Herald server (broker, coordinators, Kafka listener) with
// the API in front of it over real HTTP.
type env struct {
	t   testing.TB
	dir string
	srv *server.Server
	api *API
	reg *prometheus.Registry
	hs  *httptest.Server
	url string
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

func newEnv(t testing.TB, mod ...func(*Config)) *env {
	t.Helper()
	return startEnv(t, t.TempDir(), mod...)
}

// startEnv starts a server on dir; Close (or the test's end) stops it.
func startEnv(t testing.TB, dir string, mod ...func(*Config)) *env {
	t.Helper()
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: dir}, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := Config{Broker: srv.Broker, Groups: srv.Groups, Logger: quietLogger(), Registerer: reg}
	for _, m := range mod {
		m(&cfg)
	}
	api, err := New(cfg)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, srv: srv, api: api, reg: reg}
	// Tests check every response against openapi.json; benchmarks measure
	// the API alone.
	var h http.Handler = api
	if _, isTest := t.(*testing.T); isTest {
		h = openapitest.Handler(t, api.Document(), api)
	}
	e.hs = httptest.NewServer(h)
	e.url = e.hs.URL
	t.Cleanup(e.Close)
	return e
}

func (e *env) Close() {
	if e.hs == nil {
		return
	}
	e.hs.Close()
	e.api.Close()
	if err := e.srv.Close(); err != nil {
		e.t.Errorf("close server: %v", err)
	}
	e.hs = nil
}

// response is a decoded HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d %s: %v", r.status, r.body, err)
	}
}

// apiError is the error shape.
type apiError struct {
	Error struct {
		Code, Message, Field string
	}
}

func (e *env) do(method, path string, header http.Header, body []byte) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (e *env) doJSON(method, path string, v any) response {
	e.t.Helper()
	var b []byte
	if v != nil {
		var err error
		if b, err = json.Marshal(v); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.do(method, path, http.Header{"Content-Type": {"application/json"}}, b)
}

// must checks the status and decodes the body into v (when not nil).
func (e *env) must(r response, status int, v any) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if v != nil {
		r.json(e.t, v)
	}
}

func (e *env) createTopic(name string, partitions int, configs map[string]string) {
	e.t.Helper()
	e.must(e.doJSON("POST", "/v1/topics", map[string]any{"name": name, "partitions": partitions, "configs": configs}), 201, nil)
}

// publish posts body with content type ct and returns the results.
func (e *env) publish(topic, ct string, body string, extra http.Header) []PublishResult {
	e.t.Helper()
	h := http.Header{"Content-Type": {ct}}
	for k, v := range extra {
		h[k] = v
	}
	var out PublishResponse
	e.must(e.do("POST", "/v1/topics/"+topic+"/events", h, []byte(body)), 200, &out)
	return out.Results
}

func (e *env) read(topic, query string) ReadResponse {
	e.t.Helper()
	var out ReadResponse
	e.must(e.do("GET", "/v1/topics/"+topic+"/events?"+query, nil, nil), 200, &out)
	return out
}

// expectError checks an error response: status, code and field, and a
// message containing each of msgs.
func expectError(t *testing.T, r response, status int, field string, msgs ...string) {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code == "" {
		t.Errorf("status %d: body %s is not the error shape", r.status, r.body)
		return
	}
	if r.status != status || e.Error.Field != field {
		t.Errorf("got status %d field %q (%s), want %d field %q", r.status, e.Error.Field, r.body, status, field)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	for _, m := range msgs {
		if !strings.Contains(e.Error.Message, m) {
			t.Errorf("message %q does not contain %q", e.Error.Message, m)
		}
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
