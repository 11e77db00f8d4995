package broker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/heraldhq/herald/broker/txn"
	"github.com/heraldhq/herald/commitlog/batch"
)

// allowAll is a TxnVerifier that accepts every transactional batch.
type allowAll struct{}

func (allowAll) VerifyProduce(int64, int16, string, int32) error { return nil }

type refuse struct{ err error }

func (r refuse) VerifyProduce(int64, int16, string, int32) error { return r.err }

func txnBatch(t *testing.T, pid int64, seq int32, vals ...string) []byte {
	var recs []recSpec
	for _, v := range vals {
		recs = append(recs, recSpec{value: v})
	}
	return encode(t, batch.BuildOptions{Producer: true, ProducerID: pid, BaseSequence: seq, Transactional: true}, recs...)
}

// TestTxnDataPath: the LSO follows ongoing transactions, markers end them,
// read_committed fetches stop at the LSO and list the aborted
// transactions, and all of it survives a reopen, with the snapshot and
// rebuilt from the log without it.
func TestTxnDataPath(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := openBroker(t, dir)
	if err := b.CreateTopic(ctx, "t", 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Produce(ctx, "t", 0, txnBatch(t, 7, 0, "x"), AcksAll); !errors.Is(err, txn.ErrInvalidTxnState) {
		t.Fatalf("transactional produce without a coordinator: %v", err)
	}
	b.SetTxnVerifier(refuse{txn.ErrProducerFenced})
	if _, err := b.Produce(ctx, "t", 0, txnBatch(t, 7, 0, "x"), AcksAll); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("fenced transactional produce: %v", err)
	}
	b.SetTxnVerifier(allowAll{})
	mustProduce := func(raw []byte) int64 {
		t.Helper()
		r, err := b.Produce(ctx, "t", 0, raw, AcksAll)
		if err != nil {
			t.Fatal(err)
		}
		return r.BaseOffset
	}
	lso := func() int64 {
		t.Helper()
		_, _, l, err := b.StableOffsets("t", 0)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	mustProduce(encode(t, batch.BuildOptions{}, recSpec{value: "plain0"})) // 0
	mustProduce(txnBatch(t, 1, 0, "a1", "a2"))                             // 1-2, aborted later
	mustProduce(txnBatch(t, 2, 0, "c1"))                                   // 3, committed later
	mustProduce(encode(t, batch.BuildOptions{}, recSpec{value: "plain1"})) // 4
	if got := lso(); got != 1 {
		t.Fatalf("LSO %d with transactions open from 1, want 1", got)
	}
	f, err := b.FetchCommitted(ctx, "t", 0, 0, 1<<20, nil)
	if err != nil || f.LastStableOffset != 1 || countRecords(f.Records) != 1 {
		t.Fatalf("read_committed fetch under an open transaction: %d records, %+v, %v", countRecords(f.Records), f.LastStableOffset, err)
	}
	if err := b.WriteTxnMarkers(ctx, 1, 0, false, []txn.TopicPartition{{Topic: "t", Partition: 0}}); err != nil { // 5
		t.Fatal(err)
	}
	if got := lso(); got != 3 {
		t.Fatalf("LSO %d after the abort, want 3", got)
	}
	if err := b.WriteTxnMarkers(ctx, 2, 0, true, []txn.TopicPartition{{Topic: "t", Partition: 0}, {Topic: "gone", Partition: 0}}); err != nil { // 6
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if got, hwm := lso(), int64(7); got != hwm {
			t.Fatalf("%s: LSO %d, want the high-water mark %d", when, got, hwm)
		}
		f, err := b.FetchCommitted(ctx, "t", 0, 0, 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []AbortedTxn{{ProducerID: 1, FirstOffset: 1, LastOffset: 5}}
		if !reflect.DeepEqual(f.Aborted, want) || countRecords(f.Records) != 7 {
			t.Fatalf("%s: aborted %+v (want %+v), %d records", when, f.Aborted, want, countRecords(f.Records))
		}
		if f, _ := b.FetchCommitted(ctx, "t", 0, 6, 1<<20, nil); len(f.Aborted) != 0 {
			t.Fatalf("%s: aborted %+v for a fetch after the abort marker", when, f.Aborted)
		}
	}
	check("live")
	b.Close()
	b = openBroker(t, dir)
	b.SetTxnVerifier(allowAll{})
	check("reopened with a snapshot")
	b.Close()
	if err := os.RemoveAll(filepath.Join(dir, "producer-state")); err != nil {
		t.Fatal(err)
	}
	b = openBroker(t, dir)
	defer b.Close()
	check("rebuilt from the log")
}

// TestTxnOngoingSurvivesReopen: an open transaction still holds the LSO
// after a restart.
func TestTxnOngoingSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := openBroker(t, dir)
	b.CreateTopic(ctx, "t", 1, nil)
	b.SetTxnVerifier(allowAll{})
	b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{}, recSpec{value: "p"}), AcksAll)
	b.Produce(ctx, "t", 0, txnBatch(t, 3, 0, "o"), AcksAll)
	b.Close()
	b = openBroker(t, dir)
	defer b.Close()
	if _, hwm, lso, _ := b.StableOffsets("t", 0); lso != 1 || hwm != 2 {
		t.Fatalf("after reopen: LSO %d HWM %d, want 1 and 2", lso, hwm)
	}
}

func countRecords(raw []byte) int {
	n := 0
	for p := 0; p < len(raw); {
		h, err := batch.ParseHeader(raw[p:])
		if err != nil {
			break
		}
		n += int(h.LastOffsetDelta) + 1
		p += h.Size()
	}
	return n
}
