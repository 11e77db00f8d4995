package subscription

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/internal/httpjson"
)

// DefaultStateTopic is the internal topic of subscription state.
const DefaultStateTopic = "__herald_subscriptions"

// Config configures a Manager.
type Config struct {
	// Log holds the topics and the state topic; required.
	Log eventlog.Log
	// StateTopic is the internal topic of definitions and progress
	// (default DefaultStateTopic); created on first use.
	StateTopic string
	// CheckpointInterval is how often changed state is checkpointed
	// (default 5s); recovery replays the journal from the last checkpoint.
	CheckpointInterval time.Duration
	// HTTPClient posts push messages; its Timeout is not used, each
	// request gets the subscription's ack deadline. By default pushes to
	// http endpoints go over Herald's own keep-alive connections (one per
	// concurrent request) and pushes to https endpoints through a client
	// with its own transport; with HTTPClient set, every push uses it.
	HTTPClient *http.Client
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnEvent, if set, receives a herald.subscription.deadlettered event
	// (source "herald/subscriptions") for each message moved to a
	// subscription's dead-letter topic.
	OnEvent event.Hook
}

// The system event the manager emits through Config.OnEvent.
const (
	SystemSource     = "herald/subscriptions"
	TypeDeadLettered = "herald.subscription.deadlettered"
)

// DeadLetteredEvent is the data of a herald.subscription.deadlettered
// event: where the message came from and where it went. EventID,
// EventSource and EventType are the message's CloudEvent attributes
// (empty for a message that is not a CloudEvent).
type DeadLetteredEvent struct {
	Subscription    string `json:"subscription"`
	Topic           string `json:"topic"`
	Partition       int    `json:"partition"`
	Offset          int64  `json:"offset"`
	DeadLetterTopic string `json:"dead_letter_topic"`
	Attempts        int    `json:"attempts"`
	EventID         string `json:"event_id,omitempty"`
	EventSource     string `json:"event_source,omitempty"`
	EventType       string `json:"event_type,omitempty"`
}

func (c *Config) setDefaults() {
	if c.StateTopic == "" {
		c.StateTopic = DefaultStateTopic
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{
			MaxIdleConns: 1024, MaxIdleConnsPerHost: MaxPushConcurrency, IdleConnTimeout: 90 * time.Second,
		}}
	}
}

// Manager runs the subscriptions of one Herald: their definitions,
// progress, delivery (pull, streaming pull, push) and HTTP API. Safe for
// concurrent use.
type Manager struct {
	cfg     Config
	logger  *slog.Logger
	journal *journal
	ctx     context.Context
	cancel  context.CancelFunc
	streams context.Context // ends streaming pulls (CloseStreams)
	endStr  context.CancelFunc
	wg      sync.WaitGroup
	rawPush bool // no Config.HTTPClient: plain-http pushes use pushConn
	mu      struct {
		sync.Mutex
		subs      map[string]*sub
		snapshots map[string]*snapshot
		closed    bool
	}
}

type snapshot struct {
	name, sub, topic string
	created          int64
	pos              positions
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("subscription: manager closed")

// Open recovers the subscriptions from cfg.StateTopic and starts them.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Log == nil {
		return nil, errors.New("subscription: Config.Log is nil")
	}
	rawPush := cfg.HTTPClient == nil
	cfg.setDefaults()
	m := &Manager{cfg: cfg, logger: cfg.Logger, rawPush: rawPush}
	m.mu.subs = map[string]*sub{}
	m.mu.snapshots = map[string]*snapshot{}
	err := cfg.Log.CreateTopic(ctx, cfg.StateTopic, 1, map[string]string{
		"retention.ms": "604800000", "max.message.bytes": "16777216",
	})
	if err != nil && !errors.Is(err, eventlog.ErrTopicExists) {
		return nil, fmt.Errorf("create state topic %s: %w", cfg.StateTopic, err)
	}
	m.journal = newJournal(cfg.Log, cfg.StateTopic, m.logger)
	start := time.Now()
	n, err := m.recover(ctx)
	if err != nil {
		m.journal.close()
		return nil, err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.streams, m.endStr = context.WithCancel(m.ctx)
	for _, s := range m.mu.subs {
		m.start(s)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(&collector{m: m}); err != nil {
			m.Close()
			return nil, fmt.Errorf("subscription metrics: %w", err)
		}
	}
	m.wg.Add(1)
	go m.background()
	m.logger.Info("subscriptions recovered", "subscriptions", len(m.mu.subs), "records", n, "took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

func (m *Manager) group() string { return m.cfg.StateTopic + ".checkpoint" }

// recover replays the journal from the last checkpoint.
func (m *Manager) recover(ctx context.Context) (int, error) {
	log, topic := m.cfg.Log, m.cfg.StateTopic
	start, end, err := log.Offsets(ctx, topic, 0)
	if err != nil {
		return 0, fmt.Errorf("recover subscriptions: %w", err)
	}
	from := start
	offs, err := log.CommittedOffsets(ctx, m.group(), topic)
	if err != nil {
		return 0, fmt.Errorf("recover subscriptions: %w", err)
	}
	if o, ok := offs[0]; ok {
		if o < start {
			m.logger.Error("subscription checkpoint is older than the state topic's retention; replaying what is left", "checkpoint", o, "start", start)
		} else {
			from = o
		}
	}
	now := time.Now().UnixMilli()
	n := 0
	for off := from; off < end; {
		recs, err := log.Read(ctx, topic, 0, off, eventlog.ReadOptions{MaxBytes: 8 << 20})
		if err != nil {
			return n, fmt.Errorf("recover subscriptions at offset %d: %w", off, err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			off = r.Offset + 1
			if r.Offset >= end {
				break
			}
			n++
			jr, err := decodeRecord(r.Key, r.Value)
			if err != nil {
				return n, fmt.Errorf("recover subscriptions: state topic %s offset %d: %w", topic, r.Offset, err)
			}
			if err := m.apply(jr, now); err != nil {
				return n, fmt.Errorf("recover subscriptions: state topic %s offset %d: %w", topic, r.Offset, err)
			}
		}
	}
	for _, s := range m.mu.subs {
		s.mu.Lock()
		s.finishRecoveryLocked(now)
		s.mu.Unlock()
	}
	return n, nil
}

// maxWindow bounds a recovered window (64 Mi entries, 1 GiB), so a record
// that decodes but is wrong cannot make recovery allocate without limit.
const maxWindow = 64 << 20

// checkWindow checks that applying r keeps windows bounded.
func checkWindow(r *jrec, s *sub) error {
	span := func(p int, off int64) error {
		base := int64(0)
		if s != nil && p < len(s.mu.parts) {
			base = s.mu.parts[p].base
		}
		if off-base > maxWindow {
			return fmt.Errorf("%w: offset %d is %d past the cursor %d of partition %d", errCorrupt, off, off-base, base, p)
		}
		return nil
	}
	for _, pp := range r.pos {
		if n := len(pp.Acked); n > 0 && pp.Acked[n-1][1]-pp.Base > maxWindow {
			return fmt.Errorf("%w: acked range ends %d past the cursor", errCorrupt, pp.Acked[n-1][1]-pp.Base)
		}
	}
	if len(r.pos) > 1<<16 || r.part >= 1<<15 {
		return fmt.Errorf("%w: too many partitions", errCorrupt)
	}
	p := int(r.part)
	if n := len(r.offs); n > 0 {
		return span(p, r.offs[n-1])
	}
	if n := len(r.states); n > 0 {
		return span(p, r.states[n-1].Off)
	}
	if n := len(r.holds); n > 0 {
		return span(p, r.holds[n-1].Off)
	}
	if len(r.runs) > 0 {
		end := r.first
		for _, rn := range r.runs {
			end += rn.N
			if end-r.first > maxWindow {
				return fmt.Errorf("%w: runs span more than %d offsets", errCorrupt, maxWindow)
			}
		}
		return span(p, end)
	}
	return nil
}

// apply applies one journal record during recovery.
func (m *Manager) apply(r *jrec, now int64) error {
	if err := checkWindow(r, m.mu.subs[r.sub]); err != nil {
		return err
	}
	switch r.kind {
	case kBegin:
		return nil
	case kSnap:
		m.mu.snapshots[r.snapName] = &snapshot{name: r.snapName, sub: r.snapSub, topic: r.snapTopic, created: r.snapTime, pos: r.pos}
		return nil
	case kSnapDelete:
		delete(m.mu.snapshots, r.snapName)
		return nil
	case kDef, kCkpt:
		var def Subscription
		if err := json.Unmarshal(r.def, &def); err != nil {
			return fmt.Errorf("%w: definition of %q: %v", errCorrupt, r.sub, err)
		}
		st, err := validate(r.sub, def)
		if err != nil {
			return fmt.Errorf("%w: definition of %q: %v", errCorrupt, r.sub, err)
		}
		s := newSub(m, st)
		m.mu.subs[r.sub] = s
		if r.kind == kCkpt {
			s.mu.counters = r.counters
		}
		s.setPositionsLocked(r.pos, r.inc, now)
		return nil
	case kDelete:
		delete(m.mu.subs, r.sub)
		return nil
	}
	s := m.mu.subs[r.sub]
	if s == nil {
		return nil // a record of a subscription deleted later
	}
	switch r.kind {
	case kAck:
		if int(r.part) >= len(s.mu.parts) {
			s.ensurePartsLocked(int(r.part) + 1)
		}
		pt := s.mu.parts[r.part]
		for _, o := range r.offs {
			if e := s.growLocked(int(r.part), o); e != nil && e.state != stAcked {
				e.state = stAcked
				pt.acked++
			}
		}
	case kState:
		s.ensurePartsLocked(int(r.part) + 1)
		for _, se := range r.states {
			if e := s.growLocked(int(r.part), se.Off); e != nil && e.state != stAcked {
				e.attempts, e.due, e.state = se.Attempts, se.Due, stWaiting
				if se.Out {
					e.state = stOut
				}
			}
		}
	case kHold:
		s.ensurePartsLocked(int(r.part) + 1)
		for _, h := range r.holds {
			if e := s.growLocked(int(r.part), h.Off); e != nil && e.state != stAcked {
				if s.mu.recHolds == nil {
					s.mu.recHolds = map[uint64]string{}
				}
				s.mu.recHolds[mkpk(int(r.part), h.Off)] = h.Key
			}
		}
	case kPositions:
		s.setPositionsLocked(r.pos, r.inc, now)
	case kRuns:
		s.ensurePartsLocked(int(r.part) + 1)
		pt := s.mu.parts[r.part]
		o := r.first
		for _, rn := range r.runs {
			if rn.Acked {
				// Only materialize acked runs inside the window.
				for k := int64(0); k < rn.N; k++ {
					if o+k >= pt.base && o+k < pt.next() {
						if e := &pt.ents[o+k-pt.base]; e.state != stAcked {
							e.state = stAcked
							pt.acked++
						}
					}
				}
				if o+rn.N-1 >= pt.next() && o+rn.N-1 >= pt.base {
					// Acked entries at the end extend the window so that the
					// read position stays after them.
					for pt.next() < o+rn.N {
						pt.ents = append(pt.ents, ent{state: stAcked})
						pt.acked++
					}
				}
			} else {
				for k := int64(0); k < rn.N; k++ {
					if e := s.growLocked(int(r.part), o+k); e != nil && e.state != stAcked {
						e.attempts, e.due, e.state = rn.Attempts, rn.Due, stWaiting
						if rn.Out {
							e.state = stOut
						}
					}
				}
			}
			o += rn.N
		}
	}
	return nil
}

// start launches a subscription's goroutines.
func (m *Manager) start(s *sub) {
	s.mu.Lock()
	n := len(s.mu.parts)
	push := s.mu.st.def.PushConfig != nil
	s.mu.Unlock()
	for p := range n {
		s.wg.Add(1)
		go s.fetch(p)
	}
	if push {
		s.wg.Add(1)
		go s.push()
	}
}

// stop ends a subscription's goroutines and waits for them.
func (s *sub) stop() {
	s.cancel()
	s.wg.Wait()
}

// background checkpoints and enforces retention until Close.
func (m *Manager) background() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.CheckpointInterval)
	defer t.Stop()
	last := time.Now()
	retention := time.Now()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(retention) > 10*time.Second {
			m.enforceRetention(m.ctx)
			retention = time.Now()
		}
		force := time.Since(last) > time.Hour
		if err := m.checkpoint(m.ctx, force); err != nil {
			if m.ctx.Err() == nil {
				m.logger.Warn("subscription checkpoint failed", "err", err)
			}
		} else {
			last = time.Now()
		}
	}
}

// checkpoint writes every subscription's state and snapshot, then commits
// the offset where it began, so recovery starts there.
func (m *Manager) checkpoint(ctx context.Context, force bool) error {
	m.mu.Lock()
	if m.mu.closed && ctx.Err() != nil {
		m.mu.Unlock()
		return ErrClosed
	}
	dirty := force
	for _, s := range m.mu.subs {
		s.mu.Lock()
		dirty = dirty || s.mu.dirty
		s.mu.Unlock()
	}
	if !dirty {
		m.mu.Unlock()
		return nil
	}
	begin := m.journal.add("", []byte{recVersion, kBegin})
	var last *jwait = begin
	for _, sn := range m.mu.snapshots {
		last = m.journal.add("", encSnap(sn.name, sn.sub, sn.topic, sn.created, sn.pos))
	}
	for name, s := range m.mu.subs {
		s.mu.Lock()
		def, _ := json.Marshal(s.mu.st.def)
		vals := s.checkpointLocked(def)
		last = m.journal.add(name, vals...)
		s.mu.Unlock()
	}
	m.mu.Unlock()
	if err := last.wait(ctx); err != nil {
		return err
	}
	if err := begin.wait(ctx); err != nil {
		return err
	}
	return m.cfg.Log.CommitOffsets(ctx, m.group(), map[eventlog.TopicPartition]int64{{Topic: m.cfg.StateTopic, Partition: 0}: begin.base})
}

// enforceRetention acks messages older than each subscription's
// messageRetentionDuration, and opens windows for partitions added to a
// topic.
func (m *Manager) enforceRetention(ctx context.Context) {
	for _, s := range m.list() {
		s.mu.Lock()
		topic, ret, n := s.mu.st.def.Topic, s.mu.st.retention, len(s.mu.parts)
		s.mu.Unlock()
		if info, err := m.cfg.Log.Topic(ctx, topic); err == nil && info.Partitions > n {
			s.mu.Lock()
			s.ensurePartsLocked(info.Partitions)
			s.mu.dirty = true
			s.mu.Unlock()
			for p := n; p < info.Partitions; p++ {
				s.wg.Add(1)
				go s.fetch(p)
			}
		}
		cutoff := time.Now().Add(-ret)
		for p := range n {
			o, err := m.cfg.Log.OffsetForTime(ctx, topic, int32(p), cutoff)
			if err != nil {
				continue
			}
			s.mu.Lock()
			if o > s.mu.parts[p].base {
				s.ackBelowLocked(p, o, time.Now().UnixMilli())
				s.signalLocked()
			}
			s.mu.Unlock()
		}
	}
}

func (m *Manager) list() []*sub {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*sub, 0, len(m.mu.subs))
	for _, s := range m.mu.subs {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// CloseStreams ends every streaming pull, so that an HTTP server's
// graceful shutdown need not wait for them (http.Server.RegisterOnShutdown).
func (m *Manager) CloseStreams() { m.endStr() }

// Close checkpoints, stops every subscription and flushes the journal. It
// does not close the Log.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return nil
	}
	m.mu.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	for _, s := range m.list() {
		s.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := m.checkpoint(ctx, false)
	m.journal.close()
	return err
}

func (m *Manager) get(name string) (*sub, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return nil, httpjson.Errorf(httpjson.CodeUnavailable, "", "subscriptions are shutting down")
	}
	s := m.mu.subs[name]
	if s == nil {
		return nil, errNotFound(name)
	}
	return s, nil
}

// Create creates subscription name. It starts at the topic's end: it
// receives the events published from now on. The returned definition has
// the defaults filled in and, for push, the signing secret.
func (m *Manager) Create(ctx context.Context, name string, def Subscription) (Subscription, error) {
	st, err := validate(name, def)
	if err != nil {
		return Subscription{}, err
	}
	info, err := m.cfg.Log.Topic(ctx, st.def.Topic)
	if errors.Is(err, eventlog.ErrUnknownTopic) {
		return Subscription{}, httpjson.Errorf(httpjson.CodeNotFound, "topic", "topic %q not found", st.def.Topic)
	}
	if err != nil {
		return Subscription{}, err
	}
	if dl := st.def.DeadLetterPolicy; dl != nil {
		if _, err := m.cfg.Log.Topic(ctx, dl.DeadLetterTopic); errors.Is(err, eventlog.ErrUnknownTopic) {
			return Subscription{}, httpjson.Errorf(httpjson.CodeNotFound, "deadLetterPolicy.deadLetterTopic", "topic %q not found", dl.DeadLetterTopic)
		} else if err != nil {
			return Subscription{}, err
		}
	}
	pos := make(positions, info.Partitions)
	for p := range pos {
		_, end, err := m.cfg.Log.Offsets(ctx, st.def.Topic, int32(p))
		if err != nil {
			return Subscription{}, err
		}
		pos[p].Base = end
	}
	raw, err := json.Marshal(st.def)
	if err != nil {
		return Subscription{}, err
	}
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return Subscription{}, ErrClosed
	}
	if _, ok := m.mu.subs[name]; ok {
		m.mu.Unlock()
		return Subscription{}, httpjson.Errorf(httpjson.CodeAlreadyExists, "name", "subscription %q already exists", name)
	}
	s := newSub(m, st)
	s.mu.Lock()
	s.setPositionsLocked(pos, s.mu.inc, time.Now().UnixMilli())
	s.mu.Unlock()
	w := m.journal.add(name, encDef(raw, pos, s.mu.inc))
	m.mu.subs[name] = s
	m.mu.Unlock()
	if err := w.wait(ctx); err != nil {
		m.mu.Lock()
		if m.mu.subs[name] == s {
			delete(m.mu.subs, name)
		}
		m.mu.Unlock()
		return Subscription{}, err
	}
	m.start(s)
	m.logger.Info("subscription created", "subscription", name, "topic", st.def.Topic)
	return st.def, nil
}

// Get describes a subscription, with its stats.
func (m *Manager) Get(ctx context.Context, name string) (Subscription, error) {
	s, err := m.get(name)
	if err != nil {
		return Subscription{}, err
	}
	s.mu.Lock()
	def := s.mu.st.public()
	s.mu.Unlock()
	stats := s.stats(ctx)
	def.Stats = &stats
	return def, nil
}

// List returns the subscriptions sorted by name, after the name after (a
// page token), at most limit of them, and whether more follow.
func (m *Manager) List(after string, limit int) ([]Subscription, bool) {
	var out []Subscription
	for _, s := range m.list() {
		if s.name <= after {
			continue
		}
		if len(out) == limit {
			return out, true
		}
		s.mu.Lock()
		out = append(out, s.mu.st.public())
		s.mu.Unlock()
	}
	return out, false
}

// Delete removes a subscription and its progress; its outstanding ack ids
// become invalid.
func (m *Manager) Delete(ctx context.Context, name string) error {
	m.mu.Lock()
	s := m.mu.subs[name]
	if s == nil {
		m.mu.Unlock()
		return errNotFound(name)
	}
	delete(m.mu.subs, name)
	s.mu.Lock()
	s.mu.deleted = true
	s.signalLocked()
	s.mu.Unlock()
	w := m.journal.add(name, []byte{recVersion, kDelete})
	m.mu.Unlock()
	s.stop()
	m.logger.Info("subscription deleted", "subscription", name)
	return w.wait(ctx)
}

// Pull delivers up to max messages of a subscription, waiting up to wait
// for the first.
func (m *Manager) Pull(ctx context.Context, name string, max int, wait time.Duration) ([]Received, error) {
	s, err := m.get(name)
	if err != nil {
		return nil, err
	}
	return s.pull(ctx, max, wait)
}

// Acknowledge acks messages by ack id and returns the ids it refused as
// unknown, stale or already acknowledged. Accepted acks are durable when
// it returns.
func (m *Manager) Acknowledge(ctx context.Context, name string, ackIDs []string) (invalid []string, err error) {
	s, err := m.get(name)
	if err != nil {
		return nil, err
	}
	return s.acknowledge(ctx, ackIDs)
}

// ModifyAckDeadline extends (or with 0 seconds, nacks) outstanding
// messages; it returns the ids that are not outstanding.
func (m *Manager) ModifyAckDeadline(ctx context.Context, name string, ackIDs []string, seconds int) ([]string, error) {
	s, err := m.get(name)
	if err != nil {
		return nil, err
	}
	return s.modifyAckDeadline(ctx, ackIDs, seconds)
}

// SeekTime makes every message published before t acknowledged and every
// later one unacknowledged.
func (m *Manager) SeekTime(ctx context.Context, name string, t time.Time) error {
	s, err := m.get(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	topic, n := s.mu.st.def.Topic, len(s.mu.parts)
	s.mu.Unlock()
	pos := make(positions, n)
	for p := range pos {
		o, err := m.cfg.Log.OffsetForTime(ctx, topic, int32(p), t)
		if err != nil {
			return err
		}
		start, _, err := m.cfg.Log.Offsets(ctx, topic, int32(p))
		if err != nil {
			return err
		}
		pos[p].Base = max(o, start)
	}
	return s.seekTo(ctx, pos)
}

// SeekSnapshot restores the acknowledgement state captured in a snapshot.
func (m *Manager) SeekSnapshot(ctx context.Context, name, snap string) error {
	s, err := m.get(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	sn := m.mu.snapshots[snap]
	m.mu.Unlock()
	if sn == nil {
		return httpjson.Errorf(httpjson.CodeNotFound, "snapshot", "snapshot %q not found", snap)
	}
	s.mu.Lock()
	topic := s.mu.st.def.Topic
	s.mu.Unlock()
	if sn.topic != topic {
		return httpjson.Errorf(httpjson.CodeFailedPrecondition, "snapshot", "snapshot %q is of topic %q, the subscription's is %q", snap, sn.topic, topic)
	}
	return s.seekTo(ctx, slices.Clone(sn.pos))
}

// Snapshot is a snapshot resource.
type Snapshot struct {
	Name         string    `json:"name,omitempty"`
	Subscription string    `json:"subscription"`
	Topic        string    `json:"topic,omitempty"`
	Created      time.Time `json:"createTime,omitzero"`
}

// CreateSnapshot captures which messages subscription sub has acknowledged.
func (m *Manager) CreateSnapshot(ctx context.Context, name, subName string) (Snapshot, error) {
	if err := validName("name", name); err != nil {
		return Snapshot{}, err
	}
	if subName == "" {
		return Snapshot{}, httpjson.Invalid("subscription", "the subscription to snapshot is required")
	}
	s, err := m.get(subName)
	if err != nil {
		var he *httpjson.Error
		if errors.As(err, &he) {
			he.Field = "subscription"
		}
		return Snapshot{}, err
	}
	m.mu.Lock()
	if _, ok := m.mu.snapshots[name]; ok {
		m.mu.Unlock()
		return Snapshot{}, httpjson.Errorf(httpjson.CodeAlreadyExists, "name", "snapshot %q already exists", name)
	}
	s.mu.Lock()
	sn := &snapshot{name: name, sub: subName, topic: s.mu.st.def.Topic, created: time.Now().UnixMilli(), pos: s.positionsLocked()}
	s.mu.Unlock()
	m.mu.snapshots[name] = sn
	w := m.journal.add("", encSnap(sn.name, sn.sub, sn.topic, sn.created, sn.pos))
	m.mu.Unlock()
	if err := w.wait(ctx); err != nil {
		return Snapshot{}, err
	}
	return sn.resource(), nil
}

func (sn *snapshot) resource() Snapshot {
	return Snapshot{Name: sn.name, Subscription: sn.sub, Topic: sn.topic, Created: time.UnixMilli(sn.created).UTC()}
}

// GetSnapshot describes a snapshot.
func (m *Manager) GetSnapshot(name string) (Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sn := m.mu.snapshots[name]
	if sn == nil {
		return Snapshot{}, httpjson.Errorf(httpjson.CodeNotFound, "", "snapshot %q not found", name)
	}
	return sn.resource(), nil
}

// ListSnapshots returns every snapshot, sorted by name.
func (m *Manager) ListSnapshots() []Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Snapshot, 0, len(m.mu.snapshots))
	for _, sn := range m.mu.snapshots {
		out = append(out, sn.resource())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// DeleteSnapshot removes a snapshot.
func (m *Manager) DeleteSnapshot(ctx context.Context, name string) error {
	m.mu.Lock()
	if m.mu.snapshots[name] == nil {
		m.mu.Unlock()
		return httpjson.Errorf(httpjson.CodeNotFound, "", "snapshot %q not found", name)
	}
	delete(m.mu.snapshots, name)
	w := m.journal.add("", encSnapDelete(name))
	m.mu.Unlock()
	return w.wait(ctx)
}
