package stream

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/heraldhq/herald/event"
)

// EmitMode says when a window's result is emitted.
type EmitMode uint8

// The emit modes.
const (
	// EmitFinal emits a window once, when the watermark passes its end
	// plus the grace period; later events for it are late.
	EmitFinal EmitMode = iota + 1
	// EmitChanges emits a window's new result on every event it takes.
	EmitChanges
)

// Config is a windowed aggregation.
type Config struct {
	// Key is the field path events are grouped by ("data.user",
	// "source", ...); "" puts every event in one group. An event
	// without the key field is an error (see Output.Invalid).
	Key string
	// Keys, instead of Key, groups by several fields: a result's Key is
	// then the JSON array of their values (data values as they are in
	// the event's JSON, attributes as strings), e.g. ["alice","EU"]. An
	// event without one of them is an error.
	Keys []string
	// Window is the kind and size of window.
	Window Window
	// Aggs are the aggregates computed per key and window.
	Aggs []Agg
	// TimeField is the field holding event time: "time" (the CloudEvent
	// time attribute) or a data field holding RFC 3339 or epoch
	// milliseconds. Unused under ProcessingTime.
	TimeField string
	// ProcessingTime windows by the time events are processed instead.
	ProcessingTime bool
	// MaxOutOfOrder is the bounded out-of-orderness: a partition's
	// watermark trails the greatest event time it has shown by this much.
	MaxOutOfOrder time.Duration
	// IdleTimeout: a partition without events for this long (processing
	// time) no longer holds the watermark back (0: never).
	IdleTimeout time.Duration
	// Grace is required: how long after a window's end (in watermark time)
	// it still takes events. Events arriving later are late (Output.Late).
	Grace *time.Duration
	// Emit is EmitFinal or EmitChanges.
	Emit EmitMode
	// Now is the processing-time clock (nil: time.Now).
	Now func() time.Time
}

// Grace returns a pointer to d, for Config.Grace.
func Grace(d time.Duration) *time.Duration { return &d }

// Result is one window's aggregate for one key. A Result passed to
// Output.Result is only valid during the call.
type Result struct {
	Key        string
	Start, End time.Time
	Values     []Value
	// Final is true for EmitFinal results: the window is closed.
	Final bool
}

// Output receives what a Processor produces. Its methods are called on the
// goroutine that called Process, Advance or Flush.
type Output interface {
	// Result is a window's result (on close or on update).
	Result(r *Result)
	// Late is an event whose windows had all closed.
	Late(ev *event.Event, partition int32)
	// Invalid is an event without a usable time or key field.
	Invalid(ev *event.Event, partition int32, err error)
}

// ErrInvalidEvent wraps the errors passed to Output.Invalid.
var ErrInvalidEvent = errors.New("stream: invalid event")

// Stats counts what a Processor has seen.
type Stats struct {
	Events, Late, Invalid, Emitted int64
	OpenWindows                    int
	Watermark                      time.Time
}

// Processor is the deterministic core of a windowed aggregation: it takes
// events one at a time with their input partition, keeps the open windows
// and the watermarks, and emits results; it does no I/O. A Processor is
// not safe for concurrent use.
type Processor struct {
	cfg     Config
	win     Window
	size    int64 // ns
	advance int64
	gap     int64
	grace   int64
	key     Field
	multi   []Field // Config.Keys
	kbuf    []byte
	// dirty holds the keys whose windows changed (TrackChanges), every
	// key when allDirty.
	dirty    map[string]struct{}
	allDirty bool
	tf       Field
	lay      layout
	now      func() time.Time
	wms      *watermarks
	wm       int64

	// Keys are interned to dense ids; refs counts a key's open windows so
	// that ids (and the strings) are released with the last window.
	keyIDs  map[string]uint32
	keys    []string
	refs    []int32
	freeKey []uint32

	// Window slots: numeric state slab[slot*nslots:], sketches ext[slot].
	slab     []float64
	ext      [][]extState
	slotWin  []winKey
	freeSlot []uint32
	open     int

	// Aligned windows (tumbling, hopping).
	aligned map[winKey]uint32
	// maxStart is the latest start of an aligned window ever opened
	// (noTime: none): with the watermark it bounds the starts of a key's
	// open windows (MarshalChanges).
	maxStart int64
	ends     map[int64][]uint32
	endHeap  int64Heap

	// Session and sliding windows: per key state and a close queue.
	sessions map[uint32][]session
	sliding  map[uint32]*slideKey
	closeQ   closeHeap

	sm     sample
	res    Result
	stats  Stats
	closed []uint32
}

type winKey struct {
	key   uint32
	start int64
}

type session struct {
	start, last int64
	slot        uint32
}

// New validates cfg and returns a Processor.
func New(cfg Config) (*Processor, error) {
	var errs []error
	if err := cfg.Window.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Grace == nil {
		errs = append(errs, fmt.Errorf("grace: is required (how long after a window's end late events are still taken); there is no default"))
	} else if *cfg.Grace < 0 {
		errs = append(errs, fmt.Errorf("grace: %v is negative", *cfg.Grace))
	}
	if cfg.MaxOutOfOrder < 0 {
		errs = append(errs, fmt.Errorf("max_out_of_order: %v is negative", cfg.MaxOutOfOrder))
	}
	if cfg.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("idle_timeout: %v is negative", cfg.IdleTimeout))
	}
	if cfg.Emit != EmitFinal && cfg.Emit != EmitChanges {
		errs = append(errs, fmt.Errorf("emit: must be final or changes"))
	}
	p := &Processor{cfg: cfg, win: cfg.Window, now: cfg.Now}
	if cfg.Key != "" {
		f, err := ParseField(cfg.Key)
		if err != nil {
			errs = append(errs, fmt.Errorf("key: %w", err))
		}
		p.key = f
	}
	if cfg.Key != "" && len(cfg.Keys) > 0 {
		errs = append(errs, errors.New("keys: key and keys cannot both be set"))
	}
	for i, k := range cfg.Keys {
		f, err := ParseField(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d]: %w", i, err))
		}
		p.multi = append(p.multi, f)
	}
	if !cfg.ProcessingTime {
		tf := cfg.TimeField
		if tf == "" {
			tf = "time"
		}
		f, err := ParseField(tf)
		if err != nil {
			errs = append(errs, fmt.Errorf("time_field: %w", err))
		}
		p.tf = f
	}
	lay, err := compileAggs(cfg.Aggs)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.lay = lay
	if p.now == nil {
		p.now = time.Now
	}
	p.size, p.advance, p.gap = int64(cfg.Window.Size), int64(cfg.Window.Advance), int64(cfg.Window.Gap)
	if cfg.Window.Kind == Tumbling {
		p.advance = p.size
	}
	p.grace = int64(*cfg.Grace)
	p.wms = newWatermarks(int64(cfg.MaxOutOfOrder), int64(cfg.IdleTimeout))
	p.wm = noTime
	p.keyIDs = map[string]uint32{}
	switch p.win.Kind {
	case Tumbling, Hopping:
		p.aligned = map[winKey]uint32{}
		p.ends = map[int64][]uint32{}
		p.maxStart = noTime
	case Session:
		p.sessions = map[uint32][]session{}
	case Sliding:
		p.sliding = map[uint32]*slideKey{}
	}
	return p, nil
}

// Config returns the configuration the Processor was built with.
func (p *Processor) Config() Config { return p.cfg }

// Watermark returns the current watermark (zero before any event).
func (p *Processor) Watermark() time.Time {
	if p.wm == noTime {
		return time.Time{}
	}
	return time.Unix(0, p.wm)
}

// Stats returns the counters.
func (p *Processor) Stats() Stats {
	s := p.stats
	s.OpenWindows = p.open
	s.Watermark = p.Watermark()
	return s
}

// Process takes one event read from partition.
func (p *Processor) Process(partition int32, ev *event.Event, out Output) {
	p.stats.Events++
	now := p.now().UnixNano()
	var ts int64
	if p.cfg.ProcessingTime {
		ts = now
	} else {
		t, err := p.tf.Time(ev)
		if err != nil {
			p.stats.Invalid++
			out.Invalid(ev, partition, fmt.Errorf("%w: %v", ErrInvalidEvent, err))
			return
		}
		ts = t.UnixNano()
	}
	var kb []byte
	if !p.key.IsZero() {
		v, _, ok := p.key.Raw(ev)
		if !ok {
			p.stats.Invalid++
			out.Invalid(ev, partition, fmt.Errorf("%w: key field %q is missing", ErrInvalidEvent, p.key.path))
			return
		}
		kb = v
	}
	if len(p.multi) > 0 {
		p.kbuf = append(p.kbuf[:0], '[')
		for i, f := range p.multi {
			if i > 0 {
				p.kbuf = append(p.kbuf, ',')
			}
			var ok bool
			if p.kbuf, ok = f.AppendJSON(p.kbuf, ev); !ok {
				p.stats.Invalid++
				out.Invalid(ev, partition, fmt.Errorf("%w: key field %q is missing", ErrInvalidEvent, f.path))
				return
			}
		}
		p.kbuf = append(p.kbuf, ']')
		kb = p.kbuf
	}
	p.lay.extract(ev, &p.sm)
	var taken bool
	switch p.win.Kind {
	case Tumbling, Hopping:
		taken = p.addAligned(kb, ts, out)
	case Session:
		taken = p.addSession(kb, ts, out)
	case Sliding:
		taken = p.addSliding(kb, ts, out)
	}
	if !taken {
		p.stats.Late++
		out.Late(ev, partition)
	}
	p.wms.observe(partition, ts, now)
	p.advanceTo(p.wms.advance(now), out)
}

// Advance moves the watermark by processing time (idle partitions) and
// closes the windows it passes. Call it periodically when input is quiet.
func (p *Processor) Advance(out Output) {
	p.advanceTo(p.wms.advance(p.now().UnixNano()), out)
}

// Flush closes every open window (the end of a bounded input), emitting
// EmitFinal results.
func (p *Processor) Flush(out Output) { p.advanceTo(math.MaxInt64-p.grace-p.size-p.gap-1, out) }

func (p *Processor) internKey(kb []byte) uint32 {
	if id, ok := p.keyIDs[string(kb)]; ok {
		return id
	}
	s := string(kb)
	var id uint32
	if n := len(p.freeKey); n > 0 {
		id = p.freeKey[n-1]
		p.freeKey = p.freeKey[:n-1]
		p.keys[id] = s
		p.refs[id] = 0
	} else {
		id = uint32(len(p.keys))
		p.keys = append(p.keys, s)
		p.refs = append(p.refs, 0)
	}
	p.keyIDs[s] = id
	return id
}

func (p *Processor) releaseKey(id uint32) {
	p.refs[id]--
	if p.refs[id] == 0 {
		delete(p.keyIDs, p.keys[id])
		p.keys[id] = ""
		p.freeKey = append(p.freeKey, id)
	}
}

func (p *Processor) newSlot(wk winKey) uint32 {
	n := p.lay.nslots
	var s uint32
	if k := len(p.freeSlot); k > 0 {
		s = p.freeSlot[k-1]
		p.freeSlot = p.freeSlot[:k-1]
		p.slotWin[s] = wk
	} else {
		s = uint32(len(p.slotWin))
		p.slotWin = append(p.slotWin, wk)
		p.slab = append(p.slab, make([]float64, n)...)
		if p.lay.next > 0 {
			p.ext = append(p.ext, nil)
		}
	}
	p.lay.init(p.slab[int(s)*n : int(s+1)*n])
	if p.lay.next > 0 {
		p.ext[s] = p.lay.newExt()
	}
	p.refs[wk.key]++
	p.open++
	return s
}

func (p *Processor) freeSlotID(s uint32) {
	if p.lay.next > 0 {
		p.ext[s] = nil
	}
	p.releaseKey(p.slotWin[s].key)
	p.freeSlot = append(p.freeSlot, s)
	p.open--
}

func (p *Processor) state(s uint32) ([]float64, []extState) {
	n := p.lay.nslots
	var ext []extState
	if p.lay.next > 0 {
		ext = p.ext[s]
	}
	return p.slab[int(s)*n : int(s+1)*n], ext
}

func (p *Processor) emit(key uint32, start, end int64, s uint32, final bool, out Output) {
	nums, ext := p.state(s)
	p.res.Key = p.keys[key]
	p.res.Start, p.res.End = time.Unix(0, start), time.Unix(0, end)
	p.res.Values = p.lay.values(nums, ext, p.res.Values)
	p.res.Final = final
	p.stats.Emitted++
	out.Result(&p.res)
}

// addAligned adds the current sample to the tumbling/hopping windows of
// ts; it reports false when every one of them has closed.
func (p *Processor) addAligned(kb []byte, ts int64, out Output) bool {
	last := floorDiv(ts, p.advance) * p.advance // latest window start containing ts
	taken := false
	var kid uint32
	haveKey := false
	for start := last; start > ts-p.size; start -= p.advance {
		end := start + p.size
		if p.wm != noTime && end+p.grace <= p.wm {
			break // this and every earlier window are closed
		}
		if !haveKey {
			kid = p.internKey(kb)
			haveKey = true
		}
		wk := winKey{kid, start}
		s, ok := p.aligned[wk]
		if !ok {
			s = p.newSlot(wk)
			p.aligned[wk] = s
			p.maxStart = max(p.maxStart, start)
			if _, ok := p.ends[end]; !ok {
				heap.Push(&p.endHeap, end)
			}
			p.ends[end] = append(p.ends[end], s)
		}
		nums, ext := p.state(s)
		p.lay.add(nums, ext, &p.sm)
		taken = true
		if p.cfg.Emit == EmitChanges {
			p.emit(kid, start, end, s, false, out)
		}
	}
	if haveKey {
		p.mark(kid)
		if p.refs[kid] == 0 {
			p.refs[kid] = 1
			p.releaseKey(kid)
		}
	}
	return taken
}

func (p *Processor) advanceTo(wm int64, out Output) {
	if wm <= p.wm {
		return
	}
	p.wm = wm
	switch p.win.Kind {
	case Tumbling, Hopping:
		for len(p.endHeap) > 0 && p.endHeap[0]+p.grace <= wm {
			end := heap.Pop(&p.endHeap).(int64)
			slots := p.ends[end]
			delete(p.ends, end)
			// Emit in key order so that output is deterministic.
			sort.Slice(slots, func(i, j int) bool {
				return p.keys[p.slotWin[slots[i]].key] < p.keys[p.slotWin[slots[j]].key]
			})
			for _, s := range slots {
				wk := p.slotWin[s]
				if p.cfg.Emit == EmitFinal {
					p.emit(wk.key, wk.start, end, s, true, out)
				}
				p.mark(wk.key)
				delete(p.aligned, wk)
				p.freeSlotID(s)
			}
		}
	case Session:
		p.closeSessions(wm, out)
	case Sliding:
		p.closeSliding(wm, out)
	}
}

// addSession adds the sample at ts to key's sessions, merging those it
// bridges.
func (p *Processor) addSession(kb []byte, ts int64, out Output) bool {
	kid := p.internKey(kb)
	p.mark(kid)
	ss := p.sessions[kid]
	// Sessions overlapping [ts-gap, ts+gap): s.start < ts+gap && s.last+gap > ts.
	lo, hi := -1, -1
	for i, s := range ss {
		if s.start < ts+p.gap && s.last+p.gap > ts {
			if lo < 0 {
				lo = i
			}
			hi = i
		}
	}
	if lo < 0 {
		if p.wm != noTime && ts+p.gap+p.grace <= p.wm {
			if p.refs[kid] == 0 {
				p.refs[kid] = 1
				p.releaseKey(kid)
			}
			return false
		}
		s := session{start: ts, last: ts, slot: p.newSlot(winKey{kid, ts})}
		i := sort.Search(len(ss), func(i int) bool { return ss[i].start > ts })
		ss = append(ss, session{})
		copy(ss[i+1:], ss[i:])
		ss[i] = s
		lo, hi = i, i
	}
	m := ss[lo]
	for i := lo + 1; i <= hi; i++ {
		o := ss[i]
		an, ae := p.state(m.slot)
		bn, be := p.state(o.slot)
		p.lay.merge(an, ae, bn, be)
		if o.last > m.last {
			m.last = o.last
		}
		p.freeSlotID(o.slot)
	}
	if ts < m.start {
		m.start = ts
	}
	if ts > m.last {
		m.last = ts
	}
	p.slotWin[m.slot] = winKey{kid, m.start}
	nums, ext := p.state(m.slot)
	p.lay.add(nums, ext, &p.sm)
	ss[lo] = m
	ss = append(ss[:lo+1], ss[hi+1:]...)
	p.sessions[kid] = ss
	heap.Push(&p.closeQ, closeEntry{at: m.last + p.gap + p.grace, key: kid, start: m.start, name: p.keys[kid]})
	if p.cfg.Emit == EmitChanges {
		p.emit(kid, m.start, m.last+p.gap, m.slot, false, out)
	}
	return true
}

func (p *Processor) closeSessions(wm int64, out Output) {
	for len(p.closeQ) > 0 && p.closeQ[0].at <= wm {
		c := heap.Pop(&p.closeQ).(closeEntry)
		ss := p.sessions[c.key]
		for i, s := range ss {
			if s.start == c.start && s.last+p.gap+p.grace == c.at {
				if p.cfg.Emit == EmitFinal {
					p.emit(c.key, s.start, s.last+p.gap, s.slot, true, out)
				}
				p.mark(c.key)
				p.freeSlotID(s.slot)
				ss = append(ss[:i], ss[i+1:]...)
				if len(ss) == 0 {
					delete(p.sessions, c.key)
				} else {
					p.sessions[c.key] = ss
				}
				break
			}
		}
	}
}

// slideKey is one key's sliding-window state: the events that may still
// fall in an open window, in time order, and the ends of open windows.
type slideKey struct {
	evs  []slideEv
	ends map[int64]bool
}

type slideEv struct {
	t    int64
	nums []float64
	strs [][]byte
}

func (p *Processor) addSliding(kb []byte, ts int64, out Output) bool {
	if p.wm != noTime && ts+p.grace <= p.wm {
		return false
	}
	kid := p.internKey(kb)
	p.mark(kid)
	sk := p.sliding[kid]
	if sk == nil {
		sk = &slideKey{ends: map[int64]bool{}}
		p.sliding[kid] = sk
		p.refs[kid]++ // the key lives while it has buffered events
	}
	e := slideEv{t: ts, nums: append([]float64(nil), p.sm.nums...)}
	if p.lay.next > 0 {
		e.strs = make([][]byte, len(p.sm.strs))
		for i, s := range p.sm.strs {
			if s != nil {
				e.strs[i] = append([]byte{}, s...)
			}
		}
	}
	i := sort.Search(len(sk.evs), func(i int) bool { return sk.evs[i].t > ts })
	sk.evs = append(sk.evs, slideEv{})
	copy(sk.evs[i+1:], sk.evs[i:])
	sk.evs[i] = e
	if !sk.ends[ts] {
		sk.ends[ts] = true
		p.open++
		heap.Push(&p.closeQ, closeEntry{at: ts + p.grace, key: kid, start: ts, name: p.keys[kid]})
	}
	if p.cfg.Emit == EmitChanges {
		// Every open window the event falls in changes: ends in [ts, ts+size).
		ends := make([]int64, 0, 4)
		for end := range sk.ends {
			if end >= ts && end < ts+p.size {
				ends = append(ends, end)
			}
		}
		sort.Slice(ends, func(i, j int) bool { return ends[i] < ends[j] })
		for _, end := range ends {
			p.emitSliding(kid, sk, end, false, out)
		}
	}
	return true
}

func (p *Processor) emitSliding(kid uint32, sk *slideKey, end int64, final bool, out Output) {
	tmp := winKey{kid, end - p.size}
	s := p.newSlot(tmp)
	nums, ext := p.state(s)
	var sm sample
	for _, e := range sk.evs {
		if e.t > end-p.size && e.t <= end {
			sm.nums, sm.strs = e.nums, e.strs
			if sm.strs == nil {
				sm.strs = make([][]byte, len(e.nums))
			}
			p.lay.add(nums, ext, &sm)
		}
	}
	p.open-- // a scratch slot, not an open window
	p.emit(kid, end-p.size, end, s, final, out)
	p.open++
	p.freeSlotID(s)
}

func (p *Processor) closeSliding(wm int64, out Output) {
	touched := map[uint32]bool{}
	for len(p.closeQ) > 0 && p.closeQ[0].at <= wm {
		c := heap.Pop(&p.closeQ).(closeEntry)
		sk := p.sliding[c.key]
		if p.cfg.Emit == EmitFinal {
			p.emitSliding(c.key, sk, c.start, true, out)
		}
		delete(sk.ends, c.start)
		p.open--
		touched[c.key] = true
		p.mark(c.key)
	}
	for kid := range touched {
		sk := p.sliding[kid]
		// Events at or before wm-grace-size fall in no window still open.
		cut := 0
		for cut < len(sk.evs) && sk.evs[cut].t <= wm-p.grace-p.size {
			cut++
		}
		sk.evs = sk.evs[cut:]
		if len(sk.evs) == 0 && len(sk.ends) == 0 {
			delete(p.sliding, kid)
			p.releaseKey(kid)
		}
	}
}

type int64Heap []int64

func (h int64Heap) Len() int           { return len(h) }
func (h int64Heap) Less(i, j int) bool { return h[i] < h[j] }
func (h int64Heap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *int64Heap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *int64Heap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type closeEntry struct {
	at    int64
	key   uint32
	start int64
	name  string // the key, so that ties close in key order whatever the ids
}

type closeHeap []closeEntry

func (h closeHeap) Len() int { return len(h) }
func (h closeHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	if h[i].name != h[j].name {
		return h[i].name < h[j].name
	}
	return h[i].start < h[j].start
}
func (h closeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *closeHeap) Push(x any)   { *h = append(*h, x.(closeEntry)) }
func (h *closeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
