package groups

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/commitlog/batch"
)

// persistenceScenario commits, deletes and resets through one coordinator,
// restarts on the same store, and checks what survived. It runs against
// every Store implementation.
func persistenceScenario(t *testing.T, e *env) {
	ids, gen := e.stableGroup("g", 2)
	res, err := e.c.CommitOffsets(e.ctx, "g", ids[0], "", gen, map[TopicPartition]Offset{
		{"t1", 0}: {Offset: 10, LeaderEpoch: 2, Metadata: "m0"},
		{"t1", 1}: {Offset: 11},
	})
	if err != nil || res[TopicPartition{"t1", 0}] != nil {
		t.Fatal(res, err)
	}
	// Newest wins.
	if err := commitErr(e, "g", ids[1], "", gen); err != nil { // t1/0 = 5
		t.Fatal(err)
	}
	if _, err := e.c.DeleteOffsets(e.ctx, "g", []TopicPartition{{"t9", 0}}); err != nil {
		t.Fatal(err)
	}
	// A deleted group stays deleted; a reset group keeps its reset.
	if err := commitErr(e, "doomed", "", "", -1); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "delete", e.c.Delete(e.ctx, "doomed"), nil)
	wantErr(t, "set", e.c.SetOffsets(e.ctx, "reset", map[TopicPartition]Offset{{"t1", 0}: {Offset: 42, Metadata: "r"}}), nil)
	if err := commitErr(e, "gone", "", "", -1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.DeleteOffsets(e.ctx, "gone", []TopicPartition{{"t1", 0}}); err != nil {
		t.Fatal(err)
	}
	e.settle()
	before, _ := e.c.FetchOffsets(e.ctx, "g", nil)

	e.reopen()
	after, err := e.c.FetchOffsets(e.ctx, "g", nil)
	if err != nil || len(after) != 2 || after[TopicPartition{"t1", 0}].Offset != 5 {
		t.Fatalf("offsets after restart %v %v", after, err)
	}
	for tp, o := range before {
		a := after[tp]
		if a.Offset != o.Offset || a.LeaderEpoch != o.LeaderEpoch || a.Metadata != o.Metadata || !a.CommitTime.Equal(o.CommitTime) {
			t.Fatalf("%v: %+v after restart, %+v before", tp, a, o)
		}
	}
	if d := e.c.Describe("doomed"); d.State != "Dead" {
		t.Fatalf("deleted group after restart: %+v", d)
	}
	if got, _ := e.c.FetchOffsets(e.ctx, "reset", nil); got[TopicPartition{"t1", 0}].Offset != 42 || got[TopicPartition{"t1", 0}].Metadata != "r" {
		t.Fatalf("reset after restart: %v", got)
	}
	if got, _ := e.c.FetchOffsets(e.ctx, "gone", nil); len(got) != 0 {
		t.Fatalf("deleted offsets after restart: %v", got)
	}

	// The Stable generation survives: members keep their ids, generation
	// and assignment, and go on heartbeating and committing.
	d := e.c.Describe("g")
	if d.State != "Stable" || d.Generation != gen || len(d.Members) != 2 || string(d.Members[1].Assignment) != "a-"+ids[1] {
		t.Fatalf("group after restart %+v", d)
	}
	wantErr(t, "heartbeat after restart", e.c.Heartbeat(e.ctx, "g", ids[1], "", gen), nil)
	if s := e.c.Sync(e.ctx, SyncRequest{Group: "g", MemberID: ids[1], Generation: gen}); string(s.Assignment) != "a-"+ids[1] {
		t.Fatalf("sync after restart %+v", s)
	}
	wantErr(t, "commit after restart", commitErr(e, "g", ids[0], "", gen), nil)
	// Members that are gone expire as usual; the Empty group is stored
	// and restored Empty.
	e.advance(11 * time.Second)
	e.settle()
	e.reopen()
	if d := e.c.Describe("g"); d.State != "Empty" || d.Generation != gen+1 || len(d.Members) != 0 {
		t.Fatalf("emptied group after restart %+v", d)
	}
	wantErr(t, "delete restored", e.c.Delete(e.ctx, "g"), nil)
	e.reopen()
	if d := e.c.Describe("g"); d.State != "Dead" {
		t.Fatalf("deleted group after restart %+v", d)
	}
}

func TestPersistenceMemoryStore(t *testing.T) {
	persistenceScenario(t, newEnv(t, nil))
}

// logStore is a Store over a compacted commit log, as the broker's internal
// offsets topic: each Append is one record batch.
type logStore struct {
	log *commitlog.Log
	now func() time.Time
}

func (s *logStore) Append(ctx context.Context, recs []KV) error {
	rs := make([]batch.Rec, len(recs))
	for i, r := range recs {
		rs[i] = batch.Rec{Timestamp: s.now().UnixMilli(), Key: r.Key, Value: r.Value}
	}
	b, err := batch.Encode(nil, batch.BuildOptions{}, rs)
	if err != nil {
		return err
	}
	_, err = s.log.Append(ctx, b)
	return err
}

func (s *logStore) Replay(ctx context.Context, fn func(KV) error) error {
	var it batch.Iter
	var buf []byte
	for off := s.log.StartOffset(); off < s.log.HighWatermark(); {
		var err error
		if buf, err = s.log.Read(ctx, off, 1<<20, buf); err != nil {
			return err
		}
		for p := 0; p < len(buf); {
			h, err := batch.ParseHeader(buf[p:])
			if err != nil {
				return err
			}
			if err := it.Reset(buf[p : p+h.Size()]); err != nil {
				return err
			}
			for it.Next() {
				if it.Offset() < off {
					continue
				}
				r := it.Record()
				if err := fn(KV{Key: bytes.Clone(r.Key), Value: cloneNil(r.Value)}); err != nil {
					return err
				}
			}
			if err := it.Err(); err != nil {
				return err
			}
			p += h.Size()
			off = h.LastOffset() + 1
		}
	}
	return nil
}

func TestPersistenceCommitLog(t *testing.T) {
	dir := t.TempDir()
	st, err := commitlog.OpenStore(dir, commitlog.StoreOptions{Logger: quietLogger(t), CleanInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := st.OpenLog("__consumer_offsets-0", commitlog.Options{Cleanup: commitlog.CleanupCompact})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	ls := &logStore{log: l, now: clk.Now}
	e := &env{t: t, clk: clk, store: ls, ctx: t.Context()}
	e.cfg = Config{Store: ls, Logger: quietLogger(t), Now: clk.Now}
	e.open()
	t.Cleanup(func() { e.c.Close() })
	persistenceScenario(t, e)
}

// Undecodable records are logged, counted and skipped; the rest loads.
func TestReplaySkipsGarbage(t *testing.T) {
	ms := NewMemoryStore()
	good := func(group string, off int64) KV {
		return KV{Key: offsetKey(group, TopicPartition{"t", 0}), Value: encodeOffset(Offset{Offset: off, CommitTime: time.UnixMilli(1)})}
	}
	future := groupKey("g")
	future[1] = 2 // key version 2
	ms.Append(context.Background(), []KV{
		good("a", 1),
		{Key: []byte("garbage")},
		{Key: nil, Value: []byte{1}},
		{Key: offsetKey("a", TopicPartition{"t", 1}), Value: []byte{0, 1, 2}}, // truncated value
		{Key: future, Value: []byte{0, 2}},
		{Key: groupKey("b"), Value: append(encodeGroup(&groupRecord{}), 0)}, // trailing byte
		good("a", 2),
	})
	var logs bytes.Buffer
	reg := prometheus.NewPedanticRegistry()
	c, err := New(context.Background(), Config{Store: ms, Registerer: reg, Logger: slogTo(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, _ := c.FetchOffsets(context.Background(), "a", nil)
	if len(got) != 1 || got[TopicPartition{"t", 0}].Offset != 2 {
		t.Fatalf("offsets %v", got)
	}
	if n := gathered(t, reg)["herald_group_replay_skipped_total"]; n != 5 {
		t.Fatalf("skipped %v records, want 5", n)
	}
	if !strings.Contains(logs.String(), "skipping undecodable group record") {
		t.Fatalf("no log of skipped records:\n%s", logs.String())
	}
	if d := c.Describe("b"); d.State != "Dead" {
		t.Fatalf("group from an undecodable record: %+v", d)
	}
}

func TestReplayError(t *testing.T) {
	boom := errors.New("unreadable")
	_, err := New(context.Background(), Config{Store: failingReplay{boom}})
	if !errors.Is(err, boom) {
		t.Fatalf("New over a failing store: %v", err)
	}
}

type failingReplay struct{ err error }

func (f failingReplay) Append(context.Context, []KV) error           { return nil }
func (f failingReplay) Replay(context.Context, func(KV) error) error { return f.err }

func TestRecordRoundTrip(t *testing.T) {
	g := &groupRecord{generation: 7, protocolType: "consumer", protocol: "range", leader: "m1", stateTime: time.UnixMilli(12345),
		members: []memberRecord{{id: "m1", instanceID: "i1", clientID: "c", clientHost: "/h", session: 10 * time.Second,
			rebalance: time.Minute, protocols: []Protocol{{Name: "range", Metadata: []byte{1, 2}}, {Name: "rr"}}, assignment: []byte("x")}}}
	back, err := decodeGroup(encodeGroup(g))
	if err != nil || fmt.Sprintf("%+v", back) != fmt.Sprintf("%+v", g) {
		t.Fatalf("group round trip: %+v, %v", back, err)
	}
	o := Offset{Offset: -1, LeaderEpoch: -1, Metadata: "md", CommitTime: time.UnixMilli(99)}
	if back, err := decodeOffset(encodeOffset(o)); err != nil || back != o {
		t.Fatalf("offset round trip: %+v, %v", back, err)
	}
	k, err := decodeKey(offsetKey("grp", TopicPartition{"top", -3}))
	if err != nil || k != (recordKey{kind: kindOffset, group: "grp", tp: TopicPartition{"top", -3}}) {
		t.Fatalf("key round trip: %+v, %v", k, err)
	}
	// A pinned encoding: version 1 is frozen.
	want := "00010100036772700003746f70fffffffd"
	if got := fmt.Sprintf("%x", offsetKey("grp", TopicPartition{"top", -3})); got != want {
		t.Fatalf("offset key %s, want %s", got, want)
	}
}

// FuzzDecodeRecord: decoders never panic on garbage, and whatever decodes
// encodes back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(offsetKey("g", TopicPartition{"t", 1}), encodeOffset(Offset{Offset: 5, Metadata: "m", CommitTime: time.UnixMilli(3)}))
	f.Add(groupKey("g"), encodeGroup(&groupRecord{generation: 1, members: []memberRecord{{id: "m", protocols: []Protocol{{Name: "p"}}}}}))
	f.Add(groupKey(""), []byte{0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 1, 2, 0, 0}, []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{}, []byte(nil))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		k, err := decodeKey(key)
		if err != nil {
			return
		}
		switch k.kind {
		case kindOffset:
			if !bytes.Equal(offsetKey(k.group, k.tp), key) {
				t.Fatalf("offset key does not round-trip")
			}
			if o, err := decodeOffset(value); err == nil {
				o2, err := decodeOffset(encodeOffset(o))
				if err != nil || o2 != o {
					t.Fatalf("offset value does not round-trip: %+v %+v %v", o, o2, err)
				}
			}
		case kindGroup:
			if !bytes.Equal(groupKey(k.group), key) {
				t.Fatalf("group key does not round-trip")
			}
			if g, err := decodeGroup(value); err == nil && !bytes.Equal(encodeGroup(g), value) {
				t.Fatalf("group value does not round-trip")
			}
		}
		// Replay of the record must not panic either.
		ms := NewMemoryStore()
		ms.Append(context.Background(), []KV{{Key: key, Value: value}})
		c, err := New(context.Background(), Config{Store: ms, Logger: slogTo(nil)})
		if err != nil {
			t.Fatal(err)
		}
		c.List(nil)
		c.Close()
	})
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	e := newEnv(t, func(c *Config) {
		c.Registerer = reg
		c.HighWatermark = func(topic string, p int32) (int64, bool) { return 100, topic == "t1" || topic == "t3" }
		// The record at offset 40 of t1 was written 90 s before the clock.
		c.RecordTimestamp = func(topic string, p int32, off int64) (int64, bool) {
			if topic == "t1" && off == 40 {
				return c.Now().Add(-90 * time.Second).UnixMilli(), true
			}
			return 0, false
		}
	})
	ids, gen := e.stableGroup("g", 2)
	if _, err := e.c.CommitOffsets(e.ctx, "g", ids[0], "", gen, map[TopicPartition]Offset{{"t1", 0}: {Offset: 40}, {"t2", 0}: {Offset: 1}, {"t3", 0}: {Offset: 100}}); err != nil {
		t.Fatal(err)
	}
	got := gathered(t, reg)
	for name, want := range map[string]float64{
		`herald_group_groups{state="Stable"}`:                          1,
		`herald_group_groups{state="Empty"}`:                           0,
		`herald_group_lag{group="g",partition="0",topic="t1"}`:         60,
		`herald_group_members`:                                         2,
		`herald_group_lag_seconds{group="g",partition="0",topic="t1"}`: 90,
		`herald_group_lag_seconds{group="g",partition="0",topic="t3"}`: 0,
		`herald_group_lag{group="g",partition="0",topic="t3"}`:         0,
		`herald_group_offset_commits_total`:                            3,
		`herald_group_rebalances_total`:                                2,
		`herald_group_member_removals_total{reason="session_timeout"}`: 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	if _, ok := got[`herald_group_lag{group="g",partition="0",topic="t2"}`]; ok {
		t.Error("lag reported for a partition without a high watermark")
	}
	if err := e.c.Close(); err != nil {
		t.Fatal(err)
	}
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Fatalf("%d metric families left after Close", len(mfs))
	}
	// A second coordinator can register on the same registry.
	e.open()
}

// gathered flattens a registry into "name{label=value,...}" -> value.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if len(ls) > 0 {
				name += "{" + strings.Join(ls, ",") + "}"
			}
			out[name] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}
