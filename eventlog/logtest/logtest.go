// Package logtest is the conformance suite of eventlog.Log: every
// implementation runs Run from its tests, declaring with Features what its
// backend lacks. A case that a feature disables is skipped with the reason,
// so `go test -v` shows what each backend does not promise.
package logtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventlog"
)

// Features says what a backend supports. The zero value claims nothing
// optional; each field documents why a backend may lack it.
type Features struct {
	// TopicConfigs: Topic reports the configs set at creation. Some
	// test brokers (kfake) describe only a few configs.
	TopicConfigs bool
	// ValidatesTopicNames: CreateTopic refuses names Kafka refuses
	// ("a/b", "..") with ErrInvalidArgument. kfake accepts any name.
	ValidatesTopicNames bool
	// ValidatesConfigs: CreateTopic refuses a config value that does not
	// parse ("retention.ms": "soon") with ErrInvalidArgument. kfake
	// stores any value.
	ValidatesConfigs bool
	// MaxMessageBytes enforced: an Append larger than the topic's
	// max.message.bytes fails with ErrRecordTooLarge. kfake stores
	// anything.
	MaxMessageBytes bool
	// GroupActiveCommits: CommitOffsets on a group with live members fails
	// with ErrGroupActive (Kafka answers UNKNOWN_MEMBER_ID to a simple
	// commit then). kfake accepts the commit.
	GroupActiveCommits bool
	// SessionTimeout for group members (0: the default). Backends whose
	// coordinator allows a short minimum keep the group tests fast.
	SessionTimeout time.Duration
	// HeartbeatInterval for group members (0: the default).
	HeartbeatInterval time.Duration
}

// Run runs every case against Logs made by factory. factory is called
// once per case and must clean up with t.Cleanup (closing the Log twice
// must be harmless: some cases close it themselves). Each case uses topic
// and group names unique to it, so a factory may share one backend.
func Run(t *testing.T, factory func(t *testing.T) eventlog.Log, f Features) {
	cases := []struct {
		name string
		fn   func(t *testing.T, l eventlog.Log, f Features)
	}{
		{"Admin", testAdmin},
		{"RoundTrip", testRoundTrip},
		{"DenseOffsets", testDenseOffsets},
		{"ReadWait", testReadWait},
		{"OutOfRange", testOutOfRange},
		{"OffsetForTime", testOffsetForTime},
		{"KeyPartition", testKeyPartition},
		{"ConcurrentAppend", testConcurrentAppend},
		{"LargeRecord", testLargeRecord},
		{"Closed", testClosed},
		{"GroupSplit", testGroupSplit},
		{"GroupCommitRestart", testGroupCommitRestart},
		{"GroupThirdMember", testGroupThirdMember},
		{"GroupCommitOffsets", testGroupCommitOffsets},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, factory(t), f)
		})
	}
}

var seq atomic.Int64

// name returns a topic or group name unique in the process.
func name(t *testing.T, kind string) string {
	base := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return fmt.Sprintf("%s-%s-%d", kind, base, seq.Add(1))
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls fn until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustCreate(t *testing.T, l eventlog.Log, topic string, parts int, cfg map[string]string) {
	t.Helper()
	if err := l.CreateTopic(ctxFor(t, 10*time.Second), topic, parts, cfg); err != nil {
		t.Fatalf("CreateTopic(%s): %v", topic, err)
	}
}

func mustAppend(t *testing.T, l eventlog.Log, topic string, part int32, recs ...eventlog.Record) int64 {
	t.Helper()
	base, err := l.Append(ctxFor(t, 10*time.Second), topic, part, recs)
	if err != nil {
		t.Fatalf("Append(%s/%d): %v", topic, part, err)
	}
	return base
}

// readAll reads a partition from offset to its end.
func readAll(t *testing.T, l eventlog.Log, topic string, part int32, from int64) []eventlog.Record {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	_, end, err := l.Offsets(ctx, topic, part)
	if err != nil {
		t.Fatalf("Offsets: %v", err)
	}
	var out []eventlog.Record
	for off := from; off < end; {
		recs, err := l.Read(ctx, topic, part, off, eventlog.ReadOptions{MaxBytes: 64 << 10})
		if err != nil {
			t.Fatalf("Read(%s/%d@%d): %v", topic, part, off, err)
		}
		if len(recs) == 0 {
			t.Fatalf("Read(%s/%d@%d) returned nothing before end %d", topic, part, off, end)
		}
		out = append(out, recs...)
		off = recs[len(recs)-1].Offset + 1
	}
	return out
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want %v", what, err, want)
	}
}

func testAdmin(t *testing.T, l eventlog.Log, f Features) {
	ctx := ctxFor(t, 30*time.Second)
	topic := name(t, "t")
	cfg := map[string]string{"retention.ms": "3600000"}
	mustCreate(t, l, topic, 3, cfg)
	wantErr(t, "duplicate CreateTopic", l.CreateTopic(ctx, topic, 3, nil), eventlog.ErrTopicExists)
	ti, err := l.Topic(ctx, topic)
	if err != nil {
		t.Fatalf("Topic: %v", err)
	}
	if ti.Name != topic || ti.Partitions != 3 {
		t.Errorf("Topic = %+v, want %s with 3 partitions", ti, topic)
	}
	if f.TopicConfigs && ti.Configs["retention.ms"] != "3600000" {
		t.Errorf("Topic configs = %v, want retention.ms=3600000", ti.Configs)
	}
	for p := int32(0); p < 3; p++ {
		if s, e, err := l.Offsets(ctx, topic, p); err != nil || s != 0 || e != 0 {
			t.Errorf("Offsets(%d) of a new topic = %d, %d, %v", p, s, e, err)
		}
	}
	wantErr(t, "CreateTopic with 0 partitions", l.CreateTopic(ctx, name(t, "zero"), 0, nil), eventlog.ErrInvalidArgument)
	if f.ValidatesConfigs {
		wantErr(t, "CreateTopic with a bad config", l.CreateTopic(ctx, name(t, "badcfg"), 1, map[string]string{"retention.ms": "soon"}), eventlog.ErrInvalidArgument)
	}
	if f.ValidatesTopicNames {
		wantErr(t, "CreateTopic(a/b)", l.CreateTopic(ctx, "a/b", 1, nil), eventlog.ErrInvalidArgument)
	}

	if err := l.DeleteTopic(ctx, topic); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	eventually(t, 10*time.Second, func() error {
		if _, err := l.Topic(ctx, topic); !errors.Is(err, eventlog.ErrUnknownTopic) {
			return fmt.Errorf("Topic after delete: %v", err)
		}
		return nil
	})
	wantErr(t, "DeleteTopic(unknown)", l.DeleteTopic(ctx, name(t, "nope")), eventlog.ErrUnknownTopic)
	_, err = l.Topic(ctx, name(t, "nope"))
	wantErr(t, "Topic(unknown)", err, eventlog.ErrUnknownTopic)
}

func recEqual(a, b eventlog.Record) error {
	switch {
	case !bytes.Equal(a.Key, b.Key) || (a.Key == nil) != (b.Key == nil):
		return fmt.Errorf("key %q (nil %v), want %q (nil %v)", a.Key, a.Key == nil, b.Key, b.Key == nil)
	case !bytes.Equal(a.Value, b.Value) || (a.Value == nil) != (b.Value == nil):
		return fmt.Errorf("value %q (nil %v), want %q (nil %v)", a.Value, a.Value == nil, b.Value, b.Value == nil)
	case !a.Timestamp.Equal(b.Timestamp):
		return fmt.Errorf("timestamp %v, want %v", a.Timestamp, b.Timestamp)
	case len(a.Headers) != len(b.Headers):
		return fmt.Errorf("headers %v, want %v", a.Headers, b.Headers)
	}
	for i := range a.Headers {
		x, y := a.Headers[i], b.Headers[i]
		if x.Key != y.Key || !bytes.Equal(x.Value, y.Value) || (x.Value == nil) != (y.Value == nil) {
			return fmt.Errorf("header %d = %q:%q, want %q:%q", i, x.Key, x.Value, y.Key, y.Value)
		}
	}
	return nil
}

func testRoundTrip(t *testing.T, l eventlog.Log, f Features) {
	topic := name(t, "t")
	mustCreate(t, l, topic, 2, nil)
	ts := time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli())
	in := []eventlog.Record{
		{Key: []byte("k1"), Value: []byte("v1"), Timestamp: ts,
			Headers: []eventlog.Header{{Key: "h", Value: []byte("1")}, {Key: "h", Value: []byte("2")}, {Key: "null", Value: nil}}},
		{Key: nil, Value: []byte("no key"), Timestamp: ts.Add(time.Millisecond)},
		{Key: []byte("tomb"), Value: nil, Timestamp: ts.Add(2 * time.Millisecond)},
		{Key: []byte{}, Value: []byte{}, Timestamp: ts.Add(3 * time.Millisecond)},
	}
	before := time.Now().Add(-time.Second)
	base := mustAppend(t, l, topic, 1, in...)
	if base != 0 {
		t.Errorf("first Append base = %d, want 0", base)
	}
	noTS := mustAppend(t, l, topic, 1, eventlog.Record{Value: []byte("now")})
	if noTS != int64(len(in)) {
		t.Errorf("second Append base = %d, want %d", noTS, len(in))
	}
	got := readAll(t, l, topic, 1, 0)
	if len(got) != len(in)+1 {
		t.Fatalf("read %d records, want %d", len(got), len(in)+1)
	}
	for i, r := range in {
		if err := recEqual(got[i], r); err != nil {
			t.Errorf("record %d: %v", i, err)
		}
		if got[i].Topic != topic || got[i].Partition != 1 || got[i].Offset != int64(i) {
			t.Errorf("record %d at %s/%d@%d", i, got[i].Topic, got[i].Partition, got[i].Offset)
		}
	}
	if last := got[len(in)]; last.Timestamp.Before(before) || last.Timestamp.After(time.Now().Add(time.Second)) {
		t.Errorf("zero timestamp was stored as %v, want about now", last.Timestamp)
	}
	if s, e, err := l.Offsets(ctxFor(t, 5*time.Second), topic, 0); err != nil || s != 0 || e != 0 {
		t.Errorf("other partition Offsets = %d, %d, %v; want empty", s, e, err)
	}
	_, err := l.Append(ctxFor(t, 5*time.Second), topic, 0, nil)
	wantErr(t, "Append of nothing", err, eventlog.ErrInvalidArgument)
}

func testDenseOffsets(t *testing.T, l eventlog.Log, f Features) {
	topic := name(t, "t")
	mustCreate(t, l, topic, 2, nil)
	next := map[int32]int64{}
	for i := range 20 {
		p := int32(i % 2)
		n := 1 + i%3
		recs := make([]eventlog.Record, n)
		for j := range recs {
			recs[j] = eventlog.Record{Value: fmt.Appendf(nil, "%d-%d", i, j)}
		}
		if base := mustAppend(t, l, topic, p, recs...); base != next[p] {
			t.Fatalf("append %d to %d: base %d, want %d", i, p, base, next[p])
		}
		next[p] += int64(n)
	}
	for p := int32(0); p < 2; p++ {
		s, e, err := l.Offsets(ctxFor(t, 5*time.Second), topic, p)
		if err != nil || s != 0 || e != next[p] {
			t.Errorf("Offsets(%d) = %d, %d, %v; want 0, %d", p, s, e, err, next[p])
		}
		all := readAll(t, l, topic, p, 0)
		for i, r := range all {
			if r.Offset != int64(i) {
				t.Fatalf("partition %d record %d has offset %d", p, i, r.Offset)
			}
		}
		mid := readAll(t, l, topic, p, 7)
		if len(mid) == 0 || mid[0].Offset != 7 || !bytes.Equal(mid[0].Value, all[7].Value) {
			t.Errorf("read from the middle of a batch started at %+v", mid[:min(1, len(mid))])
		}
	}
}

func testReadWait(t *testing.T, l eventlog.Log, f Features) {
	topic := name(t, "t")
	mustCreate(t, l, topic, 1, nil)
	ctx := ctxFor(t, 30*time.Second)

	start := time.Now()
	recs, err := l.Read(ctx, topic, 0, 0, eventlog.ReadOptions{Wait: 300 * time.Millisecond})
	el := time.Since(start)
	if err != nil || len(recs) != 0 {
		t.Fatalf("Read at the end = %v, %v; want nothing", recs, err)
	}
	if el < 250*time.Millisecond {
		t.Errorf("Read with Wait 300ms returned after %v", el)
	}
	recs, err = l.Read(ctx, topic, 0, 0, eventlog.ReadOptions{})
	if err != nil || len(recs) != 0 {
		t.Fatalf("Read without Wait = %v, %v", recs, err)
	}

	const wait = 10 * time.Second
	type res struct {
		recs []eventlog.Record
		err  error
		at   time.Time
	}
	done := make(chan res, 1)
	go func() {
		r, err := l.Read(ctx, topic, 0, 0, eventlog.ReadOptions{Wait: wait})
		done <- res{r, err, time.Now()}
	}()
	time.Sleep(200 * time.Millisecond)
	appended := time.Now()
	mustAppend(t, l, topic, 0, eventlog.Record{Value: []byte("wake")})
	r := <-done
	if r.err != nil || len(r.recs) != 1 || string(r.recs[0].Value) != "wake" {
		t.Fatalf("waiting Read = %v, %v", r.recs, r.err)
	}
	if lat := r.at.Sub(appended); lat > wait/5 {
		t.Errorf("waiting Read woke %v after the append (Wait %v)", lat, wait)
	}
}

func testOutOfRange(t *testing.T, l eventlog.Log, f Features) {
	topic := name(t, "t")
	mustCreate(t, l, topic, 1, nil)
	ctx := ctxFor(t, 10*time.Second)
	mustAppend(t, l, topic, 0, eventlog.Record{Value: []byte("a")}, eventlog.Record{Value: []byte("b")})
	_, err := l.Read(ctx, topic, 0, 3, eventlog.ReadOptions{})
	wantErr(t, "Read beyond the end", err, eventlog.ErrOffsetOutOfRange)
	_, err = l.Read(ctx, topic, 0, 3, eventlog.ReadOptions{Wait: 100 * time.Millisecond})
	wantErr(t, "waiting Read beyond the end", err, eventlog.ErrOffsetOutOfRange)
	_, err = l.Read(ctx, topic, 0, -5, eventlog.ReadOptions{})
	wantErr(t, "Read at a negative offset", err, eventlog.ErrOffsetOutOfRange)
	_, err = l.Read(ctx, topic, 1, 0, eventlog.ReadOptions{})
	wantErr(t, "Read of a partition that does not exist", err, eventlog.ErrUnknownTopic)
	_, err = l.Read(ctx, name(t, "nope"), 0, 0, eventlog.ReadOptions{})
	wantErr(t, "Read of an unknown topic", err, eventlog.ErrUnknownTopic)
	_, err = l.Append(ctx, topic, 7, []eventlog.Record{{Value: []byte("x")}})
	wantErr(t, "Append to a partition that does not exist", err, eventlog.ErrUnknownTopic)
	_, _, err = l.Offsets(ctx, topic, 9)
	wantErr(t, "Offsets of a partition that does not exist", err, eventlog.ErrUnknownTopic)
	_, err = l.OffsetForTime(ctx, name(t, "nope"), 0, time.Now())
	wantErr(t, "OffsetForTime of an unknown topic", err, eventlog.ErrUnknownTopic)
}

func testOffsetForTime(t *testing.T, l eventlog.Log, f Features) {
	topic := name(t, "t")
	mustCreate(t, l, topic, 1, nil)
	ctx := ctxFor(t, 10*time.Second)
	t0 := time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli())
	for i := range 3 {
		mustAppend(t, l, topic, 0, eventlog.Record{Value: []byte{byte(i)}, Timestamp: t0.Add(time.Duration(i) * 10 * time.Second)})
	}
	for _, c := range []struct {
		at   time.Time
		want int64
	}{
		{t0.Add(-time.Minute), 0},
		{t0, 0},
		{t0.Add(time.Millisecond), 1},
		{t0.Add(10 * time.Second), 1},
		{t0.Add(15 * time.Second), 2},
		{t0.Add(20 * time.Second), 2},
		{t0.Add(time.Minute), 3},
	} {
		got, err := l.OffsetForTime(ctx, topic, 0, c.at)
		if err != nil || got != c.want {
			t.Errorf("OffsetForTime(t0%+v) = %d, %v; want %d", c.at.Sub(t0), got, err, c.want)
		}
	}
}

// keyTable are partitions Kafka's default partitioner gives these keys
// (murmur2, as the Java client and franz-go compute it).
var keyTable = []struct {
	key  string
	n    int
	want int32
}{
	{"21", 16, 12},
	{"foobar", 16, 14},
	{"a-little-bit-long-string", 16, 0},
	{"abc", 16, 11},
	{"order-1", 3, 1},
	{"order-2", 3, 0},
	{"order-3", 3, 0},
	{"customer:42", 7, 6},
	{"", 5, 1},
}

func testKeyPartition(t *testing.T, l eventlog.Log, f Features) {
	for _, c := range keyTable {
		if got := eventlog.PartitionFor([]byte(c.key), c.n); got != c.want {
			t.Errorf("PartitionFor(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
	topic := name(t, "t")
	mustCreate(t, l, topic, 16, nil)
	p := eventlog.NewProducer(l)
	ctx := ctxFor(t, 10*time.Second)
	for _, c := range keyTable {
		if c.n != 16 {
			continue
		}
		pos, err := p.Append(ctx, topic, eventlog.Record{Key: []byte(c.key), Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		if pos[0].Partition != c.want {
			t.Errorf("Producer put %q in partition %d, want %d", c.key, pos[0].Partition, c.want)
		}
		recs, err := l.Read(ctx, topic, c.want, pos[0].Offset, eventlog.ReadOptions{})
		if err != nil || len(recs) == 0 || string(recs[0].Key) != c.key {
			t.Errorf("reading %q back from %d@%d: %v, %v", c.key, c.want, pos[0].Offset, recs, err)
		}
	}
}

func testConcurrentAppend(t *testing.T, l eventlog.Log, f Features) {
	topic := name(t, "t")
	mustCreate(t, l, topic, 1, nil)
	const writers, appends = 6, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				n := 1 + (w+i)%3
				recs := make([]eventlog.Record, n)
				for j := range recs {
					recs[j] = eventlog.Record{Key: fmt.Appendf(nil, "w%d", w), Value: fmt.Appendf(nil, "%d/%d/%d", w, i, j)}
				}
				if _, err := l.Append(context.Background(), topic, 0, recs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all := readAll(t, l, topic, 0, 0)
	last := map[string][2]int{} // writer -> last (append, record)
	for i, r := range all {
		if r.Offset != int64(i) {
			t.Fatalf("record %d has offset %d", i, r.Offset)
		}
		var w, a, j int
		fmt.Sscanf(string(r.Value), "%d/%d/%d", &w, &a, &j)
		prev, seen := last[string(r.Key)]
		switch {
		case j > 0 && (prev != [2]int{a, j - 1}):
			t.Fatalf("offset %d: %s follows %v: an append was split", i, r.Value, prev)
		case j == 0 && seen && a != prev[0]+1:
			t.Fatalf("offset %d: %s follows %v: a writer's appends reordered", i, r.Value, prev)
		}
		last[string(r.Key)] = [2]int{a, j}
	}
	if len(last) != writers {
		t.Errorf("saw %d writers, want %d", len(last), writers)
	}
}

func testLargeRecord(t *testing.T, l eventlog.Log, f Features) {
	topic := name(t, "t")
	const max = 256 << 10
	mustCreate(t, l, topic, 1, map[string]string{"max.message.bytes": fmt.Sprint(max)})
	big := bytes.Repeat([]byte("x"), max-1024)
	mustAppend(t, l, topic, 0, eventlog.Record{Key: []byte("big"), Value: big})
	recs, err := l.Read(ctxFor(t, 10*time.Second), topic, 0, 0, eventlog.ReadOptions{MaxBytes: 1024})
	if err != nil || len(recs) != 1 || !bytes.Equal(recs[0].Value, big) {
		t.Fatalf("Read of a record larger than MaxBytes: %d records, %v", len(recs), err)
	}
	if !f.MaxMessageBytes {
		t.Skip("the backend does not enforce max.message.bytes")
	}
	_, err = l.Append(ctxFor(t, 10*time.Second), topic, 0, []eventlog.Record{{Value: bytes.Repeat([]byte("y"), 2*max)}})
	wantErr(t, "Append over max.message.bytes", err, eventlog.ErrRecordTooLarge)
	if _, e, _ := l.Offsets(ctxFor(t, 5*time.Second), topic, 0); e != 1 {
		t.Errorf("end after a refused append = %d, want 1", e)
	}
}

func testClosed(t *testing.T, l eventlog.Log, f Features) {
	topic := name(t, "t")
	mustCreate(t, l, topic, 1, nil)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := ctxFor(t, 5*time.Second)
	_, err := l.Append(ctx, topic, 0, []eventlog.Record{{Value: []byte("late")}})
	wantErr(t, "Append after Close", err, eventlog.ErrClosed)
	_, err = l.Read(ctx, topic, 0, 0, eventlog.ReadOptions{})
	wantErr(t, "Read after Close", err, eventlog.ErrClosed)
	wantErr(t, "CreateTopic after Close", l.CreateTopic(ctx, name(t, "late"), 1, nil), eventlog.ErrClosed)
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// member records one GroupConsumer's callbacks and checks their
// invariants: assigned partitions were not owned, revoked ones were.
type member struct {
	t    *testing.T
	name string
	c    eventlog.GroupConsumer
	mu   sync.Mutex
	// owned is the callbacks' view of the assignment.
	owned              map[eventlog.TopicPartition]bool
	assigns, revokes   int
	onRevoke           func(ctx context.Context, c eventlog.GroupConsumer, tps []eventlog.TopicPartition)
	errs               []string
	assignedAfterStart bool
}

func groupOpts(f Features, m *member) eventlog.GroupOptions {
	return eventlog.GroupOptions{
		SessionTimeout:    f.SessionTimeout,
		HeartbeatInterval: f.HeartbeatInterval,
		RebalanceTimeout:  10 * time.Second,
		OnAssigned: func(ctx context.Context, tps []eventlog.TopicPartition) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.assigns++
			for _, tp := range tps {
				if m.owned[tp] {
					m.errs = append(m.errs, fmt.Sprintf("assigned %v twice", tp))
				}
				m.owned[tp] = true
			}
		},
		OnRevoked: func(ctx context.Context, tps []eventlog.TopicPartition) {
			if m.onRevoke != nil {
				m.onRevoke(ctx, m.c, tps)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			m.revokes++
			for _, tp := range tps {
				if !m.owned[tp] {
					m.errs = append(m.errs, fmt.Sprintf("revoked %v, not owned", tp))
				}
				delete(m.owned, tp)
			}
		},
	}
}

func join(t *testing.T, l eventlog.Log, f Features, group, topic, who string, onRevoke func(context.Context, eventlog.GroupConsumer, []eventlog.TopicPartition)) *member {
	t.Helper()
	m := &member{t: t, name: who, owned: map[eventlog.TopicPartition]bool{}, onRevoke: onRevoke}
	c, err := l.JoinGroup(ctxFor(t, 10*time.Second), group, []string{topic}, groupOpts(f, m))
	if err != nil {
		t.Fatalf("JoinGroup(%s): %v", who, err)
	}
	m.mu.Lock()
	m.c = c
	m.mu.Unlock()
	t.Cleanup(func() { c.Close() })
	return m
}

func (m *member) view() (map[eventlog.TopicPartition]bool, []string, int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := make(map[eventlog.TopicPartition]bool, len(m.owned))
	for k := range m.owned {
		o[k] = true
	}
	return o, slices.Clone(m.errs), m.assigns, m.revokes
}

// checkSplit reports whether members own every partition of topic exactly
// once, each member has some, and callbacks agree with Assignment.
func checkSplit(topic string, parts int, ms ...*member) error {
	seen := map[int32]string{}
	for _, m := range ms {
		owned, errs, _, _ := m.view()
		if len(errs) > 0 {
			return fmt.Errorf("%s: callback invariant broken: %v", m.name, errs)
		}
		asg := m.c.Assignment()
		if len(asg) != len(owned) {
			return fmt.Errorf("%s: Assignment %v, callbacks say %v", m.name, asg, owned)
		}
		if len(asg) == 0 {
			return fmt.Errorf("%s owns nothing", m.name)
		}
		for _, tp := range asg {
			if !owned[tp] {
				return fmt.Errorf("%s: Assignment %v, callbacks say %v", m.name, asg, owned)
			}
			if tp.Topic != topic {
				return fmt.Errorf("%s owns %v of another topic", m.name, tp)
			}
			if other, dup := seen[tp.Partition]; dup {
				return fmt.Errorf("partition %d owned by %s and %s", tp.Partition, other, m.name)
			}
			seen[tp.Partition] = m.name
		}
	}
	if len(seen) != parts {
		return fmt.Errorf("%d of %d partitions owned: %v", len(seen), parts, seen)
	}
	return nil
}

const groupWait = 30 * time.Second

func appendEach(t *testing.T, l eventlog.Log, topic string, parts, per int, tag string) {
	for p := range parts {
		recs := make([]eventlog.Record, per)
		for i := range recs {
			recs[i] = eventlog.Record{Value: fmt.Appendf(nil, "%s-%d-%d", tag, p, i)}
		}
		mustAppend(t, l, topic, int32(p), recs...)
	}
}

// drain polls m until it has want records or the wait ends.
func drain(t *testing.T, m *member, want int, wait time.Duration) []eventlog.Record {
	t.Helper()
	var got []eventlog.Record
	ctx := ctxFor(t, wait)
	for len(got) < want {
		recs, err := m.c.Poll(ctx)
		if err != nil {
			t.Fatalf("%s: Poll after %d of %d records: %v", m.name, len(got), want, err)
		}
		got = append(got, recs...)
	}
	return got
}

func testGroupSplit(t *testing.T, l eventlog.Log, f Features) {
	topic, group := name(t, "t"), name(t, "g")
	const parts, per = 4, 5
	mustCreate(t, l, topic, parts, nil)
	a := join(t, l, f, group, topic, "a", nil)
	eventually(t, groupWait, func() error { return checkSplit(topic, parts, a) })
	b := join(t, l, f, group, topic, "b", nil)
	eventually(t, groupWait, func() error { return checkSplit(topic, parts, a, b) })

	appendEach(t, l, topic, parts, per, "r")
	owners := map[int32]*member{}
	for _, m := range []*member{a, b} {
		for _, tp := range m.c.Assignment() {
			owners[tp.Partition] = m
		}
	}
	for _, m := range []*member{a, b} {
		n := per * len(m.c.Assignment())
		got := drain(t, m, n, groupWait)
		if len(got) != n {
			t.Errorf("%s got %d records, want %d", m.name, len(got), n)
		}
		for _, r := range got {
			if owners[r.Partition] != m {
				t.Errorf("%s got a record of partition %d it does not own", m.name, r.Partition)
			}
		}
	}

	if err := b.c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := b.c.Poll(ctxFor(t, time.Second)); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("Poll after Close: %v, want ErrClosed", err)
	}
	if _, _, _, r := b.view(); r == 0 {
		t.Errorf("Close did not call OnRevoked")
	}
	eventually(t, groupWait, func() error { return checkSplit(topic, parts, a) })
}

func testGroupCommitRestart(t *testing.T, l eventlog.Log, f Features) {
	topic, group := name(t, "t"), name(t, "g")
	const parts = 2
	mustCreate(t, l, topic, parts, nil)
	appendEach(t, l, topic, parts, 10, "r")
	ctx := ctxFor(t, groupWait)

	a := join(t, l, f, group, topic, "a", nil)
	got := drain(t, a, 2*10, groupWait)
	// Commit 3 of partition 0 and 6 of partition 1 as processed.
	commit := map[eventlog.TopicPartition]int64{{Topic: topic, Partition: 0}: 3, {Topic: topic, Partition: 1}: 6}
	if err := a.c.Commit(ctx, commit); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if len(got) != 20 {
		t.Fatalf("got %d records", len(got))
	}
	if err := a.c.Close(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Commit after Close", a.c.Commit(ctx, commit), eventlog.ErrClosed)
	co, err := l.CommittedOffsets(ctx, group, topic)
	if err != nil || co[0] != 3 || co[1] != 6 || len(co) != 2 {
		t.Fatalf("CommittedOffsets = %v, %v", co, err)
	}

	b := join(t, l, f, group, topic, "b", nil)
	rest := drain(t, b, 7+4, groupWait)
	first := map[int32]int64{}
	for _, r := range rest {
		if _, ok := first[r.Partition]; !ok {
			first[r.Partition] = r.Offset
		}
	}
	if first[0] != 3 || first[1] != 6 || len(rest) != 11 {
		t.Errorf("restarted member began at %v with %d records; want {0:3 1:6} and 11", first, len(rest))
	}
	co, err = l.CommittedOffsets(ctx, name(t, "nogroup"), topic)
	if err != nil || len(co) != 0 {
		t.Errorf("CommittedOffsets of an unknown group = %v, %v", co, err)
	}
}

func testGroupThirdMember(t *testing.T, l eventlog.Log, f Features) {
	topic, group := name(t, "t"), name(t, "g")
	const parts = 6
	mustCreate(t, l, topic, parts, nil)
	ctx := ctxFor(t, groupWait)
	// Each member commits in OnRevoked what it consumed, as services do.
	var commitErrs atomic.Int32
	onRevoke := func(ctx context.Context, c eventlog.GroupConsumer, tps []eventlog.TopicPartition) {
		offs := map[eventlog.TopicPartition]int64{}
		for _, tp := range tps {
			offs[tp] = 1
		}
		if err := c.Commit(ctx, offs); err != nil {
			commitErrs.Add(1)
			t.Logf("Commit in OnRevoked: %v", err)
		}
	}
	a := join(t, l, f, group, topic, "a", onRevoke)
	b := join(t, l, f, group, topic, "b", onRevoke)
	eventually(t, groupWait, func() error { return checkSplit(topic, parts, a, b) })
	_, _, _, ra := a.view()
	_, _, _, rb := b.view()
	c := join(t, l, f, group, topic, "c", onRevoke)
	eventually(t, groupWait, func() error { return checkSplit(topic, parts, a, b, c) })
	_, _, ac, _ := c.view()
	_, _, _, ra2 := a.view()
	_, _, _, rb2 := b.view()
	if ac == 0 {
		t.Errorf("the third member's OnAssigned was not called")
	}
	if ra2 == ra && rb2 == rb {
		t.Errorf("no existing member's OnRevoked was called when a third joined")
	}
	if n := commitErrs.Load(); n > 0 {
		t.Errorf("%d commits from OnRevoked failed", n)
	}
	co, err := l.CommittedOffsets(ctx, group, topic)
	if err != nil || len(co) == 0 {
		t.Errorf("CommittedOffsets after OnRevoked commits = %v, %v", co, err)
	}
	// c takes partitions; the others still own the rest, each exactly once.
	appendEach(t, l, topic, parts, 2, "x")
	for _, m := range []*member{a, b, c} {
		want := 0
		for _, tp := range m.c.Assignment() {
			want += 2
			if co[tp.Partition] == 1 {
				want-- // starts after the committed record
			}
		}
		got := drain(t, m, want, groupWait)
		for _, r := range got {
			if !slices.Contains(m.c.Assignment(), eventlog.TopicPartition{Topic: topic, Partition: r.Partition}) {
				t.Errorf("%s got a record of partition %d it does not own", m.name, r.Partition)
			}
		}
	}
}

func testGroupCommitOffsets(t *testing.T, l eventlog.Log, f Features) {
	topic, group := name(t, "t"), name(t, "g")
	mustCreate(t, l, topic, 2, nil)
	appendEach(t, l, topic, 2, 4, "r")
	ctx := ctxFor(t, groupWait)
	offs := map[eventlog.TopicPartition]int64{{Topic: topic, Partition: 0}: 2, {Topic: topic, Partition: 1}: 4}
	if err := l.CommitOffsets(ctx, group, offs); err != nil {
		t.Fatalf("CommitOffsets: %v", err)
	}
	co, err := l.CommittedOffsets(ctx, group, topic)
	if err != nil || co[0] != 2 || co[1] != 4 {
		t.Fatalf("CommittedOffsets = %v, %v", co, err)
	}
	// A member starts where the commits say: partition 1 is consumed.
	m := join(t, l, f, group, topic, "m", nil)
	got := drain(t, m, 2, groupWait)
	if got[0].Partition != 0 || got[0].Offset != 2 {
		t.Errorf("member started at %d@%d, want 0@2", got[0].Partition, got[0].Offset)
	}
	if f.GroupActiveCommits {
		err := l.CommitOffsets(ctx, group, offs)
		wantErr(t, "CommitOffsets with a live member", err, eventlog.ErrGroupActive)
	}
	if err := m.c.Close(); err != nil {
		t.Fatal(err)
	}
	// The group is empty again: offsets may be set from outside.
	eventually(t, groupWait, func() error {
		return l.CommitOffsets(ctx, group, map[eventlog.TopicPartition]int64{{Topic: topic, Partition: 0}: 1})
	})
}
