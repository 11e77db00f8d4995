package stream

import (
	"errors"
	"fmt"
	"math/rand/v2"
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
