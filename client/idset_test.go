package client

import (
	"bytes"
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// TestIDTable: ids are found once inserted and not before; a re-mark moves
// an id's expiry; an id is live for at least the TTL and gone within
// TTL + 2 ticks; growth and re-basing (the tick field wrapping) keep the
// live ids and drop the expired ones.
func TestIDTable(t *testing.T) {
	const ttl = time.Hour
	c := newIDClock(ttl)
	tickDur := time.Duration(c.tick) * time.Millisecond
	start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).UnixMilli()
	at := func(d time.Duration) int64 { return c.at(start + d.Milliseconds()) }
	tb := newIDTable(0, at(0)-c.live)
	const n = 10_000
	for i := range n {
		if tb.contains(keyOf("e"+strconv.Itoa(i)), at(0), c) {
			t.Fatalf("e%d found before insert", i)
		}
		tb = tb.insert(keyOf("e"+strconv.Itoa(i)), at(0), c)
	}
	if len(tb.slots) < n*8/5 {
		t.Fatalf("%d slots for %d ids: over the 5/8 load bound", len(tb.slots), n)
	}
	for i := range n {
		if !tb.contains(keyOf("e"+strconv.Itoa(i)), at(ttl-time.Millisecond), c) {
			t.Fatalf("e%d lost before its TTL", i)
		}
	}
	if tb.contains(keyOf("e0"), at(ttl+2*tickDur+time.Millisecond), c) {
		t.Fatal("e0 still live after TTL + 2 ticks")
	}
	// Re-mark half of them late; the rest expire.
	late := ttl - time.Minute
	for i := 0; i < n; i += 2 {
		tb = tb.insert(keyOf("e"+strconv.Itoa(i)), at(late), c)
	}
	after := late + ttl/2
	for i := range n {
		if got, want := tb.contains(keyOf("e"+strconv.Itoa(i)), at(after), c), i%2 == 0; got != want {
			t.Fatalf("e%d at %s: live %v, want %v", i, after, got, want)
		}
	}
	// Far in the future the tick field would overflow: inserting there
	// re-bases the table and drops everything expired.
	far := time.Duration(2*tickMask) * tickDur
	tb = tb.insert(keyOf("new"), at(far), c)
	if tb.n != 1 || !tb.contains(keyOf("new"), at(far), c) || tb.contains(keyOf("e0"), at(far), c) {
		t.Fatalf("after re-basing: %d ids, new found %v, e0 found %v", tb.n,
			tb.contains(keyOf("new"), at(far), c), tb.contains(keyOf("e0"), at(far), c))
	}
	// A key whose first word is zero is stored and found.
	zero := idKey{0, 42}
	tb = tb.insert(zero, at(far), c)
	if !tb.contains(zero, at(far), c) || tb.contains(idKey{1, 42}, at(far), c) == false {
		// NB: {1,42} maps to the same slot words as {0,42}: 108 bits of
		// the key are kept, and a first word of 0 is stored as 1.
		t.Fatal("zero first word not found")
	}
}

// TestIDClockSmallTTL: a TTL shorter than ticksPerTTL milliseconds uses
// 1 ms ticks and still never forgets early.
func TestIDClockSmallTTL(t *testing.T) {
	c := newIDClock(10 * time.Millisecond)
	if c.tick != 1 || c.live != 10 {
		t.Fatalf("clock %+v", c)
	}
	tb := newIDTable(0, c.at(1000)-c.live)
	tb = tb.insert(keyOf("x"), c.at(1000), c)
	if !tb.contains(keyOf("x"), c.at(1009), c) || tb.contains(keyOf("x"), c.at(1012), c) {
		t.Fatal("10 ms TTL not honoured")
	}
}

// TestIDTableConcurrentReaders: readers run without a lock while the
// writer inserts and grows the table (run with -race): every id inserted
// before a reader loaded the table is found by it.
func TestIDTableConcurrentReaders(t *testing.T) {
	c := newIDClock(time.Hour)
	now := c.at(time.Now().UnixMilli())
	st := &procPart{}
	st.table.Store(newIDTable(0, now-c.live))
	var published sync.Map // id index -> true once its insert is published
	const n = 20_000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for i := 0; ; i = (i + 7) % n {
				select {
				case <-stop:
					return
				default:
				}
				_, done := published.Load(i)
				tb := st.table.Load()
				if done && !tb.contains(keyOf("e"+strconv.Itoa(i)), now, c) {
					t.Errorf("e%d published but not found", i)
					return
				}
			}
		})
	}
	for i := range n {
		st.mu.Lock()
		st.table.Store(st.table.Load().insert(keyOf("e"+strconv.Itoa(i)), now, c))
		st.mu.Unlock()
		published.Store(i, true)
	}
	close(stop)
	wg.Wait()
}

func TestLocalIDs(t *testing.T) {
	var l localIDs
	if l.has(keyOf("a")) {
		t.Fatal("empty set has a")
	}
	for i := range 1000 {
		l.add(keyOf(strconv.Itoa(i)))
		l.add(keyOf(strconv.Itoa(i)))
	}
	if l.n != 1000 {
		t.Fatalf("%d ids, want 1000", l.n)
	}
	var r localIDs
	r.reserve(500)
	size := len(r.slots)
	for i := range 500 {
		r.add(keyOf(strconv.Itoa(i)))
	}
	if len(r.slots) != size || r.n != 500 {
		t.Fatalf("reserved set grew from %d to %d slots for %d ids", size, len(r.slots), r.n)
	}
	for i := range 2000 {
		if got := l.has(keyOf(strconv.Itoa(i))); got != (i < 1000) {
			t.Fatalf("%d: has %v", i, got)
		}
	}
}

// TestMarkBatchRecords: marks are encoded in records of one store
// partition each, under the size bound, and decode to the same ids; a
// malformed value is refused whole.
func TestMarkBatchRecords(t *testing.T) {
	s := &topicStore{topic: "processed", group: "g", nparts: 4}
	var ms []idMark
	for i := range 3000 {
		p := int32(0)
		if i >= 2000 {
			p = 3
		}
		ms = append(ms, idMark{s: s, p: p, id: strconv.Itoa(i) + string(bytes.Repeat([]byte("x"), 200))})
	}
	recs := idMarkRecords(ms, 1234)
	if len(recs) != 3 { // 400 KiB in partition 0, 200 KiB in 3
		t.Fatalf("%d records for 600 KiB of ids over 2 partitions, want 3", len(recs))
	}
	var got []string
	keys := map[string]bool{}
	for _, r := range recs {
		if len(r.Value) > markBatchMax {
			t.Fatalf("record of %d bytes", len(r.Value))
		}
		if keys[string(r.Key)] {
			t.Fatalf("key %q repeated", r.Key)
		}
		keys[string(r.Key)] = true
		if !bytes.HasPrefix(r.Key, []byte("g\x00\x00")) {
			t.Fatalf("key %q", r.Key)
		}
		err := decodeMarkBatch(r.Value, func(id []byte, at int64) {
			if at != 1234 {
				t.Fatalf("time %d", at)
			}
			i, _ := strconv.Atoi(string(bytes.TrimRight(id, "x")))
			if want := int32(0); i >= 2000 {
				want = 3
				if r.Partition != want {
					t.Fatalf("id %d in partition %d", i, r.Partition)
				}
			} else if r.Partition != want {
				t.Fatalf("id %d in partition %d", i, r.Partition)
			}
			got = append(got, string(id))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != len(ms) {
		t.Fatalf("decoded %d ids, want %d", len(got), len(ms))
	}
	for i := range got {
		if got[i] != ms[i].id {
			t.Fatalf("id %d: %q", i, got[i])
		}
	}
	v := recs[0].Value
	for _, bad := range [][]byte{nil, {}, {2}, v[:len(v)-1], append(bytes.Clone(v), 0), {1, 1, 5, 0}} {
		calls := 0
		if err := decodeMarkBatch(bad, func([]byte, int64) { calls++ }); err == nil || calls != 0 {
			t.Fatalf("value % x: err %v, %d ids reported", bad[:min(len(bad), 8)], err, calls)
		}
	}
}

// FuzzDecodeMarkBatch: the processed-id batch decoder never panics, and
// what it accepts re-encodes to records that decode to the same ids.
func FuzzDecodeMarkBatch(f *testing.F) {
	s := &topicStore{topic: "p", group: "g", nparts: 1}
	f.Add(idMarkRecords([]idMark{{s: s, id: "a"}, {s: s, id: ""}, {s: s, id: "long-id-" + strconv.Itoa(1<<30)}}, 1_700_000_000_000)[0].Value)
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0})
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, v []byte) {
		var ms []idMark
		var at int64 = -1
		err := decodeMarkBatch(v, func(id []byte, t int64) { ms = append(ms, idMark{s: s, id: string(id)}); at = t })
		if err != nil || len(ms) == 0 {
			return
		}
		var back []string
		for _, r := range idMarkRecords(ms, at) {
			if err := decodeMarkBatch(r.Value, func(id []byte, t2 int64) {
				back = append(back, string(id))
				if t2 != at {
					t.Fatalf("time %d, was %d", t2, at)
				}
			}); err != nil {
				t.Fatal(err)
			}
		}
		if len(back) != len(ms) {
			t.Fatalf("%d ids back, %d decoded", len(back), len(ms))
		}
		for i := range back {
			if back[i] != ms[i].id {
				t.Fatalf("id %d: %q, was %q", i, back[i], ms[i].id)
			}
		}
	})
}

// TestIdempotentBatchLookups runs the subscriber's batch path without a
// broker: ids looked up before the batch (prelook) are skipped when the
// table has them, an id handled earlier in the same batch is skipped (its
// mark is pending), and marks settled after a batch are seen by the next.
func TestIdempotentBatchLookups(t *testing.T) {
	st := &topicStore{topic: DefaultProcessedTopic, group: "g", ttl: time.Hour, nparts: 4,
		now: time.Now, logger: discard(), parts: make([]atomic.Pointer[procPart], 4)}
	c := st.clock()
	for p := range int32(4) {
		st.part(p).table.Store(newIDTable(0, c.at(time.Now().UnixMilli())-c.live))
	}
	commitIDMarks([]idMark{{s: st, p: 1, key: keyOf("old"), id: "old"}}, time.Now().UnixMilli())
	var mu sync.Mutex
	var calls []string
	user := func(_ context.Context, e *event.Event) error {
		mu.Lock()
		calls = append(calls, e.ID)
		mu.Unlock()
		return nil
	}
	s := &Subscriber{cfg: newConfig([]Option{WithLogger(discard())}), group: "g",
		ev: &env{metrics: NewMetrics(nil), logger: discard()}, idStore: st}
	h := Chain(attempt(s.countFailures(user)), Idempotent(st))
	var marks [][]byte
	w := &writer{
		produce: func(_ context.Context, r *kgo.Record, p func(*kgo.Record, error)) {
			marks = append(marks, r.Value)
			p(r, nil)
		},
		flush: func(context.Context) error { return nil },
	}
	off := int64(0)
	batch := func(ids ...string) []*partResult {
		var rs []*kgo.Record
		for _, id := range ids {
			r, err := toRecord("in", &event.Event{ID: id, Source: "/t", Type: "t"})
			if err != nil {
				t.Fatal(err)
			}
			r.Partition, r.Offset = 5, off // store partition 5 % 4 = 1
			off++
			rs = append(rs, r)
		}
		prs := s.handleBatch(context.Background(), [][]*kgo.Record{rs}, h, w)
		if _, err := w.settle(context.Background(), prs); err != nil {
			t.Fatal(err)
		}
		return prs
	}
	prs := batch("old", "new", "new", "other")
	if len(prs[0].pre) != 4 || !prs[0].pre[0].seen || prs[0].pre[1].seen {
		t.Fatalf("prelook answers %+v", prs[0].pre)
	}
	batch("new", "other", "last")
	if want := []string{"new", "other", "last"}; !slices.Equal(calls, want) {
		t.Fatalf("handled %v, want %v", calls, want)
	}
	var ids []string
	for _, v := range marks {
		if err := decodeMarkBatch(v, func(id []byte, _ int64) { ids = append(ids, string(id)) }); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"new", "other", "last"}; len(marks) != 2 || !slices.Equal(ids, want) {
		t.Fatalf("%d mark records with ids %v, want 2 with %v", len(marks), ids, want)
	}
}
