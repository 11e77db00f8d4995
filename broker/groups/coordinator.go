package groups

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// tickInterval is how often the actor checks deadlines: sessions,
// rebalance and sync timeouts expire at most this late.
const tickInterval = 100 * time.Millisecond

// Coordinator coordinates every consumer group of a broker. All methods are
// safe for concurrent use; Join and Sync block until the rebalance step they
// wait for completes or ctx ends.
//
// One actor goroutine owns all group state; one flusher goroutine appends
// to the Store. An operation that writes (commit, reset, delete, the
// leader's sync) takes effect in memory only once its records are durable,
// and in the order they were written. When ctx ends before such a call
// returns, or Close interrupts it, its records may or may not have been
// stored.
type Coordinator struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	st  *state // owned by the actor goroutine

	inbox    chan func()
	flushIn  chan []*write
	flushOut chan flushResult
	flushing []*write // actor-owned: the batch the flusher holds

	ctx       context.Context // cancelled by Close; bounds Store appends
	cancel    context.CancelFunc
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the actor has exited
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type flushResult struct {
	writes []*write
	err    error
}

// New replays the store and starts the coordinator. Records that do not
// decode are logged and skipped; an error from Store.Replay fails New.
func New(ctx context.Context, cfg Config) (*Coordinator, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg: cfg, log: cfg.Logger,
		inbox: make(chan func()), flushIn: make(chan []*write, 1), flushOut: make(chan flushResult),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	c.m = newMetrics(c)
	c.st = newState(&c.cfg, c.m, newMemberID)
	if err := c.replay(ctx); err != nil {
		return nil, err
	}
	if cfg.Registerer != nil {
		if err := c.m.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("groups: register metrics: %w", err)
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(2)
	go c.run()
	go c.flush()
	return c, nil
}

func (c *Coordinator) replay(ctx context.Context) error {
	offsets := map[string]map[TopicPartition]Offset{}
	groups := map[string]*groupRecord{}
	pending := txnPending{}
	var n, skipped int
	skip := func(kv KV, err error) {
		skipped++
		c.m.replaySkips.Inc()
		if skipped <= 10 {
			c.log.Warn("skipping undecodable group record", "err", err, "key_bytes", len(kv.Key), "value_bytes", len(kv.Value))
		}
	}
	err := c.cfg.Store.Replay(ctx, func(kv KV) error {
		n++
		if c.replayTxnOffset(kv, pending, skip) {
			return nil
		}
		k, err := decodeKey(kv.Key)
		if err != nil {
			skip(kv, err)
			return nil
		}
		switch k.kind {
		case kindOffset:
			if kv.Value == nil {
				if offs := offsets[k.group]; offs != nil {
					delete(offs, k.tp)
					if len(offs) == 0 {
						delete(offsets, k.group)
					}
				}
				return nil
			}
			o, err := decodeOffset(kv.Value)
			if err != nil {
				skip(kv, err)
				return nil
			}
			if offsets[k.group] == nil {
				offsets[k.group] = map[TopicPartition]Offset{}
			}
			offsets[k.group][k.tp] = o
		case kindGroup:
			if kv.Value == nil {
				delete(groups, k.group)
				return nil
			}
			r, err := decodeGroup(kv.Value)
			if err != nil {
				skip(kv, err)
				return nil
			}
			groups[k.group] = r
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("groups: replay store: %w", err)
	}
	c.st.restore(offsets, groups)
	c.st.txnPending = pending
	c.log.Info("group coordinator loaded", "records", n, "skipped", skipped, "groups", len(c.st.groups))
	return nil
}

// newMemberID is Kafka's member id: prefix, a dash, a random UUID.
func newMemberID(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%s-%x-%x-%x-%x-%x", prefix, b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// run is the actor: it owns c.st.
func (c *Coordinator) run() {
	defer c.wg.Done()
	defer close(c.done)
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case fn := <-c.inbox:
			fn()
		case <-t.C:
			c.st.tick()
		case r := <-c.flushOut:
			c.flushing = nil
			for _, w := range r.writes {
				w.apply(r.err)
			}
		case <-c.stop:
			for _, w := range c.flushing {
				w.apply(ErrClosed)
			}
			c.st.shutdown()
			return
		}
		if c.flushing == nil && len(c.st.queue) > 0 {
			// The flusher is idle whenever flushing is nil, so the
			// one-slot channel has room.
			c.flushing, c.st.queue = c.st.queue, nil
			c.flushIn <- c.flushing
		}
	}
}

// flush appends queued writes, one Append per batch the actor hands over.
func (c *Coordinator) flush() {
	defer c.wg.Done()
	for {
		var ws []*write
		select {
		case ws = <-c.flushIn:
		case <-c.stop:
			return
		}
		var recs []KV
		for _, w := range ws {
			recs = append(recs, w.recs...)
		}
		start := time.Now()
		err := c.cfg.Store.Append(c.ctx, recs)
		if err != nil {
			c.log.Error("storing group records failed", "records", len(recs), "err", err)
			err = fmt.Errorf("groups: store append: %w", err)
		} else if d := time.Since(start); d > time.Second {
			c.log.Warn("slow group store append", "records", len(recs), "duration", d)
		}
		select {
		case c.flushOut <- flushResult{ws, err}:
		case <-c.stop:
			return
		}
	}
}

// do hands fn to the actor; once do returns nil, fn runs (or has run).
func (c *Coordinator) do(ctx context.Context, fn func()) error {
	select {
	case <-c.stop:
		return ErrClosed
	default:
	}
	select {
	case c.inbox <- fn:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stop:
		return ErrClosed
	}
}

// call runs fn on the actor and returns its result.
func call[T any](c *Coordinator, ctx context.Context, fn func() T) (T, error) {
	ch := make(chan T, 1)
	if err := c.do(ctx, func() { ch <- fn() }); err != nil {
		var zero T
		return zero, err
	}
	return <-ch, nil
}

// await waits for a reply that the actor will send on ch, ErrClosed
// answering every pending reply at shutdown.
func await[T any](c *Coordinator, ctx context.Context, ch chan T, onCancel func()) (T, error) {
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		if onCancel != nil {
			// Withdraw; an answer that arrived first still counts.
			_ = c.do(context.Background(), onCancel)
			select {
			case r := <-ch:
				return r, nil
			default:
			}
		}
		var zero T
		return zero, ctx.Err()
	case <-c.done:
		select {
		case r := <-ch:
			return r, nil
		default:
			var zero T
			return zero, ErrClosed
		}
	}
}

// Close stops the coordinator and waits for its goroutines; blocked calls
// return ErrClosed, later calls too. It does not close the Store.
// Calling it again returns nil.
func (c *Coordinator) Close() error {
	c.closeOnce.Do(func() {
		c.drain(closeDrainTimeout)
		close(c.stop)
		c.cancel()
		c.wg.Wait()
		if c.cfg.Registerer != nil {
			c.m.unregister(c.cfg.Registerer)
		}
	})
	return nil
}

// closeDrainTimeout bounds how long Close waits for queued group writes.
const closeDrainTimeout = 5 * time.Second

// drain waits, at most d, until no group write is queued or being
// appended, so that what members did just before a shutdown (a LeaveGroup,
// a last commit) is stored rather than cancelled. Callers stop sending
// requests first (the server closes its listener before its coordinators).
func (c *Coordinator) drain(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		idle, err := call(c, ctx, func() bool { return c.flushing == nil && len(c.st.queue) == 0 })
		cancel()
		if err != nil || idle {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.log.Warn("closing with group writes still pending", "after", d)
}

// Join handles JoinGroup. A member's first join (empty MemberID) gets a
// generated id "clientID-uuid" ("instanceID-uuid" for a static member);
// with RequireKnownMemberID it gets ErrMemberIDRequired and that id at once
// and must join again with it. Otherwise Join waits until the rebalance
// completes: all members rejoined, or the largest rebalance timeout of the
// members passed (members that did not rejoin are removed). The leader's
// answer lists the members and their metadata for the chosen protocol;
// the others get none. When ctx ends first the join is withdrawn (a member
// joining for the first time is removed) and Err is ctx's error.
func (c *Coordinator) Join(ctx context.Context, req JoinRequest) JoinResponse {
	type joined struct {
		r      JoinResponse
		parked bool
	}
	w := newJoinWaiter()
	res, err := call(c, ctx, func() joined { r, p := c.st.join(req, w); return joined{r, p} })
	if err != nil {
		return JoinResponse{Err: err, MemberID: req.MemberID}
	}
	if !res.parked {
		return res.r
	}
	r, err := await(c, ctx, w.ch, func() { c.st.cancelJoin(req.Group, w) })
	if err != nil {
		return JoinResponse{Err: err, MemberID: req.MemberID}
	}
	return r
}

// Sync handles SyncGroup. In a Stable group it returns the member's
// assignment at once. During CompletingRebalance the leader's Assignments
// are stored durably and then handed to every member waiting in Sync
// (members absent from them get an empty assignment); followers wait for
// that, or for ErrRebalanceInProgress if a new rebalance starts first.
// When ctx ends first the wait is withdrawn and Err is ctx's error.
func (c *Coordinator) Sync(ctx context.Context, req SyncRequest) SyncResponse {
	type synced struct {
		r      SyncResponse
		parked bool
	}
	w := newSyncWaiter()
	res, err := call(c, ctx, func() synced { r, p := c.st.sync(req, w); return synced{r, p} })
	if err != nil {
		return SyncResponse{Err: err}
	}
	if !res.parked {
		return res.r
	}
	r, err := await(c, ctx, w.ch, func() { c.st.cancelSync(req.Group, w) })
	if err != nil {
		return SyncResponse{Err: err}
	}
	return r
}

// Heartbeat handles Heartbeat: it refreshes the member's session.
// ErrRebalanceInProgress tells the member to rejoin; ErrUnknownMemberID,
// ErrFencedInstanceID and ErrIllegalGeneration are Kafka's.
func (c *Coordinator) Heartbeat(ctx context.Context, group, memberID, instanceID string, generation int32) error {
	err, cerr := call(c, ctx, func() error { return c.st.heartbeat(group, memberID, instanceID, generation) })
	if cerr != nil {
		return cerr
	}
	return err
}

// Leave handles LeaveGroup, returning an error per member (nil for one
// that left). A member named by instance id alone (empty MemberID) is
// removed whatever its member id. Leaving starts a rebalance for the rest.
func (c *Coordinator) Leave(ctx context.Context, group string, members []LeaveMember) ([]error, error) {
	type left struct {
		errs []error
		err  error
	}
	r, err := call(c, ctx, func() left { e, err := c.st.leave(group, members); return left{e, err} })
	if err != nil {
		return nil, err
	}
	return r.errs, r.err
}

type offsetsReply struct {
	res map[TopicPartition]error
	err error
}

// unknownParts evaluates Config.TopicExists outside the actor.
func (c *Coordinator) unknownParts(offsets map[TopicPartition]Offset) map[TopicPartition]bool {
	unknown := map[TopicPartition]bool{}
	for tp := range offsets {
		if len(tp.Topic) > maxKeyString || tp.Topic == "" || c.cfg.TopicExists != nil && !c.cfg.TopicExists(tp.Topic, tp.Partition) {
			unknown[tp] = true
		}
	}
	return unknown
}

// CommitOffsets handles OffsetCommit. A commit with generation -1 and no
// member id is a simple commit, allowed while the group has no members.
// The result holds an error (or nil) per partition: Kafka's
// ErrUnknownMemberID, ErrFencedInstanceID, ErrIllegalGeneration,
// ErrRebalanceInProgress (during CompletingRebalance) for all of them,
// ErrUnknownTopic or ErrOffsetMetadataTooLarge for single ones. Accepted
// offsets are durable when CommitOffsets returns; the error is non-nil only
// when the store failed (then nothing was applied), on ErrClosed, or when
// ctx ended (then the commit may or may not have been stored). A zero
// CommitTime is set to the coordinator's clock.
func (c *Coordinator) CommitOffsets(ctx context.Context, group, memberID, instanceID string, generation int32, offsets map[TopicPartition]Offset) (map[TopicPartition]error, error) {
	unknown := c.unknownParts(offsets)
	ch := make(chan offsetsReply, 1)
	err := c.do(ctx, func() {
		c.st.commit(group, memberID, instanceID, generation, offsets, unknown, func(res map[TopicPartition]error, err error) {
			ch <- offsetsReply{res, err}
		})
	})
	if err != nil {
		return nil, err
	}
	r, err := await(c, ctx, ch, nil)
	if err != nil {
		return nil, err
	}
	return r.res, r.err
}

// FetchOffsets handles OffsetFetch; nil parts means every committed
// partition of the group. Partitions without a commit are absent, and an
// unknown group has none.
func (c *Coordinator) FetchOffsets(ctx context.Context, group string, parts []TopicPartition) (map[TopicPartition]Offset, error) {
	type fetched struct {
		offs map[TopicPartition]Offset
		err  error
	}
	r, err := call(c, ctx, func() fetched { o, err := c.st.fetch(group, parts); return fetched{o, err} })
	if err != nil {
		return nil, err
	}
	return r.offs, r.err
}

// DeleteOffsets handles OffsetDelete: ErrGroupIDNotFound for an unknown
// group, ErrNonEmptyGroup for a live group that is not a consumer group;
// in a live consumer group a partition of a topic some member subscribes
// to gets ErrGroupSubscribedToTopic and keeps its offset. Deletions are
// durable when it returns.
func (c *Coordinator) DeleteOffsets(ctx context.Context, group string, parts []TopicPartition) (map[TopicPartition]error, error) {
	ch := make(chan offsetsReply, 1)
	err := c.do(ctx, func() {
		c.st.deleteOffsets(group, parts, func(res map[TopicPartition]error, err error) { ch <- offsetsReply{res, err} })
	})
	if err != nil {
		return nil, err
	}
	r, err := await(c, ctx, ch, nil)
	if err != nil {
		return nil, err
	}
	return r.res, r.err
}

// List handles ListGroups; empty states means all. States match
// case-insensitively; groups come sorted by id. After Close it returns nil.
func (c *Coordinator) List(states []string) []GroupSummary {
	l, _ := call(c, context.Background(), func() []GroupSummary { return c.st.list(states) })
	return l
}

// Describe handles DescribeGroups for one group. An unknown group is
// described as State "Dead" with no members and no error, as Kafka does.
// The protocol, member metadata and assignments are filled in only for a
// Stable group.
func (c *Coordinator) Describe(group string) GroupDescription {
	d, err := call(c, context.Background(), func() GroupDescription { return c.st.describe(group) })
	if err != nil {
		return GroupDescription{Group: group, Err: err}
	}
	return d
}

// Delete handles DeleteGroups for one group: ErrNonEmptyGroup while it
// has members, ErrGroupIDNotFound if unknown. Otherwise the group and its
// offsets are removed, durably (tombstones), before it returns.
func (c *Coordinator) Delete(ctx context.Context, group string) error {
	ch := make(chan error, 1)
	if err := c.do(ctx, func() { c.st.deleteGroup(group, func(err error) { ch <- err }) }); err != nil {
		return err
	}
	r, err := await(c, ctx, ch, nil)
	if err != nil {
		return err
	}
	return r
}

// SetOffsets overwrites a group's committed offsets for replay (offset
// reset); it fails with ErrNonEmptyGroup while the group has members.
// Only the given partitions change; an unknown group is created (Empty).
// Nothing is written if any partition is unknown (ErrUnknownTopic) or its
// metadata too large (ErrOffsetMetadataTooLarge); the errors name the
// partition. The offsets are durable when it returns nil.
func (c *Coordinator) SetOffsets(ctx context.Context, group string, offsets map[TopicPartition]Offset) error {
	unknown := c.unknownParts(offsets)
	ch := make(chan error, 1)
	if err := c.do(ctx, func() { c.st.setOffsets(group, offsets, unknown, func(err error) { ch <- err }) }); err != nil {
		return err
	}
	r, err := await(c, ctx, ch, nil)
	if err != nil {
		return err
	}
	return r
}

// tick runs the deadline checks now (tests: after advancing the clock).
func (c *Coordinator) tick() {
	_, _ = call(c, context.Background(), func() struct{} { c.st.tick(); return struct{}{} })
}

// inspect runs fn on the actor (tests).
func (c *Coordinator) inspect(fn func(*state)) {
	_, _ = call(c, context.Background(), func() struct{} { fn(c.st); return struct{}{} })
}
