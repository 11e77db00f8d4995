package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/heraldhq/herald/logctx"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// find returns the first JSON line whose msg and path are those given.
func (l *logBuf) find(msg, path string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg && (path == "" || m["path"] == path) {
			return m
		}
	}
	return nil
}

// TestLogLinesCarryRequestIDs: the API's lines for a request, and those a
// mounted service logs with the request's context, carry its request_id
// (the client's X-Request-Id, or a new one) and its correlation_id (the
// X-Correlation-Id header, or ce-correlationid of a binary-mode
// CloudEvent).
func TestLogLinesCarryRequestIDs(t *testing.T) {
	var buf logBuf
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, func(c *Config) { c.Logger = logger })
	e.api.Handle("GET /v1/log-probe", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "service line") // not wrapped: the API's context alone
		w.WriteHeader(http.StatusNoContent)
	}))
	do := func(method, path string, hdr map[string]string, body string) *http.Response {
		req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	do("GET", "/v1/topics/no-such-topic", map[string]string{"X-Request-Id": "req-7", "X-Correlation-Id": "flow-7"}, "")
	if l := buf.find("http request", "/v1/topics/no-such-topic"); l == nil || l["request_id"] != "req-7" || l["correlation_id"] != "flow-7" {
		t.Errorf("access log line %v: want request_id req-7, correlation_id flow-7", l)
	}

	e.createTopic("logs", 1, nil)
	resp := do("POST", "/v1/topics/logs/events", map[string]string{"Content-Type": "application/json", "ce-specversion": "1.0",
		"ce-id": "e-1", "ce-source": "/t", "ce-type": "t.happened", "ce-correlationid": "flow-8"}, `{"n":1}`)
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %s", resp.Status)
	}
	l := buf.find("http request", "/v1/topics/logs/events")
	if l == nil || l["correlation_id"] != "flow-8" || l["request_id"] != resp.Header.Get("X-Request-Id") || l["request_id"] == "" {
		t.Errorf("publish's line %v: want correlation_id flow-8 and the request id %q", l, resp.Header.Get("X-Request-Id"))
	}

	// A mounted service logging with the request's context, through a
	// logger wrapped as herald serve wraps its own.
	wrapped := slog.New(logctx.NewHandler(slog.NewJSONHandler(&buf, nil)))
	e.api.Handle("GET /v1/log-probe2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wrapped.InfoContext(r.Context(), "wrapped service line")
		w.WriteHeader(http.StatusNoContent)
	}))
	do("GET", "/v1/log-probe2", map[string]string{"X-Request-Id": "req-9", "X-Correlation-Id": "flow-9"}, "")
	if l := buf.find("wrapped service line", ""); l == nil || l["request_id"] != "req-9" || l["correlation_id"] != "flow-9" {
		t.Errorf("service line %v: want request_id req-9, correlation_id flow-9", l)
	}
	// Ids that are not printable ASCII, or too long, are not logged.
	do("GET", "/v1/log-probe", map[string]string{"X-Correlation-Id": strings.Repeat("x", 200)}, "")
	if l := buf.find("http request", "/v1/log-probe"); l == nil || l["correlation_id"] != nil {
		t.Errorf("an overlong correlation id was logged: %v", l)
	}
	if l := buf.find("service line", ""); l == nil || l["request_id"] != nil {
		t.Errorf("a logger not wrapped by logctx got ids: %v", l)
	}
}
