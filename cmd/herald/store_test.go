package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore/embedded"
	"github.com/heraldhq/herald/eventstore/httpapi"
)

// startStoreServer serves an embedded event store's HTTP API, as herald
// serve mounts it, and returns the --http flag to reach it.
func startStoreServer(t *testing.T) []string {
	t.Helper()
	es, err := embedded.Open(embedded.Config{Dir: t.TempDir(), SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	httpapi.Routes(mux, es)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		es.Close()
	})
	return []string{"--http", srv.URL}
}

func TestStoreCLI(t *testing.T) {
	h := startStoreServer(t)
	var s cliServer
	args := func(a ...string) []string { return append(a, h...) }

	if out := s.ok(t, `{"email":"ann@example.com"}`, args("store", "append", "user-42", "--type", "UserRegistered", "--expected-version", "no-stream")...); out != "0\n" {
		t.Fatalf("append printed %q", out)
	}
	s.ok(t, `{"email":"ann@b.com"}`, args("store", "append", "user-42", "-t", "UserEmailChanged", "-e", "0")...)
	// A conflict: exit 4 with both versions.
	s.fails(t, exitConflict, "expected version 0, actual version 1", `{}`, args("store", "append", "user-42", "-t", "X", "-e", "0")...)
	// Idempotent retry with the same --id.
	s.ok(t, `{}`, args("store", "append", "user-42", "-t", "Once", "-e", "1", "--id", "evt-1")...)
	if out := s.ok(t, `{}`, args("store", "append", "user-42", "-t", "Once", "-e", "1", "--id", "evt-1")...); out != "2\n" {
		t.Fatalf("retry printed %q", out)
	}

	out := s.ok(t, "", args("store", "read", "user-42")...)
	if !strings.Contains(out, "UserRegistered") || !strings.Contains(out, `{"email":"ann@b.com"}`) || strings.Count(out, "\n") != 4 {
		t.Fatalf("read:\n%s", out)
	}
	var evs []httpapi.Event
	if err := json.Unmarshal([]byte(s.ok(t, "", args("store", "read", "user-42", "--backwards", "--max", "1", "-o", "json")...)), &evs); err != nil || len(evs) != 1 || evs[0].Version != 2 {
		t.Fatalf("read backwards: %+v %v", evs, err)
	}
	if err := json.Unmarshal([]byte(s.ok(t, "", args("store", "read", "user-42", "--until-version", "0", "-o", "json")...)), &evs); err != nil || len(evs) != 1 || evs[0].Type != "UserRegistered" {
		t.Fatalf("read --until-version 0: %+v %v", evs, err)
	}
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if out := s.ok(t, "", args("store", "read", "user-42", "--until-time", past)...); strings.Count(out, "\n") != 1 {
		t.Fatalf("read an hour ago:\n%s", out)
	}
	s.fails(t, exitNotFound, `stream "nope"`, "", args("store", "read", "nope")...)
	s.fails(t, exitUsage, "--until-time", "", args("store", "read", "user-42", "--until-time", "yesterday")...)
	s.fails(t, exitUsage, "not a JSON value", "nope", args("store", "append", "a-1", "-t", "X")...)
	s.fails(t, exitUsage, "--type is required", "{}", args("store", "append", "a-1")...)
	s.fails(t, exitUsage, "--expected-version", "{}", args("store", "append", "a-1", "-t", "X", "-e", "soon")...)
	s.fails(t, exitUsage, "starts with '$'", "{}", args("store", "append", "$all", "-t", "X")...)

	s.ok(t, `{}`, args("store", "append", "order-1", "-t", "Placed")...)
	if out := s.ok(t, "", args("store", "streams")...); out != "order-1\nuser-42\n" {
		t.Fatalf("streams: %q", out)
	}
	s.ok(t, "", args("store", "delete", "order-1")...)
	s.fails(t, exitNotFound, "not found", "", args("store", "read", "order-1")...)
	s.ok(t, "", args("store", "delete", "user-42", "--hard")...)
	s.fails(t, exitConflict, "hard-deleted", "{}", args("store", "append", "user-42", "-t", "X")...)
	if out := s.ok(t, "", args("store", "info", "user-42")...); !strings.Contains(out, "hard-deleted") {
		t.Fatalf("info:\n%s", out)
	}
	// The hard-deleted stream's 3 events and the soft-deleted stream's one
	// are reclaimed (in the active segment: once it is sealed).
	if out := s.ok(t, "", args("store", "scavenge")...); !strings.HasPrefix(out, "scavenged 4 events") {
		t.Fatalf("scavenge: %q", out)
	}

	// subscribe prints history then live events, until interrupted.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr := &lockedBuffer{}
	done := make(chan cliResult, 1)
	go func() {
		done <- s.runContext(t, ctx, strings.NewReader(""), pr, args("store", "subscribe", "--category", "live")...)
	}()
	s.ok(t, `{"n":1}`, args("store", "append", "live-1", "-t", "Tick")...)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(pr.String(), `"n":1`) {
		if time.Now().After(deadline) {
			t.Fatalf("subscribe printed %q", pr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if r := <-done; r.code != 0 {
		t.Fatalf("subscribe ended with %d: %s", r.code, r.stderr)
	}

	// --exclude-system leaves out the store's own records ($ types).
	s.ok(t, `{"own":1}`, args("store", "append", "sys-1", "-t", "$checkpoint")...)
	s.ok(t, `{"n":2}`, args("store", "append", "live-2", "-t", "Tick")...)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	pr = &lockedBuffer{}
	go func() {
		done <- s.runContext(t, ctx, strings.NewReader(""), pr, args("store", "subscribe", "--exclude-system")...)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(pr.String(), `"n":2`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("subscribe --exclude-system printed %q", pr.String())
		}
	}
	cancel()
	if r := <-done; r.code != 0 || strings.Contains(pr.String(), "$checkpoint") || !strings.Contains(pr.String(), `"n":1`) {
		t.Fatalf("subscribe --exclude-system ended with %d (%s), printed %q", r.code, r.stderr, pr.String())
	}
	s.fails(t, exitUsage, "filters apply to $all", "", args("store", "subscribe", "live-1", "--exclude-system")...)
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
