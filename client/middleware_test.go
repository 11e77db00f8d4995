package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// fakeClock is a manual clock; its Sleep advances it instead of waiting.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.mu.Unlock()
	c.Advance(d)
	return nil
}

// script returns a handler that returns errs[i] on call i (nil past the end)
// and counts calls.
func script(calls *int, errs ...error) HandlerFunc {
	return func(ctx context.Context, e *event.Event) error {
		i := *calls
		*calls++
		if i < len(errs) {
			return errs[i]
		}
		return nil
	}
}

// handlerCtx is the context a subscriber gives a handler.
func handlerCtx(m *Metrics) (context.Context, *outbox) {
	ob := &outbox{}
	d := &Delivery{Group: "g", Topic: "in", Partition: 3, Offset: 42, Timestamp: time.UnixMilli(1_700_000_000_000),
		Message: event.Message{Key: []byte("k"), Value: []byte("v"), Headers: []event.Header{{Key: "ce_id", Value: []byte("e1")}}}}
	ctx := context.WithValue(context.Background(), deliveryKey, d)
	ctx = context.WithValue(ctx, outboxKey, ob)
	ctx = context.WithValue(ctx, envKey, &env{metrics: m, logger: discard()})
	return ctx, ob
}

func ev() *event.Event { return &event.Event{ID: "e1", Source: "/t", Type: "t"} }

var errBoom = errors.New("boom")

func TestRetry(t *testing.T) {
	half := func() float64 { return 0.5 }
	for _, tc := range []struct {
		name      string
		policy    RetryPolicy
		errs      []error
		wantCalls int
		wantErr   bool
		wantSleep []time.Duration
	}{
		{"succeeds first", RetryPolicy{}, nil, 1, false, nil},
		{"succeeds third", RetryPolicy{MaxAttempts: 5}, []error{errBoom, errBoom}, 3, false,
			[]time.Duration{50 * time.Millisecond, 100 * time.Millisecond}},
		{"exhausts attempts", RetryPolicy{MaxAttempts: 3}, []error{errBoom, errBoom, errBoom, errBoom}, 3, true,
			[]time.Duration{50 * time.Millisecond, 100 * time.Millisecond}},
		{"permanent", RetryPolicy{MaxAttempts: 9}, []error{Permanent(errBoom)}, 1, true, nil},
		{"backoff capped", RetryPolicy{MaxAttempts: 5, MaxBackoff: 300 * time.Millisecond},
			[]error{errBoom, errBoom, errBoom, errBoom, errBoom}, 5, true,
			[]time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond}},
		{"max elapsed", RetryPolicy{MaxAttempts: 100, MaxElapsed: 320 * time.Millisecond},
			[]error{errBoom, errBoom, errBoom, errBoom, errBoom, errBoom}, 4, true,
			[]time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}[:2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			p := tc.policy
			p.Now, p.Sleep, p.Rand = clk.Now, clk.Sleep, half
			calls := 0
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			ctx, _ := handlerCtx(m)
			err := Retry(p)(script(&calls, tc.errs...))(ctx, ev())
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			_ = tc.wantCalls
			if tc.name != "max elapsed" && calls != tc.wantCalls {
				t.Fatalf("calls = %d, want %d", calls, tc.wantCalls)
			}
			if tc.name != "max elapsed" && fmt.Sprint(clk.sleeps) != fmt.Sprint(tc.wantSleep) {
				t.Fatalf("sleeps = %v, want %v", clk.sleeps, tc.wantSleep)
			}
			var re *RetryError
			if tc.wantErr {
				if !errors.As(err, &re) || re.Attempts != calls || !errors.Is(err, errBoom) {
					t.Fatalf("err = %#v", err)
				}
				if re.LastFailure.Sub(re.FirstFailure) != sum(clk.sleeps) {
					t.Fatalf("first %v last %v sleeps %v", re.FirstFailure, re.LastFailure, clk.sleeps)
				}
			}
			if got := metricValue(m.retries.WithLabelValues("g", "in")); int(got) != len(clk.sleeps) {
				t.Fatalf("retries metric %v, sleeps %d", got, len(clk.sleeps))
			}
		})
	}
	// Max elapsed: no attempt starts at or past the bound (waits 50,100,200: the third would end at 350).
	clk := newClock()
	calls := 0
	ctx, _ := handlerCtx(nil)
	err := Retry(RetryPolicy{MaxAttempts: 100, MaxElapsed: 320 * time.Millisecond, Now: clk.Now, Sleep: clk.Sleep,
		Rand: func() float64 { return 0.5 }})(script(&calls, errBoom, errBoom, errBoom, errBoom, errBoom))(ctx, ev())
	if err == nil || calls != 3 || sum(clk.sleeps) != 150*time.Millisecond {
		t.Fatalf("max elapsed: err %v calls %d sleeps %v", err, calls, clk.sleeps)
	}
	// Full jitter: the wait is Rand × cap.
	p := RetryPolicy{InitialBackoff: time.Second, Rand: func() float64 { return 0 }}
	if p.Backoff(3) != 0 {
		t.Fatal("jitter 0 should wait 0")
	}
	p.Rand = func() float64 { return 0.999 }
	if b := p.Backoff(3); b < 3990*time.Millisecond || b >= 4*time.Second {
		t.Fatalf("Backoff(3) = %v", b)
	}
	// Shutdown stops retrying.
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls = 0
	if err := Retry(RetryPolicy{})(script(&calls, errBoom, errBoom))(cctx, ev()); !errors.Is(err, errBoom) || calls != 1 {
		t.Fatalf("canceled: %v after %d calls", err, calls)
	}
}

func sum(ds []time.Duration) (s time.Duration) {
	for _, d := range ds {
		s += d
	}
	return s
}

func TestDeadLetter(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	ctx, ob := handlerCtx(m)
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := DeadLetter("dlq")(func(ctx context.Context, e *event.Event) error {
		return &RetryError{Err: errBoom, Attempts: 4, FirstFailure: first, LastFailure: first.Add(time.Second)}
	})
	if err := h(ctx, ev()); err != nil {
		t.Fatalf("DeadLetter returned %v", err)
	}
	recs, _, _ := ob.take()
	if len(recs) != 1 || recs[0].Topic != "dlq" || string(recs[0].Key) != "k" || string(recs[0].Value) != "v" {
		t.Fatalf("records %+v", recs)
	}
	if !recs[0].Timestamp.Equal(time.UnixMilli(1_700_000_000_000)) {
		t.Fatalf("dead letter timestamp %v, want the original record's", recs[0].Timestamp)
	}
	got := headers(recs[0])
	want := map[string]string{"ce_id": "e1", HeaderDLQTopic: "in", HeaderDLQPartition: "3", HeaderDLQOffset: "42",
		HeaderDLQGroup: "g", HeaderDLQError: "gave up after 4 attempts: boom", HeaderDLQReason: "failed",
		HeaderDLQAttempts: "4", HeaderDLQFirstFailure: "2026-01-01T00:00:00Z", HeaderDLQLastFailure: "2026-01-01T00:00:01Z"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("headers\n got %v\nwant %v", got, want)
	}
	if metricValue(m.deadLettered.WithLabelValues("g", "in", "failed")) != 1 {
		t.Fatal("dlq metric")
	}
	// Shutdown: not forwarded.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := DeadLetter("dlq")(func(context.Context, *event.Event) error { return errBoom })(cctx, ev()); err == nil {
		t.Fatal("forwarded during shutdown")
	}
}

func headers(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

func TestIdempotent(t *testing.T) {
	clk := newClock()
	store := NewMemoryStore(time.Minute, clk.Now)
	m := NewMetrics(prometheus.NewRegistry())
	calls := 0
	h := Idempotent(store)(script(&calls, errBoom))
	run := func() error {
		ctx, ob := handlerCtx(m)
		err := h(ctx, ev())
		_, marks, _ := ob.take()
		for _, mk := range marks { // as the subscriber does for a handled event that became durable
			mk.pending()
			mk.commit()
		}
		return err
	}
	if err := run(); err == nil || calls != 1 {
		t.Fatal("failure should not mark")
	}
	if err := run(); err != nil || calls != 2 {
		t.Fatal("second delivery should run")
	}
	if err := run(); err != nil || calls != 2 {
		t.Fatalf("duplicate ran: calls %d", calls)
	}
	if metricValue(m.duplicates.WithLabelValues("g", "in")) != 1 {
		t.Fatal("duplicates metric")
	}
	clk.Advance(time.Minute)
	if err := run(); err != nil || calls != 3 {
		t.Fatalf("after TTL the id is forgotten: calls %d", calls)
	}
	// A mark is invisible until the subscriber takes the event as handled
	// (an outer middleware could still fail it), visible while its write is
	// pending, and withdrawn if the event's writes fail.
	ctx, ob := handlerCtx(nil)
	e := ev()
	e.ID = "e2"
	if err := Idempotent(store)(script(new(int)))(ctx, e); err != nil {
		t.Fatal(err)
	}
	if seen, _ := store.Seen(ctx, "e2"); seen {
		t.Fatal("mark visible before the handler's success was final")
	}
	_, marks, _ := ob.take()
	marks[0].pending()
	if seen, _ := store.Seen(ctx, "e2"); !seen {
		t.Fatal("pending mark invisible: a redelivery in the same batch would run again")
	}
	marks[0].undo()
	if seen, _ := store.Seen(ctx, "e2"); seen {
		t.Fatal("a failed mark is still visible: the redelivered event would be skipped")
	}
}

func TestBreaker(t *testing.T) {
	clk := newClock()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var logs strings.Builder
	ctx, _ := handlerCtx(m)
	ctx = context.WithValue(ctx, envKey, &env{metrics: m, logger: textLogger(&logs)})
	b := NewBreaker(BreakerConfig{Name: "db", ConsecutiveFailures: 3, CoolDown: time.Second, Now: clk.Now})
	fail := true
	calls := 0
	h := b.Middleware()(func(context.Context, *event.Event) error {
		calls++
		if fail {
			return errBoom
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		if err := h(ctx, ev()); !errors.Is(err, errBoom) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if b.State() != BreakerOpen {
		t.Fatalf("state %v after 3 failures", b.State())
	}
	if err := h(ctx, ev()); !errors.Is(err, ErrBreakerOpen) || calls != 3 {
		t.Fatalf("open breaker let a call through: %v, calls %d", err, calls)
	}
	if got := metricValue(m.breakerState.WithLabelValues("db")); got != 2 {
		t.Fatalf("breaker gauge %v", got)
	}
	clk.Advance(time.Second)
	if b.State() != BreakerHalfOpen {
		t.Fatalf("state %v after cool-down", b.State())
	}
	if err := h(ctx, ev()); !errors.Is(err, errBoom) || b.State() != BreakerOpen {
		t.Fatalf("failed probe: %v, %v", err, b.State())
	}
	clk.Advance(time.Second)
	fail = false
	if err := h(ctx, ev()); err != nil || b.State() != BreakerClosed {
		t.Fatalf("probe: %v, %v", err, b.State())
	}
	for _, want := range []string{"to=open", "to=half-open", "to=closed", "reason=\"3 consecutive failures\""} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
	// Ratio rule: 50% over the window, with at least 4 calls.
	rb := NewBreaker(BreakerConfig{ConsecutiveFailures: -1, FailureRatio: 0.5, MinCalls: 4, Window: time.Minute, Now: clk.Now})
	pattern := []bool{true, false, true, false}
	i := 0
	rh := rb.Middleware()(func(context.Context, *event.Event) error {
		f := pattern[i%len(pattern)]
		i++
		if f {
			return errBoom
		}
		return nil
	})
	for j := 0; j < 3; j++ {
		rh(ctx, ev())
		if rb.State() != BreakerClosed {
			t.Fatalf("opened after %d calls", j+1)
		}
	}
	rh(ctx, ev())
	if rb.State() != BreakerOpen {
		t.Fatal("ratio rule did not open")
	}
	// Permanent errors are the input's fault, not the dependency's.
	pb := NewBreaker(BreakerConfig{ConsecutiveFailures: 1, Now: clk.Now})
	pb.Middleware()(func(context.Context, *event.Event) error { return Permanent(errBoom) })(ctx, ev())
	if pb.State() != BreakerClosed {
		t.Fatal("permanent error opened the breaker")
	}
}

func TestTimeout(t *testing.T) {
	ctx, _ := handlerCtx(nil)
	h := Timeout(10 * time.Millisecond)(func(ctx context.Context, e *event.Event) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err := h(ctx, ev()); !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	if err := Timeout(time.Second)(script(new(int)))(ctx, ev()); err != nil {
		t.Fatal(err)
	}
	if err := Timeout(time.Second)(script(new(int), errBoom))(ctx, ev()); errors.Is(err, ErrTimeout) {
		t.Fatal("a plain error reported as a timeout")
	}
}

func TestRecover(t *testing.T) {
	ctx, _ := handlerCtx(nil)
	calls := 0
	h := Retry(RetryPolicy{MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { return nil }})(
		Recover()(func(context.Context, *event.Event) error {
			if calls++; calls < 3 {
				panic(errBoom)
			}
			return nil
		}))
	if err := h(ctx, ev()); err != nil || calls != 3 {
		t.Fatalf("err %v calls %d", err, calls)
	}
	err := Recover()(func(context.Context, *event.Event) error { panic("nope") })(ctx, ev())
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "nope" || len(pe.Stack) == 0 {
		t.Fatalf("err = %v", err)
	}
}

func TestCorrelateAndTrace(t *testing.T) {
	ctx, ob := handlerCtx(nil)
	in := ev()
	in.CorrelationID = "flow-1"
	in.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var seenTrace string
	h := Chain(func(ctx context.Context, e *event.Event) error {
		seenTrace = injectTraceParent(ctx)
		return Publish(ctx, "out", &event.Event{Source: "/x", Type: "out"})
	}, Trace(), Correlate())
	if err := h(ctx, in); err != nil {
		t.Fatal(err)
	}
	recs, _, _ := ob.take()
	if len(recs) != 1 {
		t.Fatalf("records %v", recs)
	}
	hs := headers(recs[0])
	if hs["ce_correlationid"] != "flow-1" || hs["ce_causationid"] != "e1" || hs["ce_traceparent"] != in.TraceParent || hs["ce_id"] == "" {
		t.Fatalf("output headers %v", hs)
	}
	if seenTrace != in.TraceParent {
		t.Fatalf("handler context trace %q", seenTrace)
	}
	if err := Publish(context.Background(), "out", ev()); !errors.Is(err, ErrNoPublisher) {
		t.Fatalf("Publish outside a handler: %v", err)
	}
}

func TestAttemptDropsFailedOutputs(t *testing.T) {
	ctx, ob := handlerCtx(nil)
	n := 0
	h := Retry(RetryPolicy{MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { return nil }})(
		attempt(func(ctx context.Context, e *event.Event) error {
			n++
			Publish(ctx, "out", &event.Event{Source: "/x", Type: fmt.Sprint("try", n)})
			if n < 3 {
				return errBoom
			}
			return nil
		}))
	if err := h(ctx, ev()); err != nil {
		t.Fatal(err)
	}
	recs, _, _ := ob.take()
	if len(recs) != 1 || headers(recs[0])["ce_type"] != "try3" {
		t.Fatalf("outputs %v", recs)
	}
}

// A redriven event was marked when it was dead-lettered; Idempotent must
// let it through once more.
func TestIdempotentLetsRedrivenEventsThrough(t *testing.T) {
	store := NewMemoryStore(time.Minute, newClock().Now)
	m := NewMetrics(prometheus.NewRegistry())
	calls := 0
	h := Idempotent(store)(script(&calls))
	run := func(redrive bool) error {
		ctx, ob := handlerCtx(m)
		if redrive {
			d := ctx.Value(deliveryKey).(*Delivery)
			d.Message.Headers = append(d.Message.Headers, event.Header{Key: HeaderRedrivenFrom, Value: []byte("dlq/0/7")})
		}
		err := h(ctx, ev())
		_, marks, _ := ob.take()
		for _, mk := range marks {
			mk.pending()
			mk.commit()
		}
		return err
	}
	if err := run(false); err != nil || calls != 1 {
		t.Fatalf("first delivery: %v, calls %d", err, calls)
	}
	if err := run(false); err != nil || calls != 1 {
		t.Fatalf("duplicate ran: calls %d", calls)
	}
	if err := run(true); err != nil || calls != 2 {
		t.Fatalf("redriven event skipped: calls %d", calls)
	}
}
