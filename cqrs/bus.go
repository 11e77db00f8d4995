package cqrs

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Command is a request to change state. Its type names its one handler.
type Command interface {
	CommandType() string
}

// Validator is implemented by commands that can check themselves; the bus
// calls Validate before the handler and returns its error to the sender,
// wrapped in a *ValidationError.
type Validator interface {
	Validate() error
}

// CommandHandler handles one command type. Its result goes back to the
// sender.
type CommandHandler func(ctx context.Context, cmd Command) (any, error)

// Bus routes each command to the one handler of its type. Safe for
// concurrent use.
type Bus struct {
	mu       sync.RWMutex
	handlers map[string]CommandHandler
}

// Errors of the bus.
var (
	ErrNoHandler        = errors.New("no handler for command type")
	ErrHandlerExists    = errors.New("command type already has a handler")
	ErrValidationFailed = errors.New("command is invalid")
)

// ValidationError is a command refused before handling.
type ValidationError struct {
	CommandType string
	Err         error
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("command %s is invalid: %v", e.CommandType, e.Err)
}

// Unwrap returns the command's own error.
func (e *ValidationError) Unwrap() error { return e.Err }

// Is matches ErrValidationFailed.
func (e *ValidationError) Is(target error) bool { return target == ErrValidationFailed }

// Register sets the handler of a command type; a second handler for the
// same type is refused.
func (b *Bus) Register(commandType string, h CommandHandler) error {
	if commandType == "" || h == nil {
		return errors.New("register command handler: empty type or nil handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.handlers == nil {
		b.handlers = map[string]CommandHandler{}
	}
	if _, ok := b.handlers[commandType]; ok {
		return fmt.Errorf("%w: %s", ErrHandlerExists, commandType)
	}
	b.handlers[commandType] = h
	return nil
}

// Dispatch validates cmd and runs its handler, returning the handler's
// result or error.
func (b *Bus) Dispatch(ctx context.Context, cmd Command) (any, error) {
	typ := cmd.CommandType()
	b.mu.RLock()
	h := b.handlers[typ]
	b.mu.RUnlock()
	if h == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoHandler, typ)
	}
	if v, ok := cmd.(Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, &ValidationError{CommandType: typ, Err: err}
		}
	}
	return h(ctx, cmd)
}
