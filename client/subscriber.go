package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// Subscriber consumes topics in a consumer group and runs a handler, wrapped
// in middleware, for each event.
//
// Each poll returns a batch; the batch's partitions are handled in
// parallel, the events of one partition one at a time in offset order, and
// the batch is committed (per the DeliveryMode) before the next poll.
// Rebalances wait for the batch to finish, so a partition never has two
// owners at once; the group's rebalance timeout must exceed the time to
// handle a batch, retries included.
type Subscriber struct {
	cfg     config
	brokers []string
	group   string
	topics  []string
	user    HandlerFunc
	ev      *env

	mu struct {
		sync.Mutex
		running bool
		closed  bool
	}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// NewSubscriber returns a subscriber of group to topics that runs h. It
// connects when Run is called.
func NewSubscriber(brokers []string, group string, topics []string, h HandlerFunc, opts ...Option) (*Subscriber, error) {
	c := newConfig(opts)
	var errs []error
	if len(brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if group == "" {
		errs = append(errs, errors.New("no consumer group"))
	}
	if len(topics) == 0 {
		errs = append(errs, errors.New("no topics"))
	}
	if h == nil {
		errs = append(errs, errors.New("nil handler"))
	}
	if c.mode < AtLeastOnce || c.mode > ExactlyOnce {
		errs = append(errs, fmt.Errorf("unknown delivery mode %d", c.mode))
	}
	if c.store != nil && c.idemTTL == 0 {
		c.idemTTL = -1 // a custom store alone turns idempotency on
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("client: new subscriber: %w", err)
	}
	if c.mode == ExactlyOnce && c.txnID == "" {
		c.txnID = group + "-" + event.NewID()
	}
	return &Subscriber{
		cfg: c, brokers: brokers, group: group, topics: topics, user: h,
		ev:   &env{metrics: c.metrics, logger: c.logger},
		stop: make(chan struct{}), done: make(chan struct{}),
	}, nil
}

// Close stops Run: no new batch starts, in-flight handlers finish (up to
// the shutdown timeout), their work is committed, and the member leaves the
// group. Close returns once Run has returned; it is safe to call more than
// once and before Run.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	running := s.mu.running
	s.mu.closed = true
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	if running {
		<-s.done
	}
	return nil
}

// Run consumes until ctx is canceled or Close is called, then shuts down
// gracefully as Close describes and returns nil. It returns an error if it
// cannot start or if the transactional producer fails for good. Run may be
// called once.
func (s *Subscriber) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.mu.closed || s.mu.running {
		s.mu.Unlock()
		return ErrClosed
	}
	s.mu.running = true
	s.mu.Unlock()
	defer close(s.done)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-rctx.Done():
		}
	}()
	// NB: handlers run on a context that outlives rctx by the shutdown
	// timeout, so a shutdown lets in-flight events finish and commit.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	go func() {
		<-rctx.Done()
		t := time.NewTimer(s.cfg.shutdown)
		defer t.Stop()
		select {
		case <-t.C:
			hcancel()
		case <-hctx.Done():
		}
	}()

	var store *topicStore
	onLose := func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
		if store != nil {
			store.drop(lost)
		}
	}
	iso := kgo.ReadCommitted()
	reset := kgo.NewOffset().AtStart()
	if s.cfg.atEnd {
		reset = kgo.NewOffset().AtEnd()
	}
	kopts := append([]kgo.Opt{
		kgo.SeedBrokers(s.brokers...),
		kgo.ConsumerGroup(s.group),
		kgo.ConsumeTopics(s.topics...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(reset),
		kgo.RecordPartitioner(storePartitioner{manual: s.cfg.procTop, def: kgo.StickyKeyPartitioner(nil)}),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.OnPartitionsRevoked(onLose),
		kgo.OnPartitionsLost(onLose),
	}, s.cfg.kgoOpts...)

	var cl *kgo.Client
	var sess *kgo.GroupTransactSession
	if s.cfg.mode == ExactlyOnce {
		var err error
		sess, err = kgo.NewGroupTransactSession(append(kopts,
			kgo.TransactionalID(s.cfg.txnID),
			kgo.TransactionTimeout(s.cfg.txnTO),
			kgo.RequireStableFetchOffsets())...)
		if err != nil {
			return fmt.Errorf("client: subscriber %s: %w", s.group, err)
		}
		cl = sess.Client()
		defer sess.CloseAllowingRebalance()
		// NB: initialize the producer id before consuming. It fences a
		// crashed predecessor with the same transactional id and aborts
		// its open transaction; otherwise that transaction's pending
		// offsets keep OffsetFetch unstable (KIP-447) until it times out,
		// and we would never produce, so never fence it.
		if _, _, err := cl.ProducerID(rctx); err != nil {
			return fmt.Errorf("client: subscriber %s: init transactional producer: %w", s.group, err)
		}
	} else {
		var err error
		cl, err = kgo.NewClient(kopts...)
		if err != nil {
			return fmt.Errorf("client: subscriber %s: %w", s.group, err)
		}
		defer cl.CloseAllowingRebalance()
	}

	var mws []Middleware
	procStore := s.cfg.store
	if s.cfg.idemTTL > 0 && procStore == nil {
		adm := kadm.NewClient(cl)
		n, err := ensureProcessedTopic(rctx, adm, s.cfg.procTop, s.cfg.procN, s.cfg.idemTTL, s.cfg.logger)
		if err != nil {
			return fmt.Errorf("client: subscriber %s: %w", s.group, err)
		}
		store = &topicStore{
			topic: s.cfg.procTop, group: s.group, ttl: s.cfg.idemTTL, nparts: n,
			readCommitted: s.cfg.mode == ExactlyOnce, adm: adm, logger: s.cfg.logger, now: time.Now,
			loaderOpts: append([]kgo.Opt{kgo.SeedBrokers(s.brokers...)}, s.cfg.kgoOpts...),
		}
		store.mu.parts = make(map[int32]*procPart)
		procStore = store
	}
	if procStore != nil {
		mws = append(mws, Idempotent(procStore))
	}
	if s.cfg.dlq != "" {
		mws = append(mws, DeadLetter(s.cfg.dlq))
	}
	mws = append(mws, s.cfg.mws...)
	h := Chain(attempt(s.countFailures(s.user)), mws...)

	s.cfg.logger.Info("subscriber running", "group", s.group, "topics", s.topics, "mode", s.cfg.mode.String())
	var err error
	if sess != nil {
		err = s.loopTxn(rctx, hctx, sess, h, store)
	} else {
		err = s.loop(rctx, hctx, cl, h)
	}
	s.cfg.logger.Info("subscriber stopped", "group", s.group, "err", err)
	return err
}

func (s *Subscriber) countFailures(h HandlerFunc) HandlerFunc {
	return func(ctx context.Context, e *event.Event) error {
		err := h(ctx, e)
		if err != nil {
			if d, ok := DeliveryFrom(ctx); ok {
				s.ev.metrics.count(cFailed, d.Group, d.Topic)
			}
		}
		return err
	}
}

// partResult is how far one partition of a batch got.
type partResult struct {
	last     *kgo.Record // last record done with (handled, dead-lettered or skipped)
	failedAt *kgo.Record // first record not done, if any
}

// loop is AtLeastOnce and AtMostOnce.
func (s *Subscriber) loop(rctx, hctx context.Context, cl *kgo.Client, h HandlerFunc) error {
	produce := func(ctx context.Context, recs []*kgo.Record) error { return cl.ProduceSync(ctx, recs...).FirstErr() }
	for {
		fs := cl.PollRecords(rctx, s.cfg.maxPoll)
		if rctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		s.logFetchErrors(fs)
		parts := byPartition(fs)
		if len(parts) == 0 {
			cl.AllowRebalance()
			continue
		}
		if s.cfg.mode == AtMostOnce {
			var all []*kgo.Record
			for _, rs := range parts {
				all = append(all, rs[len(rs)-1])
			}
			if err := cl.CommitRecords(hctx, all...); err != nil {
				// Not committed, so not handled: handling now could
				// handle twice. Rewind and try again.
				s.cfg.logger.Warn("at-most-once pre-commit failed; batch will be refetched", "group", s.group, "err", err)
				rewind(cl, parts)
				cl.AllowRebalance()
				sleepCtx(rctx, s.cfg.pause)
				continue
			}
		}
		results := s.handleBatch(hctx, parts, h, produce)
		var lasts []*kgo.Record
		failed := false
		for _, r := range results {
			if r.last != nil {
				lasts = append(lasts, r.last)
			}
			if r.failedAt != nil && s.cfg.mode == AtLeastOnce {
				failed = true
				cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.failedAt.Topic: {r.failedAt.Partition: {
					Epoch: r.failedAt.LeaderEpoch, Offset: r.failedAt.Offset}}})
			}
		}
		if s.cfg.mode == AtLeastOnce && len(lasts) > 0 {
			if err := cl.CommitRecords(hctx, lasts...); err != nil {
				// The events stay uncommitted and come back after a
				// rebalance or restart: at-least-once holds.
				s.cfg.logger.Warn("offset commit failed", "group", s.group, "err", err)
			}
		}
		cl.AllowRebalance()
		if failed {
			sleepCtx(rctx, s.cfg.pause)
		}
	}
}

// loopTxn is ExactlyOnce: one transaction per batch.
func (s *Subscriber) loopTxn(rctx, hctx context.Context, sess *kgo.GroupTransactSession, h HandlerFunc, store *topicStore) error {
	// NB: outputs are produced asynchronously: nothing of the batch is
	// visible until the transaction commits, so an event need not wait
	// for its outputs' acks (a round trip each) before the next. The
	// batch commits only if every output was acknowledged.
	var produceErr atomic.Pointer[error]
	onProduced := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	produce := func(ctx context.Context, recs []*kgo.Record) error {
		if p := produceErr.Load(); p != nil {
			return *p
		}
		for _, r := range recs {
			sess.Produce(ctx, r, onProduced)
		}
		return nil
	}
	for {
		fs := sess.PollRecords(rctx, s.cfg.maxPoll)
		if rctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		s.logFetchErrors(fs)
		parts := byPartition(fs)
		if len(parts) == 0 {
			sess.AllowRebalance()
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("client: subscriber %s: begin transaction: %w", s.group, err)
		}
		produceErr.Store(nil)
		results := s.handleBatch(hctx, parts, h, produce)
		ok := true
		for _, r := range results {
			if r.failedAt != nil {
				ok = false
			}
		}
		if ok {
			if err := sess.Client().Flush(hctx); err != nil {
				ok = false
			} else if p := produceErr.Load(); p != nil {
				s.cfg.logger.Error("writing the batch's outputs failed; the batch will be redelivered", "group", s.group, "err", *p)
				ok = false
			}
		}
		committed, err := sess.End(hctx, kgo.TransactionEndTry(ok))
		if !committed && store != nil {
			// NB: marks were applied as events finished; the aborted
			// ones must not survive, so reload from what committed.
			store.dropAll()
		}
		if err != nil {
			if hctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("client: subscriber %s: end transaction: %w", s.group, err)
		}
		if !committed {
			s.cfg.logger.Warn("transaction aborted; the batch will be redelivered", "group", s.group, "handler_failed", !ok)
		}
		sess.AllowRebalance()
		if !committed {
			sleepCtx(rctx, s.cfg.pause)
		}
	}
}

func (s *Subscriber) logFetchErrors(fs kgo.Fetches) {
	for _, fe := range fs.Errors() {
		if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, kgo.ErrClientClosed) {
			continue
		}
		s.cfg.logger.Warn("fetch error", "group", s.group, "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
	}
}

func byPartition(fs kgo.Fetches) [][]*kgo.Record {
	var parts [][]*kgo.Record
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			parts = append(parts, p.Records)
		}
	})
	return parts
}

func rewind(cl *kgo.Client, parts [][]*kgo.Record) {
	set := map[string]map[int32]kgo.EpochOffset{}
	for _, rs := range parts {
		r := rs[0]
		if set[r.Topic] == nil {
			set[r.Topic] = map[int32]kgo.EpochOffset{}
		}
		set[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
	}
	cl.SetOffsets(set)
}

// handleBatch runs each partition's records in order, partitions in
// parallel, and writes each event's outputs before the next event.
func (s *Subscriber) handleBatch(hctx context.Context, parts [][]*kgo.Record, h HandlerFunc,
	produce func(context.Context, []*kgo.Record) error) []partResult {
	results := make([]partResult, len(parts))
	var wg sync.WaitGroup
	for i, rs := range parts {
		wg.Go(func() {
			for _, r := range rs {
				if hctx.Err() != nil || !s.handleOne(hctx, r, h, produce) {
					results[i].failedAt = r
					return
				}
				results[i].last = r
			}
		})
	}
	wg.Wait()
	return results
}

// handleOne reports whether r is done with: handled, skipped or
// dead-lettered, with its outputs written.
func (s *Subscriber) handleOne(hctx context.Context, r *kgo.Record, h HandlerFunc,
	produce func(context.Context, []*kgo.Record) error) bool {
	start := time.Now()
	d := &Delivery{Group: s.group, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Timestamp: r.Timestamp, Message: toMessage(r)}
	ob := &outbox{}
	ctx := context.WithValue(hctx, deliveryKey, d)
	ctx = context.WithValue(ctx, outboxKey, ob)
	ctx = context.WithValue(ctx, envKey, s.ev)
	m := s.ev.metrics
	e, err := event.Decode(d.Message)
	if err != nil {
		if s.cfg.dlq == "" {
			Logger(ctx).Error("skipping malformed event (no dead-letter topic)", "err", err)
			m.count(cFailed, d.Group, d.Topic)
			return true
		}
		now := time.Now()
		ob.add([]*kgo.Record{deadLetterRecord(s.cfg.dlq, *d, err, DLQReasonMalformed, 0, now, now)}, nil)
		m.count(cDeadLettered, d.Group, d.Topic, DLQReasonMalformed)
		Logger(ctx).Warn("malformed event dead-lettered", "dlq", s.cfg.dlq, "err", err)
	} else {
		ctx = context.WithValue(ctx, eventKey, e)
		if err := h(ctx, e); err != nil {
			if hctx.Err() == nil {
				Logger(ctx).Error("handler failed; the event will be redelivered", "err", err,
					"mode", s.cfg.mode.String())
			}
			return s.cfg.mode == AtMostOnce && hctx.Err() == nil // at-most-once drops it
		}
	}
	recs, after := ob.take()
	if len(recs) > 0 {
		if err := produce(hctx, recs); err != nil {
			Logger(ctx).Error("writing the event's outputs failed; the event will be redelivered", "err", err)
			return s.cfg.mode == AtMostOnce
		}
		for _, r := range recs {
			m.count(cPublished, r.Topic)
		}
	}
	for _, f := range after {
		f()
	}
	if m != nil {
		m.handled.WithLabelValues(d.Group, d.Topic).Inc()
		m.latency.WithLabelValues(d.Group, d.Topic).Observe(time.Since(start).Seconds())
	}
	return true
}
