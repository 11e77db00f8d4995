package client

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/heraldhq/herald/event"
)

// PanicError is the error Recover returns for a handler that panicked.
type PanicError struct {
	Value any    // what the handler panicked with
	Stack []byte // the goroutine's stack at the panic
}

func (p *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", p.Value) }

// Unwrap returns the panic value if it is an error.
func (p *PanicError) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// Recover turns a panic in the handler into a *PanicError, logged with its
// stack, so it is retried and dead-lettered like any error and never takes
// the process down. Put it innermost (inside Retry).
func Recover() Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e *event.Event) (err error) {
			defer func() {
				if v := recover(); v != nil {
					pe := &PanicError{Value: v, Stack: debug.Stack()}
					Logger(ctx).Error("handler panicked", "panic", fmt.Sprint(v), "stack", string(pe.Stack))
					err = pe
				}
			}()
			return next(ctx, e)
		}
	}
}
