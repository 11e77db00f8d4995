package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/heraldhq/herald/event"
)

// Permanent marks err as not worth retrying: Retry gives up at once and
// DeadLetter forwards the event. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return "permanent: " + p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryError is what Retry returns when it gives up: the last error, how many
// attempts were made and when the first and last of them failed.
type RetryError struct {
	Err          error
	Attempts     int
	FirstFailure time.Time
	LastFailure  time.Time
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("gave up after %d attempts: %v", e.Attempts, e.Err)
}

func (e *RetryError) Unwrap() error { return e.Err }

// RetryPolicy configures Retry. Zero fields take the documented defaults.
type RetryPolicy struct {
	// MaxAttempts bounds the attempts, the first included (default 5).
	// Fewer attempts reach the dead-letter topic sooner; more ride out
	// longer outages at the cost of blocking the partition longer.
	MaxAttempts int
	// MaxElapsed bounds the time from the first attempt; no attempt starts
	// later (default 0: no bound beyond MaxAttempts).
	MaxElapsed time.Duration
	// InitialBackoff is the cap of the first wait (default 100ms); each
	// later cap is Multiplier (default 2) times the previous, up to
	// MaxBackoff (default 10s). The wait is uniformly random in [0, cap)
	// ("full jitter"), which spreads retries of many consumers apart.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64

	// Now, Sleep and Rand replace the clock, the wait and the jitter
	// source, for tests. Sleep must return ctx.Err() if ctx ends first.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	Rand  func() float64
}

func (p *RetryPolicy) setDefaults() {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 5
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = 100 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 10 * time.Second
	}
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Sleep == nil {
		p.Sleep = sleepCtx
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
}

// Backoff returns the wait before attempt n+1 after n failed attempts
// (n >= 1), with full jitter drawn from p.Rand.
func (p RetryPolicy) Backoff(n int) time.Duration {
	p.setDefaults()
	c := float64(p.InitialBackoff) * math.Pow(p.Multiplier, float64(n-1))
	if c > float64(p.MaxBackoff) || math.IsInf(c, 0) || math.IsNaN(c) {
		c = float64(p.MaxBackoff)
	}
	return time.Duration(p.Rand() * c)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Retry calls the handler again when it fails, with exponential backoff and
// full jitter, until it succeeds, returns a Permanent error, or the policy's
// attempts or elapsed time run out; it then returns a *RetryError. A context
// that ends (shutdown) stops retrying at once and returns the context's
// error. Put Recover inside Retry so panics are retried too.
func Retry(p RetryPolicy) Middleware {
	p.setDefaults()
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e *event.Event) error {
			var first time.Time
			start := p.Now()
			for n := 1; ; n++ {
				err := next(ctx, e)
				if err == nil {
					return nil
				}
				now := p.Now()
				if n == 1 {
					first = now
				}
				if ctx.Err() != nil {
					return err
				}
				give := IsPermanent(err) || n >= p.MaxAttempts
				wait := p.Backoff(n)
				if p.MaxElapsed > 0 && now.Add(wait).Sub(start) >= p.MaxElapsed {
					give = true
				}
				if give {
					return &RetryError{Err: err, Attempts: n, FirstFailure: first, LastFailure: now}
				}
				ev := envFrom(ctx)
				if d, ok := DeliveryFrom(ctx); ok {
					ev.metrics.count(cRetries, d.Group, d.Topic)
				}
				Logger(ctx).Debug("retrying handler", "attempt", n, "wait", wait, "err", err)
				if err := p.Sleep(ctx, wait); err != nil {
					return err
				}
			}
		}
	}
}
