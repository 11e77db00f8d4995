package cep

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/stream"
)

// Matched is one event of a match.
type Matched struct {
	Step  string    `json:"step"`
	ID    string    `json:"id"`
	Time  time.Time `json:"time"`
	Index int64     `json:"index"` // arrival index within the partition
}

// Match is a complete match, or a partial match that Within ended
// (Timeout true).
type Match struct {
	Pattern string    `json:"pattern"`
	Key     string    `json:"key"`
	Events  []Matched `json:"events"`
	Timeout bool      `json:"timeout,omitempty"`
}

// Event builds the event a match emits: of the pattern's Source and Type
// (a timed-out partial match's type ends in "TimedOut"),
// caused by the last matched event (CausationID), its data the match with
// every matched event's id (the full causation list).
func (m *Match) Event(p *Pattern) *event.Event {
	src, typ := p.Source, p.Type
	if src == "" {
		src = "herald/cep/" + p.Name
	}
	switch {
	case m.Timeout && typ != "":
		typ += "TimedOut" // a timed-out partial match is not the alert
	case m.Timeout:
		typ = p.Name + "TimedOut"
	case typ == "":
		typ = p.Name + "Matched"
	}
	e := event.New(src, typ)
	e.Time = m.Events[len(m.Events)-1].Time
	e.DataContentType = "application/json"
	e.Data, _ = json.Marshal(m)
	e.PartitionKey = m.Key
	e.CausationID = m.Events[len(m.Events)-1].ID
	return e
}

// Output receives an Engine's matches on the goroutine that called it.
type Output interface {
	Match(m *Match)
	// Timeout is a partial match that Within ended (EmitTimeouts only).
	Timeout(m *Match)
	// Invalid is an event without a usable key or time field.
	Invalid(ev *event.Event, err error)
}

// ErrInvalidEvent wraps the errors passed to Output.Invalid.
var ErrInvalidEvent = errors.New("cep: invalid event")

// node is one matched event, shared by the partial matches that took it
// (a run's events are the chain from its last node back).
//
// A node is 48 bytes (a size class): the step number shares a word with
// the arrival index, and captured values hang off a pointer.
type node struct {
	prev *node
	id   string
	t    int64
	is   int64     // arrival index << stepBits | positive step number
	vals *[]string // fields later comparisons read (nil when none)
}

const stepBits = 6 // maxSteps <= 1<<stepBits

func (n *node) index() int64 { return n.is >> stepBits }
func (n *node) step() int    { return int(n.is & (1<<stepBits - 1)) }

// run is a partial match: it has taken count events of positive step step.
type run struct {
	last     *node
	startT   int64
	startIdx int64
	blocked  uint32 // steps this run may no longer enter (contiguity, negation)
	step     int16
	count    int16
}

type partition struct {
	runs    []run
	pending []run // complete, waiting for a trailing not_followed_by to pass
	idx     int64 // arrival counter
}

// The partition's runs swap buffers with Engine.next on every event, so
// that no copy is made (see Process).

// Stats counts what an Engine has seen.
type Stats struct {
	Events, Matches, Timeouts, Invalid int64
	PartialMatches                     int
	Partitions                         int
}

// Engine runs one pattern over events, partitioned by its key. It does no
// I/O and is not safe for concurrent use. Events of a partition must come
// in event-time order (Within and timeouts read event time).
type Engine struct {
	c     *compiled
	parts map[string]*partition
	names []string
	next  []run
	done  []run
	stats Stats
	n     int
	// dirty holds the keys whose partitions changed (TrackChanges), all
	// of them when allDirty.
	dirty    map[string]struct{}
	allDirty bool
}

// NewEngine validates p and returns an Engine for it.
func NewEngine(p Pattern) (*Engine, error) {
	c, err := compile(p)
	if err != nil {
		return nil, err
	}
	return &Engine{c: c, parts: map[string]*partition{}, n: len(c.pos)}, nil
}

// Pattern returns the engine's pattern.
func (e *Engine) Pattern() Pattern { return e.c.p }

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.Partitions = len(e.parts)
	for _, p := range e.parts {
		s.PartialMatches += len(p.runs) + len(p.pending)
	}
	return s
}

type evalCtx struct {
	ev     *event.Event
	mask   uint64
	i      int64
	t      int64
	within int64
}

func (x *evalCtx) cond(c int) bool { return c < 0 || x.mask&(1<<uint(c)) != 0 }

// Process takes the next event.
func (e *Engine) Process(ev *event.Event, out Output) {
	e.stats.Events++
	tt, err := e.c.timeF.Time(ev)
	if err != nil {
		e.stats.Invalid++
		out.Invalid(ev, fmt.Errorf("%w: %v", ErrInvalidEvent, err))
		return
	}
	var key string
	var kb []byte
	if !e.c.key.IsZero() {
		v, _, ok := e.c.key.Raw(ev)
		if !ok {
			e.stats.Invalid++
			out.Invalid(ev, fmt.Errorf("%w: key field %q is missing", ErrInvalidEvent, e.c.key))
			return
		}
		kb = v
	}
	x := evalCtx{ev: ev, t: tt.UnixNano(), within: int64(e.c.p.Within)}
	e.names = e.c.mach.MatchEvent(ev, e.names[:0])
	for _, n := range e.names {
		k, _ := strconv.Atoi(n)
		x.mask |= 1 << uint(k)
	}
	part := e.parts[string(kb)]
	if part == nil {
		if !x.cond(e.c.pos[0].cond) {
			return // starts nothing and there is nothing to continue
		}
		key = string(kb)
		part = &partition{}
		e.parts[key] = part
	} else {
		key = string(kb)
	}
	if e.dirty != nil {
		e.dirty[key] = struct{}{}
	}
	x.i = part.idx
	part.idx++
	e.expire(part, key, x.t, out)
	if tr := e.c.trailer; tr != nil && x.cond(tr.cond) {
		// The absence failed for every pending match.
		part.pending = part.pending[:0]
	}
	e.next, e.done = e.next[:0], e.done[:0]
	for ri := range part.runs {
		e.step(&x, &part.runs[ri])
	}
	if x.cond(e.c.pos[0].cond) {
		nd := e.newNode(nil, &x, 0)
		e.advanceTo(run{last: nd, startT: x.t, startIdx: x.i, step: 0, count: 1})
	}
	part.runs, e.next = e.next, part.runs[:0]
	e.emitDone(part, key, out)
	if len(part.runs) == 0 && len(part.pending) == 0 {
		delete(e.parts, key)
	}
}

func (e *Engine) newNode(prev *node, x *evalCtx, step int) *node {
	nd := &node{prev: prev, id: x.ev.ID, t: x.t, is: x.i<<stepBits | int64(step)}
	if caps := e.c.capture[step]; len(caps) > 0 {
		vals := make([]string, len(caps))
		for k, f := range caps {
			if v, _, ok := f.Raw(x.ev); ok {
				vals[k] = string(v)
			} else {
				vals[k] = "\x00missing"
			}
		}
		nd.vals = &vals
	}
	return nd
}

// can reports whether run r may take the event into positive step j,
// apart from contiguity and blocking.
func (e *Engine) can(x *evalCtx, r *run, j int) bool {
	s := &e.c.pos[j]
	if !x.cond(s.cond) {
		return false
	}
	for _, w := range s.where {
		var ref *node
		for n := r.last; n != nil; n = n.prev {
			if n.step() == w.step {
				ref = n
				break
			}
		}
		if ref == nil || !compareValues(x.ev, w, (*ref.vals)[w.slot]) {
			return false
		}
	}
	return true
}

func compareValues(ev *event.Event, w cwhere, other string) bool {
	v, _, ok := w.field.Raw(ev)
	if !ok || other == "\x00missing" {
		return false
	}
	var c int
	a, errA := strconv.ParseFloat(string(v), 64)
	b, errB := strconv.ParseFloat(other, 64)
	if errA == nil && errB == nil {
		switch {
		case a < b:
			c = -1
		case a > b:
			c = 1
		}
	} else {
		c = strings.Compare(string(v), other)
	}
	return stream.OpHolds(w.op, c)
}

// step offers the event to run r: every way of taking it makes a new run,
// and r itself survives ignoring it unless that breaks contiguity.
func (e *Engine) step(x *evalCtx, r *run) {
	s := int(r.step)
	cs := &e.c.pos[s]
	c := int(r.count)
	immediate := x.i == r.last.index()+1
	canLoop := cs.max == -1 || c < cs.max
	tookLoop := false
	if canLoop && r.blocked&(1<<uint(s)) == 0 && (cs.contiguity != Strict || immediate) && e.can(x, r, s) {
		tookLoop = true
		e.advanceTo(run{last: e.newNode(r.last, x, s), startT: r.startT, startIdx: r.startIdx, step: int16(s), count: int16(c + 1)})
	}
	nb := r.blocked
	reachable := uint32(0)
	if canLoop {
		reachable |= 1 << uint(s)
		if cs.contiguity == Strict || (cs.contiguity == Relaxed && e.can(x, r, s)) {
			nb |= 1 << uint(s)
		}
	}
	// A not_next violated by this very event forbids entering any later
	// step; a negation matching it, were it ignored, puts it in the gap.
	enterBlocked, ignoreBlocked := false, false
	for t := s + 1; t < e.n; t++ {
		ts := &e.c.pos[t]
		for _, g := range ts.guards {
			if !x.cond(g.cond) {
				continue
			}
			switch {
			case g.neg == NotNext && immediate:
				enterBlocked, ignoreBlocked = true, true
			case g.neg == NotFollowedBy:
				ignoreBlocked = true
			}
		}
		reachable |= 1 << uint(t)
		matches := e.can(x, r, t)
		if !enterBlocked && c >= cs.min && !(cs.greedy && tookLoop) && r.blocked&(1<<uint(t)) == 0 &&
			(ts.contiguity != Strict || immediate) && matches {
			e.advanceTo(run{last: e.newNode(r.last, x, t), startT: r.startT, startIdx: r.startIdx, step: int16(t), count: 1})
		}
		if ignoreBlocked || ts.contiguity == Strict || (ts.contiguity == Relaxed && matches) {
			nb |= 1 << uint(t)
		}
		if ts.min > 0 {
			break
		}
	}
	if cs.greedy && tookLoop && cs.contiguity != Any {
		return // greedy: a run never skips an event its loop can take
	}
	if reachable&^nb != 0 {
		r.blocked = nb
		e.next = append(e.next, *r)
	}
}

// advanceTo records a run that just took an event: complete, continuing,
// or both.
func (e *Engine) advanceTo(r run) {
	s := int(r.step)
	cs := &e.c.pos[s]
	complete := int(r.count) >= cs.min
	for t := s + 1; complete && t < e.n; t++ {
		if e.c.pos[t].min > 0 {
			complete = false
		}
	}
	if complete {
		e.done = append(e.done, r)
	}
	more := s < e.n-1 || cs.max == -1 || int(r.count) < cs.max
	if more {
		e.next = append(e.next, r)
	}
}

func chainLess(a, b *node) bool {
	var ai, bi [64]int64
	as, bs := ai[:0], bi[:0]
	for n := a; n != nil; n = n.prev {
		as = append(as, n.index())
	}
	for n := b; n != nil; n = n.prev {
		bs = append(bs, n.index())
	}
	for i, j := len(as)-1, len(bs)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		if as[i] != bs[j] {
			return as[i] < bs[j]
		}
	}
	return len(as) < len(bs)
}

func sortRuns(rs []run) {
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].startIdx != rs[j].startIdx {
			return rs[i].startIdx < rs[j].startIdx
		}
		return chainLess(rs[i].last, rs[j].last)
	})
}

// emitDone emits the matches completed by the current event, applying the
// skip strategy in order.
func (e *Engine) emitDone(part *partition, key string, out Output) {
	if len(e.done) == 0 {
		return
	}
	sortRuns(e.done)
	if e.c.trailer != nil {
		part.pending = append(part.pending, e.done...)
		return
	}
	emitInOrder(e, part, key, e.done, out)
}

// emitInOrder emits ms in order; each emission's skip may drop later ones
// (skip overwrites them with fillers whose last.idx is -1).
func emitInOrder(e *Engine, part *partition, key string, ms []run, out Output) {
	for k := 0; k < len(ms); k++ {
		m := ms[k]
		if m.last.index() < 0 {
			continue
		}
		e.emit(key, &m, false, out)
		e.skip(part, &m, ms[k+1:])
	}
}

// skip applies the after-match skip strategy for emitted match m to the
// partition's runs and to rest (the matches not yet emitted, compacted in
// place: dropped ones get startIdx -1 and are skipped by the caller).
func (e *Engine) skip(part *partition, m *run, rest []run) {
	var drop func(r *run) bool
	switch e.c.p.Skip {
	case SkipPastLastEvent:
		li := m.last.index()
		drop = func(r *run) bool { return r.startIdx <= li }
	case SkipToNext:
		si := m.startIdx
		drop = func(r *run) bool { return r.startIdx == si }
	default:
		return
	}
	filter := func(rs []run) []run {
		out := rs[:0]
		for i := range rs {
			if !drop(&rs[i]) {
				out = append(out, rs[i])
			}
		}
		return out
	}
	part.runs = filter(part.runs)
	part.pending = filter(part.pending)
	e.next = filter(e.next)
	kept := filter(rest)
	for i := len(kept); i < len(rest); i++ {
		rest[i] = run{startIdx: math.MaxInt64, last: filler} // see emitInOrder
	}
}

var filler = &node{is: -1 << stepBits}

func (e *Engine) emit(key string, r *run, timeout bool, out Output) {
	var n int
	for nd := r.last; nd != nil; nd = nd.prev {
		n++
	}
	m := &Match{Pattern: e.c.p.Name, Key: key, Events: make([]Matched, n), Timeout: timeout}
	for nd := r.last; nd != nil; nd = nd.prev {
		n--
		m.Events[n] = Matched{Step: e.c.pos[nd.step()].name, ID: nd.id, Time: time.Unix(0, nd.t).UTC(), Index: nd.index()}
	}
	if timeout {
		e.stats.Timeouts++
		out.Timeout(m)
		return
	}
	e.stats.Matches++
	out.Match(m)
}

// expire ends partial matches that Within has passed at event time t, and
// emits pending matches whose trailing absence has held for Within.
func (e *Engine) expire(part *partition, key string, t int64, out Output) {
	w := int64(e.c.p.Within)
	if w == 0 {
		return
	}
	if len(part.pending) > 0 {
		var ready []run
		kept := part.pending[:0]
		for _, r := range part.pending {
			if t-r.startT > w {
				ready = append(ready, r)
			} else {
				kept = append(kept, r)
			}
		}
		part.pending = kept
		sortRuns(ready)
		emitInOrder(e, part, key, ready, out)
	}
	kept := part.runs[:0]
	for _, r := range part.runs {
		if t-r.startT > w {
			if e.c.p.EmitTimeouts {
				e.emit(key, &r, true, out)
			}
			continue
		}
		kept = append(kept, r)
	}
	part.runs = kept
}

// Advance tells the engine that event time has reached t in every
// partition (a watermark): partial matches older than Within end, and
// matches waiting on a trailing absence are emitted.
func (e *Engine) Advance(t time.Time, out Output) {
	keys := make([]string, 0, len(e.parts))
	for k := range e.parts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := e.parts[k]
		n := len(p.runs) + len(p.pending)
		e.expire(p, k, t.UnixNano(), out)
		if e.dirty != nil && len(p.runs)+len(p.pending) != n { // expiring only removes
			e.dirty[k] = struct{}{}
		}
		if len(p.runs) == 0 && len(p.pending) == 0 {
			delete(e.parts, k)
		}
	}
}

// Flush ends the input: matches waiting on a trailing absence are emitted
// (nothing more can break them) and partial matches are dropped.
func (e *Engine) Flush(out Output) {
	emit := e.c.p.EmitTimeouts
	e.c.p.EmitTimeouts = false
	e.Advance(time.Unix(0, math.MaxInt64), out)
	e.c.p.EmitTimeouts = emit
}
