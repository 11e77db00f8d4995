package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/event"
)

// Choreography: services react to each other's events with no
// orchestrator. A Reactor routes a subscriber's events by type to
// reactions, and Emit publishes an event caused by the one being handled,
// so a whole flow shares one correlation id and every event names its
// cause. A ProcessView rebuilds a flow's progress from those ids.

// Reaction handles one event type within a Reactor.
type Reaction func(ctx context.Context, e *event.Event) error

// Reactor routes events by type. Its Handler runs under a client.Subscriber;
// events of types with no reaction are acknowledged and skipped.
type Reactor struct {
	source string
	on     map[string]Reaction
}

// NewReactor returns a reactor whose emitted events have source.
func NewReactor(source string) *Reactor {
	return &Reactor{source: source, on: map[string]Reaction{}}
}

// On sets the reaction to events of type typ.
func (r *Reactor) On(typ string, f Reaction) *Reactor {
	r.on[typ] = f
	return r
}

type reactorKey struct{}

// Handler is the subscriber handler that dispatches to the reactions.
func (r *Reactor) Handler() client.HandlerFunc {
	return func(ctx context.Context, e *event.Event) error {
		f, ok := r.on[e.Type]
		if !ok {
			return nil
		}
		return f(context.WithValue(ctx, reactorKey{}, r), e)
	}
}

// ErrNoReaction is returned by Emit outside a Reactor's reaction.
var ErrNoReaction = errors.New("saga: Emit called outside a reaction")

// Emit publishes, from a reaction, an event of type typ to topic, caused by
// the event being handled: same correlation id (the flow's), causation id
// = the input's id, same partition key, data as JSON (nil for none). The
// event is written as client.Publish writes: only if the reaction
// succeeds, and atomically with the input's offset under ExactlyOnce.
func Emit(ctx context.Context, topic, typ string, data any) error {
	r, ok := ctx.Value(reactorKey{}).(*Reactor)
	in := client.EventFrom(ctx)
	if !ok || in == nil {
		return ErrNoReaction
	}
	e := event.NewFrom(in, r.source, typ)
	e.PartitionKey = in.PartitionKey
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("saga: emit %s: %w", typ, err)
		}
		e.Data, e.DataContentType = b, "application/json"
	}
	return client.Publish(ctx, topic, e)
}

// FlowStep is one event of a choreographed flow.
type FlowStep struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	Source      string    `json:"source"`
	CausationID string    `json:"causationId,omitempty"`
	Time        time.Time `json:"time"`
	Topic       string    `json:"topic"`
}

// Flow is the progress of one choreographed flow: its events in time
// order, and its outcome once a terminal event arrived.
type Flow struct {
	CorrelationID string     `json:"correlationId"`
	Steps         []FlowStep `json:"steps"`
	// Outcome is ProcessViewConfig.Terminal of the last terminal event
	// seen; "" while the flow is in progress.
	Outcome string    `json:"outcome,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// ProcessViewConfig configures a ProcessView.
type ProcessViewConfig struct {
	Brokers []string
	// Topics are read from the start, with read_committed.
	Topics []string
	// Terminal maps the event types that end a flow to its outcome
	// (e.g. "OrderCompleted": "completed").
	Terminal map[string]string
	// MaxSteps bounds the events kept per flow (default 100).
	MaxSteps   int
	KgoOptions []kgo.Opt
	Logger     *slog.Logger
}

// ProcessView rebuilds choreographed flows by correlation id from the
// events on a set of topics.
type ProcessView struct {
	cfg    ProcessViewConfig
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	mu     struct {
		sync.RWMutex
		flows map[string]*Flow
	}
}

// StartProcessView starts reading cfg.Topics. Close stops it.
func StartProcessView(cfg ProcessViewConfig) (*ProcessView, error) {
	if len(cfg.Brokers) == 0 || len(cfg.Topics) == 0 {
		return nil, errorf(ErrInvalid, "saga: process view: brokers and topics are required")
	}
	if cfg.MaxSteps <= 0 {
		cfg.MaxSteps = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumeTopics(cfg.Topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond)}, cfg.KgoOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("saga: process view: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	v := &ProcessView{cfg: cfg, cl: cl, cancel: cancel, done: make(chan struct{})}
	v.mu.flows = map[string]*Flow{}
	go v.run(ctx)
	return v, nil
}

func (v *ProcessView) run(ctx context.Context) {
	defer close(v.done)
	for {
		fs := v.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return
		}
		fs.EachRecord(func(r *kgo.Record) {
			m := event.Message{Key: r.Key, Value: r.Value}
			for _, h := range r.Headers {
				m.Headers = append(m.Headers, event.Header{Key: h.Key, Value: h.Value})
			}
			e, err := event.Decode(m)
			if err != nil {
				v.cfg.Logger.Warn("process view: skipping a malformed record", "topic", r.Topic, "offset", r.Offset, "err", err)
				return
			}
			v.add(r.Topic, e)
		})
	}
}

func (v *ProcessView) add(topic string, e *event.Event) {
	corr := e.CorrelationID
	if corr == "" {
		corr = e.ID // an event with no correlation starts its own flow
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	f := v.mu.flows[corr]
	if f == nil {
		f = &Flow{CorrelationID: corr, Started: e.Time}
		v.mu.flows[corr] = f
	}
	for _, s := range f.Steps {
		if s.ID == e.ID && s.Source == e.Source {
			return // a duplicate delivery of one event
		}
	}
	if len(f.Steps) >= v.cfg.MaxSteps {
		return
	}
	f.Steps = append(f.Steps, FlowStep{ID: e.ID, Type: e.Type, Source: e.Source, CausationID: e.CausationID, Time: e.Time, Topic: topic})
	slices.SortStableFunc(f.Steps, func(a, b FlowStep) int { return a.Time.Compare(b.Time) })
	if e.Time.Before(f.Started) || f.Started.IsZero() {
		f.Started = e.Time
	}
	if e.Time.After(f.Updated) {
		f.Updated = e.Time
	}
	if o, ok := v.cfg.Terminal[e.Type]; ok {
		f.Outcome = o
	}
}

// Flow returns a copy of the flow with correlation id corr.
func (v *ProcessView) Flow(corr string) (Flow, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	f, ok := v.mu.flows[corr]
	if !ok {
		return Flow{}, false
	}
	c := *f
	c.Steps = slices.Clone(f.Steps)
	return c, true
}

// Outcomes counts flows by outcome ("" for in progress).
func (v *ProcessView) Outcomes() map[string]int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := map[string]int{}
	for _, f := range v.mu.flows {
		out[f.Outcome]++
	}
	return out
}

// Close stops the view.
func (v *ProcessView) Close() {
	v.cancel()
	<-v.done
	v.cl.Close()
}
