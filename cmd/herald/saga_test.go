package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/saga"
)

// TestSagaCommands runs herald saga list|show|retry|abort against an
// engine's HTTP API over an in-process server. The participant of the first
// step holds its command until the operator has aborted the saga, then
// answers it; so the saga is running for every command that needs it, on a
// machine of any speed.
func TestSagaCommands(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "svc.a")
	s.ok(t, "", "topic", "create", "svc.b")
	def := &saga.Definition{Name: "pair", Steps: []saga.Step{
		{Name: "first", Command: saga.Command{Type: "DoA", Topic: "svc.a"}, Success: []string{"ADone"},
			Timeout: saga.Duration(time.Minute), Retry: saga.RetryPolicy{MaxAttempts: 1},
			Compensation: &saga.Compensation{Command: saga.Command{Type: "UndoA", Topic: "svc.a"}, Success: []string{"AUndone"}}},
		{Name: "second", Command: saga.Command{Type: "DoB", Topic: "svc.b"}, Success: []string{"BDone"}},
	}}
	ctx := context.Background()
	held := make(chan *event.Event, 1)
	participant, err := client.NewSubscriber([]string{s.addr}, "svc-a", []string{"svc.a"}, func(ctx context.Context, e *event.Event) error {
		switch e.Type {
		case "DoA":
			select {
			case held <- e.Clone():
			default:
			}
			return nil
		case "UndoA":
			return client.Publish(ctx, saga.ReplyTopic(e), saga.Reply(e, "/svc/a", "AUndone", nil))
		}
		return nil
	}, client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- participant.Run(ctx) }()
	defer func() {
		participant.Close()
		<-runDone
	}()
	e, err := saga.Start(ctx, saga.Config{Brokers: []string{s.addr}, Partitions: 2, Definitions: []*saga.Definition{def},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	mux := http.NewServeMux()
	e.Routes(mux)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	if err := e.StartSaga(ctx, "pair", "order-7", json.RawMessage(`{"n":7}`)); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := e.WaitFor(wctx, "order-7", func(in *saga.Instance) bool { return in.CurrentStep() == "first" }); err != nil {
		t.Fatal(err)
	}
	h := []string{"--http", hs.URL}
	out := s.ok(t, "", append([]string{"saga", "list"}, h...)...)
	if !strings.Contains(out, "order-7") || !strings.Contains(out, "pair@1") || !strings.Contains(out, "running") {
		t.Errorf("saga list:\n%s", out)
	}
	if out := s.ok(t, "", append([]string{"saga", "list", "--status", "completed"}, h...)...); strings.Contains(out, "order-7") {
		t.Errorf("saga list --status completed:\n%s", out)
	}
	s.fails(t, exitUsage, `status: "done": want running`, "", append([]string{"saga", "list", "--status", "done"}, h...)...)
	s.fails(t, exitNotFound, `saga "nope" not found`, "", append([]string{"saga", "show", "nope"}, h...)...)
	s.fails(t, exitConflict, `step "first" of saga order-7 is running, not parked`, "", append([]string{"saga", "retry", "order-7", "first"}, h...)...)
	s.fails(t, exitNotFound, `has no step "third"`, "", append([]string{"saga", "retry", "order-7", "third"}, h...)...)
	out = s.ok(t, "", append([]string{"saga", "abort", "order-7", "--reason", "customer left"}, h...)...)
	if out != "aborting saga order-7: its completed steps will be compensated\n" {
		t.Errorf("saga abort: %q", out)
	}
	// The first step's reply comes after the abort: its success is undone.
	var cmd *event.Event
	select {
	case cmd = <-held:
	case <-wctx.Done():
		t.Fatal("the first step's command never reached its participant")
	}
	pub, err := client.NewPublisher([]string{s.addr})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(wctx, saga.ReplyTopic(cmd), saga.Reply(cmd, "/svc/a", "ADone", nil)); err != nil {
		t.Fatal(err)
	}
	in, err := e.WaitFor(wctx, "order-7", func(in *saga.Instance) bool { return in.Status == saga.StatusCompensated })
	if err != nil {
		t.Fatalf("%+v %v", in, err)
	}
	out = s.ok(t, "", append([]string{"saga", "show", "order-7"}, h...)...)
	for _, want := range []string{"Status:      compensated", "aborted by an operator: customer left", "command sent", "compensation sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("saga show lacks %q:\n%s", want, out)
		}
	}
	for _, re := range []string{`(?m)^first +compensated `, `(?m)^second +skipped `} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("saga show lacks a line matching %s:\n%s", re, out)
		}
	}
	out = s.ok(t, "", append([]string{"saga", "show", "order-7", "-o", "json"}, h...)...)
	var v saga.InstanceView
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Status != saga.StatusCompensated || len(v.History) < 4 {
		t.Errorf("saga show -o json: %v\n%s", err, out)
	}
	s.fails(t, exitConflict, "saga order-7 is compensated, not running", "", append([]string{"saga", "abort", "order-7"}, h...)...)
	s.fails(t, exitFailure, "cannot reach", "", "saga", "list", "--http", "http://127.0.0.1:1")
}
