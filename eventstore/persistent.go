package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PersistentConfig configures a persistent subscription group.
type PersistentConfig struct {
	// Group names the subscription. Its checkpoint lives in stream
	// "persistent.<Group>" and its parked events in "parked.<Group>".
	Group string
	// Stream subscribes to one stream; "" to $all (with Filter).
	Stream string
	Filter Filter
	// From is where a group with no checkpoint starts (a position, or a
	// version for a stream).
	From int64
	// MaxRetries is how many times an event is delivered before a nack or
	// an ack timeout parks it; default 5.
	MaxRetries int
	// AckTimeout redelivers an event not acked in time; default 30s.
	AckTimeout time.Duration
	// MaxInFlight bounds events read ahead and unacknowledged; default 256.
	MaxInFlight int
	// CheckpointInterval bounds how often the checkpoint is written;
	// default 200ms. Events after the checkpoint are delivered again after
	// a restart (at least once).
	CheckpointInterval time.Duration
	Logger             *slog.Logger
	// Registerer receives the group's metrics (labelled by group); nil
	// registers nowhere.
	Registerer prometheus.Registerer
}

// Persistent is a persistent subscription: competing consumers share its
// events (each delivery goes to one Receive), acknowledge or reject them,
// and the group's checkpoint is kept in the store. A rejected event is
// retried up to MaxRetries deliveries, then parked; ReplayParked delivers
// parked events again. Safe for concurrent use.
type Persistent struct {
	s   Store
	cfg PersistentConfig
	log *slog.Logger

	mu      sync.Mutex
	order   []*entry // every unfinished event, in subscription order
	queue   []*entry // ready for delivery; retries first
	nextPos int64    // checkpoint if order is empty
	saved   int64    // last checkpoint written
	err     error    // the reader's fatal error
	closed  bool
	// A replay of parked events: how many are unfinished, and the parked
	// stream's truncate point to set once none is.
	replayPending  int
	replayTruncate int64
	replaySaved    int64
	notify         chan struct{} // a delivery may be ready
	space          chan struct{} // in-flight dropped below the limit

	closedCh chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	acks, nacks, parks, redeliveries prometheus.Counter
	collectors                       []prometheus.Collector
}

type entry struct {
	ev       RecordedEvent
	key      int64 // position ($all) or version (stream)
	attempts int
	deadline time.Time // while delivered
	done     bool
	parked   bool // came from the parked stream
}

// Delivery is one delivery of an event to a consumer.
type Delivery struct {
	Event   RecordedEvent
	Attempt int // 1 for the first delivery
	p       *Persistent
	e       *entry
}

type checkpointBody struct {
	Next int64 `json:"next"`
}

// ParkedEvent is the body of an event in the parked stream.
type ParkedEvent struct {
	Event  RecordedEvent `json:"event"`
	Reason string        `json:"reason"`
}

func (c PersistentConfig) checkpointStream() string { return "persistent." + c.Group }
func (c PersistentConfig) parkedStream() string     { return "parked." + c.Group }

// NewPersistent starts (or resumes) a persistent subscription group.
func NewPersistent(ctx context.Context, s Store, cfg PersistentConfig) (*Persistent, error) {
	if err := ValidateStreamName("group", "persistent."+cfg.Group); err != nil || cfg.Group == "" {
		return nil, Invalid("group", "%q is not a valid group name", cfg.Group)
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 5
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	from := cfg.From
	evs, err := s.ReadStream(ctx, cfg.checkpointStream(), ReadStreamOptions{From: End, Backwards: true, Max: 1})
	switch {
	case err == nil && len(evs) == 1:
		var cp checkpointBody
		if err := json.Unmarshal(evs[0].Data, &cp); err != nil {
			return nil, fmt.Errorf("persistent subscription %s: checkpoint: %w", cfg.Group, err)
		}
		from = cp.Next
	case err != nil && !errors.Is(err, ErrStreamNotFound):
		return nil, err
	}
	sub, err := Subscribe(s, SubscribeOptions{Stream: cfg.Stream, From: from, Filter: cfg.Filter})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	p := &Persistent{s: s, cfg: cfg, log: cfg.Logger, nextPos: from, saved: from,
		notify: make(chan struct{}, 1), space: make(chan struct{}, 1), cancel: cancel, closedCh: make(chan struct{})}
	p.initMetrics()
	if cfg.Registerer != nil {
		for _, c := range p.collectors {
			if err := cfg.Registerer.Register(c); err != nil {
				cancel()
				return nil, fmt.Errorf("persistent subscription %s: register metrics: %w", cfg.Group, err)
			}
		}
	}
	p.wg.Add(3)
	go p.read(rctx, sub)
	go p.timeouts(rctx)
	go p.checkpoints(rctx)
	return p, nil
}

func (p *Persistent) key(ev RecordedEvent) int64 {
	if p.cfg.Stream != "" {
		return ev.Version
	}
	return ev.Position
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (p *Persistent) read(ctx context.Context, sub *Subscription) {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		full := len(p.order) >= p.cfg.MaxInFlight
		p.mu.Unlock()
		if full {
			select {
			case <-p.space:
				continue
			case <-ctx.Done():
				return
			}
		}
		ev, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				p.mu.Lock()
				p.err = err
				p.mu.Unlock()
				signal(p.notify)
				p.log.Error("persistent subscription reader stopped", "group", p.cfg.Group, "err", err)
			}
			return
		}
		e := &entry{ev: ev, key: p.key(ev)}
		p.mu.Lock()
		p.order = append(p.order, e)
		p.queue = append(p.queue, e)
		p.nextPos = e.key + 1
		p.mu.Unlock()
		signal(p.notify)
	}
}

// Receive returns the next delivery, waiting for one. It fails with ctx's
// error, ErrClosed after Close, or the reader's error.
func (p *Persistent) Receive(ctx context.Context) (Delivery, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Delivery{}, err
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return Delivery{}, ErrClosed
		}
		for len(p.queue) > 0 && p.queue[0].done {
			p.queue = p.queue[1:] // acked late, after it was queued again
		}
		if len(p.queue) > 0 {
			e := p.queue[0]
			p.queue = p.queue[1:]
			e.attempts++
			e.deadline = time.Now().Add(p.cfg.AckTimeout)
			d := Delivery{Event: e.ev, Attempt: e.attempts, p: p, e: e}
			more := len(p.queue) > 0
			p.mu.Unlock()
			if more {
				signal(p.notify) // wake another consumer
			}
			return d, nil
		}
		if p.err != nil {
			err := p.err
			p.mu.Unlock()
			return Delivery{}, err
		}
		p.mu.Unlock()
		select {
		case <-p.notify:
		case <-p.closedCh:
		case <-ctx.Done():
			return Delivery{}, ctx.Err()
		}
	}
}

// Ack marks the event handled.
func (d Delivery) Ack() error {
	p := d.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if d.e.done || d.e.attempts != d.Attempt {
		return nil // timed out and redelivered, or already finished
	}
	p.acks.Inc()
	p.finishLocked(d.e)
	return nil
}

// Nack rejects the event: it is delivered again, or parked once it has
// been delivered MaxRetries times.
func (d Delivery) Nack(ctx context.Context, reason string) error {
	p := d.p
	p.mu.Lock()
	if d.e.done || d.e.attempts != d.Attempt {
		p.mu.Unlock()
		return nil
	}
	p.nacks.Inc()
	if d.e.attempts < p.cfg.MaxRetries {
		p.redeliveries.Inc()
		d.e.deadline = time.Time{}
		p.queue = append([]*entry{d.e}, p.queue...)
		p.mu.Unlock()
		signal(p.notify)
		return nil
	}
	d.e.deadline = time.Time{}
	p.mu.Unlock()
	return p.park(ctx, d.e, reason)
}

func (p *Persistent) park(ctx context.Context, e *entry, reason string) error {
	body, err := json.Marshal(ParkedEvent{Event: e.ev, Reason: reason})
	if err != nil {
		return err
	}
	if _, err := p.s.Append(ctx, p.cfg.parkedStream(), Any, EventData{ID: NewID(), Type: "$parked", Data: body}); err != nil {
		// Not parked: deliver it again rather than lose it.
		p.mu.Lock()
		p.queue = append(p.queue, e)
		p.mu.Unlock()
		signal(p.notify)
		return fmt.Errorf("park event %s: %w", e.ev.ID, err)
	}
	p.parks.Inc()
	p.log.Warn("event parked", "group", p.cfg.Group, "stream", e.ev.Stream, "version", e.ev.Version, "reason", reason)
	p.mu.Lock()
	p.finishLocked(e)
	p.mu.Unlock()
	return nil
}

func (p *Persistent) finishLocked(e *entry) {
	e.done = true
	if e.parked {
		p.replayPending--
	}
	n := 0
	for n < len(p.order) && p.order[n].done {
		n++
	}
	if n > 0 {
		p.order = p.order[n:]
		signal(p.space)
	}
}

// checkpointLocked is the position before which every event is finished.
func (p *Persistent) checkpointLocked() int64 {
	for _, e := range p.order {
		if !e.parked && !e.done {
			return e.key
		}
	}
	return p.nextPos
}

func (p *Persistent) timeouts(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(max(p.cfg.AckTimeout/4, 5*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var park []*entry
		p.mu.Lock()
		for _, e := range p.order {
			if e.done || e.deadline.IsZero() || now.Before(e.deadline) {
				continue
			}
			e.deadline = time.Time{}
			if e.attempts >= p.cfg.MaxRetries {
				park = append(park, e)
			} else {
				p.redeliveries.Inc()
				p.queue = append([]*entry{e}, p.queue...)
			}
		}
		p.mu.Unlock()
		signal(p.notify)
		for _, e := range park {
			if err := p.park(ctx, e, "ack timeout"); err != nil {
				p.log.Error("park failed", "group", p.cfg.Group, "err", err)
			}
		}
	}
}

func (p *Persistent) checkpoints(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := p.saveCheckpoint(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("persistent subscription checkpoint failed", "group", p.cfg.Group, "err", err)
		}
		if err := p.saveReplayed(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("persistent subscription parked-stream truncation failed", "group", p.cfg.Group, "err", err)
		}
	}
}

func (p *Persistent) saveCheckpoint(ctx context.Context) error {
	p.mu.Lock()
	cp := p.checkpointLocked()
	same := cp == p.saved
	p.mu.Unlock()
	if same {
		return nil
	}
	data, _ := json.Marshal(checkpointBody{Next: cp})
	r, err := p.s.Append(ctx, p.cfg.checkpointStream(), Any, EventData{ID: NewID(), Type: "$checkpoint", Data: data})
	if err != nil {
		return err
	}
	if r.Version == 0 {
		if err := p.s.SetMetadata(ctx, p.cfg.checkpointStream(), StreamMetadata{MaxCount: 1}); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.saved = cp
	p.mu.Unlock()
	return nil
}

// Checkpoint is the group's current checkpoint: every event before it is
// acknowledged or parked.
func (p *Persistent) Checkpoint() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checkpointLocked()
}

// ReplayParked delivers the parked events again, each with a fresh retry
// budget, and returns how many. They leave the parked stream (its
// truncate-before moves past them) only once every one is acked or parked
// again, so a crash during a replay loses none. One replay at a time.
func (p *Persistent) ReplayParked(ctx context.Context) (int, error) {
	p.mu.Lock()
	busy := p.replayPending > 0
	from := p.replaySaved
	p.mu.Unlock()
	if busy {
		return 0, errors.New("a replay of parked events is still in progress")
	}
	evs, err := p.s.ReadStream(ctx, p.cfg.parkedStream(), ReadStreamOptions{From: from, Max: p.cfg.MaxInFlight})
	if errors.Is(err, ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	entries := make([]*entry, 0, len(evs))
	for _, pe := range evs {
		var body ParkedEvent
		if err := json.Unmarshal(pe.Data, &body); err != nil {
			return 0, fmt.Errorf("parked event %d of %s: %w", pe.Version, p.cfg.parkedStream(), err)
		}
		entries = append(entries, &entry{ev: body.Event, key: p.key(body.Event), parked: true})
	}
	p.mu.Lock()
	p.order = append(p.order, entries...)
	p.queue = append(p.queue, entries...)
	p.replayPending += len(entries)
	p.replayTruncate = evs[len(evs)-1].Version + 1
	p.mu.Unlock()
	signal(p.notify)
	return len(entries), nil
}

// saveReplayed hides replayed parked events once all are finished.
func (p *Persistent) saveReplayed(ctx context.Context) error {
	p.mu.Lock()
	pending, target, saved := p.replayPending, p.replayTruncate, p.replaySaved
	p.mu.Unlock()
	if pending > 0 || target <= saved {
		return nil
	}
	if err := p.s.SetMetadata(ctx, p.cfg.parkedStream(), StreamMetadata{TruncateBefore: target}); err != nil {
		return err
	}
	p.mu.Lock()
	p.replaySaved = target
	p.mu.Unlock()
	return nil
}

// Close stops the group, saving its checkpoint.
func (p *Persistent) Close() error { return p.close(true) }

// close stops the group; with save it saves its checkpoint and replayed
// positions. A host that lost its lease stops without: another process
// runs the group now, and an old checkpoint saved after its newer one
// would send events again after its next restart.
func (p *Persistent) close(save bool) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.closedCh)
	p.mu.Unlock()
	if p.cfg.Registerer != nil {
		for _, c := range p.collectors {
			p.cfg.Registerer.Unregister(c)
		}
	}
	p.cancel()
	p.wg.Wait()
	if !save {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(p.saveCheckpoint(ctx), p.saveReplayed(ctx))
}

func (p *Persistent) initMetrics() {
	labels := prometheus.Labels{"group": p.cfg.Group}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	p.acks = counter("herald_persistent_subscription_acks_total", "Deliveries acknowledged.")
	p.nacks = counter("herald_persistent_subscription_nacks_total", "Deliveries rejected.")
	p.parks = counter("herald_persistent_subscription_parked_total", "Events parked after their retries.")
	p.redeliveries = counter("herald_persistent_subscription_redeliveries_total", "Events delivered again after a nack or an ack timeout.")
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "herald_persistent_subscription_in_flight", Help: "Events read and not yet acknowledged or parked.", ConstLabels: labels,
	}, func() float64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return float64(len(p.order))
	})
	cp := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "herald_persistent_subscription_checkpoint", Help: "Every event before this position (or version) is finished.", ConstLabels: labels,
	}, func() float64 { return float64(p.Checkpoint()) })
	p.collectors = []prometheus.Collector{p.acks, p.nacks, p.parks, p.redeliveries, inflight, cp}
}
