package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/event"
)

// Errors of the operator API, wrapped; test with errors.Is.
var (
	ErrNotFound = errors.New("saga: not found")
	ErrConflict = errors.New("saga: conflict")
	ErrInvalid  = errors.New("saga: invalid argument")
	ErrClosed   = errors.New("saga: engine closed")
)

// Config configures an Engine. Brokers is required.
type Config struct {
	// Brokers are the Kafka-protocol seed addresses (Herald's listener).
	Brokers []string
	// Inbox receives start requests, operator actions and participants'
	// replies, keyed by saga id (default "herald.saga.inbox").
	Inbox string
	// StateTopic is the compacted topic of instance states, keyed by saga
	// id, with the Inbox's partition count (default "herald.saga.state").
	StateTopic string
	// DefinitionsTopic is the compacted topic of registered definitions
	// (default "herald.saga.definitions").
	DefinitionsTopic string
	// Partitions is the partition count of the Inbox and StateTopic when
	// the engine creates them (default 8).
	Partitions int
	// Group is the engine's consumer group; engines of one group share
	// the partitions, hence the sagas (default "herald-saga-engine").
	Group string
	// TransactionalID must be stable per engine process and unique among
	// them: a restart then fences its crashed predecessor at once
	// (default Group + "-0").
	TransactionalID string
	// Definitions are registered at start unless an equal one is.
	Definitions []*Definition
	// MaxPoll bounds the inputs of one transaction (default 1000).
	MaxPoll int
	// RetainFinished, when positive, deletes completed and compensated
	// instances (a tombstone in the state topic) that long after they
	// finished; a reply or start request for one after that is treated as
	// for an unknown saga. Zero keeps them for ever. Parked and running
	// instances are never deleted.
	RetainFinished time.Duration
	// MaxHistory bounds an instance's history (default 200 entries).
	MaxHistory int
	// TimerInterval is how often deadlines are checked (default 50ms).
	TimerInterval time.Duration
	// TransactionTimeout (default 10s): an engine that dies mid
	// transaction blocks its partitions for at most this long, unless
	// its successor uses the same TransactionalID.
	TransactionTimeout time.Duration
	// SessionTimeout and RebalanceTimeout of the group (defaults 6s, 10s).
	SessionTimeout, RebalanceTimeout time.Duration
	// KgoOptions are passed to every franz-go client (TLS, SASL).
	KgoOptions []kgo.Opt
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// TracerProvider gets the span of each command sent (nil: the global
	// provider, otel.GetTracerProvider, looked up when the span starts).
	TracerProvider trace.TracerProvider
	// OnEvent, if set, receives a herald.saga.completed or
	// herald.saga.compensated event (source "herald/sagas") once the
	// transaction that finished a saga committed.
	OnEvent event.Hook
}

// The system events the engine emits through Config.OnEvent.
const (
	SystemSource        = "herald/sagas"
	TypeSagaCompleted   = "herald.saga.completed"
	TypeSagaCompensated = "herald.saga.compensated"
)

// FinishedEvent is the data of a herald.saga.completed or compensated
// event.
type FinishedEvent struct {
	ID         string    `json:"id"`
	Definition string    `json:"definition"`
	Version    int       `json:"version"`
	Status     Status    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	Created    time.Time `json:"created"`
	Ended      time.Time `json:"ended"`
}

func (c *Config) setDefaults() {
	if c.Inbox == "" {
		c.Inbox = "herald.saga.inbox"
	}
	if c.StateTopic == "" {
		c.StateTopic = "herald.saga.state"
	}
	if c.DefinitionsTopic == "" {
		c.DefinitionsTopic = "herald.saga.definitions"
	}
	if c.Partitions <= 0 {
		c.Partitions = 8
	}
	if c.Group == "" {
		c.Group = "herald-saga-engine"
	}
	if c.TransactionalID == "" {
		c.TransactionalID = c.Group + "-0"
	}
	if c.MaxPoll <= 0 {
		c.MaxPoll = 1000
	}
	if c.MaxHistory <= 0 {
		c.MaxHistory = 200
	}
	if c.TimerInterval <= 0 {
		c.TimerInterval = 50 * time.Millisecond
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = 10 * time.Second
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 6 * time.Second
	}
	if c.RebalanceTimeout <= 0 {
		c.RebalanceTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Engine runs sagas: an exactly-once consume-transform-produce loop over
// its inbox. Each transaction writes the new states of the instances it
// changed to the state topic, the commands they send, and the input
// offsets, together or not at all (a transactional outbox). Partitions'
// instances are held in memory by the engine that owns them, loaded from
// the state topic when assigned; deadlines live in the state, so timers
// survive restarts.
//
// The operator API (Get, List, Start, Retry, Abort) works on any engine of
// the group: reads come from a view of the state topic, writes go through
// the inbox.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	cl    *kgo.Client // producer for the operator API and definitions
	adm   *kadm.Client
	sess  *kgo.GroupTransactSession
	view  *view
	start time.Time

	defs struct {
		sync.RWMutex
		byKey  map[string]*Definition
		latest map[string]*Definition
	}
	state struct {
		sync.Mutex
		parts map[int32]map[string]*Instance
		// catchUp holds, per partition assigned and not yet caught up,
		// the inbox end offset at assignment: timers wait until the
		// replies that arrived while no engine owned it are read, or a
		// reply waiting in the inbox would be taken for a timeout.
		catchUp map[int32]int64
		// timed holds, per partition, the instances with a deadline, so
		// the timer scan does not visit every finished saga.
		timed map[int32]map[string]time.Time
	}
	running atomic.Bool
	failed  atomic.Pointer[error] // why the engine stopped on its own
	cancel  context.CancelFunc
	done    chan struct{}
	runErr  error
	closed  atomic.Bool
}

// Start creates the engine's topics if missing, registers
// cfg.Definitions, and starts the loop and the state view. ctx bounds the
// start only. Close stops the engine.
func Start(ctx context.Context, cfg Config) (*Engine, error) {
	cfg.setDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("saga: start: %w: no brokers", ErrInvalid)
	}
	e := &Engine{cfg: cfg, log: cfg.Logger.With("component", "saga"), m: newMetrics(cfg.Registerer), done: make(chan struct{}), start: time.Now()}
	e.defs.byKey, e.defs.latest = map[string]*Definition{}, map[string]*Definition{}
	e.state.parts = map[int32]map[string]*Instance{}
	e.state.catchUp = map[int32]int64{}
	e.state.timed = map[int32]map[string]time.Time{}
	var err error
	e.cl, err = kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	}, cfg.KgoOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("saga: start: %w", err)
	}
	e.adm = kadm.NewClient(e.cl)
	fail := func(err error) (*Engine, error) {
		e.cl.Close()
		return nil, fmt.Errorf("saga: start: %w", err)
	}
	if err := e.ensureTopics(ctx); err != nil {
		return fail(err)
	}
	if err := e.loadDefinitions(ctx); err != nil {
		return fail(err)
	}
	for _, d := range cfg.Definitions {
		if _, err := e.Register(ctx, d); err != nil {
			return fail(err)
		}
	}
	e.view, err = startView(cfg)
	if err != nil {
		return fail(err)
	}
	e.sess, err = kgo.NewGroupTransactSession(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Inbox),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// NB: control records make a partition's offsets contiguous, so
		// the engine knows exactly when it has caught up (catchUp).
		kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(partitioner{manual: cfg.StateTopic, def: kgo.StickyKeyPartitioner(nil)}),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.TransactionalID(cfg.TransactionalID),
		kgo.TransactionTimeout(cfg.TransactionTimeout),
		kgo.RequireStableFetchOffsets(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(max(cfg.SessionTimeout/10, 50*time.Millisecond)),
		kgo.RebalanceTimeout(cfg.RebalanceTimeout),
		kgo.OnPartitionsAssigned(e.assigned),
		kgo.OnPartitionsRevoked(e.revoked),
		kgo.OnPartitionsLost(e.revoked),
	}, cfg.KgoOptions...)...)
	if err != nil {
		e.view.close()
		return fail(err)
	}
	// NB: initialize the producer id before consuming: it fences a crashed
	// predecessor with our transactional id and aborts its open
	// transaction, which would otherwise hold the inbox offsets unstable
	// and the state partitions unreadable until it timed out.
	if _, _, err := e.sess.Client().ProducerID(ctx); err != nil {
		e.sess.Close()
		e.view.close()
		return fail(fmt.Errorf("init transactional producer: %w", err))
	}
	rctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.running.Store(true)
	go func() {
		defer close(e.done)
		e.runErr = e.loop(rctx)
		if e.runErr != nil {
			e.log.Error("saga engine stopped", "err", e.runErr)
		}
	}()
	e.log.Info("saga engine started", "inbox", cfg.Inbox, "state", cfg.StateTopic, "group", cfg.Group)
	return e, nil
}

// Close stops the loop (the transaction in progress finishes), leaves the
// group and disconnects. It is safe to call more than once.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	e.cancel()
	<-e.done
	e.sess.CloseAllowingRebalance()
	e.view.close()
	e.cl.Close()
	return e.runErr
}

// Done is closed when the engine has stopped: after Close, or on its own
// when it cannot go on (Err says why).
func (e *Engine) Done() <-chan struct{} { return e.done }

// Err is why the engine stopped on its own, once Done is closed (nil
// after a Close).
func (e *Engine) Err() error {
	select {
	case <-e.done:
		return e.runErr
	default:
		return nil
	}
}

// Config returns the engine's configuration, defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

type partitioner struct {
	manual string
	def    kgo.Partitioner
}

func (p partitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t == p.manual {
		return kgo.ManualPartitioner().ForTopic(t)
	}
	return p.def.ForTopic(t)
}

func (e *Engine) ensureTopics(ctx context.Context) error {
	compact := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	want := []struct {
		name    string
		parts   int32
		configs map[string]*string
	}{
		{e.cfg.Inbox, int32(e.cfg.Partitions), nil},
		{e.cfg.StateTopic, int32(e.cfg.Partitions), compact},
		{e.cfg.DefinitionsTopic, 1, compact},
	}
	for _, w := range want {
		resp, err := e.adm.CreateTopic(ctx, w.parts, 1, w.configs, w.name)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", w.name, err)
		}
		if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", w.name, resp.Err)
		}
	}
	td, err := e.adm.ListTopics(ctx, e.cfg.Inbox, e.cfg.StateTopic)
	if err != nil {
		return fmt.Errorf("describe topics: %w", err)
	}
	in, st := len(td[e.cfg.Inbox].Partitions), len(td[e.cfg.StateTopic].Partitions)
	if in == 0 || in != st {
		return fmt.Errorf("inbox %s has %d partitions and state topic %s %d: they must be equal and non-zero",
			e.cfg.Inbox, in, e.cfg.StateTopic, st)
	}
	return nil
}

// readPartitions reads topic's partitions parts from the start to the end
// offsets they had when it began, with read_committed, calling apply for
// each record. Control records are kept so the end is recognised exactly.
func readPartitions(ctx context.Context, cfg Config, topic string, parts []int32, apply func(*kgo.Record)) error {
	if len(parts) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KgoOptions...)...)
	if err != nil {
		return err
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	cl.Close()
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	offs := map[int32]kgo.Offset{}
	for _, p := range parts {
		l, ok := ends.Lookup(topic, p)
		if !ok || l.Err != nil {
			return fmt.Errorf("end offset of %s/%d: %v", topic, p, l.Err)
		}
		if l.Offset > 0 {
			want[p] = l.Offset
			offs[p] = kgo.NewOffset().AtStart()
		}
	}
	if len(want) == 0 {
		return nil
	}
	cl, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100 * time.Millisecond)}, cfg.KgoOptions...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	// NB: a partition that cannot be read to its end (an open transaction
	// of another producer holds it) must not hang the caller for ever.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fs.Errors() {
			return fmt.Errorf("read %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok {
				return
			}
			if !r.Attrs.IsControl() {
				apply(r)
			}
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return nil
}

// assigned loads the instances of the partitions gained from the state
// topic. It runs before the partitions' inbox records are polled.
func (e *Engine) assigned(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	parts := m[e.cfg.Inbox]
	loaded := map[int32]map[string]*Instance{}
	for _, p := range parts {
		loaded[p] = map[string]*Instance{}
	}
	n := 0
	err := readPartitions(ctx, e.cfg, e.cfg.StateTopic, parts, func(r *kgo.Record) {
		id := string(r.Key)
		if r.Value == nil {
			delete(loaded[r.Partition], id)
			return
		}
		var in Instance
		if err := json.Unmarshal(r.Value, &in); err != nil {
			e.log.Error("skipping an undecodable saga state", "partition", r.Partition, "offset", r.Offset, "err", err)
			return
		}
		loaded[r.Partition][id] = &in
		n++
	})
	if err != nil {
		// NB: without its state a partition must not be processed: a
		// reply would find no saga. Fail the session; Close reports it.
		e.log.Error("restoring saga state failed; stopping", "err", err)
		err = fmt.Errorf("restore saga state of partitions %v: %w", parts, err)
		e.failed.CompareAndSwap(nil, &err)
		e.cancel()
		return
	}
	catchUp := map[int32]int64{}
	ends, err1 := e.adm.ListEndOffsets(ctx, e.cfg.Inbox)
	committed, err2 := e.adm.FetchOffsets(ctx, e.cfg.Group)
	for _, p := range parts {
		end, ok := ends.Lookup(e.cfg.Inbox, p)
		if err1 != nil || !ok {
			catchUp[p] = -1 // unknown: wait for the first empty poll
			continue
		}
		c, ok := committed.Lookup(e.cfg.Inbox, p)
		if err2 != nil || !ok || c.At < end.Offset {
			catchUp[p] = end.Offset
		}
	}
	e.state.Lock()
	for p, insts := range loaded {
		e.state.parts[p] = insts
		timed := map[string]time.Time{}
		for id, in := range insts {
			if d := e.deadline(in); !d.IsZero() {
				timed[id] = d
			}
		}
		e.state.timed[p] = timed
		delete(e.state.catchUp, p)
		if end, ok := catchUp[p]; ok {
			e.state.catchUp[p] = end
		}
	}
	e.state.Unlock()
	if e.m != nil {
		e.m.restored.Add(float64(n))
	}
	e.log.Info("saga partitions assigned", "partitions", parts, "instances", n)
}

func (e *Engine) revoked(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	e.state.Lock()
	for _, p := range m[e.cfg.Inbox] {
		delete(e.state.parts, p)
		delete(e.state.timed, p)
		delete(e.state.catchUp, p)
	}
	e.state.Unlock()
}

// deadline is when the engine must next act on in: a step deadline, or
// the end of a finished instance's retention. Zero: never.
func (e *Engine) deadline(in *Instance) time.Time {
	if in.Status.Final() {
		if e.cfg.RetainFinished > 0 {
			return in.Updated.Add(e.cfg.RetainFinished)
		}
		return time.Time{}
	}
	return in.nextDeadline()
}

// batch is one transaction's work: copies of the instances it changed and
// what they send.
type batch struct {
	work    map[string]*Instance
	part    map[string]int32
	drop    map[string]int32 // finished instances past retention: tombstoned
	outs    []out
	effects map[string][]effect // by definition
}

func (b *batch) get(e *Engine, p int32, id string) *Instance {
	if in, ok := b.work[id]; ok {
		return in
	}
	if in, ok := e.state.parts[p][id]; ok {
		return in
	}
	return nil
}

func (e *Engine) machine(def *Definition, in *Instance, causeID string, now time.Time) *machine {
	return &machine{def: def, in: in, now: now, causeID: causeID, replyTo: e.cfg.Inbox, maxHistory: e.cfg.MaxHistory}
}

func (b *batch) keep(m *machine, p int32) {
	if !m.changed {
		return
	}
	m.in.Seq++
	m.in.Updated = m.now
	b.work[m.in.ID] = m.in
	b.part[m.in.ID] = p
	b.outs = append(b.outs, m.outs...)
	b.effects[m.def.Name] = append(b.effects[m.def.Name], m.effects...)
}

func (e *Engine) loop(ctx context.Context) error {
	var produceErr atomic.Pointer[error]
	onProduced := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, e.cfg.TimerInterval)
		fs := e.sess.PollRecords(pctx, e.cfg.MaxPoll)
		cancel()
		if ctx.Err() != nil || fs.IsClientClosed() {
			e.sess.AllowRebalance()
			if p := e.failed.Load(); p != nil {
				return *p
			}
			return nil
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				e.log.Warn("fetch error", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
			}
		}
		b := &batch{work: map[string]*Instance{}, part: map[string]int32{}, drop: map[string]int32{}, effects: map[string][]effect{}}
		now := e.cfg.Now().UTC()
		e.state.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := e.state.catchUp[r.Partition]; ok && end >= 0 && r.Offset+1 >= end {
				delete(e.state.catchUp, r.Partition)
			}
			if !r.Attrs.IsControl() {
				e.input(b, r, now)
			}
		})
		if fs.NumRecords() == 0 {
			for p, end := range e.state.catchUp {
				if end < 0 {
					delete(e.state.catchUp, p)
				}
			}
		}
		for p, timed := range e.state.timed {
			if _, waiting := e.state.catchUp[p]; waiting {
				continue
			}
			for id, d := range timed {
				if d.After(now) {
					continue
				}
				in := b.get(e, p, id)
				if in == nil {
					continue
				}
				if d := e.deadline(in); d.IsZero() || d.After(now) {
					continue
				}
				if in.Status.Final() {
					if _, changed := b.work[id]; !changed {
						b.drop[id] = p
					}
					continue
				}
				def := e.definition(in.Definition, in.Version)
				if def == nil || !in.fits(def) {
					continue
				}
				m := e.machine(def, in.clone(), id+"/timer", now)
				m.timers()
				b.keep(m, p)
			}
		}
		e.state.Unlock()
		if fs.NumRecords() == 0 && len(b.work) == 0 && len(b.drop) == 0 {
			e.sess.AllowRebalance()
			continue
		}
		if err := e.sess.Begin(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
		produceErr.Store(nil)
		for id, in := range b.work {
			v, err := json.Marshal(in)
			if err != nil {
				return fmt.Errorf("encode saga %s: %w", id, err)
			}
			e.sess.Produce(ctx, &kgo.Record{Topic: e.cfg.StateTopic, Partition: b.part[id], Key: []byte(id), Value: v}, onProduced)
		}
		for id, p := range b.drop {
			e.sess.Produce(ctx, &kgo.Record{Topic: e.cfg.StateTopic, Partition: p, Key: []byte(id)}, onProduced)
		}
		spans := make([]trace.Span, 0, len(b.outs))
		for _, o := range b.outs {
			spans = append(spans, startCommandSpan(ctx, e.cfg.TracerProvider, o))
			r, err := toRecord(o.topic, o.ev)
			if err != nil {
				e.log.Error("dropping a command that cannot be encoded", "topic", o.topic, "type", o.ev.Type, "err", err)
				continue
			}
			e.sess.Produce(ctx, r, onProduced)
		}
		ok := true
		if err := e.sess.Client().Flush(ctx); err != nil {
			ok = false
		} else if p := produceErr.Load(); p != nil {
			e.log.Error("writing saga state or commands failed; the batch will be redone", "err", *p)
			ok = false
		}
		// NB: End needs a context that outlives a Close, or a stop in the
		// middle would leave the transaction to time out.
		ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.TransactionTimeout)
		committed, err := e.sess.End(ectx, kgo.TransactionEndTry(ok))
		ecancel()
		endCommandSpans(spans, committed && err == nil)
		if err != nil {
			return fmt.Errorf("end transaction: %w", err)
		}
		if committed {
			var finished []*Instance
			e.state.Lock()
			for id, in := range b.work {
				if in.Status.Final() {
					if prev, ok := e.state.parts[b.part[id]][id]; !ok || prev.Status != in.Status {
						finished = append(finished, in)
					}
				}
				if insts := e.state.parts[b.part[id]]; insts != nil {
					insts[id] = in
					if d := e.deadline(in); d.IsZero() {
						delete(e.state.timed[b.part[id]], id)
					} else {
						e.state.timed[b.part[id]][id] = d
					}
				}
			}
			for id, p := range b.drop {
				delete(e.state.parts[p], id)
				delete(e.state.timed[p], id)
			}
			e.state.Unlock()
			for def, effs := range b.effects {
				e.m.apply(def, effs)
			}
			for _, in := range finished {
				typ := TypeSagaCompleted
				if in.Status == StatusCompensated {
					typ = TypeSagaCompensated
				}
				e.cfg.OnEvent.Emit(ctx, SystemSource, typ, in.ID, FinishedEvent{ID: in.ID, Definition: in.Definition,
					Version: in.Version, Status: in.Status, Reason: in.Reason, Created: in.Created, Ended: in.Updated})
			}
			e.m.txn("committed")
		} else {
			e.m.txn("aborted")
			e.log.Warn("saga transaction aborted; its inputs will be redelivered")
		}
		e.sess.AllowRebalance()
	}
}

// input applies one inbox record to the batch. e.state is locked.
func (e *Engine) input(b *batch, r *kgo.Record, now time.Time) {
	msg := event.Message{Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		msg.Headers = append(msg.Headers, event.Header{Key: h.Key, Value: h.Value})
	}
	ev, err := event.Decode(msg)
	if err != nil {
		e.m.ignore("malformed")
		e.log.Warn("ignoring a malformed inbox record", "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	id := string(r.Key)
	in := b.get(e, r.Partition, id)
	if in == nil && ev.Type != TypeStart {
		if sid, _, _, ok := parseCommandID(ev.CausationID); ok && sid != id {
			if in = b.get(e, r.Partition, sid); in != nil {
				id = sid
			}
		}
	}
	switch ev.Type {
	case TypeStart:
		if in != nil {
			e.m.ignore("duplicate start")
			return
		}
		ver := 0
		fmt.Sscan(ev.Extensions[ExtDefVer], &ver)
		def := e.definition(ev.Extensions[ExtDef], ver)
		if def == nil {
			e.m.ignore("unknown definition")
			e.log.Warn("ignoring a start request for an unknown definition", "saga_id", id, "definition", ev.Extensions[ExtDef], "version", ver)
			return
		}
		m := e.machine(def, nil, ev.ID, now)
		defer m.traceFrom(ev)
		m.start(id, json.RawMessage(ev.Data))
		b.keep(m, r.Partition)
		return
	}
	if in == nil {
		e.m.ignore("unknown saga")
		e.log.Warn("ignoring an inbox event for an unknown saga", "saga_id", id, "type", ev.Type, "event_id", ev.ID, "partition", r.Partition, "offset", r.Offset)
		return
	}
	def := e.definition(in.Definition, in.Version)
	if def == nil || !in.fits(def) {
		e.m.ignore("unknown definition")
		e.log.Error("saga state does not match a registered definition", "saga_id", id, "definition", in.Definition, "version", in.Version)
		return
	}
	m := e.machine(def, in.clone(), ev.ID, now)
	defer m.traceFrom(ev)
	switch ev.Type {
	case TypeRetry:
		if err := m.retry(ev.Extensions[ExtStep]); err != nil {
			e.log.Warn("operator retry refused", "saga_id", id, "err", err)
		}
	case TypeAbort:
		if err := m.abort(string(ev.Data)); err != nil {
			e.log.Warn("operator abort refused", "saga_id", id, "err", err)
		}
	default:
		m.reply(ev)
	}
	b.keep(m, r.Partition)
}

func toRecord(topic string, e *event.Event) (*kgo.Record, error) {
	m, err := event.Encode(e)
	if err != nil {
		return nil, err
	}
	r := &kgo.Record{Topic: topic, Key: m.Key, Value: m.Value, Headers: make([]kgo.RecordHeader, len(m.Headers))}
	for i, h := range m.Headers {
		r.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
	}
	return r, nil
}

// definition returns a registered definition, reloading the definitions
// topic once if it is unknown (another engine may have registered it).
func (e *Engine) definition(name string, version int) *Definition {
	get := func() *Definition {
		e.defs.RLock()
		defer e.defs.RUnlock()
		if version == 0 {
			return e.defs.latest[name]
		}
		return e.defs.byKey[fmt.Sprintf("%s@%d", name, version)]
	}
	if d := get(); d != nil {
		return d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.loadDefinitions(ctx); err != nil {
		e.log.Warn("reloading saga definitions failed", "err", err)
	}
	return get()
}

func (e *Engine) loadDefinitions(ctx context.Context) error {
	var defs []*Definition
	err := readPartitions(ctx, e.cfg, e.cfg.DefinitionsTopic, []int32{0}, func(r *kgo.Record) {
		var d Definition
		if err := json.Unmarshal(r.Value, &d); err != nil {
			e.log.Error("skipping an undecodable saga definition", "offset", r.Offset, "err", err)
			return
		}
		defs = append(defs, &d)
	})
	if err != nil {
		return fmt.Errorf("load definitions: %w", err)
	}
	for _, d := range defs {
		e.addDefinition(d)
	}
	return nil
}

func (e *Engine) addDefinition(d *Definition) {
	e.defs.Lock()
	defer e.defs.Unlock()
	e.defs.byKey[d.key()] = d
	if l := e.defs.latest[d.Name]; l == nil || l.Version < d.Version {
		e.defs.latest[d.Name] = d
	}
}

// Register validates d (its command topics must exist) and stores it as
// the next version of its name, unless it equals the latest version, which
// is returned instead. Register is for definitions from any source: Go
// code, a JSON file, the HTTP API.
func (e *Engine) Register(ctx context.Context, d *Definition) (*Definition, error) {
	topics, err := e.adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("saga: register: list topics: %w", err)
	}
	if err := d.Validate(func(t string) bool { return topics.Has(t) }); err != nil {
		return nil, err
	}
	c := *d
	e.defs.RLock()
	latest := e.defs.latest[d.Name]
	e.defs.RUnlock()
	if latest != nil {
		c.Version = latest.Version
		if reflect.DeepEqual(&c, latest) {
			return latest, nil
		}
		c.Version = latest.Version + 1
	} else {
		c.Version = 1
	}
	v, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	if err := e.cl.ProduceSync(ctx, &kgo.Record{Topic: e.cfg.DefinitionsTopic, Key: []byte(c.key()), Value: v}).FirstErr(); err != nil {
		return nil, fmt.Errorf("saga: register %s: %w", c.Name, err)
	}
	e.addDefinition(&c)
	e.log.Info("saga definition registered", "definition", c.Name, "version", c.Version)
	return &c, nil
}

// Definitions returns the latest version of every registered definition.
func (e *Engine) Definitions() []*Definition {
	e.defs.RLock()
	defer e.defs.RUnlock()
	out := make([]*Definition, 0, len(e.defs.latest))
	for _, d := range e.defs.latest {
		out = append(out, d)
	}
	return out
}

func checkID(id string) error {
	if id == "" || len(id) > maxIDLength || !utf8.ValidString(id) {
		return errorf(ErrInvalid, "saga id %q: want 1-%d characters", id, maxIDLength)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return errorf(ErrInvalid, "saga id %q contains control characters", id)
		}
	}
	return nil
}

// StartSaga asks the engine to start a saga of the latest version of the
// named definition with id and input (JSON, passed as every command's
// data). It returns once the request is durable in the inbox; the saga
// starts when the engine owning the id reads it. Starting an id that
// exists changes nothing.
func (e *Engine) StartSaga(ctx context.Context, definition, id string, input json.RawMessage) error {
	if err := checkID(id); err != nil {
		return err
	}
	if input != nil && !json.Valid(input) {
		return errorf(ErrInvalid, "input is not valid JSON")
	}
	d := e.definition(definition, 0)
	if d == nil {
		return errorf(ErrNotFound, "definition %q not found", definition)
	}
	ev := StartRequest(d, id, input)
	return e.send(ctx, ev)
}

// StartRequest is the inbox event that starts saga id of definition d; a
// service that only has a producer publishes it to the engine's inbox.
func StartRequest(d *Definition, id string, input json.RawMessage) *event.Event {
	ev := event.New("/herald/saga", TypeStart)
	ev.ID = id + "/start"
	ev.Kind = event.KindCommand
	ev.PartitionKey, ev.CorrelationID = id, id
	ev.Data = input
	if input != nil {
		ev.DataContentType = "application/json"
	}
	ev.Extensions = map[string]string{ExtDef: d.Name, ExtDefVer: fmt.Sprint(d.Version)}
	return ev
}

func (e *Engine) send(ctx context.Context, ev *event.Event) error {
	if e.closed.Load() {
		return ErrClosed
	}
	traceFromContext(ctx, ev)
	r, err := toRecord(e.cfg.Inbox, ev)
	if err != nil {
		return errorf(ErrInvalid, "%v", err)
	}
	if err := e.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("saga: write to %s: %w", e.cfg.Inbox, err)
	}
	return nil
}

// Retry resumes the compensation of a parked step. The check against the
// view is advisory; the engine applies the retry only if the step is still
// parked when it reads the request.
func (e *Engine) Retry(ctx context.Context, id, step string) error {
	in, err := e.Get(id)
	if err != nil {
		return err
	}
	found := false
	for _, s := range in.Steps {
		if s.Name == step {
			found = true
			if s.Status != StepParked {
				return errorf(ErrConflict, "step %q of saga %s is %s, not parked", step, id, s.Status)
			}
		}
	}
	if !found {
		return errorf(ErrNotFound, "saga %s has no step %q", id, step)
	}
	ev := event.New("/herald/saga", TypeRetry)
	ev.Kind, ev.PartitionKey, ev.CorrelationID = event.KindCommand, id, id
	ev.Extensions = map[string]string{ExtStep: step}
	return e.send(ctx, ev)
}

// Abort compensates a running saga: completed steps are undone in reverse
// order. Like Retry, the engine rechecks the saga's status.
func (e *Engine) Abort(ctx context.Context, id, reason string) error {
	in, err := e.Get(id)
	if err != nil {
		return err
	}
	if in.Status != StatusRunning {
		return errorf(ErrConflict, "saga %s is %s, not running", id, in.Status)
	}
	ev := event.New("/herald/saga", TypeAbort)
	ev.Kind, ev.PartitionKey, ev.CorrelationID = event.KindCommand, id, id
	ev.Data = []byte(reason)
	return e.send(ctx, ev)
}

// Get returns the instance with id as of the latest committed state, from
// the engine's view of the state topic (ErrNotFound if none). The result
// must not be modified.
func (e *Engine) Get(id string) (*Instance, error) {
	in := e.view.get(id)
	if in == nil {
		return nil, errorf(ErrNotFound, "saga %q not found", id)
	}
	return in, nil
}

// Filter selects instances for List. Zero fields match everything.
type Filter struct {
	Status     Status
	Definition string
	// Limit bounds the result (default 100, at most 10000); instances
	// come most recently updated first.
	Limit int
}

// List returns instances matching f from the engine's view.
func (e *Engine) List(f Filter) []*Instance { return e.view.list(f) }

// WaitFor polls Get until cond holds for the instance or ctx ends.
func (e *Engine) WaitFor(ctx context.Context, id string, cond func(*Instance) bool) (*Instance, error) {
	for {
		if in, err := e.Get(id); err == nil && cond(in) {
			return in, nil
		}
		select {
		case <-ctx.Done():
			in, _ := e.Get(id)
			return in, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// opError is an operator API error: a message for people that matches one
// of the sentinels.
type opError struct {
	kind error
	msg  string
}

func (e *opError) Error() string { return e.msg }
func (e *opError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &opError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
