package txn

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// entry is one transactional id in the core.
type entry struct {
	cur     Txn
	exists  bool // cur has been made durable at least once
	pending *Txn // a transition being made durable; nil if none
}

// core is the deterministic state machine: every method takes the time as
// an argument, does no I/O and returns what must be made durable. A
// transition is proposed (pending set), written by the caller, and then
// applied or failed; while one is pending, other requests for the same id
// get ErrConcurrentTransactions, as Kafka's pendingState does.
type core struct {
	maxTimeout time.Duration
	txns       map[string]*entry
	byPID      map[int64]string
}

func newCore(maxTimeout time.Duration) *core {
	return &core{maxTimeout: maxTimeout, txns: map[string]*entry{}, byPID: map[int64]string{}}
}

// step is a core method's answer: an error, a transition to make durable
// (write), a producer id to allocate first (needPID), or nothing to do.
type step struct {
	err     error
	write   *Txn
	needPID bool
}

func fail(err error) step { return step{err: err} }

func (c *core) propose(id string, t Txn) step {
	e := c.txns[id]
	if e == nil {
		e = &entry{}
		c.txns[id] = e
	}
	e.pending = &t
	return step{write: &t}
}

// apply makes a durable transition current.
func (c *core) apply(t Txn) {
	e := c.txns[t.ID]
	if e == nil {
		e = &entry{}
		c.txns[t.ID] = e
	}
	if e.exists && e.cur.ProducerID != t.ProducerID {
		delete(c.byPID, e.cur.ProducerID)
	}
	e.cur, e.exists, e.pending = t, true, nil
	c.byPID[t.ProducerID] = t.ID
}

// failed drops a transition whose write failed.
func (c *core) failed(id string) {
	e := c.txns[id]
	if e == nil {
		return
	}
	e.pending = nil
	if !e.exists {
		delete(c.txns, id)
	}
}

func preparing(s State) bool { return s == PrepareCommit || s == PrepareAbort }

// bumpEpoch returns the next epoch, or false when it is exhausted and a new
// producer id is needed.
func bumpEpoch(e int16) (int16, bool) {
	if e >= math.MaxInt16-1 {
		return e, false
	}
	return e + 1, true
}

// init is InitProducerId with a transactional id. fresh is a newly
// allocated producer id, or -1 (then the step may ask for one). reqPID and
// reqEpoch are -1 unless the producer names its current id (v3+, KIP-360).
func (c *core) init(id string, timeout time.Duration, reqPID int64, reqEpoch int16, fresh int64, now time.Time) step {
	if id == "" || len(id) > math.MaxUint16 {
		return fail(ErrInvalidTransactionalID)
	}
	if timeout <= 0 || timeout > c.maxTimeout {
		return fail(fmt.Errorf("%w: %v; want (0, %v]", ErrInvalidTimeout, timeout, c.maxTimeout))
	}
	e := c.txns[id]
	if e == nil || !e.exists {
		if e != nil && e.pending != nil {
			return fail(ErrConcurrentTransactions)
		}
		if reqPID >= 0 {
			return fail(ErrInvalidProducerIDMapping)
		}
		if fresh < 0 {
			return step{needPID: true}
		}
		return c.propose(id, Txn{ID: id, ProducerID: fresh, Epoch: 0, Timeout: timeout, State: Empty, Updated: now})
	}
	cur := e.cur
	if e.pending != nil || preparing(cur.State) {
		return fail(ErrConcurrentTransactions)
	}
	if reqPID >= 0 && (reqPID != cur.ProducerID || reqEpoch != cur.Epoch) {
		return fail(fmt.Errorf("%w: producer %d epoch %d; the current is %d epoch %d", ErrProducerFenced, reqPID, reqEpoch, cur.ProducerID, cur.Epoch))
	}
	if cur.State == Ongoing {
		// Abort the ongoing transaction first, fencing its producer.
		t := cur
		t.State, t.Updated = PrepareAbort, now
		t.Epoch, _ = bumpEpoch(cur.Epoch)
		return c.propose(id, t)
	}
	t := Txn{ID: id, ProducerID: cur.ProducerID, Timeout: timeout, State: Empty, Updated: now}
	var ok bool
	if t.Epoch, ok = bumpEpoch(cur.Epoch); !ok {
		if fresh < 0 {
			return step{needPID: true}
		}
		t.ProducerID, t.Epoch = fresh, 0
	}
	return c.propose(id, t)
}

// check finds id's entry for a request of the producer and epoch.
func (c *core) check(id string, pid int64, epoch int16) (*entry, error) {
	e := c.txns[id]
	switch {
	case e == nil || !e.exists:
		return nil, fmt.Errorf("%w: unknown transactional id %q", ErrInvalidProducerIDMapping, id)
	case e.cur.ProducerID != pid:
		return nil, fmt.Errorf("%w: %q has producer id %d, not %d", ErrInvalidProducerIDMapping, id, e.cur.ProducerID, pid)
	case e.cur.Epoch != epoch:
		return nil, fmt.Errorf("%w: epoch %d, the current is %d", ErrProducerFenced, epoch, e.cur.Epoch)
	case e.pending != nil || preparing(e.cur.State):
		return nil, ErrConcurrentTransactions
	}
	return e, nil
}

func comparePart(a, b TopicPartition) int {
	return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
}

// begin returns the transaction to extend: the ongoing one, or a new one.
func begin(cur Txn, now time.Time) Txn {
	t := cur
	if cur.State != Ongoing {
		t.State, t.Start, t.Partitions, t.Groups = Ongoing, now, nil, nil
	}
	t.Updated = now
	return t
}

// addPartitions is AddPartitionsToTxn.
func (c *core) addPartitions(id string, pid int64, epoch int16, parts []TopicPartition, now time.Time) step {
	e, err := c.check(id, pid, epoch)
	if err != nil {
		return fail(err)
	}
	t := begin(e.cur, now)
	t.Partitions = slices.Clone(t.Partitions)
	added := false
	for _, tp := range parts {
		if i, found := slices.BinarySearchFunc(t.Partitions, tp, comparePart); !found {
			t.Partitions = slices.Insert(t.Partitions, i, tp)
			added = true
		}
	}
	if !added && e.cur.State == Ongoing {
		return step{}
	}
	return c.propose(id, t)
}

// addGroup is AddOffsetsToTxn.
func (c *core) addGroup(id string, pid int64, epoch int16, group string, now time.Time) step {
	e, err := c.check(id, pid, epoch)
	if err != nil {
		return fail(err)
	}
	t := begin(e.cur, now)
	i, found := slices.BinarySearch(t.Groups, group)
	if found && e.cur.State == Ongoing {
		return step{}
	}
	if !found {
		t.Groups = slices.Insert(slices.Clone(t.Groups), i, group)
	}
	return c.propose(id, t)
}

// endTxn is EndTxn. A retry of a completed decision succeeds with nothing
// to do; the opposite decision is ErrInvalidTxnState.
func (c *core) endTxn(id string, pid int64, epoch int16, commit bool, now time.Time) step {
	e, err := c.check(id, pid, epoch)
	if err != nil {
		// A retry while the same decision is being completed.
		if e := c.txns[id]; err == ErrConcurrentTransactions && e.pending == nil && e.cur.State != wantPrepare(commit) {
			return fail(fmt.Errorf("%w: %s while %s", ErrInvalidTxnState, endName(commit), e.cur.State))
		}
		return fail(err)
	}
	switch e.cur.State {
	case Ongoing:
		t := e.cur
		t.State, t.Updated = wantPrepare(commit), now
		return c.propose(id, t)
	case CompleteCommit:
		if commit {
			return step{}
		}
	case CompleteAbort:
		if !commit {
			return step{}
		}
	}
	return fail(fmt.Errorf("%w: %s while %s", ErrInvalidTxnState, endName(commit), e.cur.State))
}

func wantPrepare(commit bool) State {
	if commit {
		return PrepareCommit
	}
	return PrepareAbort
}

func endName(commit bool) string {
	if commit {
		return "commit"
	}
	return "abort"
}

// complete proposes the Complete state once a prepared transaction's
// markers are written.
func (c *core) complete(id string, now time.Time) step {
	e := c.txns[id]
	if e == nil || !e.exists || !preparing(e.cur.State) || e.pending != nil {
		return fail(fmt.Errorf("%w: complete %q", ErrInvalidTxnState, id))
	}
	t := e.cur
	t.State = CompleteCommit
	if e.cur.State == PrepareAbort {
		t.State = CompleteAbort
	}
	t.Partitions, t.Groups, t.Start, t.Updated = nil, nil, time.Time{}, now
	return c.propose(id, t)
}

// expired proposes aborting every ongoing transaction older than its
// timeout, with the epoch bumped so that its producer is fenced.
func (c *core) expired(now time.Time) []Txn {
	var out []Txn
	for id, e := range c.txns {
		if !e.exists || e.pending != nil || e.cur.State != Ongoing || now.Sub(e.cur.Start) <= e.cur.Timeout {
			continue
		}
		t := e.cur
		t.State, t.Updated = PrepareAbort, now
		t.Epoch, _ = bumpEpoch(t.Epoch)
		c.propose(id, t)
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Txn) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// verifyProduce checks a transactional batch: its producer must be the
// current one of an ongoing transaction that added the partition.
func (c *core) verifyProduce(pid int64, epoch int16, tp TopicPartition) error {
	id, ok := c.byPID[pid]
	if !ok {
		return fmt.Errorf("%w: producer id %d has no transactional id", ErrInvalidProducerIDMapping, pid)
	}
	e := c.txns[id]
	if epoch != e.cur.Epoch {
		return fmt.Errorf("%w: epoch %d, the current is %d", ErrProducerFenced, epoch, e.cur.Epoch)
	}
	if e.cur.State != Ongoing || e.pending != nil && preparing(e.pending.State) {
		return fmt.Errorf("%w: produce to %s/%d while %s", ErrInvalidTxnState, tp.Topic, tp.Partition, e.cur.State)
	}
	if _, found := slices.BinarySearchFunc(e.cur.Partitions, tp, comparePart); !found {
		return fmt.Errorf("%w: %s/%d was not added to the transaction", ErrInvalidTxnState, tp.Topic, tp.Partition)
	}
	return nil
}

// verifyGroup checks a TxnOffsetCommit: the group must be in the ongoing
// transaction of the current producer.
func (c *core) verifyGroup(id string, pid int64, epoch int16, group string) error {
	e := c.txns[id]
	switch {
	case e == nil || !e.exists || e.cur.ProducerID != pid:
		return fmt.Errorf("%w: %q, producer %d", ErrInvalidProducerIDMapping, id, pid)
	case e.cur.Epoch != epoch:
		return fmt.Errorf("%w: epoch %d, the current is %d", ErrProducerFenced, epoch, e.cur.Epoch)
	case e.cur.State != Ongoing || e.pending != nil && preparing(e.pending.State):
		return fmt.Errorf("%w: offset commit while %s", ErrInvalidTxnState, e.cur.State)
	}
	if _, found := slices.BinarySearch(e.cur.Groups, group); !found {
		return fmt.Errorf("%w: group %q was not added to the transaction", ErrInvalidTxnState, group)
	}
	return nil
}

// get returns id's durable metadata.
func (c *core) get(id string) (Txn, bool) {
	e := c.txns[id]
	if e == nil || !e.exists {
		return Txn{}, false
	}
	return e.cur, true
}

// list returns the durable metadata of every id, sorted by id.
func (c *core) list() []Txn {
	out := make([]Txn, 0, len(c.txns))
	for _, e := range c.txns {
		if e.exists {
			out = append(out, e.cur)
		}
	}
	slices.SortFunc(out, func(a, b Txn) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// restore loads replayed metadata and returns the prepared transactions,
// whose markers must be (re)written.
func (c *core) restore(txns map[string]Txn) []Txn {
	var prepared []Txn
	for _, t := range txns {
		c.apply(t)
		if preparing(t.State) {
			prepared = append(prepared, t)
		}
	}
	slices.SortFunc(prepared, func(a, b Txn) int { return cmp.Compare(a.ID, b.ID) })
	return prepared
}
