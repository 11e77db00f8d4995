package httpstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/httpapi"
	"github.com/heraldhq/herald/eventstore/httpstore"
)

// Two clients (as two processes would) compete for one server-hosted
// group: every event is handled once; a poison event is parked after its
// retries and delivered again by a replay.
func TestServerHostedGroup(t *testing.T) {
	r := startRemote(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 40; i++ {
		if _, err := r.client.Append(ctx, fmt.Sprintf("task-%d", i%4), eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "Task", Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := httpapi.GroupConfig{Filter: httpapi.WireFilter{StreamPrefix: "task-"}, MaxRetries: 2, AckTimeoutMs: 5000}
	var mu sync.Mutex
	handledBy := map[string][]int{}
	poison := 0
	var wg sync.WaitGroup
	cctx, stop := context.WithCancel(ctx)
	for c := 0; c < 2; c++ {
		cl := httpstore.New(r.server.URL, nil)
		g, err := cl.JoinGroup(ctx, "workers", cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				d, err := g.Receive(cctx)
				if err != nil {
					return
				}
				if string(d.Event.Data) == "13" {
					mu.Lock()
					poison++
					mu.Unlock()
					d.Nack(cctx, "poison")
					continue
				}
				mu.Lock()
				handledBy[d.Event.ID] = append(handledBy[d.Event.ID], c)
				mu.Unlock()
				if err := d.Ack(cctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(handledBy)
		mu.Unlock()
		if n == 39 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %d of 39", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	per := map[int]int{}
	for id, by := range handledBy {
		if len(by) != 1 {
			t.Fatalf("event %s handled %d times", id, len(by))
		}
		per[by[0]]++
	}
	if poison != 2 {
		t.Fatalf("poison delivered %d times, want 2", poison)
	}
	mu.Unlock()
	if per[0] == 0 || per[1] == 0 {
		t.Logf("one consumer took everything (%v): allowed, but unusual", per)
	}
	// A conflicting configuration is refused.
	if _, err := r.client.JoinGroup(ctx, "workers", httpapi.GroupConfig{MaxRetries: 9}); err == nil {
		t.Fatal("joined with another configuration")
	}
	stop()
	wg.Wait()
	g, err := r.client.JoinGroup(ctx, "workers", cfg)
	if err != nil {
		t.Fatal(err)
	}
	n, err := g.ReplayParked(ctx)
	if err != nil || n != 1 {
		t.Fatalf("replay: %d %v", n, err)
	}
	d, err := g.Receive(ctx)
	if err != nil || string(d.Event.Data) != "13" {
		t.Fatalf("replayed %q %v", d.Event.Data, err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err == nil {
		t.Fatal("a second ack of one delivery was accepted")
	}
}

// A group the server hosts runs again after the server restarts, from its
// checkpoint, without being created again; a deleted one does not.
func TestServerHostedGroupSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	r := startRemote(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 6; i++ {
		if _, err := r.client.Append(ctx, "order-1", eventstore.Any, eventstore.EventData{ID: eventstore.NewID(), Type: "Placed", Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := httpapi.GroupConfig{Filter: httpapi.WireFilter{StreamPrefix: "order-"}, AckTimeoutMs: 5000}
	g, err := r.client.JoinGroup(ctx, "billing", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.client.JoinGroup(ctx, "dropped", httpapi.GroupConfig{Stream: "order-1"}); err != nil {
		t.Fatal(err)
	}
	if err := r.client.DeleteGroup(ctx, "dropped"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		d, err := g.Receive(ctx)
		if err != nil || string(d.Event.Data) != fmt.Sprint(i) {
			t.Fatalf("delivery %d: %q %v", i, d.Event.Data, err)
		}
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r.stop()

	r = startRemote(t, dir)
	g = r.client.Group("billing") // no JoinGroup: the server restored it
	for i := 3; i < 6; i++ {
		d, err := g.Receive(ctx)
		if err != nil || string(d.Event.Data) != fmt.Sprint(i) {
			t.Fatalf("after restart, delivery %d: %q %v", i, d.Event.Data, err)
		}
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.client.Group("dropped").Receive(ctx); !errors.Is(err, eventstore.ErrGroupNotFound) {
		t.Fatalf("deleted group after restart: %v, want ErrGroupNotFound", err)
	}
	if _, err := r.client.JoinGroup(ctx, "billing", httpapi.GroupConfig{Stream: "order-1"}); !errors.Is(err, eventstore.ErrGroupExists) {
		t.Fatalf("join with another configuration: %v, want ErrGroupExists", err)
	}
}
