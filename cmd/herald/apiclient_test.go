package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/httpjson"
)

// TestHTTPAPISend covers the shared client the HTTP API commands use: the
// request it sends, the error shape it decodes, and its messages when the
// URL is wrong or nothing answers.
func TestHTTPAPISend(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Header.Get("Content-Type") != "application/cloudevents-batch+json" || r.Header.Get("X-Test") != "1" {
				http.Error(w, "headers "+r.Header.Get("Content-Type"), 400)
				return
			}
			httpjson.WriteJSON(w, 200, map[string]string{"m": r.Method})
		case "/shaped":
			httpjson.WriteError(w, httpjson.Invalid("name", "too long"))
		default:
			http.Error(w, "plain text", 502)
		}
	}))
	defer hs.Close()
	ctx := context.Background()
	api := heraldAPI(nil, hs.URL+"/", 5*time.Second)

	ans, err := api.send(ctx, "POST", "/ok", http.Header{"Content-Type": {"application/cloudevents-batch+json"}, "X-Test": {"1"}}, []byte("[]"))
	if err != nil || !ans.ok() || !strings.Contains(string(ans.body), `"POST"`) {
		t.Fatalf("send: %v %+v", err, ans)
	}
	ans, err = api.send(ctx, "GET", "/shaped", nil, nil)
	if err != nil || ans.ok() {
		t.Fatalf("shaped: %v %+v", err, ans)
	}
	if e := ans.apiError(); e == nil || e.Field != "name" || e.Code != httpjson.CodeInvalidArgument || apiExitCode(ans.status) != exitUsage {
		t.Fatalf("shaped error: %+v, status %d", e, ans.status)
	}
	ans, err = api.send(ctx, "GET", "/other", nil, nil)
	if err != nil || ans.status != 502 || ans.apiError() != nil || apiExitCode(ans.status) != exitFailure {
		t.Fatalf("plain error: %v %+v", err, ans)
	}

	for _, bad := range []string{"ftp://x", "http://", "127.0.0.1:8080"} {
		_, err := heraldAPI(nil, bad, time.Second).send(ctx, "GET", "/", nil, nil)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--http") {
			t.Fatalf("%q: %v (exit %d), want a usage error naming --http", bad, err, exitCode(err))
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = heraldAPI(nil, "http://"+addr, 5*time.Second).send(ctx, "GET", "/", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot reach http://"+addr) || !strings.Contains(err.Error(), "HERALD_HTTP") {
		t.Fatalf("unreachable: %v", err)
	}

	for status, want := range map[int]int{400: exitUsage, 413: exitUsage, 415: exitUsage, 404: exitNotFound, 409: exitConflict, 412: exitConflict, 500: exitFailure, 429: exitFailure} {
		if got := apiExitCode(status); got != want {
			t.Errorf("apiExitCode(%d) = %d, want %d", status, got, want)
		}
	}
}
