package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/server"
	"github.com/heraldhq/herald/subscription"
)

// subServer is a real server with the subscription API mounted on HTTP,
// as herald serve mounts it.
type subServer struct {
	*cliServer
	url string
	log eventlog.Log
}

func startSubServer(t *testing.T) *subServer {
	t.Helper()
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: t.TempDir()}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	elog, err := embedded.New(embedded.Config{Broker: srv.Broker, Groups: srv.Groups})
	if err != nil {
		t.Fatal(err)
	}
	m, err := subscription.Open(context.Background(), subscription.Config{Log: elog, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	m.Routes(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		hs.Close()
		m.Close()
		elog.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
	})
	return &subServer{cliServer: &cliServer{addr: srv.KafkaAddr(), b: srv.Broker}, url: hs.URL, log: elog}
}

func (s *subServer) sub(t *testing.T, args ...string) cliResult {
	t.Helper()
	return s.run(t, "", append(append([]string{"sub"}, args...), "--http", s.url)...)
}

func TestSubCLI(t *testing.T) {
	s := startSubServer(t)
	s.ok(t, "", "topic", "create", "orders", "--partitions", "2")
	s.ok(t, "", "topic", "create", "orders-dlq")

	r := s.sub(t, "create", "work", "--topic", "orders", "--filter", `attributes.type = "OrderCreated"`, "--ack-deadline", "30s",
		"--dead-letter-topic", "orders-dlq", "--max-delivery-attempts", "7", "--min-backoff", "1s", "--max-backoff", "10s")
	if r.code != 0 || r.stdout != "created subscription work on topic orders\n" {
		t.Fatalf("create: %+v", r)
	}
	r = s.sub(t, "create", "hook", "--topic", "orders", "--push-endpoint", "http://127.0.0.1:1/hook")
	if r.code != 0 || !strings.Contains(r.stdout, "push signing secret: ") {
		t.Fatalf("create push: %+v", r)
	}
	// Bad input: exit 2 with the field and the reason.
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"create", "x", "--topic", "orders", "--ack-deadline", "9s"}, exitUsage, "herald: sub create: ackDeadlineSeconds: 9 is out of range: want 10 to 600 seconds\n"},
		{[]string{"create", "x", "--topic", "orders", "--filter", `attributes.a = `}, exitUsage, "herald: sub create: filter: at position 15: want a double-quoted string, got end of filter\n"},
		{[]string{"create", "x"}, exitUsage, "herald: sub create: --topic is required\n"},
		{[]string{"create", "x", "--topic", "nope"}, exitNotFound, "herald: sub create: topic: topic \"nope\" not found\n"},
		{[]string{"create", "work", "--topic", "orders"}, exitConflict, "herald: sub create: name: subscription \"work\" already exists\n"},
		{[]string{"describe", "nope"}, exitNotFound, "herald: sub describe: subscription \"nope\" not found\n"},
		{[]string{"pull", "work", "--max", "0"}, exitUsage, "herald: sub pull: --max 0: want 1 to 1000\n"},
		{[]string{"seek", "work"}, exitUsage, "herald: sub seek: give one of --time or --snapshot\n"},
		{[]string{"ack", "work", "nonsense"}, exitUsage, "herald: sub ack: ackIds[0]: \"nonsense\" is not an ack id\n"},
	} {
		r := s.sub(t, tc.args...)
		if r.code != tc.code || r.stderr != tc.msg {
			t.Errorf("sub %v: exit %d, stderr %q; want %d, %q", tc.args, r.code, r.stderr, tc.code, tc.msg)
		}
	}

	r = s.sub(t, "list")
	if r.code != 0 || !strings.Contains(r.stdout, "work  orders  pull  30s") || !strings.Contains(r.stdout, "hook  orders  push") {
		t.Fatalf("list: %+v", r)
	}
	s.ok(t, "created\n", "produce", "orders", "--header", "ce_specversion=1.0", "--header", "ce_id=1", "--header", "ce_source=shop",
		"--header", "ce_type=OrderCreated")
	s.ok(t, "shipped\n", "produce", "orders", "--header", "ce_specversion=1.0", "--header", "ce_id=2", "--header", "ce_source=shop",
		"--header", "ce_type=OrderShipped")
	r = s.sub(t, "pull", "work", "--wait", "-o", "json")
	var got subscription.Received
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil || got.Message.Attributes["type"] != "OrderCreated" || got.DeliveryAttempt != 1 {
		t.Fatalf("pull: %+v", r)
	}
	r = s.sub(t, "describe", "work")
	if r.code != 0 || !strings.Contains(r.stdout, "Backlog:               1\n") || !strings.Contains(r.stdout, "Outstanding:           1\n") ||
		!strings.Contains(r.stdout, "Dead-letter topic:     orders-dlq after 7 attempts") {
		t.Fatalf("describe: %+v", r)
	}
	if r = s.sub(t, "ack", "work", got.AckID); r.code != 0 || r.stdout != "acknowledged 1 messages\n" {
		t.Fatalf("ack: %+v", r)
	}
	if r = s.sub(t, "ack", "work", got.AckID); r.code != exitFailure || !strings.Contains(r.stderr, "1 of 1 ack ids are invalid") {
		t.Fatalf("second ack: %+v", r)
	}
	// Seek back and pull again, acking in the same command.
	if r = s.sub(t, "seek", "work", "--time", "earliest"); r.code != 0 || !strings.HasPrefix(r.stdout, "seeked subscription work to ") {
		t.Fatalf("seek: %+v", r)
	}
	r = s.sub(t, "pull", "work", "--wait", "--ack")
	if r.code != 0 || !strings.Contains(r.stdout, "OrderCreated") || r.stderr != "pulled 1 messages\n" {
		t.Fatalf("pull --ack: %+v", r)
	}
	if r = s.sub(t, "pull", "work"); r.code != 0 || r.stdout != "" || r.stderr != "pulled 0 messages\n" {
		t.Fatalf("pull after ack: %+v", r)
	}
	if r = s.sub(t, "delete", "work", "hook"); r.code != 0 || r.stdout != "deleted subscription work\ndeleted subscription hook\n" {
		t.Fatalf("delete: %+v", r)
	}
	if r = s.sub(t, "delete", "work"); r.code != exitNotFound || r.stderr != "herald: sub delete: subscription \"work\" not found\n" {
		t.Fatalf("delete again: %+v", r)
	}
	if r = s.sub(t, "list", "-o", "json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("list after delete: %+v", r)
	}
	r = s.run(t, "", "sub", "list", "--http", "ftp://x")
	if r.code != exitUsage || !strings.Contains(r.stderr, `--http "ftp://x"`) {
		t.Fatalf("bad --http: %+v", r)
	}
}
