package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
)

// TestSnapshotRestoreEquivalence cuts random streams at a random point,
// snapshots, restores into a new Processor and demands the same output as
// an uncut run, for every window kind and aggregate.
func TestSnapshotRestoreEquivalence(t *testing.T) {
	windows := []Window{TumblingWindow(10 * time.Second), HoppingWindow(10*time.Second, 5*time.Second),
		SessionWindow(4 * time.Second), SlidingWindow(6 * time.Second)}
	aggs := []Agg{{Kind: Count}, {Kind: Sum, Field: "data.total", Name: "sum"}, {Kind: Avg, Field: "data.total", Name: "avg"},
		{Kind: Min, Field: "data.total", Name: "min"}, {Kind: Max, Field: "data.total", Name: "max"},
		{Kind: CountDistinct, Field: "data.total", Name: "d"}, {Kind: TopK, Field: "data.total", K: 2, Name: "top"}}
	for seed := uint64(0); seed < 20; seed++ {
		for _, w := range windows {
			for _, emit := range []EmitMode{EmitFinal, EmitChanges} {
				rng := rand.New(rand.NewPCG(seed, 9))
				cfg := Config{Key: "data.user", Window: w, Aggs: aggs, MaxOutOfOrder: 3 * time.Second, Grace: Grace(2 * time.Second), Emit: emit}
				var evs []*event.Event
				sec := 0
				for i := 0; i < 100; i++ {
					sec += rng.IntN(3)
					evs = append(evs, ev(fmt.Sprint(i), fmt.Sprintf("u%d", rng.IntN(3)), sec-rng.IntN(6), float64(rng.IntN(20))))
				}
				cut := rng.IntN(len(evs))
				var whole, split rec
				p := newP(t, cfg)
				for i, e := range evs {
					p.Process(int32(i%2), e, &whole)
				}
				p.Flush(&whole)
				p1 := newP(t, cfg)
				for i, e := range evs[:cut] {
					p1.Process(int32(i%2), e, &split)
				}
				snap, err := p1.MarshalState()
				if err != nil {
					t.Fatal(err)
				}
				p2 := newP(t, cfg)
				if err := p2.RestoreState(snap); err != nil {
					t.Fatal(err)
				}
				for i, e := range evs[cut:] {
					p2.Process(int32((cut+i)%2), e, &split)
				}
				p2.Flush(&split)
				if strings.Join(whole.results, "\n") != strings.Join(split.results, "\n") || strings.Join(whole.late, ",") != strings.Join(split.late, ",") {
					t.Fatalf("seed %d %v emit %d cut %d:\nwhole\n%s\nsplit\n%s", seed, w.Kind, emit, cut,
						strings.Join(whole.results, "\n"), strings.Join(split.results, "\n"))
				}
				if p2.Stats().Events != int64(len(evs)) {
					t.Fatalf("restored counters: %+v", p2.Stats())
				}
			}
		}
	}
}

func TestRestoreRefusesOtherDefinitionAndCorruption(t *testing.T) {
	cfg := Config{Key: "data.user", Window: TumblingWindow(time.Second), Aggs: []Agg{{Kind: Count}}, Grace: Grace(0), Emit: EmitFinal}
	p := newP(t, cfg)
	var r rec
	p.Process(0, ev("1", "a", 0, 1), &r)
	snap, err := p.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := cfg
	cfg2.Window = TumblingWindow(time.Minute)
	if err := newP(t, cfg2).RestoreState(snap); err == nil || !strings.Contains(err.Error(), "another definition") {
		t.Fatalf("restore under another window: %v", err)
	}
	bad := append([]byte(nil), snap...)
	bad[len(bad)-1] ^= 1
	if err := newP(t, cfg).RestoreState(bad); !errors.Is(err, ErrCorruptState) {
		t.Fatalf("flipped bit: %v", err)
	}
	if err := newP(t, cfg).RestoreState(snap[:len(snap)-1]); !errors.Is(err, ErrCorruptState) {
		t.Fatalf("torn snapshot: %v", err)
	}
}

func FuzzRestoreState(f *testing.F) {
	cfg := Config{Key: "data.user", Window: SessionWindow(time.Second), Aggs: []Agg{{Kind: Count}, {Kind: CountDistinct, Field: "data.user", Name: "d"}},
		Grace: Grace(0), Emit: EmitFinal}
	p, _ := New(cfg)
	var r rec
	p.Process(0, ev("1", "a", 0, 1), &r)
	snap, _ := p.MarshalState()
	f.Add(snap)
	f.Add([]byte("HSTS\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, _ := New(cfg)
		if err := q.RestoreState(b); err != nil {
			return
		}
		// A restored processor must keep working.
		q.Process(0, ev("2", "b", 5, 1), &r)
		q.Flush(&r)
	})
}

// TestIncrementalState runs random streams through every window kind
// twice: straight, and through incremental checkpoints (MarshalChanges
// after every batch, applied to a store of keys, restored with
// RestoreChanges into a new Processor at random points). Results and the
// full state must be the same.
func TestIncrementalState(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	windows := []Window{TumblingWindow(10 * time.Second), HoppingWindow(10*time.Second, 5*time.Second),
		SessionWindow(4 * time.Second), SlidingWindow(6 * time.Second)}
	for it := 0; it < 200; it++ {
		cfg := Config{Key: "data.user", Window: windows[it%len(windows)],
			Aggs: []Agg{{Kind: Count}, {Kind: Sum, Field: "data.total", Name: "sum"}, {Kind: CountDistinct, Field: "data.total", Name: "d"},
				{Kind: TopK, Field: "data.user", K: 2, Name: "top"}},
			MaxOutOfOrder: time.Duration(rng.IntN(3)) * time.Second, Grace: Grace(time.Duration(rng.IntN(3)) * time.Second),
			Emit: []EmitMode{EmitFinal, EmitChanges}[rng.IntN(2)],
			Now:  func() time.Time { return t0 }} // both sides see the same processing time
		straight := newP(t, cfg)
		inc := newP(t, cfg)
		inc.TrackChanges()
		var want, got rec
		var global []byte
		store := map[string][]byte{}
		sec := 0
		for batch := 0; batch < 8; batch++ {
			for i := 0; i < 1+rng.IntN(5); i++ {
				sec += rng.IntN(4)
				e := ev(fmt.Sprint(batch, "-", i), []string{"a", "b", "c", "d"}[rng.IntN(4)], sec-rng.IntN(3), float64(rng.IntN(5)))
				straight.Process(0, e, &want)
				inc.Process(0, e, &got)
			}
			g, keys, err := inc.MarshalChanges()
			if err != nil {
				t.Fatal(err)
			}
			global = g
			for k, v := range keys {
				if v == nil {
					delete(store, k)
				} else {
					store[k] = v
				}
			}
			if rng.IntN(2) == 0 {
				inc = newP(t, cfg)
				if err := inc.RestoreChanges(global, store); err != nil {
					t.Fatalf("iteration %d batch %d: restore: %v", it, batch, err)
				}
				inc.TrackChanges()
			}
			sb, _ := straight.MarshalState()
			ib, _ := inc.MarshalState()
			if !bytes.Equal(sb, ib) {
				t.Fatalf("iteration %d (%v, emit %d) batch %d: the state differs", it, cfg.Window, cfg.Emit, batch)
			}
		}
		straight.Flush(&want)
		inc.Flush(&got)
		if strings.Join(got.results, "\n") != strings.Join(want.results, "\n") || strings.Join(got.late, " ") != strings.Join(want.late, " ") {
			t.Fatalf("iteration %d (%v): results differ:\n incremental %q\n straight    %q", it, cfg.Window, got.results, want.results)
		}
	}
}

// TestIncrementalStateWritesChangedKeys: after the first call, a
// checkpoint holds only the keys whose windows changed, and a key whose
// windows all closed is written as gone.
func TestIncrementalStateWritesChangedKeys(t *testing.T) {
	p := newP(t, Config{Key: "data.user", Window: TumblingWindow(10 * time.Second), Aggs: []Agg{{Kind: Count}}, Grace: Grace(0), Emit: EmitFinal})
	p.TrackChanges()
	var r rec
	for i, u := range []string{"a", "b", "c"} {
		p.Process(0, ev(fmt.Sprint(i), u, 1, 1), &r)
	}
	if _, keys, _ := p.MarshalChanges(); len(keys) != 3 {
		t.Fatalf("first call: %d keys, want 3", len(keys))
	}
	p.Process(0, ev("3", "a", 2, 1), &r)
	if _, keys, _ := p.MarshalChanges(); len(keys) != 1 || keys["a"] == nil {
		t.Fatalf("after an event of a: keys %v, want a only", keys)
	}
	p.Process(0, ev("4", "b", 12, 1), &r) // closes [0,10) of a, b and c; opens [10,20) of b
	_, keys, _ := p.MarshalChanges()
	if len(keys) != 3 || keys["a"] != nil || keys["c"] != nil || keys["b"] == nil {
		t.Fatalf("after the close: keys %v, want a and c gone, b written", keys)
	}
}

// FuzzRestoreChanges: no key state crashes RestoreChanges or the
// Processor that accepted it.
func FuzzRestoreChanges(f *testing.F) {
	cfg := Config{Key: "data.user", Window: SlidingWindow(5 * time.Second), Grace: Grace(time.Second), Emit: EmitFinal,
		Aggs: []Agg{{Kind: Count}, {Kind: CountDistinct, Field: "data.total", Name: "d"}, {Kind: TopK, Field: "data.user", K: 2, Name: "t"}}}
	for _, w := range []Window{SlidingWindow(5 * time.Second), SessionWindow(3 * time.Second), TumblingWindow(5 * time.Second)} {
		cfg.Window = w
		p, _ := New(cfg)
		p.TrackChanges()
		var r rec
		for i, u := range []string{"a", "b", "a"} {
			p.Process(0, ev(fmt.Sprint(i), u, i, float64(i)), &r)
		}
		_, keys, _ := p.MarshalChanges()
		f.Add(int(w.Kind), keys["a"])
	}
	f.Fuzz(func(t *testing.T, kind int, b []byte) {
		cfg.Window = []Window{SlidingWindow(5 * time.Second), SessionWindow(3 * time.Second), TumblingWindow(5 * time.Second)}[uint(kind)%3]
		src, _ := New(cfg)
		global, _, _ := src.MarshalChanges()
		p, _ := New(cfg)
		if err := p.RestoreChanges(global, map[string][]byte{"a": b}); err != nil {
			return
		}
		var r rec
		for i, u := range []string{"a", "b", "a"} {
			p.Process(0, ev(fmt.Sprint("f", i), u, 10+i, 1), &r)
		}
		p.Flush(&r)
		if _, _, err := p.MarshalChanges(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestKeyStateRoundTripAndErrors: a key state decodes to exactly what was
// encoded (a nil sketch stays nil, an empty one empty), and a corrupt one
// fails with ErrCorruptState naming the field.
func TestKeyStateRoundTripAndErrors(t *testing.T) {
	ws := []winSnap{{Key: "k", Start: -5, Last: 1 << 40, Nums: []float64{1.5, -2},
		HLL: [][]byte{nil, {}, {1, 2}}, Top: []map[string]int64{{"": 1, "x": -2}, {}}}}
	slides := []slideSnap{{Key: "k", Evs: []slideEvSnap{{T: 3, Nums: []float64{1}, Strs: [][]byte{{}}}, {T: 4, Nums: []float64{}}}, Ends: []int64{4, -1}}}
	b := encodeKeyState("fp", ws, slides)
	gw, gs, err := decodeKeyState(b, "k", "fp")
	if err != nil || !reflect.DeepEqual(gw, ws) || !reflect.DeepEqual(gs, slides) {
		t.Fatalf("%+v %+v %v", gw, gs, err)
	}
	if _, _, err := decodeKeyState(b, "k", "other"); err == nil || errors.Is(err, ErrCorruptState) {
		t.Fatalf("another definition: %v", err)
	}

	// withPayload is a key state around payload, with good checksums.
	withPayload := func(payload []byte) []byte {
		b := append(make([]byte, keyStateHeader), payload...)
		copy(b, keyStateMagic)
		b[4] = keyStateVersion
		binary.BigEndian.PutUint32(b[5:], crc32.Checksum(b[keyStateHeader:], crcTable))
		binary.BigEndian.PutUint32(b[9:], crc32.Checksum([]byte("fp"), crcTable))
		return b
	}
	payload := b[keyStateHeader:]
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"truncated", payload[:len(payload)-1], "key state: window end count 2 exceeds what the 1 bytes left can hold"},
		{"trailing", append(slices.Clone(payload), 0), "key state: 1 bytes after the state"},
		{"window count", []byte{200, 1}, "key state: window count 200 exceeds what the 0 bytes left can hold"},
		{"overlong varint", append([]byte{1}, bytes.Repeat([]byte{0x80}, 11)...), "key state: window start overflows 64 bits"},
		{"float count", []byte{1, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "key state: window value count 2 exceeds what the 9 bytes left can hold"},
		{"sketch length", []byte{1, 0, 0, 0, 1, 9, 1}, "key state: sketch length 8 exceeds the 1 bytes left"},
		{"strings and values", []byte{0, 1, 1, 0, 0, 1, 1, 0}, "key state: a sliding event with 0 values and 1 strings"},
	} {
		_, _, err := decodeKeyState(withPayload(tc.payload), "k", "fp")
		if !errors.Is(err, ErrCorruptState) || !strings.HasSuffix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
