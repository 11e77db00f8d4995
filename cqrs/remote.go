package cqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/heraldhq/herald/eventstore"
)

// Commands over the log: a RemoteBus appends each command to stream
// "commands-<type>" with a reply stream; a CommandServer (any number of
// them: they compete through one persistent subscription) decodes it,
// dispatches it on its local Bus and appends the reply. Delivery is at
// least once: a server that dies mid-command leaves it to be handled again,
// so handlers must be idempotent (an aggregate's expected version makes
// most of them so). Replies carry the command's ID as their event ID, so a
// repeated reply is not stored twice.

// CommandCategory is the stream category of commands.
const CommandCategory = "commands"

type commandEnvelope struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	ReplyTo string          `json:"replyTo"`
}

type commandReply struct {
	CommandID string          `json:"commandId"`
	Result    json.RawMessage `json:"result,omitempty"`
	Code      string          `json:"code,omitempty"` // "invalid", "no-handler", "failed"
	Message   string          `json:"message,omitempty"`
}

// Decoder turns a command's JSON payload back into a Command.
type Decoder func(payload json.RawMessage) (Command, error)

// JSONDecoder decodes payloads into C.
func JSONDecoder[C Command]() Decoder {
	return func(p json.RawMessage) (Command, error) {
		var c C
		err := json.Unmarshal(p, &c)
		return c, err
	}
}

// CommandServer handles commands sent over the store: Workers goroutines
// compete for them through one persistent subscription (in this process:
// the group's state lives with its subscriber, so run one CommandServer per
// group).
type CommandServer struct {
	Store    eventstore.Store
	Bus      *Bus
	Decoders map[string]Decoder
	// Group names the persistent subscription (and its checkpoint).
	Group string
	// Workers handle commands concurrently; default 4.
	Workers int
	Logger  *slog.Logger
}

// Run serves until ctx ends.
func (cs *CommandServer) Run(ctx context.Context) error {
	group := cs.Group
	if group == "" {
		group = "command-servers"
	}
	logger := cs.Logger
	if logger == nil {
		logger = slog.Default()
	}
	p, err := eventstore.NewPersistent(ctx, cs.Store, eventstore.PersistentConfig{Group: group, Filter: eventstore.Category(CommandCategory), Logger: logger})
	if err != nil {
		return err
	}
	defer p.Close()
	workers := cs.Workers
	if workers <= 0 {
		workers = 4
	}
	errs := make(chan error, workers)
	for i := 0; i < workers; i++ {
		go func() {
			for {
				d, err := p.Receive(ctx)
				if err != nil {
					errs <- err
					return
				}
				if err := cs.handle(ctx, d.Event); err != nil {
					if ctx.Err() != nil {
						errs <- ctx.Err()
						return
					}
					logger.Warn("command reply failed; retrying", "command", d.Event.ID, "err", err)
					d.Nack(ctx, err.Error())
					continue
				}
				d.Ack()
			}
		}()
	}
	var first error
	for i := 0; i < workers; i++ {
		if err := <-errs; first == nil {
			first = err
		}
	}
	return first
}

func (cs *CommandServer) handle(ctx context.Context, ev eventstore.RecordedEvent) error {
	var env commandEnvelope
	reply := commandReply{CommandID: ev.ID}
	if err := json.Unmarshal(ev.Data, &env); err != nil {
		reply.Code, reply.Message = "invalid", "undecodable command envelope: "+err.Error()
	} else if dec, ok := cs.Decoders[env.Type]; !ok {
		reply.Code, reply.Message = "no-handler", fmt.Sprintf("no handler for command type %s", env.Type)
	} else if cmd, err := dec(env.Payload); err != nil {
		reply.Code, reply.Message = "invalid", fmt.Sprintf("command %s: payload: %v", env.Type, err)
	} else {
		res, err := cs.Bus.Dispatch(ctx, cmd)
		switch {
		case errors.Is(err, ErrValidationFailed):
			reply.Code, reply.Message = "invalid", err.Error()
			var ve *ValidationError
			if errors.As(err, &ve) {
				reply.Message = ve.Err.Error() // the client adds the command type again
			}
		case errors.Is(err, ErrNoHandler):
			reply.Code, reply.Message = "no-handler", err.Error()
		case err != nil:
			reply.Code, reply.Message = "failed", err.Error()
		default:
			if reply.Result, err = json.Marshal(res); err != nil {
				reply.Code, reply.Message = "failed", "encode result: "+err.Error()
			}
		}
	}
	if env.ReplyTo == "" {
		return nil // fire and forget
	}
	body, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	_, err = cs.Store.Append(ctx, env.ReplyTo, eventstore.Any, eventstore.EventData{ID: "reply-" + ev.ID, Type: "$reply", Data: body})
	return err
}

// RemoteBus sends commands to CommandServers and waits for their replies.
type RemoteBus struct {
	store   eventstore.Store
	replyTo string
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	waiting map[string]chan commandReply
	err     error
}

// RemoteError is a command that failed on the server (not a validation
// failure, which is a *ValidationError, nor a missing handler, ErrNoHandler).
type RemoteError struct{ Message string }

func (e *RemoteError) Error() string { return e.Message }

// NewRemoteBus starts a client whose replies come to stream
// "replies-<client>" (client must be unique among live clients).
func NewRemoteBus(ctx context.Context, store eventstore.Store, client string) (*RemoteBus, error) {
	rb := &RemoteBus{store: store, replyTo: "replies-" + client, waiting: map[string]chan commandReply{}}
	if err := eventstore.ValidateStreamName("client", rb.replyTo); err != nil {
		return nil, err
	}
	info, err := store.StreamInfo(ctx, rb.replyTo)
	if err != nil {
		return nil, err
	}
	sub, err := eventstore.Subscribe(store, eventstore.SubscribeOptions{Stream: rb.replyTo, From: info.Version + 1})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	rb.cancel = cancel
	rb.wg.Add(1)
	go rb.receive(rctx, sub)
	return rb, nil
}

func (rb *RemoteBus) receive(ctx context.Context, sub *eventstore.Subscription) {
	defer rb.wg.Done()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			rb.mu.Lock()
			rb.err = err
			for _, ch := range rb.waiting {
				close(ch)
			}
			rb.waiting = map[string]chan commandReply{}
			rb.mu.Unlock()
			return
		}
		var r commandReply
		if json.Unmarshal(ev.Data, &r) != nil {
			continue
		}
		rb.mu.Lock()
		ch := rb.waiting[r.CommandID]
		delete(rb.waiting, r.CommandID)
		rb.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// Send sends a command (its payload encoded as JSON) and waits for the
// reply, decoding the handler's result into result (if not nil).
func (rb *RemoteBus) Send(ctx context.Context, cmd Command, result any) error {
	payload, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("encode command %s: %w", cmd.CommandType(), err)
	}
	env, _ := json.Marshal(commandEnvelope{Type: cmd.CommandType(), Payload: payload, ReplyTo: rb.replyTo})
	id := eventstore.NewID()
	ch := make(chan commandReply, 1)
	rb.mu.Lock()
	if rb.err != nil {
		rb.mu.Unlock()
		return rb.err
	}
	rb.waiting[id] = ch
	rb.mu.Unlock()
	defer func() {
		rb.mu.Lock()
		delete(rb.waiting, id)
		rb.mu.Unlock()
	}()
	if _, err := rb.store.Append(ctx, CommandCategory+"-"+cmd.CommandType(), eventstore.Any, eventstore.EventData{ID: id, Type: cmd.CommandType(), Data: env}); err != nil {
		return err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("reply stream closed: %w", rb.err)
		}
		switch r.Code {
		case "":
			if result != nil && len(r.Result) > 0 {
				return json.Unmarshal(r.Result, result)
			}
			return nil
		case "invalid":
			return &ValidationError{CommandType: cmd.CommandType(), Err: errors.New(r.Message)}
		case "no-handler":
			return fmt.Errorf("%w: %s", ErrNoHandler, r.Message)
		default:
			return &RemoteError{Message: r.Message}
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops receiving replies.
func (rb *RemoteBus) Close() error {
	rb.cancel()
	rb.wg.Wait()
	return nil
}
