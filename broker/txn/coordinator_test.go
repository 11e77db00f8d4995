package txn

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

type memStore struct {
	mu   sync.Mutex
	recs []KV
}

func (s *memStore) Append(ctx context.Context, recs []KV) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, recs...)
	return nil
}

func (s *memStore) Replay(ctx context.Context, fn func(KV) error) error {
	s.mu.Lock()
	recs := append([]KV(nil), s.recs...)
	s.mu.Unlock()
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

type marker struct {
	pid    int64
	epoch  int16
	commit bool
	parts  []TopicPartition
}

type fakeMarkers struct {
	mu      sync.Mutex
	fail    error
	written []marker
}

func (m *fakeMarkers) WriteTxnMarkers(ctx context.Context, pid int64, epoch int16, commit bool, parts []TopicPartition) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.written = append(m.written, marker{pid, epoch, commit, parts})
	return nil
}

func (m *fakeMarkers) get() []marker {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]marker(nil), m.written...)
}

type fakeGroups struct {
	mu   sync.Mutex
	done []string
}

func (g *fakeGroups) CompleteTxnOffsets(ctx context.Context, group string, pid int64, commit bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done = append(g.done, group)
	return nil
}

func openCoord(t *testing.T, st *memStore, m *fakeMarkers, g *fakeGroups) *Coordinator {
	t.Helper()
	var next int64
	var mu sync.Mutex
	c, err := New(context.Background(), Config{
		Store: st, Markers: m, Groups: g, CheckInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewProducerID: func(context.Context) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			next++
			return 1000 + next, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitState(t *testing.T, c *Coordinator, id string, want State) Txn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tx, _ := c.Describe(id)
		if tx.State == want {
			return tx
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v, want %v", id, tx.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCoordinatorRestartCompletesPrepared: a commit decided but not
// completed (markers failing) is completed by the next coordinator.
func TestCoordinatorRestartCompletesPrepared(t *testing.T) {
	ctx := context.Background()
	st, m, g := &memStore{}, &fakeMarkers{}, &fakeGroups{}
	c := openCoord(t, st, m, g)
	pid, epoch, err := c.InitProducerID(ctx, "tx", time.Minute, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddPartitions(ctx, "tx", pid, epoch, []TopicPartition{tpA}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddGroup(ctx, "tx", pid, epoch, "grp"); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.fail = errors.New("disk on fire")
	m.mu.Unlock()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err = c.EndTxn(short, "tx", pid, epoch, true)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("EndTxn with failing markers: %v", err)
	}
	if tx, _ := c.Describe("tx"); tx.State != PrepareCommit {
		t.Fatalf("state %v, want PrepareCommit", tx.State)
	}
	c.Close()
	if _, _, err := c.InitProducerID(ctx, "tx", time.Minute, -1, -1); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}

	m2 := &fakeMarkers{}
	c2 := openCoord(t, st, m2, g)
	waitState(t, c2, "tx", CompleteCommit)
	if w := m2.get(); len(w) != 1 || !w[0].commit || w[0].pid != pid || w[0].parts[0] != tpA {
		t.Fatalf("markers after restart: %+v", w)
	}
	if len(g.done) != 1 || g.done[0] != "grp" {
		t.Fatalf("groups completed: %v", g.done)
	}
	// The retry of the client's EndTxn now succeeds.
	if err := c2.EndTxn(ctx, "tx", pid, epoch, true); err != nil {
		t.Fatalf("EndTxn retry: %v", err)
	}
}

// TestCoordinatorTimeoutAndFencing: an expired transaction is aborted with
// a bumped epoch; an init while ongoing aborts it and fences the producer.
func TestCoordinatorTimeoutAndFencing(t *testing.T) {
	ctx := context.Background()
	st, m := &memStore{}, &fakeMarkers{}
	c := openCoord(t, st, m, nil)
	pid, e0, _ := c.InitProducerID(ctx, "slow", 50*time.Millisecond, -1, -1)
	if err := c.AddPartitions(ctx, "slow", pid, e0, []TopicPartition{tpA}); err != nil {
		t.Fatal(err)
	}
	tx := waitState(t, c, "slow", CompleteAbort)
	if tx.Epoch != e0+1 {
		t.Fatalf("epoch after timeout %d, want %d", tx.Epoch, e0+1)
	}
	if err := c.EndTxn(ctx, "slow", pid, e0, true); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("commit after the timeout: %v", err)
	}
	if w := m.get(); len(w) != 1 || w[0].commit || w[0].epoch != e0+1 {
		t.Fatalf("markers: %+v", w)
	}

	pid, e0, _ = c.InitProducerID(ctx, "z", time.Minute, -1, -1)
	c.AddPartitions(ctx, "z", pid, e0, []TopicPartition{tpB})
	p2, e2, err := c.InitProducerID(ctx, "z", time.Minute, -1, -1)
	if err != nil || p2 != pid || e2 != e0+2 {
		t.Fatalf("second init: %d %d %v", p2, e2, err)
	}
	if err := c.VerifyProduce(pid, e0, "b", 1); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("zombie produce: %v", err)
	}
	if got := c.List([]State{CompleteAbort}, nil, 0); len(got) != 1 || got[0].ID != "slow" {
		t.Fatalf("List(CompleteAbort) = %+v", got)
	}
	if _, err := c.Describe("nope"); !errors.Is(err, ErrTransactionalIDNotFound) {
		t.Fatalf("Describe unknown: %v", err)
	}
	// The store replays to the same state.
	c.Close()
	c3 := openCoord(t, st, m, nil)
	if tx, _ := c3.Describe("z"); tx.Epoch != e2 || tx.State != Empty {
		t.Fatalf("after replay: %+v", tx)
	}
}
