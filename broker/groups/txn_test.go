package groups

import "testing"

// TestTxnOffsets: offsets committed in a transaction are invisible until
// it commits, dropped when it aborts, and pending ones survive a restart.
func TestTxnOffsets(t *testing.T) {
	e := newEnv(t, nil)
	tp := TopicPartition{"in", 0}
	fetch := func() (Offset, bool) {
		t.Helper()
		offs, err := e.c.FetchOffsets(e.ctx, "g", nil)
		if err != nil {
			t.Fatal(err)
		}
		o, ok := offs[tp]
		return o, ok
	}
	commit := func(pid int64, off int64) {
		t.Helper()
		res, err := e.c.TxnCommitOffsets(e.ctx, "g", "", "", -1, pid, map[TopicPartition]Offset{tp: {Offset: off, LeaderEpoch: -1}})
		if err != nil || res[tp] != nil {
			t.Fatalf("TxnCommitOffsets: %v %v", res, err)
		}
	}
	commit(1, 10)
	if _, ok := fetch(); ok {
		t.Fatal("a pending transactional offset is visible")
	}
	if err := e.c.CompleteTxnOffsets(e.ctx, "g", 1, true); err != nil {
		t.Fatal(err)
	}
	if o, ok := fetch(); !ok || o.Offset != 10 {
		t.Fatalf("after commit: %+v %v", o, ok)
	}
	// Completing again does nothing.
	if err := e.c.CompleteTxnOffsets(e.ctx, "g", 1, true); err != nil {
		t.Fatal(err)
	}

	commit(1, 20)
	if err := e.c.CompleteTxnOffsets(e.ctx, "g", 1, false); err != nil {
		t.Fatal(err)
	}
	if o, _ := fetch(); o.Offset != 10 {
		t.Fatalf("after abort: %d, want 10", o.Offset)
	}

	// Pending across a restart, then committed.
	commit(2, 30)
	e.reopen()
	if o, _ := fetch(); o.Offset != 10 {
		t.Fatalf("after restart: %d, want 10", o.Offset)
	}
	if err := e.c.CompleteTxnOffsets(e.ctx, "g", 2, true); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if o, _ := fetch(); o.Offset != 30 {
		t.Fatalf("after commit and restart: %d, want 30", o.Offset)
	}
	if n := len(e.c.st.txnPendingSnapshot()); n != 0 {
		t.Fatalf("%d groups still pending", n)
	}

	// A v3 commit from a stale generation is refused.
	res, err := e.c.TxnCommitOffsets(e.ctx, "g", "nobody", "", 5, 3, map[TopicPartition]Offset{tp: {Offset: 1}})
	if err != nil || res[tp] == nil {
		t.Fatalf("commit from an unknown member: %v %v", res, err)
	}
}

// txnPendingSnapshot is for tests only; it must run where the actor is
// idle (after settle).
func (s *state) txnPendingSnapshot() txnPending { return s.txnPending }
