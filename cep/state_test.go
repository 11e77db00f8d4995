package cep

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestStateRoundTrip runs random patterns over random streams twice: once
// straight, once through MarshalState and RestoreState into a new engine
// after every event. Matches and timeouts must be the same.
func TestStateRoundTrip(t *testing.T) {
	iters := 1000
	if testing.Short() {
		iters = 200
	}
	rng := rand.New(rand.NewPCG(7, 8))
	nonEmpty := 0
	for it := 0; it < iters; it++ {
		p := randomPattern(rng)
		p.Key = "data.user"
		p.EmitTimeouts = rng.IntN(2) == 0
		straight, err := NewEngine(p)
		if err != nil {
			t.Fatal(err)
		}
		var want, got rec
		resumed, _ := NewEngine(p)
		sec := 0
		for i := 0; i < 14; i++ {
			sec += rng.IntN(3)
			user := []string{"u", "w", "x"}[rng.IntN(3)]
			e := mk(fmt.Sprint(i), string(rune('a'+rng.IntN(3))), user, sec)
			e.Data = []byte(fmt.Sprintf(`{"user":%q,"v":%d}`, user, rng.IntN(4)))
			straight.Process(e, &want)
			resumed.Process(e, &got)
			b, err := resumed.MarshalState()
			if err != nil {
				t.Fatal(err)
			}
			resumed, _ = NewEngine(p)
			if err := resumed.RestoreState(b); err != nil {
				t.Fatalf("iteration %d: restore: %v\n%s", it, err, b)
			}
			if sw, sg := straight.Stats(), resumed.Stats(); sw != sg {
				t.Fatalf("iteration %d event %d: stats %+v after restore, want %+v", it, i, sg, sw)
			}
		}
		straight.Flush(&want)
		resumed.Flush(&got)
		if strings.Join(got.matches, "|") != strings.Join(want.matches, "|") || strings.Join(got.timeouts, "|") != strings.Join(want.timeouts, "|") {
			pj, _ := json.Marshal(p)
			t.Fatalf("iteration %d pattern %s\nresumed  %q %q\nstraight %q %q", it, pj, got.matches, got.timeouts, want.matches, want.timeouts)
		}
		if len(want.matches) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < iters/4 {
		t.Errorf("only %d of %d iterations matched: the test is too weak", nonEmpty, iters)
	}
}

// TestRestoreStateCorrupt: bad snapshots are refused with ErrCorruptState
// naming the part, and leave the engine as it was.
func TestRestoreStateCorrupt(t *testing.T) {
	p := Pattern{Name: "c", Key: "data.user", Steps: []Step{{Name: "s0", Match: typ("a")},
		{Name: "s1", Match: typ("b"), Where: []Compare{{Field: "data.v", Op: ">", Step: "s0"}}}}}
	for _, c := range []struct{ state, want string }{
		{`not json`, "corrupt"},
		{`{"v":2}`, "version 2"},
		{`{"v":1,"nodes":[{"p":0,"id":"x","t":0,"is":0,"v":["1"],"h":true}]}`, "nodes[0].p"},
		{`{"v":1,"nodes":[{"p":-1,"id":"x","t":0,"is":5,"h":true}]}`, "nodes[0].is"},
		{`{"v":1,"nodes":[{"p":-1,"id":"x","t":0,"is":0}]}`, "nodes[0].v"},
		{`{"v":1,"nodes":[{"p":-1,"id":"x","t":0,"is":0,"v":["1"],"h":true}],"parts":[{"k":"u","i":1,"r":[{"l":1,"t":0,"i":0,"s":0,"c":1}]}]}`, "parts[0].r[0].l"},
		{`{"v":1,"nodes":[{"p":-1,"id":"x","t":0,"is":0,"v":["1"],"h":true}],"parts":[{"k":"u","i":1,"r":[{"l":0,"t":0,"i":0,"s":9,"c":1}]}]}`, "parts[0].r[0]: step 9"},
		{`{"v":1,"parts":[{"k":"u"},{"k":"u"}]}`, "twice"},
	} {
		eng, _ := NewEngine(p)
		var r rec
		eng.Process(mk("a1", "a", "u", 1), &r)
		before, _ := eng.MarshalState()
		err := eng.RestoreState([]byte(c.state))
		if !errors.Is(err, ErrCorruptState) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrCorruptState naming %q", c.state, err, c.want)
		}
		if after, _ := eng.MarshalState(); string(after) != string(before) {
			t.Errorf("%s: the engine changed", c.state)
		}
	}
}

// FuzzRestoreState: no snapshot crashes RestoreState or the engine that
// accepted it.
func FuzzRestoreState(f *testing.F) {
	p := Pattern{Name: "c", Key: "data.user", Within: 10e9, EmitTimeouts: true, Steps: []Step{{Name: "s0", Match: typ("a"), Min: 1, Max: -1},
		{Name: "s1", Match: typ("b"), Where: []Compare{{Field: "data.v", Op: ">", Step: "s0"}}}}}
	eng, _ := NewEngine(p)
	var r rec
	for i, ty := range []string{"a", "a", "c", "a"} {
		eng.Process(mk(fmt.Sprint(i), ty, "u", i), &r)
	}
	seed, _ := eng.MarshalState()
	f.Add(seed)
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		eng, _ := NewEngine(p)
		if err := eng.RestoreState(b); err != nil {
			return
		}
		var r rec
		for i, ty := range []string{"a", "b", "c", "b"} {
			eng.Process(mk(fmt.Sprint("f", i), ty, "u", 3+i), &r)
		}
		eng.Flush(&r)
		if _, err := eng.MarshalState(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzRestoreChanges: no incremental checkpoint (a global record and a
// key's) crashes RestoreChanges or the engine that accepted it.
func FuzzRestoreChanges(f *testing.F) {
	p := Pattern{Name: "c", Key: "data.user", Within: 10e9, EmitTimeouts: true, Steps: []Step{{Name: "s0", Match: typ("a"), Min: 1, Max: -1},
		{Name: "s1", Match: typ("b"), Where: []Compare{{Field: "data.v", Op: ">", Step: "s0"}}}}}
	eng, _ := NewEngine(p)
	eng.TrackChanges()
	var r rec
	for i, ty := range []string{"a", "a", "c", "a"} {
		eng.Process(mk(fmt.Sprint(i), ty, "u", i), &r)
	}
	g, keys, _ := eng.MarshalChanges()
	f.Add(g, "u", keys["u"])
	f.Add([]byte(`{"v":1}`), "u", []byte(`{"v":1,"nodes":[{"p":-1,"id":"x","t":1,"is":0}],"parts":[{"k":"u","i":1,"r":[{"l":0,"t":1,"i":0,"s":0,"c":1}]}]}`))
	f.Fuzz(func(t *testing.T, global []byte, key string, kb []byte) {
		eng, _ := NewEngine(p)
		if err := eng.RestoreChanges(global, map[string][]byte{key: kb}); err != nil {
			return
		}
		eng.TrackChanges()
		var r rec
		for i, ty := range []string{"a", "b", "c", "b"} {
			eng.Process(mk(fmt.Sprint("f", i), ty, "u", 3+i), &r)
		}
		eng.Flush(&r)
		if _, _, err := eng.MarshalChanges(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseYAML: no pattern text crashes ParseYAML, and what it accepts
// runs.
func FuzzParseYAML(f *testing.F) {
	f.Add([]byte("name: F\nkey: data.user\nwithin: 10m\nsteps:\n  - {name: f, match: {type: [a]}, min: 3, max: 3}\n  - {name: s, match: {type: [b]}}\n"))
	f.Add([]byte(`{"name":"x","steps":[{"name":"a"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseYAML(b)
		if err != nil {
			return
		}
		eng, err := NewEngine(p)
		if err != nil {
			t.Fatalf("ParseYAML accepted a pattern NewEngine refuses: %v", err)
		}
		var r rec
		eng.Process(mk("1", "a", "u", 1), &r)
	})
}

// TestIncrementalState runs random patterns over random streams twice:
// straight, and through incremental checkpoints (MarshalChanges after
// every batch, applied to a store of keys, restored with RestoreChanges
// into a new engine at random points). Matches, timeouts and the full
// state must be the same, and a batch writes only the keys it touched.
func TestIncrementalState(t *testing.T) {
	iters := 500
	if testing.Short() {
		iters = 100
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for it := 0; it < iters; it++ {
		p := randomPattern(rng)
		p.Key = "data.user"
		p.EmitTimeouts = rng.IntN(2) == 0
		straight, err := NewEngine(p)
		if err != nil {
			t.Fatal(err)
		}
		var want, got rec
		inc, _ := NewEngine(p)
		inc.TrackChanges()
		var global []byte
		store := map[string][]byte{}
		sec := 0
		all := true // the first call after TrackChanges writes every key
		for batch := 0; batch < 6; batch++ {
			touched := map[string]bool{}
			for i := 0; i < 1+rng.IntN(4); i++ {
				sec += rng.IntN(3)
				user := []string{"u", "w", "x", "y", "z"}[rng.IntN(5)]
				touched[user] = true
				e := mk(fmt.Sprint(batch, "-", i), string(rune('a'+rng.IntN(3))), user, sec)
				e.Data = []byte(fmt.Sprintf(`{"user":%q,"v":%d}`, user, rng.IntN(4)))
				straight.Process(e, &want)
				inc.Process(e, &got)
			}
			g, keys, err := inc.MarshalChanges()
			if err != nil {
				t.Fatal(err)
			}
			if !all {
				for k := range keys {
					if !touched[k] {
						t.Fatalf("iteration %d batch %d: key %q written but not touched", it, batch, k)
					}
				}
			}
			all = false
			global = g
			for k, v := range keys {
				if v == nil {
					delete(store, k)
				} else {
					store[k] = v
				}
			}
			if rng.IntN(2) == 0 {
				inc, _ = NewEngine(p)
				if err := inc.RestoreChanges(global, store); err != nil {
					t.Fatalf("iteration %d: restore: %v", it, err)
				}
				inc.TrackChanges()
				all = true
			}
			sb, _ := straight.MarshalState()
			ib, _ := inc.MarshalState()
			if string(sb) != string(ib) {
				t.Fatalf("iteration %d batch %d: state differs:\n straight %s\n incremental %s", it, batch, sb, ib)
			}
		}
		straight.Flush(&want)
		inc.Flush(&got)
		if strings.Join(got.matches, "|") != strings.Join(want.matches, "|") || strings.Join(got.timeouts, "|") != strings.Join(want.timeouts, "|") {
			pj, _ := json.Marshal(p)
			t.Fatalf("iteration %d pattern %s\nincremental %q %q\nstraight    %q %q", it, pj, got.matches, got.timeouts, want.matches, want.timeouts)
		}
	}
	// A key's record must hold exactly its partition.
	e, _ := NewEngine(fraud())
	if err := e.RestoreChanges([]byte(`{"v":1}`), map[string][]byte{"a": []byte(`{"v":1,"nodes":[],"parts":[{"k":"b","i":0}]}`)}); !errors.Is(err, ErrCorruptState) {
		t.Errorf("a key holding another key's partition: %v", err)
	}
}
