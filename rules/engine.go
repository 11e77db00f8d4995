package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/rules/pattern"
)

// Errors callers test with errors.Is.
var (
	ErrNotFound = errors.New("rules: not found")
	ErrExists   = errors.New("rules: already exists")
	ErrClosed   = errors.New("rules: engine closed")
	ErrInUse    = errors.New("rules: bus has rules")
)

// DefinitionsTopic is the compacted topic holding bus and rule definitions.
const DefinitionsTopic = "__herald_rules"

// Config configures an Engine.
type Config struct {
	// Log stores buses, definitions and targets' topics; required.
	Log eventlog.Log
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the metrics (nil: none).
	Registerer prometheus.Registerer
	// HTTPClient delivers to webhooks (default: 10 s timeout).
	HTTPClient *http.Client
	// BusPartitions is the partition count of a new bus topic (default 3).
	BusPartitions int
	// RetryBase and RetryMax bound the exponential backoff between
	// attempts (defaults 1 s and 60 s); each wait is jittered.
	RetryBase, RetryMax time.Duration
	// MaxInFlight bounds the events a bus holds in memory waiting for
	// their deliveries (default 100,000).
	MaxInFlight int
	// CommitInterval is how often delivered offsets are committed
	// (default 200 ms).
	CommitInterval time.Duration
	// WebhookConcurrency is the requests in flight per webhook target
	// (default 8).
	WebhookConcurrency int
	// CloseGrace bounds how long Close lets deliveries in flight finish
	// before aborting them (default 5 s), and how long an engine giving up
	// bus partitions to another lets theirs finish before committing.
	CloseGrace time.Duration
	// SessionTimeout is the bus consumer groups' session timeout: how long
	// after an engine dies (without Close) its bus partitions move to the
	// other engines (default eventlog.DefaultSessionTimeout).
	SessionTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.BusPartitions <= 0 {
		c.BusPartitions = 3
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 60 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 100_000
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = 200 * time.Millisecond
	}
	if c.WebhookConcurrency <= 0 {
		c.WebhookConcurrency = 8
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = 5 * time.Second
	}
}

// Engine runs buses and rules. Its methods are safe for concurrent use.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	prod *eventlog.Producer
	m    *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// replaySets maps a replay's name to its rule set, read by the
	// dispatchers without taking mu.
	replaySets sync.Map
	// followed is the definitions offset the follower has applied up to.
	followed atomic.Int64

	writersMu sync.Mutex
	writers   map[string]*topicWriter

	// own holds the definitions topic offsets this engine wrote and its
	// follower has not yet passed.
	ownMu sync.Mutex
	own   map[int64]struct{}

	mu struct {
		sync.Mutex
		buses    map[string]*busState
		archives map[string]*archiveState
		replays  map[string]*replayState
		closed   bool
	}
}

type busState struct {
	bus     Bus
	machine *pattern.Machine
	cancel  context.CancelFunc
	done    chan struct{}
	// launch starts reading the bus; launched says it ran (guarded by
	// Engine.mu).
	launch   func()
	launched bool
	// parts are the dispatchers of the partitions this engine owns in the
	// bus's consumer group.
	parts struct {
		sync.Mutex
		m        map[int32]*partRun
		consumer eventlog.GroupConsumer
	}
	// inflight counts events held for delivery; the dispatcher waits
	// while it is at MaxInFlight.
	inflight atomic.Int64
	wake     chan struct{}

	archiveMachine *pattern.Machine

	mu       sync.RWMutex
	rules    map[string]*ruleState
	archives map[string]*archiveState

	// runs are the replays of the bus running on this engine (name ->
	// *replayState); see ownsReplays.
	runs sync.Map
}

// ownsReplays reports whether this engine owns partition 0 of the bus,
// where replayed events go, and so runs the bus's replays.
func (bs *busState) ownsReplays() bool {
	bs.parts.Lock()
	defer bs.parts.Unlock()
	_, ok := bs.parts.m[0]
	return ok
}

type ruleState struct {
	c        *compiled
	targets  map[string]*targetWorker
	stop     context.CancelFunc // of the schedule loop
	matched  atomic.Int64
	matchedC prometheus.Counter // e.m.matched's child, looked up once
}

// New returns an Engine; call Start to load definitions and run.
func New(cfg Config) (*Engine, error) {
	if cfg.Log == nil {
		return nil, errors.New("rules: Config.Log is required")
	}
	cfg.setDefaults()
	e := &Engine{cfg: cfg, log: cfg.Logger.With("component", "rules"), prod: eventlog.NewProducer(cfg.Log)}
	e.m = newMetrics(cfg.Registerer)
	e.writers = map[string]*topicWriter{}
	e.own = map[int64]struct{}{}
	e.mu.buses = map[string]*busState{}
	e.mu.archives = map[string]*archiveState{}
	e.mu.replays = map[string]*replayState{}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Start loads the definitions, makes sure the default bus exists and
// starts every bus's dispatcher and every rule's workers.
func (e *Engine) Start(ctx context.Context) error {
	err := e.cfg.Log.CreateTopic(ctx, DefinitionsTopic, 1, map[string]string{"cleanup.policy": "compact"})
	if err != nil && !errors.Is(err, eventlog.ErrTopicExists) {
		return fmt.Errorf("rules: create %s: %w", DefinitionsTopic, err)
	}
	buses := map[string]Bus{}
	rules := map[string]Rule{}
	archives := map[string]Archive{}
	replays := map[string]Replay{}
	start, end, err := e.cfg.Log.Offsets(ctx, DefinitionsTopic, 0)
	if err != nil {
		return fmt.Errorf("rules: read definitions: %w", err)
	}
	for off := start; off < end; {
		recs, err := e.cfg.Log.Read(ctx, DefinitionsTopic, 0, off, eventlog.ReadOptions{})
		if err != nil {
			return fmt.Errorf("rules: read definitions at %d: %w", off, err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			off = r.Offset + 1
			k := string(r.Key)
			switch {
			case strings.HasPrefix(k, "bus/"):
				if r.Value == nil {
					delete(buses, k)
					continue
				}
				var b Bus
				if err := json.Unmarshal(r.Value, &b); err != nil {
					return fmt.Errorf("rules: definition %s at offset %d: %w", k, r.Offset, err)
				}
				buses[k] = b
			case strings.HasPrefix(k, "rule/"):
				if r.Value == nil {
					delete(rules, k)
					continue
				}
				var rl Rule
				if err := json.Unmarshal(r.Value, &rl); err != nil {
					return fmt.Errorf("rules: definition %s at offset %d: %w", k, r.Offset, err)
				}
				rules[k] = rl
			case strings.HasPrefix(k, "archive/"):
				if r.Value == nil {
					delete(archives, k)
					continue
				}
				var a Archive
				if err := json.Unmarshal(r.Value, &a); err != nil {
					return fmt.Errorf("rules: definition %s at offset %d: %w", k, r.Offset, err)
				}
				archives[k] = a
			case strings.HasPrefix(k, "replay/"):
				var rp Replay
				if err := json.Unmarshal(r.Value, &rp); err != nil {
					return fmt.Errorf("rules: definition %s at offset %d: %w", k, r.Offset, err)
				}
				replays[k] = rp
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range buses {
		if err := e.startBusLocked(ctx, b, false); err != nil {
			return err
		}
	}
	for _, name := range []string{DefaultBus, SystemBus} {
		if _, ok := e.mu.buses[name]; !ok {
			if _, err := e.createBusLocked(ctx, name, false); err != nil {
				return err
			}
		}
	}
	for k, r := range rules {
		c, err := validate(r)
		if err != nil {
			e.log.Error("stored rule no longer valid; skipped", "rule", k, "err", err)
			continue
		}
		bs := e.mu.buses[c.Bus]
		if bs == nil {
			e.log.Error("stored rule of a missing bus; skipped", "rule", k)
			continue
		}
		e.installRule(bs, c)
	}
	for k, a := range archives {
		bs := e.mu.buses[a.Bus]
		if bs == nil {
			e.log.Error("stored archive of a missing bus; skipped", "archive", k)
			continue
		}
		var p *pattern.Pattern
		if len(a.EventPattern) > 0 && string(a.EventPattern) != "null" {
			if p, err = pattern.Compile(a.EventPattern); err != nil {
				e.log.Error("stored archive pattern no longer valid; skipped", "archive", k, "err", err)
				continue
			}
		}
		e.installArchiveLocked(bs, a, p)
	}
	for _, rp := range replays {
		rs := newReplayState(rp)
		e.mu.replays[rp.Name] = rs
		e.replaySets.Store(rp.Name, rs.rules)
		if rp.terminal() {
			continue
		}
		// A replay left unfinished goes on from its stored progress on
		// the engine that owns its bus's partition 0 (runOwnedReplays);
		// one being cancelled is cancelled, and one whose archive is gone
		// fails.
		as := e.mu.archives[rp.Archive]
		switch {
		case rp.State == ReplayCancelling:
			rs.r.State, rs.r.Ended = ReplayCancelled, time.Now().UTC()
		case as == nil || e.mu.buses[as.a.Bus] == nil:
			rs.r.State, rs.r.Reason, rs.r.Ended = ReplayFailed, "its archive no longer exists", time.Now().UTC()
		default:
			continue
		}
		rs.stored = rs.r
		if err := e.putDefinition(ctx, "replay/"+rp.Name, rs.r); err != nil {
			return err
		}
	}
	for _, bs := range e.mu.buses {
		bs.launchOnce()
	}
	// Other engines on the log may change definitions from now on.
	e.followed.Store(end)
	e.wg.Add(1)
	go e.follow(end)
	return nil
}

// Close stops dispatchers and workers and commits what was delivered.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.mu.closed {
		e.mu.Unlock()
		return nil
	}
	e.mu.closed = true
	buses := make([]*busState, 0, len(e.mu.buses))
	for _, b := range e.mu.buses {
		buses = append(buses, b)
	}
	e.mu.Unlock()
	// Stop reading the buses first, then let every worker finish the
	// batch it is delivering, then commit: a clean Close leaves nothing
	// delivered but uncommitted. Not under e.mu: no bus launches after
	// closed is set, and the goroutines waited for may need e.mu.
	for _, b := range buses {
		b.stopAndWait()
	}
	var workers []*targetWorker
	for _, b := range buses {
		b.mu.Lock()
		for _, r := range b.rules {
			if r.stop != nil {
				r.stop()
			}
			for _, w := range r.targets {
				workers = append(workers, w)
			}
		}
		for _, a := range b.archives {
			workers = append(workers, a.worker)
		}
		b.mu.Unlock()
	}
	for _, w := range workers {
		w.stop(false)
	}
	exited := make(chan struct{})
	go func() {
		for _, w := range workers {
			<-w.exited
		}
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(e.cfg.CloseGrace):
		// A hanging target must not hold Close: abort what is in flight;
		// it stays uncommitted and is delivered again after a restart.
		e.log.Warn("deliveries still in flight at close; aborting them", "grace", e.cfg.CloseGrace)
		e.cancel()
		<-exited
	}
	for _, b := range buses {
		e.handOffReplays(b) // their progress stored before another engine resumes them
		if b.launched {
			e.commit(b)
		}
		b.leave() // after the commit: another engine takes over from it
	}
	e.cancel()
	e.wg.Wait()
	return nil
}

func (e *Engine) putDefinition(ctx context.Context, key string, v any) error {
	var val []byte
	if v != nil {
		var err error
		if val, err = json.Marshal(v); err != nil {
			return err
		}
	}
	off, err := e.cfg.Log.Append(ctx, DefinitionsTopic, 0, []eventlog.Record{{Key: []byte(key), Value: val}})
	if err != nil {
		return fmt.Errorf("rules: store %s: %w", key, err)
	}
	// The follower skips this engine's own writes: applied again later
	// they could undo a newer change (a rule deleted just after it was
	// stored would come back for a moment).
	// Replays are not written under e.mu, so not noted: the follower
	// applies their own writes too (see applyReplay).
	if !strings.HasPrefix(key, "replay/") {
		e.ownMu.Lock()
		e.own[off] = struct{}{}
		e.ownMu.Unlock()
	}
	return nil
}

// CreateBus creates a bus and its topic.
func (e *Engine) CreateBus(ctx context.Context, name string) (Bus, error) {
	if err := validName("name", name); err != nil {
		return Bus{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		return Bus{}, ErrClosed
	}
	if _, ok := e.mu.buses[name]; ok {
		return Bus{}, fmt.Errorf("bus %q: %w", name, ErrExists)
	}
	return e.createBusLocked(ctx, name, true)
}

func (e *Engine) createBusLocked(ctx context.Context, name string, launch bool) (Bus, error) {
	err := e.cfg.Log.CreateTopic(ctx, name, e.cfg.BusPartitions, nil)
	if err != nil && !errors.Is(err, eventlog.ErrTopicExists) {
		return Bus{}, fmt.Errorf("rules: create bus topic %s: %w", name, err)
	}
	b := Bus{Name: name, Topic: name, Created: time.Now().UTC()}
	if err := e.putDefinition(ctx, "bus/"+name, b); err != nil {
		return Bus{}, err
	}
	return b, e.startBusLocked(ctx, b, launch)
}

// DeleteBus deletes a bus definition (not its topic); it must have no rules.
func (e *Engine) DeleteBus(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	bs, ok := e.mu.buses[name]
	if !ok {
		return fmt.Errorf("bus %q: %w", name, ErrNotFound)
	}
	if name == DefaultBus || name == SystemBus {
		return httpjson.Errorf(httpjson.CodeFailedPrecondition, "name", "the %s bus cannot be deleted", name)
	}
	bs.mu.RLock()
	n := len(bs.rules)
	bs.mu.RUnlock()
	bs.mu.RLock()
	na := len(bs.archives)
	bs.mu.RUnlock()
	if n > 0 || na > 0 {
		return fmt.Errorf("bus %q has %d rules and %d archives: %w", name, n, na, ErrInUse)
	}
	if err := e.putDefinition(ctx, "bus/"+name, nil); err != nil {
		return err
	}
	bs.stopAndWait()
	bs.leave()
	delete(e.mu.buses, name)
	return nil
}

// Buses lists the buses, sorted by name.
func (e *Engine) Buses() []Bus {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Bus
	for _, b := range e.mu.buses {
		out = append(out, b.bus)
	}
	slices.SortFunc(out, func(a, b Bus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Bus returns one bus.
func (e *Engine) Bus(name string) (Bus, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.mu.buses[name]
	if !ok {
		return Bus{}, fmt.Errorf("bus %q: %w", name, ErrNotFound)
	}
	return b.bus, nil
}

// PutRule creates a rule (create) or replaces an existing one (!create).
// Invalid rules are refused with an *httpjson.Error naming the field.
func (e *Engine) PutRule(ctx context.Context, r Rule, create bool) (Rule, error) {
	c, err := validate(r)
	if err != nil {
		return Rule{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		return Rule{}, ErrClosed
	}
	bs, ok := e.mu.buses[c.Bus]
	if !ok {
		return Rule{}, httpjson.Errorf(httpjson.CodeNotFound, "bus", "bus %q does not exist", c.Bus)
	}
	bs.mu.RLock()
	old := bs.rules[c.Name]
	bs.mu.RUnlock()
	now := time.Now().UTC()
	switch {
	case create && old != nil:
		return Rule{}, fmt.Errorf("rule %q on bus %q: %w", c.Name, c.Bus, ErrExists)
	case !create && old == nil:
		return Rule{}, fmt.Errorf("rule %q on bus %q: %w", c.Name, c.Bus, ErrNotFound)
	case old != nil:
		c.Created = old.c.Created
	default:
		c.Created = now
	}
	c.Updated = now
	if err := e.putDefinition(ctx, ruleKey(c.Bus, c.Name), c.Rule); err != nil {
		return Rule{}, err
	}
	e.installRule(bs, c)
	if old == nil {
		e.emitAsync(TypeRuleCreated, c.Bus+"/"+c.Name, map[string]string{"bus": c.Bus, "rule": c.Name})
	}
	return c.Rule, nil
}

// SetState enables or disables a rule.
func (e *Engine) SetState(ctx context.Context, bus, name, state string) (Rule, error) {
	r, err := e.Rule(bus, name)
	if err != nil {
		return Rule{}, err
	}
	r.State = state
	return e.PutRule(ctx, r, false)
}

// DeleteRule deletes a rule; deliveries it still owes are dropped.
func (e *Engine) DeleteRule(ctx context.Context, bus, name string) error {
	if bus == "" {
		bus = DefaultBus
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	bs, ok := e.mu.buses[bus]
	if !ok {
		return fmt.Errorf("bus %q: %w", bus, ErrNotFound)
	}
	bs.mu.Lock()
	rs, ok := bs.rules[name]
	bs.mu.Unlock()
	if !ok {
		return fmt.Errorf("rule %q on bus %q: %w", name, bus, ErrNotFound)
	}
	if err := e.putDefinition(ctx, ruleKey(bus, name), nil); err != nil {
		return err
	}
	bs.machine.Remove(name)
	bs.mu.Lock()
	delete(bs.rules, name)
	e.uninstallTargetsLocked(rs, nil)
	bs.mu.Unlock()
	e.emitAsync(TypeRuleDeleted, bus+"/"+name, map[string]string{"bus": bus, "rule": name})
	return nil
}

// readRule calls fn with a rule's state under its bus's read lock; bus ""
// is the default bus. The error wraps ErrNotFound when there is no such bus
// or rule.
func (e *Engine) readRule(bus, name string, fn func(*ruleState)) error {
	if bus == "" {
		bus = DefaultBus
	}
	e.mu.Lock()
	bs, ok := e.mu.buses[bus]
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("bus %q: %w", bus, ErrNotFound)
	}
	bs.mu.RLock()
	defer bs.mu.RUnlock()
	rs, ok := bs.rules[name]
	if !ok {
		return fmt.Errorf("rule %q on bus %q: %w", name, bus, ErrNotFound)
	}
	fn(rs)
	return nil
}

// Rule returns a rule.
func (e *Engine) Rule(bus, name string) (Rule, error) {
	var r Rule
	err := e.readRule(bus, name, func(rs *ruleState) { r = rs.c.Rule })
	return r, err
}

// Rules lists a bus's rules (all buses when bus is ""), sorted.
func (e *Engine) Rules(bus string) []Rule {
	e.mu.Lock()
	var bss []*busState
	for _, b := range e.mu.buses {
		if bus == "" || b.bus.Name == bus {
			bss = append(bss, b)
		}
	}
	e.mu.Unlock()
	var out []Rule
	for _, b := range bss {
		b.mu.RLock()
		for _, r := range b.rules {
			out = append(out, r.c.Rule)
		}
		b.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b Rule) int {
		if c := strings.Compare(a.Bus, b.Bus); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// installRule makes c live on bs, replacing a rule of that name. Target
// workers of kept target ids continue with the new definition.
func (e *Engine) installRule(bs *busState, c *compiled) {
	bs.mu.Lock()
	old := bs.rules[c.Name]
	rs := &ruleState{c: c, targets: map[string]*targetWorker{}, matchedC: e.m.matched.WithLabelValues(bs.bus.Name, c.Name)}
	if old != nil {
		rs.matched.Store(old.matched.Load())
		if old.stop != nil {
			old.stop()
		}
	}
	for i, t := range c.Targets {
		var w *targetWorker
		if old != nil {
			w = old.targets[t.ID]
		}
		if w == nil {
			w = e.newTargetWorker(bs.bus.Name, c.Name, t.ID)
		}
		w.setConfig(t, c.tmpl[i])
		rs.targets[t.ID] = w
	}
	if old != nil {
		e.uninstallTargetsLocked(old, rs.targets)
	}
	if c.schedule != nil && c.State == Enabled {
		ctx, cancel := context.WithCancel(e.ctx)
		rs.stop = cancel
		e.wg.Add(1)
		go e.runSchedule(ctx, bs, rs)
	}
	bs.rules[c.Name] = rs
	bs.mu.Unlock()
	// The machine holds only enabled pattern rules.
	if c.pattern != nil && c.State == Enabled {
		bs.machine.Add(c.Name, c.pattern)
	} else {
		bs.machine.Remove(c.Name)
	}
}

// uninstallTargetsLocked stops rs's workers that keep is not reusing.
func (e *Engine) uninstallTargetsLocked(rs *ruleState, keep map[string]*targetWorker) {
	if rs.stop != nil {
		rs.stop()
	}
	for id, w := range rs.targets {
		if keep != nil && keep[id] == w {
			continue
		}
		w.stop(true)
	}
}

// ---- dispatch ----

func (e *Engine) groupName(bus string) string { return "herald.rules." + bus }

func (e *Engine) startBusLocked(ctx context.Context, b Bus, launch bool) error {
	_, err := e.cfg.Log.Topic(ctx, b.Topic)
	if errors.Is(err, eventlog.ErrUnknownTopic) {
		if err = e.cfg.Log.CreateTopic(ctx, b.Topic, e.cfg.BusPartitions, nil); err == nil || errors.Is(err, eventlog.ErrTopicExists) {
			_, err = e.cfg.Log.Topic(ctx, b.Topic)
		}
	}
	if err != nil {
		return fmt.Errorf("rules: bus %s topic: %w", b.Name, err)
	}
	bctx, cancel := context.WithCancel(e.ctx)
	bs := &busState{bus: b, machine: pattern.NewMachine(), cancel: cancel, done: make(chan struct{}),
		rules: map[string]*ruleState{}, wake: make(chan struct{}, 1),
		archiveMachine: pattern.NewMachine(), archives: map[string]*archiveState{}}
	bs.parts.m = map[int32]*partRun{}
	e.mu.buses[b.Name] = bs
	// The bus is read later, when Start has loaded the rules: an event
	// must not be matched before every rule is in the machine.
	bs.launch = func() {
		go func() {
			defer close(bs.done)
			e.consume(bctx, bs)
		}()
	}
	if launch {
		bs.launchOnce()
	}
	return nil
}

// launchOnce starts reading the bus (once).
func (bs *busState) launchOnce() {
	if !bs.launched {
		bs.launched = true
		bs.launch()
	}
}

// stopAndWait stops reading the bus and waits for the dispatchers and
// their last commit. The bus's group membership stays until leave.
func (bs *busState) stopAndWait() {
	bs.cancel()
	if bs.launched {
		<-bs.done
	}
}

// leave leaves the bus's consumer group, so its partitions go to the
// other engines reading the bus.
func (bs *busState) leave() {
	bs.parts.Lock()
	gc := bs.parts.consumer
	bs.parts.consumer = nil
	bs.parts.Unlock()
	if gc != nil {
		gc.Close()
	}
}

// partRun is the dispatcher of one bus partition this engine owns.
type partRun struct {
	part   int32
	t      *partTracker
	in     chan []eventlog.Record
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// partTracker follows one partition's records from dispatch to the end
// of their deliveries, to know what offset may be committed.
type partTracker struct {
	mu      sync.Mutex
	pending map[int64]int // offset -> deliveries outstanding
	order   []int64       // offsets with deliveries outstanding, ascending
	next    int64         // the offset after the last dispatched record; -1 before the first
	last    atomic.Int64  // last committed (the commit loop and revoke read it)
}

func newPartTracker() *partTracker {
	t := &partTracker{pending: map[int64]int{}, next: -1}
	t.last.Store(-1)
	return t
}

// position is the offset to commit: the first with deliveries
// outstanding, or the next to dispatch; -1 when nothing was dispatched.
func (t *partTracker) position() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.order) > 0 && t.pending[t.order[0]] == 0 {
		delete(t.pending, t.order[0])
		t.order = t.order[1:]
	}
	if len(t.order) > 0 {
		return t.order[0]
	}
	return t.next
}

// idle reports whether no delivery of the partition is outstanding.
func (t *partTracker) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.order) > 0 && t.pending[t.order[0]] == 0 {
		delete(t.pending, t.order[0])
		t.order = t.order[1:]
	}
	return len(t.order) == 0
}

// consume reads the bus as a member of its consumer group
// ("herald.rules.BUS"): every engine on the log joins it, so each
// partition, and so each event, is matched by one engine. It returns when
// ctx ends, after the dispatchers have stopped and what they finished is
// committed.
func (e *Engine) consume(ctx context.Context, bs *busState) {
	opts := eventlog.GroupOptions{
		StartAt:        eventlog.StartEarliest,
		SessionTimeout: e.cfg.SessionTimeout,
		OnAssigned: func(_ context.Context, tps []eventlog.TopicPartition) {
			for _, tp := range tps {
				bs.partFor(ctx, e, tp.Partition)
				if tp.Partition == 0 {
					// NB: not on this goroutine: e.mu may be held by
					// one waiting for this consumer.
					go e.runOwnedReplays(bs)
				}
			}
			e.log.Debug("bus partitions assigned", "bus", bs.bus.Name, "partitions", tps)
		},
		OnRevoked: func(_ context.Context, tps []eventlog.TopicPartition) {
			e.revoke(ctx, bs, tps)
		},
	}
	var gc eventlog.GroupConsumer
	for {
		var err error
		gc, err = e.cfg.Log.JoinGroup(ctx, e.groupName(bs.bus.Name), []string{bs.bus.Topic}, opts)
		if err == nil {
			break
		}
		e.log.Warn("join bus group", "bus", bs.bus.Name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	bs.parts.Lock()
	bs.parts.consumer = gc
	bs.parts.Unlock()
	commitDone := make(chan struct{})
	go func() {
		defer close(commitDone)
		e.commitLoop(ctx, bs)
	}()
	for ctx.Err() == nil {
		recs, err := gc.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, eventlog.ErrClosed) {
				break
			}
			e.log.Warn("read bus", "bus", bs.bus.Name, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		// Poll returns each partition's records in order; hand each
		// partition's run to its dispatcher.
		for len(recs) > 0 {
			n := 1
			for n < len(recs) && recs[n].Partition == recs[0].Partition {
				n++
			}
			bs.parts.Lock()
			pr := bs.parts.m[recs[0].Partition]
			bs.parts.Unlock()
			if pr == nil {
				// Revoked since Poll returned: the next owner reads
				// them again from the committed offset.
				recs = recs[n:]
				continue
			}
			select {
			case pr.in <- recs[:n]:
			case <-pr.ctx.Done(): // revoked: the next owner reads them again
			case <-ctx.Done():
			}
			recs = recs[n:]
		}
	}
	<-commitDone
	bs.parts.Lock()
	runs := make([]*partRun, 0, len(bs.parts.m))
	for _, pr := range bs.parts.m {
		runs = append(runs, pr)
	}
	bs.parts.Unlock()
	for _, pr := range runs {
		pr.cancel()
		<-pr.done
	}
	e.commit(bs) // what finished while stopping
}

// partFor returns the dispatcher of partition p, starting it if needed
// (OnAssigned: before Poll returns the partition's records).
func (bs *busState) partFor(ctx context.Context, e *Engine, p int32) *partRun {
	bs.parts.Lock()
	defer bs.parts.Unlock()
	if pr := bs.parts.m[p]; pr != nil {
		return pr
	}
	pctx, cancel := context.WithCancel(ctx)
	pr := &partRun{part: p, t: newPartTracker(), in: make(chan []eventlog.Record, 2), ctx: pctx, cancel: cancel,
		done: make(chan struct{})}
	bs.parts.m[p] = pr
	go func() {
		defer close(pr.done)
		for {
			select {
			case <-pctx.Done():
				return
			case recs := <-pr.in:
				e.dispatch(pctx, bs, pr, recs)
			}
		}
	}()
	return pr
}

// revoke stops the dispatchers of partitions the engine gives up and,
// while the engine runs, lets their deliveries finish (for CloseGrace at
// most) and commits them, so that the next owner starts where this
// engine stopped rather than deliver again what it delivered.
func (e *Engine) revoke(ctx context.Context, bs *busState, tps []eventlog.TopicPartition) {
	for _, tp := range tps {
		if tp.Partition == 0 {
			// Before another engine can own it and resume them.
			e.handOffReplays(bs)
		}
	}
	var runs []*partRun
	bs.parts.Lock()
	gc := bs.parts.consumer
	for _, tp := range tps {
		if pr := bs.parts.m[tp.Partition]; pr != nil {
			runs = append(runs, pr)
			delete(bs.parts.m, tp.Partition)
		}
	}
	bs.parts.Unlock()
	offs := map[eventlog.TopicPartition]int64{}
	for _, pr := range runs {
		pr.cancel()
		<-pr.done
		if e.ctx.Err() != nil {
			continue // crashed or aborted: what is owed stays uncommitted
		}
		deadline := time.Now().Add(e.cfg.CloseGrace)
		for ctx.Err() == nil && !pr.t.idle() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if pos := pr.t.position(); pos >= 0 && pos != pr.t.last.Load() {
			offs[eventlog.TopicPartition{Topic: bs.bus.Topic, Partition: pr.part}] = pos
		}
	}
	e.log.Debug("bus partitions revoked", "bus", bs.bus.Name, "partitions", tps)
	if len(offs) == 0 || gc == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gc.Commit(cctx, offs); err != nil {
		e.log.Warn("commit revoked bus partitions", "bus", bs.bus.Name, "err", err)
	}
}

func (e *Engine) commitLoop(ctx context.Context, bs *busState) {
	tick := time.NewTicker(e.cfg.CommitInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			e.commit(bs)
		}
	}
}

// commit commits the position of every partition the engine reads.
func (e *Engine) commit(bs *busState) {
	bs.parts.Lock()
	gc := bs.parts.consumer
	offs := map[eventlog.TopicPartition]int64{}
	runs := map[int32]*partRun{}
	for p, pr := range bs.parts.m {
		if pos := pr.t.position(); pos >= 0 && pos != pr.t.last.Load() {
			offs[eventlog.TopicPartition{Topic: bs.bus.Topic, Partition: p}] = pos
			runs[p] = pr
		}
	}
	bs.parts.Unlock()
	if len(offs) == 0 || gc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gc.Commit(ctx, offs); err != nil {
		if errors.Is(err, eventlog.ErrRebalanced) {
			e.log.Debug("bus commit after a rebalance; the partitions moved", "bus", bs.bus.Name)
			return
		}
		e.log.Warn("commit bus offsets", "bus", bs.bus.Name, "err", err)
		return
	}
	for tp, pos := range offs {
		runs[tp.Partition].t.last.Store(pos)
	}
}

// dispatch matches one partition's records and hands each to the
// matched rules' target workers.
func (e *Engine) dispatch(ctx context.Context, bs *busState, pr *partRun, recs []eventlog.Record) {
	t, part := pr.t, pr.part
	var names, anames []string
	for i := range recs {
		for bs.inflight.Load() >= int64(e.cfg.MaxInFlight) {
			select {
			case <-ctx.Done():
				return
			case <-bs.wake:
			case <-time.After(50 * time.Millisecond):
			}
		}
		if ctx.Err() != nil {
			return
		}
		r := &recs[i]
		off := r.Offset + 1
		ev, err := decodeRecord(r)
		if err != nil {
			e.m.malformed.WithLabelValues(bs.bus.Name).Inc()
			e.log.Warn("malformed event on bus; skipped", "bus", bs.bus.Name, "partition", part, "offset", r.Offset, "err", err)
			t.mu.Lock()
			t.next = off
			t.mu.Unlock()
			continue
		}
		names = bs.machine.MatchEvent(ev, names[:0])
		var jobs []*job
		var workers []*targetWorker
		replay := ev.Extensions[ReplayExtension]
		var only map[string]bool
		if replay != "" {
			// A replayed event goes only to its replay's rules.
			only = e.replayRules(replay)
		}
		if len(names) > 0 {
			bs.mu.RLock()
			for _, n := range names {
				rs := bs.rules[n]
				if rs == nil || rs.c.State != Enabled || (replay != "" && !only[n]) {
					continue
				}
				rs.matched.Add(1)
				rs.matchedC.Inc()
				for _, w := range rs.targets {
					workers = append(workers, w)
				}
			}
			bs.mu.RUnlock()
		}
		if replay == "" {
			bs.mu.RLock()
			if len(bs.archives) > 0 {
				anames = bs.archiveMachine.MatchEvent(ev, anames[:0])
				for _, as := range bs.archives {
					if as.all || slices.Contains(anames, as.a.Name) {
						workers = append(workers, as.worker)
					}
				}
			}
			bs.mu.RUnlock()
		}
		t.mu.Lock()
		if len(workers) > 0 {
			t.pending[r.Offset] = len(workers)
			t.order = append(t.order, r.Offset)
		}
		t.next = off
		t.mu.Unlock()
		if len(workers) == 0 {
			continue
		}
		bs.inflight.Add(1)
		rec := &sharedEvent{ev: ev, arrived: r.Timestamp,
			raw: eventlog.Record{Key: r.Key, Value: r.Value, Headers: r.Headers}}
		offset := r.Offset
		remaining := atomic.Int32{}
		remaining.Store(int32(len(workers)))
		done := func() {
			t.mu.Lock()
			t.pending[offset]--
			t.mu.Unlock()
			if remaining.Add(-1) == 0 {
				bs.inflight.Add(-1)
				select {
				case bs.wake <- struct{}{}:
				default:
				}
			}
		}
		for range workers {
			jobs = append(jobs, &job{ev: rec, done: done})
		}
		for i, w := range workers {
			w.enqueue(jobs[i])
		}
	}
}

func decodeRecord(r *eventlog.Record) (*event.Event, error) {
	m := event.Message{Key: r.Key, Value: r.Value, Headers: make([]event.Header, len(r.Headers))}
	for i, h := range r.Headers {
		m.Headers[i] = event.Header{Key: h.Key, Value: h.Value}
	}
	return event.Decode(m)
}

// sharedEvent is one bus event shared by the jobs it caused; its JSON
// form is built once, by the first transformer that needs it.
type sharedEvent struct {
	ev      *event.Event
	arrived time.Time
	// raw is the bus record ev was decoded from (Value nil when ev was
	// not read from a bus): a target receiving ev unchanged gets these
	// bytes rather than a fresh encoding.
	raw  eventlog.Record
	once sync.Once
	doc  []byte
}

func (s *sharedEvent) json() []byte {
	s.once.Do(func() { s.doc = pattern.EventJSON(s.ev) })
	return s.doc
}

// Publish appends an event to a bus (what a producer does; for tests and
// the HTTP API).
func (e *Engine) Publish(ctx context.Context, bus string, ev *event.Event) error {
	b, err := e.Bus(bus)
	if err != nil {
		return err
	}
	m, err := event.Encode(ev)
	if err != nil {
		return httpjson.Invalid("event", "%v", err)
	}
	rec := eventlog.Record{Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		rec.Headers = append(rec.Headers, eventlog.Header{Key: h.Key, Value: h.Value})
	}
	_, err = e.prod.Append(ctx, b.Topic, rec)
	return err
}

// runSchedule fires a scheduled rule: at each tick every target gets an
// event of source "herald.scheduler" and type "Scheduled Event".
func (e *Engine) runSchedule(ctx context.Context, bs *busState, rs *ruleState) {
	defer e.wg.Done()
	anchor := rs.c.Created
	if anchor.IsZero() {
		anchor = time.Now()
	}
	for {
		now := time.Now()
		next := rs.c.schedule.Next(now, anchor)
		if next.IsZero() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		ev := event.New("herald.scheduler", "Scheduled Event")
		ev.Time = next.UTC()
		ev.Subject = rs.c.Name
		ev.DataContentType = "application/json"
		ev.Data, _ = json.Marshal(map[string]string{"bus": bs.bus.Name, "rule": rs.c.Name, "schedule": rs.c.Schedule})
		rs.matched.Add(1)
		rs.matchedC.Inc()
		bs.mu.RLock()
		ws := make([]*targetWorker, 0, len(rs.targets))
		for _, w := range rs.targets {
			ws = append(ws, w)
		}
		bs.mu.RUnlock()
		se := &sharedEvent{ev: ev, arrived: time.Now()}
		for _, w := range ws {
			w.enqueue(&job{ev: se, done: func() {}})
		}
	}
}
