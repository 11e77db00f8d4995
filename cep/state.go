package cep

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// ErrCorruptState wraps the errors of RestoreState.
var ErrCorruptState = errors.New("cep: corrupt state")

// The state encoding: every node reachable from a partial match once
// (nodes are shared between runs), each naming its predecessor by its
// position in the list, which always comes before it.
type stateJSON struct {
	V     int        `json:"v"`
	Nodes []nodeJSON `json:"nodes"`
	Parts []partJSON `json:"parts"`
	Stats statsJSON  `json:"stats"`
}

type statsJSON struct {
	Events, Matches, Timeouts, Invalid int64
}

type nodeJSON struct {
	Prev int      `json:"p"` // -1: none
	ID   string   `json:"id"`
	T    int64    `json:"t"`
	IS   int64    `json:"is"`
	Vals []string `json:"v,omitempty"`
	Has  bool     `json:"h,omitempty"` // vals is set (possibly empty)
}

type runJSON struct {
	Last     int    `json:"l"`
	StartT   int64  `json:"t"`
	StartIdx int64  `json:"i"`
	Blocked  uint32 `json:"b,omitempty"`
	Step     int16  `json:"s"`
	Count    int16  `json:"c"`
}

type partJSON struct {
	Key     string    `json:"k"`
	Idx     int64     `json:"i"`
	Runs    []runJSON `json:"r,omitempty"`
	Pending []runJSON `json:"p,omitempty"`
}

// MarshalState encodes the engine's partial matches, pending matches,
// arrival counters and counters, for RestoreState on an engine of the
// same pattern.
func (e *Engine) MarshalState() ([]byte, error) {
	keys := make([]string, 0, len(e.parts))
	for k := range e.parts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := e.snapshot(keys)
	s.Stats = e.statsJSON()
	return json.Marshal(s)
}

func (e *Engine) statsJSON() statsJSON {
	return statsJSON{e.stats.Events, e.stats.Matches, e.stats.Timeouts, e.stats.Invalid}
}

// snapshot encodes the partitions of keys (present in e.parts) with the
// nodes they reach.
func (e *Engine) snapshot(keys []string) stateJSON {
	s := stateJSON{V: 1}
	ids := map[*node]int{}
	var add func(n *node) int
	add = func(n *node) int {
		if n == nil {
			return -1
		}
		if i, ok := ids[n]; ok {
			return i
		}
		prev := add(n.prev)
		nj := nodeJSON{Prev: prev, ID: n.id, T: n.t, IS: n.is}
		if n.vals != nil {
			nj.Vals, nj.Has = *n.vals, true
		}
		s.Nodes = append(s.Nodes, nj)
		ids[n] = len(s.Nodes) - 1
		return len(s.Nodes) - 1
	}
	conv := func(rs []run) []runJSON {
		out := make([]runJSON, 0, len(rs))
		for _, r := range rs {
			out = append(out, runJSON{Last: add(r.last), StartT: r.startT, StartIdx: r.startIdx, Blocked: r.blocked, Step: r.step, Count: r.count})
		}
		return out
	}
	for _, k := range keys {
		p := e.parts[k]
		s.Parts = append(s.Parts, partJSON{Key: k, Idx: p.idx, Runs: conv(p.runs), Pending: conv(p.pending)})
	}
	return s
}

// TrackChanges makes the engine remember the partitions whose state
// changes, for MarshalChanges (incremental checkpoints). The first
// MarshalChanges after it returns every partition.
func (e *Engine) TrackChanges() {
	e.dirty, e.allDirty = map[string]struct{}{}, true
}

// MarshalChanges returns the counters (global) and the state of each
// partition that changed since the previous call, by key (nil: the
// partition holds nothing any more); see TrackChanges. RestoreChanges
// reads what the calls wrote.
func (e *Engine) MarshalChanges() (global []byte, keys map[string][]byte, err error) {
	var changed []string
	for k := range e.dirty { // with allDirty too: the partitions deleted since
		changed = append(changed, k)
	}
	if e.allDirty {
		for k := range e.parts {
			if _, ok := e.dirty[k]; !ok {
				changed = append(changed, k)
			}
		}
	}
	keys = make(map[string][]byte, len(changed))
	for _, k := range changed {
		if e.parts[k] == nil {
			keys[k] = nil
			continue
		}
		if keys[k], err = json.Marshal(e.snapshot([]string{k})); err != nil {
			return nil, nil, err
		}
	}
	if global, err = json.Marshal(stateJSON{V: 1, Stats: e.statsJSON()}); err != nil {
		return nil, nil, err
	}
	clear(e.dirty)
	e.allDirty = false
	return global, keys, nil
}

// RestoreChanges replaces the engine's state with the global state and
// the partitions that MarshalChanges wrote. Errors wrap ErrCorruptState;
// the engine is then unchanged.
func (e *Engine) RestoreChanges(global []byte, keys map[string][]byte) error {
	var s stateJSON
	if err := json.Unmarshal(global, &s); err != nil {
		return fmt.Errorf("%w: global: %v", ErrCorruptState, err)
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		var ks stateJSON
		if err := json.Unmarshal(keys[k], &ks); err != nil {
			return fmt.Errorf("%w: key %q: %v", ErrCorruptState, k, err)
		}
		if len(ks.Parts) != 1 || ks.Parts[0].Key != k {
			return fmt.Errorf("%w: key %q does not hold its one partition", ErrCorruptState, k)
		}
		base := len(s.Nodes)
		for _, nj := range ks.Nodes {
			if nj.Prev >= 0 {
				nj.Prev += base
			}
			s.Nodes = append(s.Nodes, nj)
		}
		pj := ks.Parts[0]
		for _, rs := range [][]runJSON{pj.Runs, pj.Pending} {
			for i := range rs {
				if rs[i].Last < 0 || rs[i].Last >= len(ks.Nodes) {
					return fmt.Errorf("%w: key %q: run ends at node %d of %d", ErrCorruptState, k, rs[i].Last, len(ks.Nodes))
				}
				rs[i].Last += base
			}
		}
		s.Parts = append(s.Parts, pj)
	}
	return e.restore(&s)
}

// RestoreState replaces the engine's state with one MarshalState wrote
// (for the same pattern). Errors wrap ErrCorruptState; the engine is then
// unchanged.
func (e *Engine) RestoreState(b []byte) error {
	var s stateJSON
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptState, err)
	}
	return e.restore(&s)
}

func (e *Engine) restore(s *stateJSON) error {
	if s.V != 1 {
		return fmt.Errorf("%w: version %d, want 1", ErrCorruptState, s.V)
	}
	nodes := make([]*node, len(s.Nodes))
	for i, nj := range s.Nodes {
		if nj.Prev < -1 || nj.Prev >= i {
			return fmt.Errorf("%w: nodes[%d].p: %d is not an earlier node", ErrCorruptState, i, nj.Prev)
		}
		n := &node{id: nj.ID, t: nj.T, is: nj.IS}
		st := n.step()
		if nj.IS < 0 || st >= e.n {
			return fmt.Errorf("%w: nodes[%d].is: step %d of %d", ErrCorruptState, i, st, e.n)
		}
		if caps := e.c.capture[st]; len(caps) > 0 {
			if !nj.Has || len(nj.Vals) != len(caps) {
				return fmt.Errorf("%w: nodes[%d].v: %d values, step %d captures %d", ErrCorruptState, i, len(nj.Vals), st, len(caps))
			}
			vals := append([]string(nil), nj.Vals...)
			n.vals = &vals
		}
		if nj.Prev >= 0 {
			n.prev = nodes[nj.Prev]
		}
		nodes[i] = n
	}
	conv := func(where string, rs []runJSON) ([]run, error) {
		out := make([]run, 0, len(rs))
		for i, r := range rs {
			if r.Last < 0 || r.Last >= len(nodes) {
				return nil, fmt.Errorf("%w: %s[%d].l: node %d of %d", ErrCorruptState, where, i, r.Last, len(nodes))
			}
			if r.Step < 0 || int(r.Step) >= e.n || r.Count < 0 {
				return nil, fmt.Errorf("%w: %s[%d]: step %d count %d", ErrCorruptState, where, i, r.Step, r.Count)
			}
			out = append(out, run{last: nodes[r.Last], startT: r.StartT, startIdx: r.StartIdx, blocked: r.Blocked, step: r.Step, count: r.Count})
		}
		return out, nil
	}
	parts := make(map[string]*partition, len(s.Parts))
	for i, pj := range s.Parts {
		if _, dup := parts[pj.Key]; dup {
			return fmt.Errorf("%w: parts[%d].k: key %q twice", ErrCorruptState, i, pj.Key)
		}
		runs, err := conv(fmt.Sprintf("parts[%d].r", i), pj.Runs)
		if err != nil {
			return err
		}
		pending, err := conv(fmt.Sprintf("parts[%d].p", i), pj.Pending)
		if err != nil {
			return err
		}
		parts[pj.Key] = &partition{runs: runs, pending: pending, idx: pj.Idx}
	}
	e.parts = parts
	e.stats = Stats{Events: s.Stats.Events, Matches: s.Stats.Matches, Timeouts: s.Stats.Timeouts, Invalid: s.Stats.Invalid}
	return nil
}
