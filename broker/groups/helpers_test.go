package groups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestMain fails the run if any goroutine of this package outlives the
// tests: every Coordinator's goroutines must end with Close.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintln(os.Stderr, "goroutines leaked:\n"+leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func leakedGoroutines(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "broker/groups.(*Coordinator)") || strings.Contains(g, "broker/groups.await") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// clock is a scripted Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t     *testing.T
	c     *Coordinator
	clk   *clock
	store Store
	cfg   Config
	ctx   context.Context
}

func quietLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clk: &clock{t: time.Unix(1_700_000_000, 0)}, store: NewMemoryStore(), ctx: t.Context()}
	e.cfg = Config{Store: e.store, Logger: quietLogger(t), Now: e.clk.Now}
	if mod != nil {
		mod(&e.cfg)
	}
	e.store = e.cfg.Store
	e.open()
	t.Cleanup(func() { e.c.Close() })
	return e
}

func (e *env) open() {
	e.t.Helper()
	c, err := New(e.ctx, e.cfg)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.c = c
}

// reopen closes the coordinator and starts a new one on the same store.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.c.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

func (e *env) advance(d time.Duration) {
	e.settle()
	e.clk.Advance(d)
	e.c.tick()
}

func consumerMeta(topics ...string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Version = 0
	m.Topics = topics
	return m.AppendTo(nil)
}

func joinReq(group, member string, protos ...string) JoinRequest {
	if len(protos) == 0 {
		protos = []string{"range"}
	}
	var ps []Protocol
	for _, p := range protos {
		ps = append(ps, Protocol{Name: p, Metadata: consumerMeta("t1")})
	}
	return JoinRequest{Group: group, MemberID: member, ProtocolType: "consumer", Protocols: ps,
		SessionTimeout: 10 * time.Second, RebalanceTimeout: 20 * time.Second, ClientID: "client", ClientHost: "/127.0.0.1"}
}

// joinAsync runs Join in a goroutine the test waits for.
func (e *env) joinAsync(ctx context.Context, req JoinRequest) <-chan JoinResponse {
	ch := make(chan JoinResponse, 1)
	go func() { ch <- e.c.Join(ctx, req) }()
	return ch
}

func (e *env) syncAsync(ctx context.Context, req SyncRequest) <-chan SyncResponse {
	ch := make(chan SyncResponse, 1)
	go func() { ch <- e.c.Sync(ctx, req) }()
	return ch
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for an answer")
		panic("unreachable")
	}
}

func notYet[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("answered early: %+v", v)
	case <-time.After(20 * time.Millisecond):
	}
}

// waitFor polls cond, run on the actor, until it holds.
func (e *env) waitFor(what string, cond func(*state) bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		e.c.inspect(func(s *state) { ok = cond(s) })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitParked waits until n members of group await a join answer.
func (e *env) waitParked(group string, n int) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%d parked joins in %s", n, group), func(s *state) bool {
		g := s.groups[group]
		if g == nil {
			return n == 0
		}
		k := 0
		for _, m := range g.order {
			if m.joinW != nil {
				k++
			}
		}
		return k == n
	})
}

func (e *env) waitSyncParked(group string, n int) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%d parked syncs in %s", n, group), func(s *state) bool {
		g := s.groups[group]
		k := 0
		for _, m := range g.order {
			if m.syncW != nil {
				k++
			}
		}
		return k == n
	})
}

func (e *env) state(group string) string { return e.c.Describe(group).State }

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) || (want == nil && got != nil) {
		t.Fatalf("%s: error %v, want %v", what, got, want)
	}
}

// stableGroup joins n members into group one after another and syncs them
// with assignment "a-<member id>"; it returns the member ids, leader first.
func (e *env) stableGroup(group string, n int) (ids []string, gen int32) {
	e.t.Helper()
	r := e.c.Join(e.ctx, joinReq(group, ""))
	wantErr(e.t, "first join", r.Err, nil)
	ids = append(ids, r.MemberID)
	gen = r.Generation
	for i := 1; i < n; i++ {
		// The newcomer waits for the existing members to rejoin.
		ch := e.joinAsync(e.ctx, joinReq(group, ""))
		e.waitFor("rebalance", func(s *state) bool { return s.groups[group] != nil && s.groups[group].state == statePreparing })
		var chs []<-chan JoinResponse
		for _, id := range ids {
			chs = append(chs, e.joinAsync(e.ctx, joinReq(group, id)))
		}
		nr := recv(e.t, ch)
		wantErr(e.t, "join", nr.Err, nil)
		for _, c := range chs {
			wantErr(e.t, "rejoin", recv(e.t, c).Err, nil)
		}
		ids = append(ids, nr.MemberID)
		gen = nr.Generation
	}
	e.syncAll(group, ids, gen)
	return ids, gen
}

// syncAll syncs ids (ids[0] the leader) and checks each gets its assignment.
func (e *env) syncAll(group string, ids []string, gen int32) {
	e.t.Helper()
	var chs []<-chan SyncResponse
	for _, id := range ids[1:] {
		chs = append(chs, e.syncAsync(e.ctx, SyncRequest{Group: group, MemberID: id, Generation: gen}))
	}
	e.waitSyncParked(group, len(ids)-1)
	as := map[string][]byte{}
	for _, id := range ids {
		as[id] = []byte("a-" + id)
	}
	lr := e.c.Sync(e.ctx, SyncRequest{Group: group, MemberID: ids[0], Generation: gen, ProtocolType: "consumer", Assignments: as})
	wantErr(e.t, "leader sync", lr.Err, nil)
	if string(lr.Assignment) != "a-"+ids[0] {
		e.t.Fatalf("leader got assignment %q", lr.Assignment)
	}
	for i, ch := range chs {
		r := recv(e.t, ch)
		wantErr(e.t, "follower sync", r.Err, nil)
		if string(r.Assignment) != "a-"+ids[i+1] || r.Protocol == "" {
			e.t.Fatalf("member %s got %+v", ids[i+1], r)
		}
	}
	if st := e.state(group); st != "Stable" {
		e.t.Fatalf("state %s after sync, want Stable", st)
	}
}

var _ = prometheus.NewRegistry

func nmembers(s *state, group string) int {
	if g := s.groups[group]; g != nil {
		return len(g.members)
	}
	return 0
}

// rebalance has the leader ids[0] rejoin first (starting a rebalance: a
// follower rejoining a Stable group first would just get the current
// generation back), then the others; it returns their answers.
func (e *env) rebalance(group string, ids []string) []JoinResponse {
	e.t.Helper()
	chs := []<-chan JoinResponse{e.joinAsync(e.ctx, joinReq(group, ids[0]))}
	e.waitParked(group, 1)
	for _, id := range ids[1:] {
		chs = append(chs, e.joinAsync(e.ctx, joinReq(group, id)))
	}
	var rs []JoinResponse
	for _, ch := range chs {
		r := recv(e.t, ch)
		wantErr(e.t, "rebalance join", r.Err, nil)
		rs = append(rs, r)
	}
	return rs
}

// settle waits until no store write is queued or in flight.
func (e *env) settle() {
	e.t.Helper()
	e.waitFor("store writes", func(s *state) bool { return len(s.queue) == 0 && len(s.inflight) == 0 })
}

// slogTo logs to w (nil: nowhere).
func slogTo(w io.Writer) *slog.Logger {
	if w == nil {
		w = io.Discard
	}
	return slog.New(slog.NewTextHandler(w, nil))
}
