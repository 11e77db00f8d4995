package broker

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
)

// TestCloseManyPartitionsQuickly closes a broker whose 10,000 partitions
// (1,000 topics of 10, as `herald bench partitions` makes them) each hold
// an idempotent producer's record, so every partition has a producer-state
// snapshot to write and a log to flush. A clean shutdown (SIGTERM of
// `herald serve`) must take well under 2 s; closed one after another it
// took 5-6 s. Everything acknowledged must be there after reopening, with
// the producer state (a retry is recognised).
func TestCloseManyPartitionsQuickly(t *testing.T) {
	// NB: creating the topics is most of this test's time (each creation
	// rewrites the metadata file), so the default run closes 1,000
	// partitions and checks what survives; HERALD_LONG=1 runs the 10,000
	// and holds Close to the bound.
	topics, per := 100, 10
	long := os.Getenv("HERALD_LONG") != ""
	if long {
		topics = 1000
	}
	limit := 2 * time.Second
	if raceEnabled {
		// The race detector slows file system calls' Go side several
		// times over; the bound is for the product, not the detector.
		limit = 6 * time.Second
	}
	dir := t.TempDir()
	b := openBroker(t, dir)
	ctx := context.Background()
	pid, epoch, err := b.InitProducerID(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, topics)
	for i := range names {
		names[i] = "t" + strconv.Itoa(i)
	}
	// Topics are created in parallel: each creation rewrites the metadata
	// file, which is what takes the time here, not what is measured.
	parallel(t, len(names), func(i int) error { return b.CreateTopic(ctx, names[i], per, nil) })
	parallel(t, len(names)*per, func(i int) error {
		raw := encode(t, batch.BuildOptions{Producer: true, ProducerID: pid, ProducerEpoch: epoch}, recSpec{value: "v"})
		_, err := b.Produce(ctx, names[i/per], int32(i%per), raw, AcksAll)
		return err
	})
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("closed %d partitions in %v", topics*per, took)
	if long && took > limit {
		t.Errorf("Close of %d partitions took %v; want under %v", topics*per, took, limit)
	}
	b = openBroker(t, dir)
	defer b.Close()
	for i := 0; i < topics*per; i += 97 {
		if got := values(t, b, names[i/per], int32(i%per), 0); len(got) != 1 || got[0] != "v" {
			t.Fatalf("partition %s/%d after reopen: %q", names[i/per], i%per, got)
		}
		raw := encode(t, batch.BuildOptions{Producer: true, ProducerID: pid, ProducerEpoch: epoch}, recSpec{value: "v"})
		if r, err := b.Produce(ctx, names[i/per], int32(i%per), raw, AcksAll); err != nil || !r.Duplicate {
			t.Fatalf("retry to %s/%d after reopen: %+v %v (producer state lost)", names[i/per], i%per, r, err)
		}
	}
}

// parallel runs fn(0..n-1) on a few goroutines and fails t on the first
// error.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first atomic.Pointer[error]
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		t.Fatal(*p)
	}
}

// TestTornProducerSnapshotIgnored stands for snapshot files left empty or
// torn by a crash: opening must ignore them and rebuild the producer
// state from the log (a retry is still recognised), whether the damaged
// file is the one Close writes for every partition or a partition's own.
func TestTornProducerSnapshotIgnored(t *testing.T) {
	for _, torn := range []string{"", `{"format":1,"partitions":{"`, "\x00\x00\x00\x00"} {
		dir := t.TempDir()
		b := openBroker(t, dir)
		ctx := context.Background()
		b.CreateTopic(ctx, "t", 1, nil)
		pid, epoch, _ := b.InitProducerID(ctx, "")
		opts := batch.BuildOptions{Producer: true, ProducerID: pid, ProducerEpoch: epoch}
		if _, err := b.Produce(ctx, "t", 0, encode(t, opts, recSpec{value: "a"}), AcksAll); err != nil {
			t.Fatal(err)
		}
		// The partition's own snapshot, as the periodic save writes it.
		b.snapshotProducers()
		b.Close()
		own := b.snapshotPath(b.mu.topics["t"].parts[0])
		for _, path := range []string{filepath.Join(dir, closedSnapshotsFile), own} {
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("no snapshot to damage: %v", err)
			}
			if err := os.WriteFile(path, []byte(torn), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b = openBroker(t, dir)
		if r, err := b.Produce(ctx, "t", 0, encode(t, opts, recSpec{value: "a"}), AcksAll); err != nil || !r.Duplicate {
			t.Fatalf("snapshots %q: retry after reopen: %+v %v", torn, r, err)
		}
		b.Close()
	}
}

// TestClosedSnapshotKeyedByTopicID checks that the producer states saved
// at Close go to the topic they were taken from: a topic deleted and
// created again under the same name starts with no producers.
func TestClosedSnapshotKeyedByTopicID(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir)
	ctx := context.Background()
	b.CreateTopic(ctx, "t", 1, nil)
	pid, epoch, _ := b.InitProducerID(ctx, "")
	opts := batch.BuildOptions{Producer: true, ProducerID: pid, ProducerEpoch: epoch}
	for _, v := range []string{"a", "b"} {
		if _, err := b.Produce(ctx, "t", 0, encode(t, opts, recSpec{value: v}), AcksAll); err != nil {
			t.Fatal(err)
		}
		opts.BaseSequence++
	}
	b.Close()
	first, err := os.ReadFile(filepath.Join(dir, closedSnapshotsFile))
	if err != nil {
		t.Fatal(err)
	}
	b = openBroker(t, dir)
	if err := b.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	b.CreateTopic(ctx, "t", 1, nil)
	// The new topic's log reaches the old snapshot's offset.
	other := batch.BuildOptions{}
	for _, v := range []string{"x", "y", "z"} {
		if _, err := b.Produce(ctx, "t", 0, encode(t, other, recSpec{value: v}), AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	// Put back the file of the first Close (as if the second had crashed
	// before writing its own): its snapshot's offset is within the new
	// log, but it belongs to the old topic. The old producer must be
	// unknown here, so its batch at sequence 2 is refused (a gap).
	if err := os.WriteFile(filepath.Join(dir, closedSnapshotsFile), first, 0o644); err != nil {
		t.Fatal(err)
	}
	b = openBroker(t, dir)
	defer b.Close()
	if _, err := b.Produce(ctx, "t", 0, encode(t, opts, recSpec{value: "c"}), AcksAll); err == nil {
		t.Fatal("a producer of the deleted topic continued its sequence in the new one")
	}
}
