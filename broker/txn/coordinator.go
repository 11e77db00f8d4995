package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Coordinator is Herald's transaction coordinator. All methods are safe
// for concurrent use.
//
// The core (core.go) is guarded by mu and does no I/O; the Coordinator
// writes its transitions to the Store outside the lock and applies them
// once durable, so a state change is acknowledged only after its record is
// durable. Completing a prepared transaction (markers, group offsets, the
// Complete record) runs on a goroutine the Coordinator owns, retried until
// it succeeds or Close; EndTxn waits for it, so a committed transaction is
// readable by read_committed consumers when EndTxn returns.
type Coordinator struct {
	cfg Config
	log *slog.Logger

	mu struct {
		sync.Mutex
		core      *core
		finishing map[string]chan struct{} // ids being completed -> closed when done
	}

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New replays the store and starts the coordinator: transactions found
// prepared are completed in the background, and ongoing ones time out as
// usual. Records that do not decode are logged and skipped.
func New(ctx context.Context, cfg Config) (*Coordinator, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Coordinator{cfg: cfg, log: cfg.Logger}
	c.mu.core = newCore(cfg.MaxTimeout)
	c.mu.finishing = map[string]chan struct{}{}
	txns := map[string]Txn{}
	var n, skipped int
	err := cfg.Store.Replay(ctx, func(kv KV) error {
		n++
		id, err := decodeKey(kv.Key)
		if err == nil && kv.Value == nil {
			delete(txns, id)
			return nil
		}
		var t Txn
		if err == nil {
			t, err = decodeValue(id, kv.Value)
		}
		if err != nil {
			skipped++
			if skipped <= 10 {
				c.log.Warn("skipping undecodable transaction record", "err", err, "key_bytes", len(kv.Key), "value_bytes", len(kv.Value))
			}
			return nil
		}
		txns[id] = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("txn: replay store: %w", err)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mu.Lock()
	prepared := c.mu.core.restore(txns)
	for _, t := range prepared {
		c.finishLocked(t)
	}
	c.mu.Unlock()
	c.log.Info("transaction coordinator loaded", "records", n, "skipped", skipped, "transactional_ids", len(txns), "completing", len(prepared))
	c.wg.Add(1)
	go c.expire()
	return c, nil
}

// Close stops the coordinator and waits for its goroutines. Transactions
// being completed stay prepared in the store and are completed by the next
// coordinator. Calling it again returns nil.
func (c *Coordinator) Close() error {
	c.once.Do(func() {
		c.cancel()
		c.wg.Wait()
	})
	return nil
}

// write makes t durable and applies it, or drops it on error. When ctx
// ends during the append, the record may or may not be stored; memory
// keeps the old state and a restart reads the store.
func (c *Coordinator) write(ctx context.Context, t Txn) error {
	err := c.cfg.Store.Append(ctx, []KV{{Key: encodeKey(t.ID), Value: encodeValue(t)}})
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.mu.core.failed(t.ID)
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return fmt.Errorf("txn: store %q: %w", t.ID, err)
	}
	c.mu.core.apply(t)
	return nil
}

// finishLocked starts completing the prepared t unless that is under way,
// and returns a channel closed when it is done. c.mu is held.
func (c *Coordinator) finishLocked(t Txn) chan struct{} {
	if ch, ok := c.mu.finishing[t.ID]; ok {
		return ch
	}
	ch := make(chan struct{})
	c.mu.finishing[t.ID] = ch
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.finish(t)
		c.mu.Lock()
		delete(c.mu.finishing, t.ID)
		c.mu.Unlock()
		close(ch)
	}()
	return ch
}

// finish writes t's markers, completes its groups' offsets and stores the
// Complete state, retrying with backoff until it succeeds or Close.
func (c *Coordinator) finish(t Txn) {
	commit := t.State == PrepareCommit
	backoff := 50 * time.Millisecond
	for {
		err := c.finishOnce(t, commit)
		if err == nil {
			return
		}
		if c.ctx.Err() != nil {
			return
		}
		c.log.Warn("completing transaction failed; retrying", "transactional_id", t.ID, "commit", commit, "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-c.ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (c *Coordinator) finishOnce(t Txn, commit bool) error {
	if len(t.Partitions) > 0 {
		if err := c.cfg.Markers.WriteTxnMarkers(c.ctx, t.ProducerID, t.Epoch, commit, t.Partitions); err != nil {
			return fmt.Errorf("write markers: %w", err)
		}
	}
	for _, g := range t.Groups {
		if c.cfg.Groups == nil {
			break
		}
		if err := c.cfg.Groups.CompleteTxnOffsets(c.ctx, g, t.ProducerID, commit); err != nil {
			return fmt.Errorf("complete offsets of group %q: %w", g, err)
		}
	}
	c.mu.Lock()
	st := c.mu.core.complete(t.ID, c.cfg.Now())
	c.mu.Unlock()
	if st.err != nil {
		return st.err
	}
	return c.write(c.ctx, *st.write)
}

// busy waits for id's completion when one is under way; it reports
// whether it waited (then the caller retries).
func (c *Coordinator) busy(ctx context.Context, id string) (bool, error) {
	c.mu.Lock()
	ch := c.mu.finishing[id]
	c.mu.Unlock()
	if ch == nil {
		return false, nil
	}
	select {
	case <-ch:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	case <-c.ctx.Done():
		return false, ErrClosed
	}
}

// run calls f under the lock until it needs no waiting for a completion
// under way, then makes its transition durable.
func (c *Coordinator) run(ctx context.Context, id string, f func() step) (step, error) {
	for {
		if c.ctx.Err() != nil {
			return step{}, ErrClosed
		}
		c.mu.Lock()
		st := f()
		c.mu.Unlock()
		if errors.Is(st.err, ErrConcurrentTransactions) {
			waited, err := c.busy(ctx, id)
			if err != nil {
				return st, err
			}
			if waited {
				continue
			}
		}
		if st.err != nil || st.write == nil {
			return st, st.err
		}
		return st, c.write(ctx, *st.write)
	}
}

// InitProducerID is InitProducerId with a transactional id: the first
// call allocates a producer id with epoch 0, each later one bumps the
// epoch, fencing older producers. An ongoing transaction is aborted first.
// pid and epoch are -1, or the producer's current ones (v3+). timeout is
// the producer's transaction.timeout.ms.
func (c *Coordinator) InitProducerID(ctx context.Context, id string, timeout time.Duration, pid int64, epoch int16) (int64, int16, error) {
	fresh := int64(-1)
	for {
		st, err := c.run(ctx, id, func() step {
			return c.mu.core.init(id, timeout, pid, epoch, fresh, c.cfg.Now())
		})
		if err != nil {
			return -1, -1, err
		}
		switch {
		case st.needPID:
			if fresh, err = c.cfg.NewProducerID(ctx); err != nil {
				return -1, -1, err
			}
		case st.write.State == PrepareAbort:
			// The ongoing transaction is being aborted; then init again.
			c.mu.Lock()
			ch := c.finishLocked(*st.write)
			c.mu.Unlock()
			if err := c.wait(ctx, ch); err != nil {
				return -1, -1, err
			}
			pid, epoch = -1, -1
		default:
			return st.write.ProducerID, st.write.Epoch, nil
		}
	}
}

func (c *Coordinator) wait(ctx context.Context, ch chan struct{}) error {
	select {
	case <-ch:
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// AddPartitions is AddPartitionsToTxn: it starts a transaction if none is
// ongoing and adds the partitions, durably. The caller checks that the
// partitions exist.
func (c *Coordinator) AddPartitions(ctx context.Context, id string, pid int64, epoch int16, parts []TopicPartition) error {
	_, err := c.run(ctx, id, func() step { return c.mu.core.addPartitions(id, pid, epoch, parts, c.cfg.Now()) })
	return err
}

// AddGroup is AddOffsetsToTxn: the group's offsets committed with
// TxnOffsetCommit become part of the transaction.
func (c *Coordinator) AddGroup(ctx context.Context, id string, pid int64, epoch int16, group string) error {
	if c.cfg.Groups == nil {
		return fmt.Errorf("%w: no group coordinator", ErrInvalidTxnState)
	}
	_, err := c.run(ctx, id, func() step { return c.mu.core.addGroup(id, pid, epoch, group, c.cfg.Now()) })
	return err
}

// EndTxn commits or aborts the ongoing transaction: the decision is made
// durable, then markers are written to every partition and the groups'
// offsets completed; EndTxn returns when the transaction is complete (or
// ctx ends, after which it completes in the background).
func (c *Coordinator) EndTxn(ctx context.Context, id string, pid int64, epoch int16, commit bool) error {
	st, err := c.run(ctx, id, func() step { return c.mu.core.endTxn(id, pid, epoch, commit, c.cfg.Now()) })
	if err != nil || st.write == nil {
		return err
	}
	c.mu.Lock()
	ch := c.finishLocked(*st.write)
	c.mu.Unlock()
	return c.wait(ctx, ch)
}

// VerifyProduce checks a transactional batch before it is appended: its
// producer must own an ongoing transaction that added the partition.
// ErrProducerFenced means an older epoch.
func (c *Coordinator) VerifyProduce(pid int64, epoch int16, topic string, partition int32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.core.verifyProduce(pid, epoch, TopicPartition{topic, partition})
}

// VerifyGroup checks a TxnOffsetCommit: the group must be in the ongoing
// transaction of the producer.
func (c *Coordinator) VerifyGroup(id string, pid int64, epoch int16, group string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.core.verifyGroup(id, pid, epoch, group)
}

// Describe returns id's metadata, or ErrTransactionalIDNotFound.
func (c *Coordinator) Describe(id string) (Txn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.core.get(id)
	if !ok {
		return Txn{}, fmt.Errorf("%w: %q", ErrTransactionalIDNotFound, id)
	}
	return t, nil
}

// List returns every transactional id's metadata, sorted by id, filtered
// as ListTransactions: by states and producer ids when non-empty, and to
// transactions running longer than minDuration when it is positive.
func (c *Coordinator) List(states []State, pids []int64, minDuration time.Duration) []Txn {
	c.mu.Lock()
	all := c.mu.core.list()
	c.mu.Unlock()
	now := c.cfg.Now()
	out := all[:0]
	for _, t := range all {
		switch {
		case len(states) > 0 && !slices.Contains(states, t.State):
		case len(pids) > 0 && !slices.Contains(pids, t.ProducerID):
		case minDuration > 0 && (t.Start.IsZero() || now.Sub(t.Start) < minDuration):
		default:
			out = append(out, t)
		}
	}
	return out
}

// expire aborts timed-out transactions every CheckInterval.
func (c *Coordinator) expire() {
	defer c.wg.Done()
	tk := time.NewTicker(c.cfg.CheckInterval)
	defer tk.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tk.C:
		}
		c.abortExpired()
	}
}

func (c *Coordinator) abortExpired() {
	c.mu.Lock()
	expired := c.mu.core.expired(c.cfg.Now())
	c.mu.Unlock()
	for _, t := range expired {
		c.log.Info("aborting timed-out transaction", "transactional_id", t.ID, "producer_id", t.ProducerID, "epoch", t.Epoch)
		if err := c.write(c.ctx, t); err != nil {
			c.log.Warn("could not abort timed-out transaction", "transactional_id", t.ID, "err", err)
			continue
		}
		c.mu.Lock()
		c.finishLocked(t)
		c.mu.Unlock()
	}
}
