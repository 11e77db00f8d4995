package jobreg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/server"
)

// TestRegistry registers jobs on a real server: a job that fails is run
// again with backoff and shows failed meanwhile; definitions survive a
// reopen, one that no longer opens shows failed there; a deleted job is
// stopped and stays deleted.
func TestRegistry(t *testing.T) {
	srv, err := server.Start(context.Background(), server.Config{Broker: broker.Config{DataDir: t.TempDir()},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	var runs, stops atomic.Int64
	valid := func(def []byte) bool { return !strings.HasPrefix(string(def), "bad") }
	open := func(_ Settings, name string, def []byte) (Job, error) {
		if !valid(def) {
			return Job{}, errors.New("definition " + string(def) + " is bad")
		}
		return Job{Run: func(ctx context.Context) error {
			if runs.Add(1) == 1 && name == "flaky" {
				return errors.New("first run fails")
			}
			<-ctx.Done()
			return nil
		}, Stop: func() { stops.Add(1) }}, nil
	}
	cfg := Config[Entry]{Settings: Settings{Brokers: []string{srv.KafkaAddr()}, Topic: "_jobs", RetryBackoff: time.Second,
		Logger: slog.New(slog.DiscardHandler)}, Kind: "job", Open: open, Describe: func(e Entry) Entry { return e }}
	reg, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Create(ctx, "flaky", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Create(ctx, "flaky", []byte("v1")); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), `job "flaky"`) {
		t.Fatalf("create twice: %v", err)
	}
	if _, err := reg.Create(ctx, "x", []byte("bad")); err == nil || !strings.Contains(err.Error(), "is bad") {
		t.Fatalf("create invalid: %v", err)
	}
	if _, err := reg.Get("x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused definition was registered: %v", err)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	sawFailed := false
	waitFor("the failed job was not run again", func() bool {
		e, _ := reg.Get("flaky")
		sawFailed = sawFailed || e.Status == "failed" && e.Error == "first run fails"
		return runs.Load() == 2 && e.Status == "running"
	})
	if !sawFailed { // it shows for the whole backoff, a second
		t.Fatal("the job did not show failed between its runs")
	}
	if _, err := reg.Create(ctx, "b", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	if stops.Load() != 2 {
		t.Fatalf("stops after close: %d, want 2", stops.Load())
	}
	if _, err := reg.Create(ctx, "c", []byte("v")); !errors.Is(err, ErrClosed) {
		t.Fatalf("create after close: %v", err)
	}

	// b's definition no longer opens after the reopen.
	valid = func(def []byte) bool { return string(def) != "v2" }
	reg2, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Close()
	l := reg2.List()
	if len(l) != 2 || l[0].Name != "b" || l[0].Status != "failed" || !strings.Contains(l[0].Error, "v2 is bad") ||
		l[1].Name != "flaky" || l[1].Status != "running" || string(l[1].Def) != "v1" {
		t.Fatalf("after reopen: %+v", l)
	}
	if err := reg2.Delete(ctx, "flaky"); err != nil {
		t.Fatal(err)
	}
	if err := reg2.Delete(ctx, "flaky"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if err := reg2.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	reg3, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg3.Close()
	if l := reg3.List(); len(l) != 0 {
		t.Fatalf("deleted jobs came back: %+v", l)
	}
}

// TestStartWhileRunFails: a job whose run fails at once marks itself failed
// while Create is still returning its entry; under -race this once
// reported a data race (the entry was read after the job's goroutine
// started).
func TestStartWhileRunFails(t *testing.T) {
	srv, err := server.Start(context.Background(), server.Config{Broker: broker.Config{DataDir: t.TempDir()},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	open := func(Settings, string, []byte) (Job, error) {
		return Job{Run: func(context.Context) error { return errors.New("fails at once") }}, nil
	}
	cfg := Config[Entry]{Settings: Settings{Brokers: []string{srv.KafkaAddr()}, Topic: "_jobs", RetryBackoff: time.Hour,
		Logger: slog.New(slog.DiscardHandler)}, Kind: "job", Open: open, Describe: func(e Entry) Entry { return e }}
	reg, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	for i := range 50 {
		if _, err := reg.Create(ctx, fmt.Sprintf("j%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
}
