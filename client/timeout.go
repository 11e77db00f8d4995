package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/event"
)

// ErrTimeout is wrapped by the error Timeout returns for a handler that ran
// past its deadline.
var ErrTimeout = errors.New("handler timed out")

// Timeout gives each call of the handler at most d: its context is canceled
// at d, and if it then returns an error, the error wraps ErrTimeout. The
// handler must honour its context; Timeout does not abandon a running
// goroutine (that would break per-key ordering). Put it inside Retry to
// bound each attempt, outside to bound them all.
func Timeout(d time.Duration) Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e *event.Event) error {
			tctx, cancel := context.WithTimeoutCause(ctx, d, ErrTimeout)
			defer cancel()
			err := next(tctx, e)
			if err != nil && ctx.Err() == nil && errors.Is(context.Cause(tctx), ErrTimeout) {
				return fmt.Errorf("%w after %v: %w", ErrTimeout, d, err)
			}
			return err
		}
	}
}
