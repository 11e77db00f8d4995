package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/event"
)

// BreakerState is the state of a circuit breaker.
type BreakerState int

const (
	// BreakerClosed lets every call through.
	BreakerClosed BreakerState = iota
	// BreakerHalfOpen lets a few probe calls through to test recovery.
	BreakerHalfOpen
	// BreakerOpen fails calls at once with ErrBreakerOpen.
	BreakerOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerHalfOpen:
		return "half-open"
	case BreakerOpen:
		return "open"
	}
	return fmt.Sprintf("BreakerState(%d)", int(s))
}

// ErrBreakerOpen is returned, wrapped, for calls refused by an open breaker.
// It is retryable: under Retry the event waits out the cool-down.
var ErrBreakerOpen = errors.New("circuit breaker open")

// BreakerConfig configures a Breaker. Zero fields take the defaults.
type BreakerConfig struct {
	// Name labels the breaker in metrics and logs (default "handler").
	Name string
	// ConsecutiveFailures opens the breaker after that many failures in a
	// row (default 5; negative: never on this rule).
	ConsecutiveFailures int
	// FailureRatio opens the breaker when at least this fraction of the
	// calls in the last Window failed, once MinCalls were made in it
	// (default 0: rule off). Ratios catch a flapping dependency that
	// consecutive counts miss, but need traffic to judge.
	FailureRatio float64
	Window       time.Duration // default 10s
	MinCalls     int           // default 10
	// CoolDown is how long the breaker stays open before half-open probes
	// (default 5s). Shorter recovers sooner, longer spares a struggling
	// dependency.
	CoolDown time.Duration
	// Probes is how many probe calls in a row must succeed, half-open, to
	// close again (default 1). Probes run one at a time.
	Probes int
	// Now replaces the clock, for tests.
	Now func() time.Time
}

// Breaker is a circuit breaker shared by every call of the handlers it
// wraps. It is safe for concurrent use. Failures are errors other than
// context cancellation; Permanent errors (bad input, not a bad dependency)
// do not count.
type Breaker struct {
	cfg BreakerConfig
	mu  struct {
		sync.Mutex
		state    BreakerState
		consec   int
		calls    []call // within Window, oldest first
		openedAt time.Time
		probing  bool
		probesOK int
	}
}

type call struct {
	at     time.Time
	failed bool
}

// NewBreaker returns a closed breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	if cfg.Name == "" {
		cfg.Name = "handler"
	}
	if cfg.ConsecutiveFailures == 0 {
		cfg.ConsecutiveFailures = 5
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	if cfg.MinCalls <= 0 {
		cfg.MinCalls = 10
	}
	if cfg.CoolDown <= 0 {
		cfg.CoolDown = 5 * time.Second
	}
	if cfg.Probes <= 0 {
		cfg.Probes = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Breaker{cfg: cfg}
}

// State returns the current state (an open breaker past its cool-down
// reports half-open).
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.state == BreakerOpen && b.cfg.Now().Sub(b.mu.openedAt) >= b.cfg.CoolDown {
		return BreakerHalfOpen
	}
	return b.mu.state
}

// Middleware returns the middleware that guards a handler with b.
func (b *Breaker) Middleware() Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e *event.Event) error {
			probe, err := b.allow(ctx)
			if err != nil {
				return err
			}
			err = next(ctx, e)
			b.done(ctx, probe, err)
			return err
		}
	}
}

// CircuitBreaker is NewBreaker(cfg).Middleware().
func CircuitBreaker(cfg BreakerConfig) Middleware { return NewBreaker(cfg).Middleware() }

func (b *Breaker) allow(ctx context.Context) (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	switch b.mu.state {
	case BreakerClosed:
		return false, nil
	case BreakerOpen:
		if now.Sub(b.mu.openedAt) < b.cfg.CoolDown {
			return false, fmt.Errorf("%w (%s, retry in %v)", ErrBreakerOpen, b.cfg.Name, b.cfg.CoolDown-now.Sub(b.mu.openedAt))
		}
		b.setLocked(ctx, BreakerHalfOpen, "cool-down over")
		fallthrough
	default: // half-open
		if b.mu.probing {
			return false, fmt.Errorf("%w (%s, probing)", ErrBreakerOpen, b.cfg.Name)
		}
		b.mu.probing = true
		return true, nil
	}
}

func (b *Breaker) done(ctx context.Context, probe bool, err error) {
	failed := err != nil && !IsPermanent(err) && !errors.Is(err, context.Canceled)
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	if probe {
		b.mu.probing = false
		if failed {
			b.mu.openedAt = now
			b.setLocked(ctx, BreakerOpen, "probe failed")
			return
		}
		if b.mu.probesOK++; b.mu.probesOK >= b.cfg.Probes {
			b.mu.consec, b.mu.calls = 0, nil
			b.setLocked(ctx, BreakerClosed, "probes succeeded")
		}
		return
	}
	if b.mu.state != BreakerClosed {
		return
	}
	if failed {
		b.mu.consec++
	} else {
		b.mu.consec = 0
	}
	b.mu.calls = append(b.mu.calls, call{now, failed})
	cut := 0
	for cut < len(b.mu.calls) && now.Sub(b.mu.calls[cut].at) > b.cfg.Window {
		cut++
	}
	b.mu.calls = b.mu.calls[cut:]
	reason := ""
	if b.cfg.ConsecutiveFailures > 0 && b.mu.consec >= b.cfg.ConsecutiveFailures {
		reason = fmt.Sprintf("%d consecutive failures", b.mu.consec)
	} else if b.cfg.FailureRatio > 0 && len(b.mu.calls) >= b.cfg.MinCalls {
		n := 0
		for _, c := range b.mu.calls {
			if c.failed {
				n++
			}
		}
		if r := float64(n) / float64(len(b.mu.calls)); r >= b.cfg.FailureRatio {
			reason = fmt.Sprintf("failure ratio %.2f over %v", r, b.cfg.Window)
		}
	}
	if reason != "" {
		b.mu.openedAt = now
		b.setLocked(ctx, BreakerOpen, reason)
	}
}

func (b *Breaker) setLocked(ctx context.Context, to BreakerState, reason string) {
	from := b.mu.state
	b.mu.state = to
	b.mu.probesOK = 0
	if from == to {
		return
	}
	ev := envFrom(ctx)
	if ev.metrics != nil {
		ev.metrics.breakerState.WithLabelValues(b.cfg.Name).Set(float64(to))
	}
	lv := ev.logger.Info
	if to == BreakerOpen {
		lv = ev.logger.Warn
	}
	lv("circuit breaker state change", "breaker", b.cfg.Name, "from", from.String(), "to", to.String(), "reason", reason)
}
