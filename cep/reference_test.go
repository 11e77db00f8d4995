package cep

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
)

// reference computes a pattern's matches over one partition's events by
// brute force from the declarative definition (see doc.go): it enumerates
// every assignment of events to steps, keeps those that satisfy the
// conditions, contiguity, negations, greediness and within, orders them by
// when the engine would emit them, and applies the skip strategy.
func reference(c *compiled, evs []*event.Event) []string {
	n := len(evs)
	mask := make([]uint64, n)
	ts := make([]int64, n)
	for i, e := range evs {
		for _, name := range c.mach.MatchEvent(e, nil) {
			k, _ := strconv.Atoi(name)
			mask[i] |= 1 << uint(k)
		}
		ts[i] = e.Time.UnixNano()
	}
	condOf := func(cond, i int) bool { return cond < 0 || mask[i]&(1<<uint(cond)) != 0 }
	// cond reports whether event i satisfies positive step j given the
	// events matched so far (chain, steps).
	cond := func(j, i int, chain, steps []int) bool {
		s := &c.pos[j]
		if !condOf(s.cond, i) {
			return false
		}
		for _, w := range s.where {
			ref := -1
			for k := len(chain) - 1; k >= 0; k-- {
				if steps[k] == w.step {
					ref = chain[k]
					break
				}
			}
			if ref < 0 {
				return false
			}
			v, _, ok := c.capture[w.step][w.slot].Raw(evs[ref])
			other := "\x00missing"
			if ok {
				other = string(v)
			}
			if !compareValues(evs[i], w, other) {
				return false
			}
		}
		return true
	}
	within := int64(c.p.Within)
	type cand struct {
		emitAt, phase, start int
		chain                []int
	}
	var cands []cand
	var rec func(s, cnt, p int, chain, steps []int)
	rec = func(s, cnt, p int, chain, steps []int) {
		cs := &c.pos[s]
		startT := ts[chain[0]]
		for i := p + 1; i < n; i++ {
			if within > 0 && ts[i]-startT > within {
				break
			}
			// Greedy: a run never skips an event its loop can take.
			takeable := func(k int) bool {
				if cs.max != -1 && cnt >= cs.max || !cond(s, k, chain, steps) {
					return false
				}
				switch cs.contiguity {
				case Strict:
					return k == p+1
				case Relaxed:
					for q := p + 1; q < k; q++ {
						if cond(s, q, chain, steps) {
							return false
						}
					}
				}
				return true
			}
			if cs.greedy && cs.contiguity != Any {
				skipped := false
				for k := p + 1; k < i; k++ {
					if takeable(k) {
						skipped = true
					}
				}
				if skipped {
					break
				}
			}
			for j := s; j < len(c.pos); j++ {
				if j > s {
					if cnt < cs.min {
						break
					}
					if j > s+1 && c.pos[j-1].min > 0 {
						break
					}
				} else if cs.max != -1 && cnt >= cs.max {
					continue
				}
				js := &c.pos[j]
				if !cond(j, i, chain, steps) {
					continue
				}
				ok := true
				switch js.contiguity {
				case Strict:
					ok = i == p+1
				case Relaxed:
					for k := p + 1; k < i && ok; k++ {
						ok = !cond(j, k, chain, steps)
					}
				}
				if j > s {
					for t := s + 1; t <= j && ok; t++ {
						for _, g := range c.pos[t].guards {
							switch g.neg {
							case NotNext:
								if condOf(g.cond, p+1) {
									ok = false
								}
							case NotFollowedBy:
								for k := p + 1; k < i; k++ {
									if condOf(g.cond, k) {
										ok = false
									}
								}
							}
						}
					}
					if cs.greedy && takeable(i) {
						ok = false
					}
				}
				if !ok {
					continue
				}
				nc := cnt + 1
				if j > s {
					nc = 1
				}
				ch := append(append([]int(nil), chain...), i)
				st := append(append([]int(nil), steps...), j)
				complete := nc >= js.min
				for t := j + 1; t < len(c.pos); t++ {
					if c.pos[t].min > 0 {
						complete = false
					}
				}
				if complete {
					if tr := c.trailer; tr != nil {
						emitAt, broken := n, false
						for k := i + 1; k < n; k++ {
							if ts[k]-startT > within {
								emitAt = k
								break
							}
							if condOf(tr.cond, k) {
								broken = true
								break
							}
						}
						if !broken {
							cands = append(cands, cand{emitAt, 0, ch[0], ch})
						}
					} else {
						cands = append(cands, cand{i, 1, ch[0], ch})
					}
				}
				rec(j, nc, i, ch, st)
			}
		}
	}
	for i := 0; i < n; i++ {
		if cond(0, i, nil, nil) {
			ch, st := []int{i}, []int{0}
			cs := &c.pos[0]
			complete := 1 >= cs.min
			for t := 1; t < len(c.pos); t++ {
				if c.pos[t].min > 0 {
					complete = false
				}
			}
			if complete {
				if tr := c.trailer; tr != nil {
					emitAt, broken := n, false
					for k := i + 1; k < n; k++ {
						if ts[k]-ts[i] > within {
							emitAt = k
							break
						}
						if condOf(tr.cond, k) {
							broken = true
							break
						}
					}
					if !broken {
						cands = append(cands, cand{emitAt, 0, i, ch})
					}
				} else {
					cands = append(cands, cand{i, 1, i, ch})
				}
			}
			rec(0, 1, i, ch, st)
		}
	}
	sort.SliceStable(cands, func(a, b int) bool {
		x, y := cands[a], cands[b]
		if x.emitAt != y.emitAt {
			return x.emitAt < y.emitAt
		}
		if x.phase != y.phase {
			return x.phase < y.phase
		}
		if x.start != y.start {
			return x.start < y.start
		}
		for k := 0; k < len(x.chain) && k < len(y.chain); k++ {
			if x.chain[k] != y.chain[k] {
				return x.chain[k] < y.chain[k]
			}
		}
		return len(x.chain) < len(y.chain)
	})
	var out []string
	dropped := make([]bool, len(cands))
	for k, m := range cands {
		if dropped[k] {
			continue
		}
		var ids []string
		for _, i := range m.chain {
			ids = append(ids, evs[i].ID)
		}
		out = append(out, strings.Join(ids, " "))
		last := m.chain[len(m.chain)-1]
		for q := k + 1; q < len(cands); q++ {
			switch c.p.Skip {
			case SkipPastLastEvent:
				dropped[q] = dropped[q] || cands[q].start <= last
			case SkipToNext:
				dropped[q] = dropped[q] || cands[q].start == m.start
			}
		}
	}
	return out
}

func randomPattern(rng *rand.Rand) Pattern {
	types := []string{`{"type":["a"]}`, `{"type":["b"]}`, `{"type":["c"]}`, `{"type":["a","b"]}`, ``}
	quants := [][2]int{{1, 1}, {2, 2}, {1, -1}, {0, 1}, {2, 3}, {0, -1}}
	p := Pattern{Name: "r", Skip: Skip(rng.IntN(3))}
	if rng.IntN(2) == 0 {
		p.Within = time.Duration(3+rng.IntN(8)) * time.Second
	}
	npos := 1 + rng.IntN(3)
	for i := 0; i < npos; i++ {
		if i > 0 && rng.IntN(4) == 0 {
			p.Steps = append(p.Steps, Step{Name: fmt.Sprint("n", i), Match: json.RawMessage(types[rng.IntN(3)]),
				Negation: Negation(1 + rng.IntN(2))})
		}
		q := quants[rng.IntN(len(quants))]
		if i == 0 && q[0] == 0 {
			q = [2]int{1, q[1]}
		}
		s := Step{Name: fmt.Sprint("s", i), Match: json.RawMessage(types[rng.IntN(len(types))]), Min: q[0], Max: q[1],
			Contiguity: Contiguity(rng.IntN(3))}
		if q[1] != 1 && rng.IntN(3) == 0 {
			s.Greedy = true
		}
		if s.Min == 0 && s.Max == 0 {
			s.Max = -1
		}
		if i > 0 && rng.IntN(4) == 0 {
			s.Where = []Compare{{Field: "data.v", Op: []string{">", "<=", "!="}[rng.IntN(3)], Step: "s0"}}
		}
		p.Steps = append(p.Steps, s)
	}
	if p.Within > 0 && rng.IntN(4) == 0 {
		p.Steps = append(p.Steps, Step{Name: "tail", Match: json.RawMessage(types[rng.IntN(3)]), Negation: NotFollowedBy})
	}
	return p
}

// TestRandomAgainstReference runs random patterns over random streams (two
// interleaved partitions) and demands the engine's matches, in order, equal
// the brute-force reference's.
func TestRandomAgainstReference(t *testing.T) {
	iters := 3000
	if testing.Short() {
		iters = 300
	}
	rng := rand.New(rand.NewPCG(1, 2))
	total, nonEmpty := 0, 0
	defer func() {
		t.Logf("%d matches; %d of %d iterations matched something", total, nonEmpty, iters)
		if nonEmpty < iters/4 {
			t.Errorf("only %d of %d random patterns matched anything: the test is too weak", nonEmpty, iters)
		}
	}()
	for it := 0; it < iters; it++ {
		p := randomPattern(rng)
		p.Key = "data.user"
		c, err := compile(p)
		if err != nil {
			t.Fatalf("iteration %d: %v", it, err)
		}
		eng := &Engine{c: c, parts: map[string]*partition{}, n: len(c.pos)}
		var evs, mine []*event.Event
		sec := 0
		for i := 0; i < 12; i++ {
			sec += rng.IntN(3)
			user := "u"
			if rng.IntN(4) == 0 {
				user = "w"
			}
			e := mk(fmt.Sprint(i), string(rune('a'+rng.IntN(3))), user, sec)
			e.Data = []byte(fmt.Sprintf(`{"user":%q,"v":%d}`, user, rng.IntN(4)))
			evs = append(evs, e)
			if user == "u" {
				mine = append(mine, e)
			}
		}
		var r rec
		for _, e := range evs {
			eng.Process(e, &r)
		}
		eng.Flush(&r)
		var got []string
		for _, m := range r.all {
			if m.Key == "u" {
				got = append(got, ids(m))
			}
		}
		want := reference(c, mine)
		total += len(want)
		if len(want) > 0 {
			nonEmpty++
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			pj, _ := json.Marshal(p)
			var desc []string
			for _, e := range mine {
				desc = append(desc, fmt.Sprintf("%s:%s@%d%s", e.ID, e.Type, e.Time.Unix()-t0.Unix(), e.Data))
			}
			t.Fatalf("iteration %d\npattern %s\nevents %s\nengine    %q\nreference %q", it, pj, strings.Join(desc, " "), got, want)
		}
	}
}
