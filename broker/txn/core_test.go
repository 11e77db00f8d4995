package txn

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

var t0 = time.UnixMilli(1_700_000_000_000)

// script drives the core as the Coordinator does: a proposed transition
// is applied at once (the write succeeded) unless the test says otherwise.
type script struct {
	t   *testing.T
	c   *core
	now time.Time
	pid int64
}

func newScript(t *testing.T) *script {
	return &script{t: t, c: newCore(15 * time.Minute), now: t0, pid: 100}
}

func (s *script) do(st step) step {
	s.t.Helper()
	if st.write != nil {
		s.c.apply(*st.write)
	}
	return st
}

func (s *script) init(id string, timeout time.Duration) (int64, int16, error) {
	s.t.Helper()
	st := s.c.init(id, timeout, -1, -1, -1, s.now)
	if st.needPID {
		s.pid++
		st = s.c.init(id, timeout, -1, -1, s.pid, s.now)
	}
	if st.err != nil {
		return -1, -1, st.err
	}
	s.do(st)
	if st.write.State == PrepareAbort {
		s.completeNow(id)
		return s.init(id, timeout)
	}
	return st.write.ProducerID, st.write.Epoch, nil
}

func (s *script) completeNow(id string) {
	s.t.Helper()
	st := s.c.complete(id, s.now)
	if st.err != nil {
		s.t.Fatalf("complete %s: %v", id, st.err)
	}
	s.do(st)
}

func (s *script) state(id string) Txn {
	t, _ := s.c.get(id)
	return t
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

var (
	tpA = TopicPartition{"a", 0}
	tpB = TopicPartition{"b", 1}
)

func TestCoreLifecycle(t *testing.T) {
	s := newScript(t)
	pid, epoch, err := s.init("tx", time.Minute)
	if err != nil || epoch != 0 {
		t.Fatalf("first init: %d %d %v", pid, epoch, err)
	}
	wantErr(t, "end while empty", s.c.endTxn("tx", pid, epoch, true, s.now).err, ErrInvalidTxnState)
	wantErr(t, "produce before add", s.c.verifyProduce(pid, epoch, tpA), ErrInvalidTxnState)
	s.do(s.c.addPartitions("tx", pid, epoch, []TopicPartition{tpB, tpA}, s.now))
	if got := s.state("tx"); got.State != Ongoing || !reflect.DeepEqual(got.Partitions, []TopicPartition{tpA, tpB}) || !got.Start.Equal(s.now) {
		t.Fatalf("after add: %+v", got)
	}
	if st := s.c.addPartitions("tx", pid, epoch, []TopicPartition{tpA}, s.now); st.err != nil || st.write != nil {
		t.Fatalf("re-adding a partition: %+v", st)
	}
	wantErr(t, "produce after add", s.c.verifyProduce(pid, epoch, tpA), nil)
	wantErr(t, "produce to another partition", s.c.verifyProduce(pid, epoch, TopicPartition{"c", 0}), ErrInvalidTxnState)
	s.do(s.c.addGroup("tx", pid, epoch, "g", s.now))
	wantErr(t, "group verify", s.c.verifyGroup("tx", pid, epoch, "g"), nil)
	wantErr(t, "other group", s.c.verifyGroup("tx", pid, epoch, "h"), ErrInvalidTxnState)

	st := s.do(s.c.endTxn("tx", pid, epoch, true, s.now))
	if st.write == nil || st.write.State != PrepareCommit || len(st.write.Partitions) != 2 || len(st.write.Groups) != 1 {
		t.Fatalf("end: %+v", st)
	}
	wantErr(t, "produce while preparing", s.c.verifyProduce(pid, epoch, tpA), ErrInvalidTxnState)
	wantErr(t, "commit retry while preparing", s.c.endTxn("tx", pid, epoch, true, s.now).err, ErrConcurrentTransactions)
	wantErr(t, "abort while preparing commit", s.c.endTxn("tx", pid, epoch, false, s.now).err, ErrInvalidTxnState)
	wantErr(t, "add while preparing", s.c.addPartitions("tx", pid, epoch, []TopicPartition{tpA}, s.now).err, ErrConcurrentTransactions)
	wantErr(t, "init while preparing", s.c.init("tx", time.Minute, -1, -1, -1, s.now).err, ErrConcurrentTransactions)
	s.completeNow("tx")
	if got := s.state("tx"); got.State != CompleteCommit || got.Partitions != nil || got.Groups != nil || !got.Start.IsZero() {
		t.Fatalf("after complete: %+v", got)
	}
	if st := s.c.endTxn("tx", pid, epoch, true, s.now); st.err != nil || st.write != nil {
		t.Fatalf("commit retry after completion: %+v", st)
	}
	wantErr(t, "abort after commit", s.c.endTxn("tx", pid, epoch, false, s.now).err, ErrInvalidTxnState)

	// The next transaction starts fresh, with the same epoch.
	s.do(s.c.addPartitions("tx", pid, epoch, []TopicPartition{tpB}, s.now))
	if got := s.state("tx"); got.State != Ongoing || len(got.Partitions) != 1 || got.Groups != nil {
		t.Fatalf("second transaction: %+v", got)
	}
	s.do(s.c.endTxn("tx", pid, epoch, false, s.now))
	s.completeNow("tx")
	if got := s.state("tx"); got.State != CompleteAbort {
		t.Fatalf("after abort: %+v", got)
	}
}

func TestCoreFencing(t *testing.T) {
	s := newScript(t)
	pid, e0, _ := s.init("tx", time.Minute)
	s.do(s.c.addPartitions("tx", pid, e0, []TopicPartition{tpA}, s.now))

	// A second producer's init aborts the ongoing transaction (epoch+1)
	// and then bumps again.
	st := s.c.init("tx", time.Minute, -1, -1, -1, s.now)
	if st.write == nil || st.write.State != PrepareAbort || st.write.Epoch != e0+1 || st.write.Partitions[0] != tpA {
		t.Fatalf("init while ongoing: %+v", st)
	}
	s.do(st)
	wantErr(t, "old producer produces while aborting", s.c.verifyProduce(pid, e0, tpA), ErrProducerFenced)
	s.completeNow("tx")
	pid2, e2, err := s.init("tx", time.Minute)
	if err != nil || pid2 != pid || e2 != e0+2 {
		t.Fatalf("second init: %d %d %v", pid2, e2, err)
	}
	wantErr(t, "old add", s.c.addPartitions("tx", pid, e0, []TopicPartition{tpA}, s.now).err, ErrProducerFenced)
	wantErr(t, "old end", s.c.endTxn("tx", pid, e0, true, s.now).err, ErrProducerFenced)
	wantErr(t, "old produce", s.c.verifyProduce(pid, e0, tpA), ErrProducerFenced)
	wantErr(t, "wrong pid", s.c.addPartitions("tx", pid+1, e2, nil, s.now).err, ErrInvalidProducerIDMapping)
	wantErr(t, "unknown id", s.c.addPartitions("nope", pid, e2, nil, s.now).err, ErrInvalidProducerIDMapping)
	// KIP-360: a producer naming a stale epoch is fenced.
	wantErr(t, "init with old epoch", s.c.init("tx", time.Minute, pid, e0, -1, s.now).err, ErrProducerFenced)
	if st := s.c.init("tx", time.Minute, pid, e2, -1, s.now); st.err != nil || st.write.Epoch != e2+1 {
		t.Fatalf("init with current epoch: %+v", st)
	}
}

func TestCoreEpochExhausted(t *testing.T) {
	s := newScript(t)
	s.init("tx", time.Minute)
	e := s.c.txns["tx"]
	e.cur.Epoch = 32766
	st := s.c.init("tx", time.Minute, -1, -1, -1, s.now)
	if !st.needPID {
		t.Fatalf("init at epoch 32766: %+v, want a new producer id", st)
	}
	st = s.c.init("tx", time.Minute, -1, -1, 555, s.now)
	s.do(st)
	if got := s.state("tx"); got.ProducerID != 555 || got.Epoch != 0 {
		t.Fatalf("after exhaustion: %+v", got)
	}
	if _, ok := s.c.byPID[101]; ok {
		t.Fatal("old producer id still maps to the transactional id")
	}
}

func TestCoreTimeout(t *testing.T) {
	s := newScript(t)
	pid, e0, _ := s.init("tx", 10*time.Second)
	s.init("idle", 10*time.Second)
	s.do(s.c.addPartitions("tx", pid, e0, []TopicPartition{tpA}, s.now))
	s.now = s.now.Add(10 * time.Second)
	if got := s.c.expired(s.now); len(got) != 0 {
		t.Fatalf("expired at the timeout: %+v", got)
	}
	s.now = s.now.Add(time.Millisecond)
	got := s.c.expired(s.now)
	if len(got) != 1 || got[0].ID != "tx" || got[0].State != PrepareAbort || got[0].Epoch != e0+1 {
		t.Fatalf("expired: %+v", got)
	}
	if again := s.c.expired(s.now); len(again) != 0 {
		t.Fatalf("expired twice: %+v", again)
	}
	s.c.apply(got[0])
	s.completeNow("tx")
	wantErr(t, "commit after timeout", s.c.endTxn("tx", pid, e0, true, s.now).err, ErrProducerFenced)
	if st := s.state("tx"); st.State != CompleteAbort {
		t.Fatalf("state %v", st.State)
	}
}

func TestCoreFailedWrite(t *testing.T) {
	s := newScript(t)
	st := s.c.init("tx", time.Minute, -1, -1, 7, s.now)
	wantErr(t, "init while the first is written", s.c.init("tx", time.Minute, -1, -1, 8, s.now).err, ErrConcurrentTransactions)
	s.c.failed("tx")
	if _, ok := s.c.get("tx"); ok || len(s.c.txns) != 0 {
		t.Fatal("a failed first write left the id behind")
	}
	s.do(s.c.init("tx", time.Minute, -1, -1, 7, s.now))
	st = s.c.addPartitions("tx", 7, 0, []TopicPartition{tpA}, s.now)
	s.c.failed("tx")
	if got := s.state("tx"); got.State != Empty || got.Partitions != nil {
		t.Fatalf("after a failed add: %+v", got)
	}
	_ = st
}

func TestCoreInvalid(t *testing.T) {
	s := newScript(t)
	wantErr(t, "empty id", s.c.init("", time.Minute, -1, -1, 1, s.now).err, ErrInvalidTransactionalID)
	wantErr(t, "zero timeout", s.c.init("tx", 0, -1, -1, 1, s.now).err, ErrInvalidTimeout)
	wantErr(t, "too long", s.c.init("tx", 16*time.Minute, -1, -1, 1, s.now).err, ErrInvalidTimeout)
}

func TestCoreRestore(t *testing.T) {
	c := newCore(time.Minute)
	prepared := c.restore(map[string]Txn{
		"a": {ID: "a", ProducerID: 1, State: Ongoing, Partitions: []TopicPartition{tpA}, Start: t0},
		"b": {ID: "b", ProducerID: 2, State: PrepareCommit, Partitions: []TopicPartition{tpB}},
		"c": {ID: "c", ProducerID: 3, State: CompleteAbort},
	})
	if len(prepared) != 1 || prepared[0].ID != "b" {
		t.Fatalf("prepared %+v", prepared)
	}
	wantErr(t, "ongoing survives", c.verifyProduce(1, 0, tpA), nil)
	wantErr(t, "prepared refuses produce", c.verifyProduce(2, 0, tpB), ErrInvalidTxnState)
}

func TestRecordRoundTrip(t *testing.T) {
	for _, tx := range []Txn{
		{ID: "x", ProducerID: 5, Epoch: 2, Timeout: time.Minute, State: Empty, Updated: t0},
		{ID: "tx-1", ProducerID: 1 << 40, Epoch: 32766, Timeout: 15 * time.Minute, State: PrepareCommit, Start: t0, Updated: t0.Add(time.Second),
			Partitions: []TopicPartition{tpA, tpB, {"b", 2}}, Groups: []string{"g1", "g2"}},
	} {
		k := encodeKey(tx.ID)
		id, err := decodeKey(k)
		if err != nil || id != tx.ID {
			t.Fatalf("key: %q %v", id, err)
		}
		got, err := decodeValue(id, encodeValue(tx))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tx) && !(got.Start.Equal(tx.Start) && got.Updated.Equal(tx.Updated)) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, tx)
		}
	}
}
