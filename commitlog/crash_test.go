package commitlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/internal/vfs"
)

// The crash test kills a real process that appends to a store and checks
// that every append it acknowledged survives, byte for byte. The child is
// this test binary re-executed with -test.run=^TestCrashChild$ and the
// environment below; it prints one line per acknowledged append:
//
//	ACK <log> <baseOffset> <writer> <seq> <nrecords>
//
// The content of every batch is a pure function of (writer, seq), so the
// parent can check what it reads without being told.
const (
	crashEnvDir   = "HERALD_CRASH_CHILD" // data directory; its presence makes TestCrashChild the child
	crashEnvSync  = "HERALD_CRASH_SYNC"  // durability, as ParseDurability reads it
	crashEnvRound = "HERALD_CRASH_ROUND" // round number; writer ids are unique across rounds

	crashWriters  = 4
	crashMaxValue = 300
	crashEpoch    = int64(1_700_000_000_000)
)

var crashLogNames = [2]string{"crash/a", "crash/b"}

// crashLogOptions are the options of crashLogNames[i]: the second log
// preallocates, so that every round also kills a process writing into
// zero-filled space and sealing (trimming) such segments.
func crashLogOptions(d Durability, i int) Options {
	o := Options{Durability: d, SegmentBytes: 64 << 10, IndexIntervalBytes: 1 << 10}
	if i == 1 {
		o.Preallocate = 24 << 10
	}
	return o
}

// crashRecords returns the records of the batch that writer appends as its
// seq'th. Every field is derived from (writer, seq).
func crashRecords(writer, seq int) []batch.Rec {
	var seed [32]byte
	binary.BigEndian.PutUint64(seed[:], uint64(writer))
	binary.BigEndian.PutUint64(seed[8:], uint64(seq))
	src := rand.NewChaCha8(seed)
	rng := rand.New(src)
	n := 1 + rng.IntN(20)
	ts := crashEpoch + int64(writer)*10_000_000 + int64(seq)*10
	recs := make([]batch.Rec, n)
	for i := range recs {
		r := batch.Rec{Timestamp: ts + int64(rng.IntN(10)), Key: fmt.Appendf(nil, "w%d/s%d/r%d", writer, seq, i)}
		if rng.IntN(16) != 0 { // else a tombstone: a null value must survive as null
			r.Value = make([]byte, rng.IntN(crashMaxValue))
			_, _ = src.Read(r.Value)
		}
		for h := range rng.IntN(3) {
			hdr := batch.RecordHeader{Key: fmt.Appendf(nil, "h%d", h)}
			if rng.IntN(4) != 0 {
				hdr.Value = fmt.Appendf(nil, "%x", rng.Uint64())
			}
			r.Headers = append(r.Headers, hdr)
		}
		recs[i] = r
	}
	return recs
}

// TestCrashChild is the child process of the crash tests; without its
// environment it does nothing. It appends until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		return
	}
	d, err := ParseDurability(os.Getenv(crashEnvSync))
	if err != nil {
		crashChildFail("%v", err)
	}
	round, err := strconv.Atoi(os.Getenv(crashEnvRound))
	if err != nil {
		crashChildFail("round: %v", err)
	}
	var outMu sync.Mutex
	say := func(line string) {
		outMu.Lock()
		defer outMu.Unlock()
		// One write per line: a kill leaves at most one partial line, which
		// the parent ignores.
		if _, err := os.Stdout.WriteString(line + "\n"); err != nil {
			crashChildFail("stdout: %v", err)
		}
	}
	say("START")
	opts := StoreOptions{
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		CheckpointInterval: 20 * time.Millisecond,
		CleanInterval:      -1,
	}
	st, err := OpenStore(dir, opts)
	// NB: the parent runs two variants in parallel; a child forked for one
	// briefly holds copies of the other's open files (until its exec closes
	// them), the directory lock among them. Wait that out.
	for deadline := time.Now().Add(5 * time.Second); errors.Is(err, vfs.ErrLocked) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		st, err = OpenStore(dir, opts)
	}
	if err != nil {
		crashChildFail("open store: %v", err)
	}
	var logs [2]*Log
	for i, name := range crashLogNames {
		if logs[i], err = st.OpenLog(name, crashLogOptions(d, i)); err != nil {
			crashChildFail("open log: %v", err)
		}
	}
	say("OPEN")
	for w := range crashWriters {
		go func() {
			writer := round*crashWriters + w
			l := logs[writer%2]
			for seq := 0; ; seq++ {
				recs := crashRecords(writer, seq)
				b, err := batch.Encode(nil, batch.BuildOptions{}, recs)
				if err != nil {
					crashChildFail("encode: %v", err)
				}
				off, err := l.Append(context.Background(), b)
				if err != nil {
					crashChildFail("append: %v", err)
				}
				say(fmt.Sprintf("ACK %s %d %d %d %d", l.Name(), off, writer, seq, len(recs)))
			}
		}()
	}
	// The parent kills us long before this.
	time.Sleep(time.Minute)
	crashChildFail("not killed")
}

func crashChildFail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "crash child: "+format+"\n", args...)
	os.Exit(3)
}

type crashAck struct {
	log          string
	off          int64
	writer, seq  int
	records      int
	round, index int // where it was acknowledged, for messages
}

// runCrashChild starts a child on dir, kills it with SIGKILL delay after it
// started, and returns the appends it acknowledged.
func runCrashChild(t *testing.T, dir, sync string, round int, delay time.Duration) []crashAck {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnvDir+"="+dir, crashEnvSync+"="+sync, crashEnvRound+"="+strconv.Itoa(round))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	done := make(chan []string)
	go func() {
		var lines []string
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break // a partial last line is not an acknowledgement
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "START" {
				close(started)
			}
			lines = append(lines, line)
		}
		done <- lines
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		cmd.Wait()
		t.Fatalf("round %d: crash child did not start; stderr:\n%s", round, stderr.String())
	}
	timer := time.NewTimer(delay)
	select {
	case <-timer.C:
	case lines := <-done:
		err := cmd.Wait()
		t.Fatalf("round %d: crash child exited before it was killed (%v) after %d lines; stderr:\n%s", round, err, len(lines), stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	lines := <-done
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("round %d: crash child: %v, want killed by a signal; stderr:\n%s", round, err, stderr.String())
	}
	var acks []crashAck
	for _, line := range lines {
		if !strings.HasPrefix(line, "ACK ") {
			continue
		}
		var a crashAck
		if _, err := fmt.Sscanf(line, "ACK %s %d %d %d %d", &a.log, &a.off, &a.writer, &a.seq, &a.records); err != nil {
			t.Fatalf("round %d: bad line %q: %v", round, line, err)
		}
		a.round, a.index = round, len(acks)
		acks = append(acks, a)
	}
	return acks
}

// TestCrashAcknowledgedWritesSurvive kills a process that appends with
// concurrent writers at random moments, again and again on the same data
// directory, and checks after every kill that every acknowledged append is
// present with its exact content, that offsets stay dense, and that nothing
// torn or foreign is ever returned. SyncInterval acknowledges before the
// fsync, but a killed process leaves its writes in the page cache, so it must
// lose nothing acknowledged either.
func TestCrashAcknowledgedWritesSurvive(t *testing.T) {
	for _, sync := range []string{"always", "interval=5ms"} {
		t.Run("sync="+sync, func(t *testing.T) {
			t.Parallel()
			rounds := 24
			if testing.Short() {
				rounds = 20
			}
			dir := t.TempDir()
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 1))
			d, err := ParseDurability(sync)
			if err != nil {
				t.Fatal(err)
			}
			var all []crashAck
			seen := [2]map[int64]crashBatch{{}, {}}
			grew, torn, unwritten := 0, 0, 0
			for round := range rounds {
				delay := time.Duration(20+rng.IntN(281)) * time.Millisecond
				acks := runCrashChild(t, dir, sync, round, delay)
				if len(acks) > 0 {
					grew++
				}
				all = append(all, acks...)

				st := openTestStore(t, dir)
				for i, name := range crashLogNames {
					l := openTestLog(t, st, name, crashLogOptions(d, i))
					if l.Recovery().Lost() {
						torn++
						t.Logf("round %d: %s: recovery: %+v", round, name, l.Recovery())
					}
					if l.Recovery().UnwrittenBytes > 0 {
						unwritten++
					}
					verifyCrashLog(t, l, i, round, all, seen[i])
				}
				if err := st.Close(); err != nil {
					t.Fatalf("round %d: close: %v", round, err)
				}
			}
			t.Logf("%d rounds, %d acknowledged appends, %d rounds acknowledged something, %d torn tails truncated, %d preallocated tails found", rounds, len(all), grew, torn, unwritten)
			if unwritten < rounds/2 {
				t.Fatalf("only %d of %d rounds found the preallocating log's zero-filled tail; the test is not exercising preallocation", unwritten, rounds)
			}
			if grew < rounds/2 {
				t.Fatalf("only %d of %d rounds acknowledged an append; the test is not exercising the log", grew, rounds)
			}
		})
	}
}

// verifyCrashLog reads the whole log l (the logIndex'th crash log) after the
// child of round round was killed, and checks it against every acknowledged
// append so far.
func verifyCrashLog(t *testing.T, l *Log, logIndex, round int, acks []crashAck, seen map[int64]crashBatch) {
	t.Helper()
	ctx := context.Background()
	at := map[int64]placed{}  // batch base offset -> what is there
	lastSeq := map[int]int{}  // writer -> its highest seq in the log
	maxAcked := map[int]int{} // writer -> its highest acknowledged seq
	for _, a := range acks {
		if a.log == l.Name() {
			maxAcked[a.writer] = max(maxAcked[a.writer], a.seq)
		}
	}
	if l.StartOffset() != 0 {
		t.Fatalf("round %d: %s: start offset %d, want 0 (no retention)", round, l.Name(), l.StartOffset())
	}
	hwm := l.HighWatermark()
	if end := l.EndOffset(); end != hwm {
		t.Fatalf("round %d: %s: end offset %d, high-water mark %d after recovery", round, l.Name(), end, hwm)
	}
	var buf []byte
	next := l.StartOffset()
	for next < hwm {
		b, err := l.Read(ctx, next, 256<<10, buf)
		if err != nil {
			t.Fatalf("round %d: %s: Read(%d): %v", round, l.Name(), next, err)
		}
		if len(b) == 0 {
			t.Fatalf("round %d: %s: Read(%d) returned nothing below the high-water mark %d", round, l.Name(), next, hwm)
		}
		for p := 0; p < len(b); {
			h, err := batch.Validate(b[p:p+min(len(b)-p, batchSizeAt(b[p:]))], 0)
			if err != nil {
				t.Fatalf("round %d: %s: batch at offset %d: %v", round, l.Name(), next, err)
			}
			raw := b[p : p+h.Size()]
			p += h.Size()
			if h.BaseOffset != next {
				t.Fatalf("round %d: %s: batch at base offset %d, want %d (offsets must be dense)", round, l.Name(), h.BaseOffset, next)
			}
			if int(h.NumRecords) != int(h.LastOffsetDelta)+1 {
				t.Fatalf("round %d: %s: batch at %d has %d records and last offset delta %d", round, l.Name(), next, h.NumRecords, h.LastOffsetDelta)
			}
			cached, ok := seen[next]
			if !ok || !bytes.Equal(cached.raw, raw) {
				writer, seq := verifyCrashBatch(t, raw, h, logIndex, round, l.Name())
				cached = crashBatch{raw: bytes.Clone(raw), placed: placed{writer, seq, int(h.NumRecords)}}
				seen[next] = cached
			}
			writer, seq := cached.writer, cached.seq
			// A writer appends its next batch only after the previous one
			// returned, so its batches are in order and without holes.
			prev, ok := lastSeq[writer]
			if !ok {
				prev = -1
			}
			if seq != prev+1 {
				t.Fatalf("round %d: %s: batch at %d is writer %d seq %d, but the writer's previous batch in the log is seq %d", round, l.Name(), next, writer, seq, prev)
			}
			lastSeq[writer] = seq
			// A writer can have at most one unacknowledged append whose
			// acknowledgement was lost, and one in flight.
			if ma, ok := maxAcked[writer]; (ok && seq > ma+2) || (!ok && seq > 1) {
				t.Fatalf("round %d: %s: batch at %d is writer %d seq %d, beyond anything it could have written", round, l.Name(), next, writer, seq)
			}
			at[next] = placed{writer, seq, int(h.NumRecords)}
			next = h.LastOffset() + 1
		}
		buf = b
	}
	if next != hwm {
		t.Fatalf("round %d: %s: read up to %d, high-water mark %d", round, l.Name(), next, hwm)
	}
	// Nothing past the high-water mark.
	if b, err := l.Read(ctx, hwm, 1<<20, nil); err != nil || len(b) != 0 {
		t.Fatalf("round %d: %s: Read at the high-water mark: %d bytes, %v", round, l.Name(), len(b), err)
	}
	if _, err := l.Read(ctx, hwm+1, 1<<20, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("round %d: %s: Read past the high-water mark: %v, want ErrOffsetOutOfRange", round, l.Name(), err)
	}
	for _, a := range acks {
		if a.log != l.Name() {
			continue
		}
		got, ok := at[a.off]
		if !ok {
			t.Fatalf("round %d: %s: append acknowledged in round %d (writer %d seq %d at offset %d) is lost; high-water mark %d",
				round, l.Name(), a.round, a.writer, a.seq, a.off, hwm)
		}
		if got != (placed{a.writer, a.seq, a.records}) {
			t.Fatalf("round %d: %s: offset %d holds writer %d seq %d (%d records), but writer %d seq %d (%d records) was acknowledged there in round %d",
				round, l.Name(), a.off, got.writer, got.seq, got.records, a.writer, a.seq, a.records, a.round)
		}
	}
}

// verifyCrashBatch decodes the batch raw, at offset h.BaseOffset of the
// logIndex'th crash log, and checks that it is exactly a batch the child
// generated; it returns whose.
func verifyCrashBatch(t *testing.T, raw []byte, h batch.Header, logIndex, round int, name string) (writer, seq int) {
	t.Helper()
	next := h.BaseOffset
	var it batch.Iter
	if err := it.Reset(raw); err != nil {
		t.Fatalf("round %d: %s: batch at %d: %v", round, name, next, err)
	}
	var want []batch.Rec
	i := 0
	for it.Next() {
		r := it.Record()
		if i == 0 {
			var ri int
			if _, err := fmt.Sscanf(string(r.Key), "w%d/s%d/r%d", &writer, &seq, &ri); err != nil || ri != 0 {
				t.Fatalf("round %d: %s: batch at %d starts with a record the child never wrote: key %q", round, name, next, r.Key)
			}
			if writer%2 != logIndex || writer >= (round+1)*crashWriters {
				t.Fatalf("round %d: %s: batch at %d is from writer %d, which never wrote to this log", round, name, next, writer)
			}
			want = crashRecords(writer, seq)
			if len(want) != int(h.NumRecords) {
				t.Fatalf("round %d: %s: batch at %d (writer %d seq %d) has %d records, want %d", round, name, next, writer, seq, h.NumRecords, len(want))
			}
		}
		if it.Offset() != next+int64(i) {
			t.Fatalf("round %d: %s: record %d of batch %d has offset %d", round, name, i, next, it.Offset())
		}
		if err := sameRecord(want[i], it.Timestamp(), r); err != nil {
			t.Fatalf("round %d: %s: offset %d (writer %d seq %d record %d): %v", round, name, it.Offset(), writer, seq, i, err)
		}
		i++
	}
	if err := it.Err(); err != nil {
		t.Fatalf("round %d: %s: batch at %d: %v", round, name, next, err)
	}
	if i != len(want) {
		t.Fatalf("round %d: %s: batch at %d has %d records, want %d", round, name, next, i, len(want))
	}
	return writer, seq
}

type placed struct {
	writer, seq, records int
}

// crashBatch is a batch an earlier round verified record by record; if the
// same bytes are at the same offset again they need not be decoded again.
type crashBatch struct {
	raw []byte
	placed
}

// batchSizeAt returns the size the batch at the start of b claims, or len(b)
// when its header does not parse (Validate then reports why).
func batchSizeAt(b []byte) int {
	h, err := batch.ParseHeader(b)
	if err != nil {
		return len(b)
	}
	return h.Size()
}

// sameRecord compares a decoded record (and its timestamp) with the record
// that was encoded.
func sameRecord(want batch.Rec, ts int64, got *batch.Record) error {
	if ts != want.Timestamp {
		return fmt.Errorf("timestamp %d, want %d", ts, want.Timestamp)
	}
	if !bytes.Equal(got.Key, want.Key) || (got.Key == nil) != (want.Key == nil) {
		return fmt.Errorf("key %q, want %q", got.Key, want.Key)
	}
	if !bytes.Equal(got.Value, want.Value) || (got.Value == nil) != (want.Value == nil) {
		return fmt.Errorf("value of %d bytes (null %v), want %d bytes (null %v)", len(got.Value), got.Value == nil, len(want.Value), want.Value == nil)
	}
	if len(got.Headers) != len(want.Headers) {
		return fmt.Errorf("%d headers, want %d", len(got.Headers), len(want.Headers))
	}
	for i, h := range want.Headers {
		g := got.Headers[i]
		if !bytes.Equal(g.Key, h.Key) || !bytes.Equal(g.Value, h.Value) || (g.Value == nil) != (h.Value == nil) {
			return fmt.Errorf("header %d is %q=%q, want %q=%q", i, g.Key, g.Value, h.Key, h.Value)
		}
	}
	return nil
}
