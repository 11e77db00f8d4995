package stream

import (
	"fmt"
	"math"
	"math/bits"
	"sort"

	"github.com/heraldhq/herald/event"
)

// AggKind names an aggregate function.
type AggKind uint8

// The aggregate functions.
const (
	Count         AggKind = iota + 1 // events in the window (Field unused)
	Sum                              // sum of Field over events that have it
	Avg                              // mean of Field over events that have it
	Min                              // least Field value
	Max                              // greatest Field value
	CountDistinct                    // approximate distinct values of Field (HyperLogLog, ~1.6% error)
	TopK                             // the K most frequent values of Field (space-saving, approximate)
)

var aggNames = [...]string{Count: "count", Sum: "sum", Avg: "avg", Min: "min", Max: "max", CountDistinct: "count_distinct", TopK: "top_k"}

func (k AggKind) String() string {
	if int(k) < len(aggNames) && aggNames[k] != "" {
		return aggNames[k]
	}
	return fmt.Sprintf("AggKind(%d)", k)
}

// ParseAggKind reads an aggregate name ("count", "sum", ...).
func ParseAggKind(s string) (AggKind, error) {
	for k, n := range aggNames {
		if n != "" && n == s {
			return AggKind(k), nil
		}
	}
	return 0, fmt.Errorf("unknown aggregate %q (want count, sum, avg, min, max, count_distinct or top_k)", s)
}

// Agg is one aggregate of a window: its function, the field it reads, the
// name of its output column and, for TopK, how many values to keep.
type Agg struct {
	Name  string
	Kind  AggKind
	Field string
	K     int
}

// Value is one aggregate's value in a Result: Number for count, sum, avg,
// min, max and count_distinct (NaN for avg, min and max over no values),
// Top for top_k.
type Value struct {
	Name   string
	Number float64
	Top    []TopItem
}

// TopItem is one value of a top-k and its (approximate) count.
type TopItem struct {
	Value string `json:"value"`
	Count int64  `json:"count"`
}

// compiledAgg is an Agg bound to its slots in a window's numeric state.
type compiledAgg struct {
	Agg
	field Field
	slot  int // first numeric slot
	ext   int // index into the window's ext state (distinct / top-k)
}

// layout assigns numeric slots: slot 0 is always the event count.
type layout struct {
	aggs   []compiledAgg
	nslots int
	next   int // number of ext states
}

func compileAggs(aggs []Agg) (layout, error) {
	l := layout{nslots: 1}
	if len(aggs) == 0 {
		return l, fmt.Errorf("aggregates: at least one is required")
	}
	seen := map[string]bool{}
	for i, a := range aggs {
		if a.Name == "" {
			a.Name = a.Kind.String()
			if a.Field != "" {
				a.Name += "_" + a.Field
			}
		}
		if seen[a.Name] {
			return l, fmt.Errorf("aggregates[%d]: name %q is used twice", i, a.Name)
		}
		seen[a.Name] = true
		ca := compiledAgg{Agg: a}
		if a.Kind != Count {
			if a.Field == "" {
				return l, fmt.Errorf("aggregates[%d] (%s): field is required", i, a.Kind)
			}
			f, err := ParseField(a.Field)
			if err != nil {
				return l, fmt.Errorf("aggregates[%d].field: %w", i, err)
			}
			ca.field = f
		}
		switch a.Kind {
		case Count:
			ca.slot = 0
		case Sum, Min, Max:
			ca.slot = l.nslots
			l.nslots++
		case Avg:
			ca.slot = l.nslots // sum, then count of values
			l.nslots += 2
		case CountDistinct:
			ca.ext = l.next
			l.next++
		case TopK:
			if a.K < 1 || a.K > 1000 {
				return l, fmt.Errorf("aggregates[%d].k: %d is out of range 1..1000", i, a.K)
			}
			ca.ext = l.next
			l.next++
		default:
			return l, fmt.Errorf("aggregates[%d].kind: unknown aggregate %d", i, a.Kind)
		}
		l.aggs = append(l.aggs, ca)
	}
	return l, nil
}

// init sets a fresh window's slots.
func (l *layout) init(s []float64) {
	for i := range s {
		s[i] = 0
	}
	for _, a := range l.aggs {
		switch a.Kind {
		case Min:
			s[a.slot] = math.Inf(1)
		case Max:
			s[a.slot] = math.Inf(-1)
		}
	}
}

func (l *layout) newExt() []extState {
	if l.next == 0 {
		return nil
	}
	ext := make([]extState, l.next)
	for _, a := range l.aggs {
		switch a.Kind {
		case CountDistinct:
			ext[a.ext] = newHLL()
		case TopK:
			ext[a.ext] = newSpaceSaving(a.K)
		}
	}
	return ext
}

// sample is the values one event contributes, extracted once so that
// hopping windows do not extract them again per window.
type sample struct {
	nums []float64 // per agg (NaN when absent)
	strs [][]byte  // per agg (nil when absent)
}

func (l *layout) extract(e *event.Event, sm *sample) {
	if cap(sm.nums) < len(l.aggs) {
		sm.nums = make([]float64, len(l.aggs))
		sm.strs = make([][]byte, len(l.aggs))
	}
	sm.nums = sm.nums[:len(l.aggs)]
	sm.strs = sm.strs[:len(l.aggs)]
	for i, a := range l.aggs {
		switch a.Kind {
		case Sum, Avg, Min, Max:
			if x, ok := a.field.Number(e); ok {
				sm.nums[i] = x
			} else {
				sm.nums[i] = math.NaN()
			}
		case CountDistinct, TopK:
			v, _, ok := a.field.Raw(e)
			if !ok {
				v = nil
			}
			sm.strs[i] = v
		}
	}
}

// add folds one event's sample into a window's state.
func (l *layout) add(s []float64, ext []extState, sm *sample) {
	s[0]++
	for i, a := range l.aggs {
		switch a.Kind {
		case Sum:
			if x := sm.nums[i]; x == x {
				s[a.slot] += x
			}
		case Avg:
			if x := sm.nums[i]; x == x {
				s[a.slot] += x
				s[a.slot+1]++
			}
		case Min:
			if x := sm.nums[i]; x == x && x < s[a.slot] {
				s[a.slot] = x
			}
		case Max:
			if x := sm.nums[i]; x == x && x > s[a.slot] {
				s[a.slot] = x
			}
		case CountDistinct, TopK:
			if v := sm.strs[i]; v != nil {
				ext[a.ext].add(v)
			}
		}
	}
}

// merge folds window state b into a (session merges).
func (l *layout) merge(a []float64, aext []extState, b []float64, bext []extState) {
	a[0] += b[0]
	for _, g := range l.aggs {
		switch g.Kind {
		case Sum:
			a[g.slot] += b[g.slot]
		case Avg:
			a[g.slot] += b[g.slot]
			a[g.slot+1] += b[g.slot+1]
		case Min:
			a[g.slot] = math.Min(a[g.slot], b[g.slot])
		case Max:
			a[g.slot] = math.Max(a[g.slot], b[g.slot])
		case CountDistinct, TopK:
			aext[g.ext].merge(bext[g.ext])
		}
	}
}

func (l *layout) values(s []float64, ext []extState, dst []Value) []Value {
	dst = dst[:0]
	for _, a := range l.aggs {
		v := Value{Name: a.Name}
		switch a.Kind {
		case Count:
			v.Number = s[0]
		case Sum:
			v.Number = s[a.slot]
		case Avg:
			if s[a.slot+1] == 0 {
				v.Number = math.NaN()
			} else {
				v.Number = s[a.slot] / s[a.slot+1]
			}
		case Min, Max:
			v.Number = s[a.slot]
			if math.IsInf(v.Number, 0) {
				v.Number = math.NaN()
			}
		case CountDistinct:
			v.Number = float64(ext[a.ext].(*hll).estimate())
		case TopK:
			v.Top = ext[a.ext].(*spaceSaving).top()
		}
		dst = append(dst, v)
	}
	return dst
}

// extState is the state of a sketch aggregate.
type extState interface {
	add(v []byte)
	merge(o extState)
}

// hash64 is FNV-1a with a splitmix64 finalizer: fixed across processes,
// so that sketches in snapshots stay valid after a restart (a per-process
// seed would not).
func hash64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// hll is a HyperLogLog sketch with 2^12 one-byte registers (4 KiB,
// standard error 1.04/sqrt(4096) = 1.6%), allocated on first use.
type hll struct{ reg []uint8 }

const hllP = 12

func newHLL() *hll { return &hll{} }

func (h *hll) add(v []byte) {
	if h.reg == nil {
		h.reg = make([]uint8, 1<<hllP)
	}
	x := hash64(v)
	idx := x >> (64 - hllP)
	rank := uint8(bits.LeadingZeros64(x<<hllP|1<<(hllP-1)) + 1)
	if rank > h.reg[idx] {
		h.reg[idx] = rank
	}
}

func (h *hll) merge(o extState) {
	b := o.(*hll)
	if b.reg == nil {
		return
	}
	if h.reg == nil {
		h.reg = make([]uint8, 1<<hllP)
	}
	for i, r := range b.reg {
		if r > h.reg[i] {
			h.reg[i] = r
		}
	}
}

func (h *hll) estimate() uint64 {
	if h.reg == nil {
		return 0
	}
	m := float64(len(h.reg))
	sum, zeros := 0.0, 0
	for _, r := range h.reg {
		sum += 1 / float64(uint64(1)<<r)
		if r == 0 {
			zeros++
		}
	}
	est := 0.7213 / (1 + 1.079/m) * m * m / sum
	if est <= 2.5*m && zeros > 0 {
		est = m * math.Log(m/float64(zeros)) // linear counting for small sets
	}
	return uint64(est + 0.5)
}

// spaceSaving is the space-saving top-k sketch (Metwally et al.) with 4k
// counters: exact while there are at most 4k distinct values, and each
// reported count overestimates by at most the least counter otherwise.
type spaceSaving struct {
	k      int
	counts map[string]int64
}

func newSpaceSaving(k int) *spaceSaving { return &spaceSaving{k: k, counts: map[string]int64{}} }

func (s *spaceSaving) add(v []byte) { s.addN(v, 1) }

func (s *spaceSaving) addN(v []byte, n int64) {
	if c, ok := s.counts[string(v)]; ok {
		s.counts[string(v)] = c + n
		return
	}
	if len(s.counts) < 4*s.k {
		s.counts[string(v)] = n
		return
	}
	minK, minC := "", int64(math.MaxInt64)
	for k, c := range s.counts {
		if c < minC || (c == minC && k < minK) {
			minK, minC = k, c
		}
	}
	delete(s.counts, minK)
	s.counts[string(v)] = minC + n
}

func (s *spaceSaving) merge(o extState) {
	for k, c := range o.(*spaceSaving).counts {
		s.addN([]byte(k), c)
	}
}

func (s *spaceSaving) top() []TopItem {
	items := make([]TopItem, 0, len(s.counts))
	for k, c := range s.counts {
		items = append(items, TopItem{Value: k, Count: c})
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].Count != items[j].Count {
			return items[i].Count > items[j].Count
		}
		return items[i].Value < items[j].Value
	})
	if len(items) > s.k {
		items = items[:s.k]
	}
	return items
}
