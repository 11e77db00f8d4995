package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/logctx"
)

// Subscriber consumes topics in a consumer group and runs a handler, wrapped
// in middleware, for each event.
//
// Each poll returns a batch; the batch's partitions are handled in
// parallel, the events of one partition one at a time in offset order, and
// the batch is committed (per the DeliveryMode) before the next poll.
// Outputs and processed-id marks are written without holding up the next
// event, and awaited once per batch before the commit; a partition commits
// only up to its last event whose writes all succeeded (see batch.go).
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
	idStore *topicStore // WithIdempotency's store, set by Run

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
		ev:   &env{metrics: c.metrics, logger: c.logger, tp: c.tp},
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
			if rctx.Err() != nil {
				return nil // closed while starting
			}
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
			if rctx.Err() != nil {
				return nil // closed while starting
			}
			return fmt.Errorf("client: subscriber %s: %w", s.group, err)
		}
		store = &topicStore{
			topic: s.cfg.procTop, group: s.group, ttl: s.cfg.idemTTL, nparts: n,
			readCommitted: s.cfg.mode == ExactlyOnce, adm: adm, logger: s.cfg.logger, now: time.Now,
			loaderOpts: append([]kgo.Opt{kgo.SeedBrokers(s.brokers...)}, s.cfg.kgoOpts...),
		}
		store.parts = make([]atomic.Pointer[procPart], n)
		procStore = store
		s.idStore = store
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
	dlqPoke, dlqStop := s.watchDLQDepth(rctx, cl)
	if sess != nil {
		err = s.loopTxn(rctx, hctx, sess, h, store, dlqPoke)
	} else {
		err = s.loop(rctx, hctx, cl, h, dlqPoke)
	}
	dlqStop()
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

// loop is AtLeastOnce and AtMostOnce.
func (s *Subscriber) loop(rctx, hctx context.Context, cl *kgo.Client, h HandlerFunc, dlqPoke func()) error {
	w := &writer{
		produce: cl.Produce,
		flush:   cl.Flush,
		metrics: s.ev.metrics, dlq: s.cfg.dlq,
	}
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
		results := s.handleBatch(hctx, parts, h, w)
		outcome, flushErr := w.settle(hctx, results)
		if flushErr != nil && hctx.Err() == nil {
			s.cfg.logger.Warn("flushing the batch's writes failed", "group", s.group, "err", flushErr)
		}
		var lasts []*kgo.Record
		failed := false
		for _, o := range outcome {
			if o.last != nil {
				lasts = append(lasts, o.last)
			}
			if o.err != nil {
				if s.cfg.mode == AtMostOnce {
					s.cfg.logger.Error("writing an event's outputs failed; at-most-once drops it", "group", s.group,
						"topic", o.resume.Topic, "partition", o.resume.Partition, "offset", o.resume.Offset, "err", o.err)
				} else {
					s.cfg.logger.Error("writing an event's outputs or processed-id mark failed; it will be redelivered", "group", s.group,
						"topic", o.resume.Topic, "partition", o.resume.Partition, "offset", o.resume.Offset, "err", o.err)
				}
			}
			if o.resume != nil && s.cfg.mode == AtLeastOnce {
				failed = true
				cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{o.resume.Topic: {o.resume.Partition: {
					Epoch: o.resume.LeaderEpoch, Offset: o.resume.Offset}}})
			}
		}
		if s.cfg.mode == AtLeastOnce && len(lasts) > 0 {
			if err := cl.CommitRecords(hctx, lasts...); err != nil {
				// The events stay uncommitted and come back after a
				// rebalance or restart: at-least-once holds.
				s.cfg.logger.Warn("offset commit failed", "group", s.group, "err", err)
			}
		}
		if w.dlqWritten.Swap(false) {
			dlqPoke()
		}
		cl.AllowRebalance()
		if failed {
			sleepCtx(rctx, s.cfg.pause)
		}
	}
}

// loopTxn is ExactlyOnce: one transaction per batch.
func (s *Subscriber) loopTxn(rctx, hctx context.Context, sess *kgo.GroupTransactSession, h HandlerFunc, store *topicStore, dlqPoke func()) error {
	// NB: outputs are produced asynchronously: nothing of the batch is
	// visible until the transaction commits, so an event need not wait
	// for its outputs' acks (a round trip each) before the next. The
	// batch commits only if every write was acknowledged.
	w := &writer{
		produce: sess.Produce,
		flush:   sess.Client().Flush,
		metrics: s.ev.metrics, dlq: s.cfg.dlq,
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
		results := s.handleBatch(hctx, parts, h, w)
		ok := true
		for _, r := range results {
			if r.failedAt != nil {
				ok = false
			}
		}
		nowMs := time.Now().UnixMilli()
		if ok {
			// Marks after outputs, as in settle; in one transaction the
			// order does not matter for visibility, but it keeps one
			// rule for every mode.
			for _, r := range results {
				w.writeMarks(hctx, r.done, nowMs, r)
			}
			if err := w.flush(hctx); err != nil {
				ok = false
			}
			for _, r := range results {
				if i := firstNotDurable(r.done); ok && i < len(r.done) {
					ok = false
					if p := r.done[i].err.Load(); p != nil {
						s.cfg.logger.Error("writing the batch's outputs failed; the transaction aborts and the batch will be redelivered",
							"group", s.group, "topic", r.done[i].rec.Topic, "partition", r.done[i].rec.Partition,
							"offset", r.done[i].rec.Offset, "err", *p)
					}
				}
			}
		}
		committed, err := sess.End(hctx, kgo.TransactionEndTry(ok))
		for _, r := range results {
			if committed {
				commitAllMarks(r.done, nowMs)
				continue
			}
			for _, f := range r.done {
				f.undoMarks()
			}
		}
		if !committed && store != nil {
			// NB: a mark committed in memory by an earlier batch is
			// durable; this drop is for an End whose outcome is unknown.
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
		} else if w.dlqWritten.Load() {
			dlqPoke()
		}
		w.dlqWritten.Store(false)
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
// parallel; each event's outputs are produced (not awaited) as it finishes.
// A partition stops at its first event that fails, or once a write of its
// events failed.
func (s *Subscriber) handleBatch(hctx context.Context, parts [][]*kgo.Record, h HandlerFunc, w *writer) []*partResult {
	results := make([]*partResult, len(parts))
	var wg sync.WaitGroup
	for i, rs := range parts {
		pr := &partResult{done: make([]*inflight, 0, len(rs))}
		results[i] = pr
		wg.Go(func() {
			if s.idStore != nil {
				s.idStore.prelook(hctx, pr, rs)
			}
			for i, r := range rs {
				if hctx.Err() != nil || pr.writeFailed.Load() {
					pr.failedAt = r
					return
				}
				pr.cur = i
				f, ok := s.handleOne(hctx, r, h, w, pr)
				if !ok {
					pr.failedAt = r
					return
				}
				pr.done = append(pr.done, f)
			}
		})
	}
	wg.Wait()
	return results
}

// handleOne runs h for r and returns it as done with (handled, skipped or
// dead-lettered; at-most-once: also dropped), its outputs being written, or
// false if r is to be redelivered.
func (s *Subscriber) handleOne(hctx context.Context, r *kgo.Record, h HandlerFunc, w *writer, pr *partResult) (*inflight, bool) {
	start := time.Now()
	d := &Delivery{Group: s.group, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Timestamp: r.Timestamp, Message: toMessage(r), batch: pr}
	ob := &outbox{}
	if pr != nil && pr.cur < len(pr.idmSlab) {
		// NB: the event's store mark goes into the batch's slab, not
		// a fresh allocation; a second mark would outgrow the window and
		// be copied out by append.
		ob.idms = pr.idmSlab[pr.cur : pr.cur : pr.cur+1]
	}
	ctx := context.WithValue(hctx, deliveryKey, d)
	ctx = context.WithValue(ctx, outboxKey, ob)
	ctx = context.WithValue(ctx, envKey, s.ev)
	m := s.ev.metrics
	e, err := event.Decode(d.Message)
	if err != nil {
		if s.cfg.dlq == "" {
			Logger(ctx).Error("skipping malformed event (no dead-letter topic)", "err", err)
			m.count(cFailed, d.Group, d.Topic)
			return &inflight{rec: r}, true
		}
		now := time.Now()
		ob.add([]*kgo.Record{deadLetterRecord(s.cfg.dlq, *d, err, DLQReasonMalformed, 0, now, now)})
		m.count(cDeadLettered, d.Group, d.Topic, DLQReasonMalformed)
		Logger(ctx).Warn("malformed event dead-lettered", "dlq", s.cfg.dlq, "err", err)
	} else {
		ctx = context.WithValue(ctx, eventKey, e)
		// An event that starts a flow is its own correlation, as
		// Correlate gives its outputs.
		ctx = logctx.With(ctx, e.ID, cmp.Or(e.CorrelationID, e.ID))
		if err := h(ctx, e); err != nil {
			if hctx.Err() == nil {
				Logger(ctx).Error("handler failed; the event will be redelivered", "err", err,
					"mode", s.cfg.mode.String())
			}
			if s.cfg.mode == AtMostOnce && hctx.Err() == nil { // at-most-once drops it
				return &inflight{rec: r}, true
			}
			return nil, false
		}
	}
	recs, marks, idms := ob.take()
	for _, mk := range marks {
		mk.pending()
	}
	if pr != nil {
		for _, mk := range idms {
			pr.pending.add(mk.key)
		}
	}
	f := &inflight{rec: r, marks: marks, idms: idms}
	w.write(hctx, f, recs, pr)
	if m != nil {
		m.handled.WithLabelValues(d.Group, d.Topic).Inc()
		m.latency.WithLabelValues(d.Group, d.Topic).Observe(time.Since(start).Seconds())
	}
	return f, true
}
