package pattern

import (
	"math"
	"slices"
	"sort"
)

// rangeIndex answers "which numeric ranges contain v" in O(log n + k): a
// segment tree over the elementary units the ranges' end points cut the
// number line into ({p}, and the open gaps between points). It is built
// lazily from a transition's ranges and dropped when they change.
type rangeIndex struct {
	points []float64
	// nodes of the segment tree over units 0..2*len(points), each holding
	// the states of ranges covering it wholly.
	nodes [][]*state
	units int
}

func buildRangeIndex(rs []rangeEntry) *rangeIndex {
	var pts []float64
	for i := range rs {
		if !math.IsInf(rs[i].m.Lo, 0) {
			pts = append(pts, rs[i].m.Lo)
		}
		if !math.IsInf(rs[i].m.Hi, 0) {
			pts = append(pts, rs[i].m.Hi)
		}
	}
	slices.Sort(pts)
	pts = slices.Compact(pts)
	ix := &rangeIndex{points: pts, units: 2*len(pts) + 1}
	ix.nodes = make([][]*state, 4*ix.units)
	for i := range rs {
		m := &rs[i].m
		a, b := 0, ix.units-1
		if !math.IsInf(m.Lo, -1) {
			a = ix.pointUnit(m.Lo)
			if !m.LoInc {
				a++
			}
		}
		if !math.IsInf(m.Hi, 1) {
			b = ix.pointUnit(m.Hi)
			if !m.HiInc {
				b--
			}
		}
		if a <= b {
			ix.insert(1, 0, ix.units-1, a, b, rs[i].next)
		}
	}
	return ix
}

func (ix *rangeIndex) pointUnit(p float64) int {
	i := sort.SearchFloat64s(ix.points, p)
	return 2*i + 1
}

func (ix *rangeIndex) unit(v float64) int {
	i := sort.SearchFloat64s(ix.points, v)
	if i < len(ix.points) && ix.points[i] == v {
		return 2*i + 1
	}
	return 2 * i
}

func (ix *rangeIndex) insert(node, lo, hi, a, b int, s *state) {
	if a <= lo && hi <= b {
		ix.nodes[node] = append(ix.nodes[node], s)
		return
	}
	mid := (lo + hi) / 2
	if a <= mid {
		ix.insert(2*node, lo, mid, a, b, s)
	}
	if b > mid {
		ix.insert(2*node+1, mid+1, hi, a, b, s)
	}
}

// query calls add with the states of every range containing v.
func (ix *rangeIndex) query(v float64, add func([]*state)) {
	u := ix.unit(v)
	node, lo, hi := 1, 0, ix.units-1
	for {
		if len(ix.nodes[node]) > 0 {
			add(ix.nodes[node])
		}
		if lo == hi {
			return
		}
		mid := (lo + hi) / 2
		if u <= mid {
			node, hi = 2*node, mid
		} else {
			node, lo = 2*node+1, mid+1
		}
	}
}
