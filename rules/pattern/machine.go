package pattern

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/heraldhq/herald/event"
)

// Machine matches events against many patterns at once. The zero value
// is not usable; call NewMachine. All methods are safe for concurrent use:
// rules may be added and removed while events are matched, and matching
// never waits for an edit.
//
// NB: the automaton is kept twice (the left-right technique). Matchers
// read the copy that side names, registered in that copy's reader count;
// an edit (one writer at a time) changes the other copy, which no matcher
// reads, flips side with one atomic store, waits for the matchers still
// on the old copy to finish their event, and applies the same edit to it.
// So a match sees the rule set either wholly before or wholly after an
// edit, and only the writer ever waits. The price is twice the memory of
// one automaton and edits that do their work twice.
type Machine struct {
	side    atomic.Int32
	copies  [2]atomic.Pointer[machine]
	readers [2]paddedCount
	pool    sync.Pool

	// wmu serialises edits and guards what follows.
	wmu   sync.Mutex
	rules map[string]*ruleRec
	free  []int32 // rule indexes to reuse
	next  int32   // the next fresh rule index
}

// paddedCount keeps the two reader counts on separate cache lines.
type paddedCount struct {
	n atomic.Int64
	_ [56]byte
}

// ruleRec is what the machine keeps of a rule: the pattern's source (a
// rebuild recompiles it; keeping the compiled form would double a simple
// rule's memory) and, per copy, the states where it ends.
type ruleRec struct {
	idx   int32
	src   []byte
	conjs int
	ends  [2][]*state
}

// machine is one copy of the automaton proper. Matchers only read it;
// Machine's writer changes it only while no matcher can reach it.
type machine struct {
	root    *pathNode
	pathIDs map[string]int32
	start   *state
	// dense holds the start state's transitions by path id.
	dense       []*trans
	startAbsent []*trans
	names       []string
	// strs holds every transition's exact strings; next every
	// transition's conditions (by condKey), so that identical conditions
	// share their next state.
	strs       map[strKey][]*state
	next       map[strKey]*state
	live, dead int
	states     int
	// attrs are the used top-level paths of CloudEvent attributes, so
	// that MatchEvent need not look each up.
	attrs [numAttrs]*pathNode
}

// CloudEvent attributes MatchEvent presents as top-level fields.
const (
	attrSpecVersion = iota
	attrID
	attrSource
	attrType
	attrSubject
	attrContentType
	attrTime
	attrKind
	attrCorrelationID
	attrCausationID
	attrTraceParent
	attrAggregateID
	attrAggregateVersion
	attrData
	numAttrs
)

var attrNames = [numAttrs]string{"specversion", "id", "source", "type", "subject", "datacontenttype", "time", "kind",
	"correlationid", "causationid", "traceparent", "aggregateid", "aggregateversion", "data"}

type state struct {
	trans []*trans
	rules []int32
}

// trans is a state's transition on one field path. Exact strings, the
// most common condition, live in the machine's strs map (one map per copy
// rather than one per transition keeps a simple rule small); every other
// operator lives in ops, allocated when the transition has one.
type trans struct {
	path     int32
	mayDup   bool
	needFold bool
	hasStrs  bool
	*ops
}

// strKey names an exact string (or, in machine.next, a condition) of one
// transition.
type strKey struct {
	t *trans
	s string
}

// ops are a transition's conditions other than exact strings.
type ops struct {
	nums                                   map[float64][]*state
	tru, fal, null                         []*state
	prefix, suffix, prefixFold, suffixFold *trie
	fold                                   map[string][]*state
	wildTrie                               *trie
	wilds                                  []wildEntry
	ranges                                 []rangeEntry
	rangeMu                                sync.Mutex
	rangeIx                                atomic.Pointer[rangeIndex]
	wildSuffix                             *trie
	cidrs                                  []cidrEntry
	abs                                    []abEntry
	exists                                 []*state
	absent                                 []*state
}

// absentStates are the states t leads to when its path is missing.
func (t *trans) absentStates() []*state {
	if t.ops == nil {
		return nil
	}
	return t.absent
}

type wildEntry struct {
	w    wildcard
	next *state
}

type rangeEntry struct {
	m    Matcher
	next *state
}

type cidrEntry struct {
	m    Matcher
	next *state
}

type abEntry struct {
	m     Matcher
	strs  map[string]struct{}
	nums  map[float64]struct{}
	wilds []wildcard
	next  *state
}

// trie is a byte trie; out holds the states of strings ending at a node.
type trie struct {
	keys []byte
	kids []*trie
	out  []*state
	wout []int32
}

func (t *trie) child(c byte, create bool) *trie {
	for i, k := range t.keys {
		if k == c {
			return t.kids[i]
		}
	}
	if !create {
		return nil
	}
	n := &trie{}
	t.keys = append(t.keys, c)
	t.kids = append(t.kids, n)
	return n
}

func (t *trie) insert(s string, reverse bool) *trie {
	n := t
	for i := 0; i < len(s); i++ {
		c := s[i]
		if reverse {
			c = s[len(s)-1-i]
		}
		n = n.child(c, true)
	}
	return n
}

// NewMachine returns an empty Machine.
func NewMachine() *Machine {
	m := &Machine{rules: make(map[string]*ruleRec)}
	m.copies[0].Store(newMachine())
	m.copies[1].Store(newMachine())
	return m
}

func newMachine() *machine {
	return &machine{root: newPathNode(), pathIDs: make(map[string]int32), start: &state{},
		strs: make(map[strKey][]*state), next: make(map[strKey]*state)}
}

// acquire returns the copy matchers read now, registered as read until
// release(i).
func (m *Machine) acquire() (*machine, int32) {
	for {
		i := m.side.Load()
		m.readers[i].n.Add(1)
		// The writer may have flipped side between the load and the
		// registration, and may be editing copy i already: check again.
		if m.side.Load() == i {
			return m.copies[i].Load(), i
		}
		m.readers[i].n.Add(-1)
	}
}

func (m *Machine) release(i int32) { m.readers[i].n.Add(-1) }

// editLocked applies fn to both copies, first the one no matcher reads,
// then, after flipping side and waiting for matchers on the other, that
// one. fn must make the same change to whichever copy it is given.
func (m *Machine) editLocked(fn func(i int32)) {
	idle := 1 - m.side.Load()
	fn(idle)
	m.side.Store(idle)
	old := 1 - idle
	for spins := 0; m.readers[old].n.Load() != 0; spins++ {
		// A matcher holds a copy for one event: microseconds.
		if spins < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
	fn(old)
}

// Len returns the number of rules.
func (m *Machine) Len() int {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	return len(m.rules)
}

// Add adds (or replaces) the rule name with pattern p. A replacement is
// atomic: a concurrent match sees the old pattern or the new one.
func (m *Machine) Add(name string, p *Pattern) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	old := m.rules[name]
	delete(m.rules, name)
	var idx int32
	if n := len(m.free); n > 0 {
		idx = m.free[n-1]
		m.free = m.free[:n-1]
	} else {
		idx = m.next
		m.next++
	}
	rec := &ruleRec{idx: idx, src: p.src, conjs: len(p.Conjs)}
	m.editLocked(func(i int32) {
		if old != nil {
			m.dropLocked(i, old)
		}
		mm := m.copies[i].Load()
		for int(idx) >= len(mm.names) {
			mm.names = append(mm.names, "")
		}
		mm.names[idx] = name
		rec.ends[i] = mm.addPattern(idx, p)
	})
	if old != nil {
		m.free = append(m.free, old.idx)
	}
	m.rules[name] = rec
}

// Remove removes the rule name; it reports whether there was one.
func (m *Machine) Remove(name string) bool {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	rec, ok := m.rules[name]
	if !ok {
		return false
	}
	delete(m.rules, name)
	m.editLocked(func(i int32) { m.dropLocked(i, rec) })
	m.free = append(m.free, rec.idx)
	return true
}

// dropLocked removes rec (no longer in m.rules) from copy i, rebuilding
// the copy when removed rules' states outnumber the live ones.
func (m *Machine) dropLocked(i int32, rec *ruleRec) {
	mm := m.copies[i].Load()
	for _, s := range rec.ends[i] {
		s.rules = slices.DeleteFunc(s.rules, func(r int32) bool { return r == rec.idx })
	}
	rec.ends[i] = nil
	mm.names[rec.idx] = ""
	mm.live -= rec.conjs
	mm.dead += rec.conjs
	if mm.dead > 1024 && mm.dead > mm.live {
		m.rebuildLocked(i)
	}
}

// rebuildLocked builds copy i afresh from the live rules, dropping the
// states removed rules left behind. Rule indexes are kept.
func (m *Machine) rebuildLocked(i int32) {
	old := m.copies[i].Load()
	nm := newMachine()
	nm.names = old.names
	for _, rec := range m.rules {
		p, err := Compile(rec.src)
		if err != nil {
			panic("pattern: a pattern compiled once no longer compiles: " + err.Error())
		}
		rec.ends[i] = nm.addPattern(rec.idx, p)
	}
	m.copies[i].Store(nm)
}

// pathKey is path's key in pathIDs: every segment length-prefixed, so
// that two paths never share one (a segment may hold any byte, NUL too:
// joined by NUL, {"\u0000": ...} and {"": {"": ...}} would collide).
func pathKey(path []string) string {
	n := 0
	for _, seg := range path {
		n += len(seg) + 4
	}
	b := make([]byte, 0, n)
	for _, seg := range path {
		b = strconv.AppendInt(b, int64(len(seg)), 10)
		b = append(b, ':')
		b = append(b, seg...)
	}
	return string(b)
}

func (mm *machine) pathID(path []string) int32 {
	key := pathKey(path)
	if id, ok := mm.pathIDs[key]; ok {
		return id
	}
	id := int32(len(mm.pathIDs))
	mm.pathIDs[key] = id
	n := mm.root
	for _, seg := range path {
		if n.children == nil {
			n.children = make(map[string]*pathNode)
		}
		c := n.children[seg]
		if c == nil {
			c = newPathNode()
			n.children[seg] = c
			n.small = append(n.small, pathKid{seg, c})
		}
		n = c
	}
	n.id = id
	mm.dense = append(mm.dense, nil)
	for i, a := range attrNames {
		mm.attrs[i] = mm.root.children[a]
	}
	return id
}

func (mm *machine) addPattern(idx int32, p *Pattern) []*state {
	var ends []*state
	for _, conj := range p.Conjs {
		s := mm.start
		for i := range conj {
			c := &conj[i]
			pid := mm.pathID(c.Path)
			t := mm.transFor(s, pid)
			key := condKey(c)
			n := mm.next[strKey{t, key}]
			if n == nil {
				n = &state{}
				mm.states++
				mm.next[strKey{t, key}] = n
				t.register(mm, c, n)
				if s == mm.start && len(t.absentStates()) > 0 && !slices.Contains(mm.startAbsent, t) {
					mm.startAbsent = append(mm.startAbsent, t)
				}
			}
			s = n
		}
		if !slices.Contains(s.rules, idx) {
			s.rules = append(s.rules, idx)
		}
		ends = append(ends, s)
		mm.live++
	}
	return ends
}

func (mm *machine) transFor(s *state, pid int32) *trans {
	if s == mm.start {
		if t := mm.dense[pid]; t != nil {
			return t
		}
		t := &trans{path: pid}
		mm.dense[pid] = t
		return t
	}
	for _, t := range s.trans {
		if t.path == pid {
			return t
		}
	}
	t := &trans{path: pid}
	s.trans = append(s.trans, t)
	return t
}

func (t *trans) register(mm *machine, c *Cond, n *state) {
	exactOnly := true
	for i := range c.Matchers {
		m := c.Matchers[i]
		if m.Kind == KString {
			k := strKey{t, m.Str}
			mm.strs[k] = append(mm.strs[k], n)
			t.hasStrs = true
			continue
		}
		if t.ops == nil {
			t.ops = &ops{}
		}
		switch m.Kind {
		case KNumber:
			if t.nums == nil {
				t.nums = make(map[float64][]*state)
			}
			t.nums[m.Num] = append(t.nums[m.Num], n)
			continue
		case KTrue:
			t.tru = append(t.tru, n)
			continue
		case KFalse:
			t.fal = append(t.fal, n)
			continue
		case KNull:
			t.null = append(t.null, n)
			continue
		}
		exactOnly = false
		switch m.Kind {
		case KPrefix:
			if t.prefix == nil {
				t.prefix = &trie{}
			}
			nd := t.prefix.insert(m.Str, false)
			nd.out = append(nd.out, n)
		case KSuffix:
			if t.suffix == nil {
				t.suffix = &trie{}
			}
			nd := t.suffix.insert(m.Str, true)
			nd.out = append(nd.out, n)
		case KPrefixFold:
			if t.prefixFold == nil {
				t.prefixFold = &trie{}
			}
			nd := t.prefixFold.insert(m.Str, false)
			nd.out = append(nd.out, n)
			t.needFold = true
		case KSuffixFold:
			if t.suffixFold == nil {
				t.suffixFold = &trie{}
			}
			nd := t.suffixFold.insert(m.Str, true)
			nd.out = append(nd.out, n)
			t.needFold = true
		case KFold:
			if t.fold == nil {
				t.fold = make(map[string][]*state)
			}
			t.fold[m.Str] = append(t.fold[m.Str], n)
			t.needFold = true
		case KWildcard:
			if t.wildTrie == nil {
				t.wildTrie = &trie{}
			}
			w := compileWildcard(m.Str)
			// Index by the longer literal end, so that only patterns
			// whose literal start or end the value has are tried.
			nd := t.wildTrie.insert(w.literalPrefix(), false)
			if suf := w.segs[len(w.segs)-1]; w.star && len(suf) > len(w.literalPrefix()) {
				if t.wildSuffix == nil {
					t.wildSuffix = &trie{}
				}
				nd = t.wildSuffix.insert(suf, true)
			}
			nd.wout = append(nd.wout, int32(len(t.wilds)))
			t.wilds = append(t.wilds, wildEntry{w: w, next: n})
		case KNumeric:
			t.ranges = append(t.ranges, rangeEntry{m: m, next: n})
			t.rangeIx.Store(nil)
		case KCIDR:
			t.cidrs = append(t.cidrs, cidrEntry{m: m, next: n})
		case KExists:
			t.exists = append(t.exists, n)
		case KAbsent:
			t.absent = append(t.absent, n)
		case KAnythingBut, KAnythingButPrefix, KAnythingButSuffix, KAnythingButFold, KAnythingButWildcard:
			e := abEntry{m: m, next: n}
			switch m.Kind {
			case KAnythingBut:
				e.strs = make(map[string]struct{}, len(m.Strs))
				for _, s := range m.Strs {
					e.strs[s] = struct{}{}
				}
				e.nums = make(map[float64]struct{}, len(m.Nums))
				for _, x := range m.Nums {
					e.nums[x] = struct{}{}
				}
			case KAnythingButFold:
				e.strs = make(map[string]struct{}, len(m.Strs))
				for _, s := range m.Strs {
					e.strs[s] = struct{}{}
				}
				t.needFold = true
			case KAnythingButWildcard:
				for _, s := range m.Strs {
					e.wilds = append(e.wilds, compileWildcard(s))
				}
			}
			t.abs = append(t.abs, e)
		}
	}
	if len(c.Matchers) > 1 && !exactOnly {
		t.mayDup = true
	}
}

// scratch is one matcher's working memory, pooled.
type scratch struct {
	fl      flattener
	groups  []group
	chosen  []int32
	nexts   []*state
	seen    []uint32
	gen     uint32
	fold    []byte
	foldOK  bool
	timeBuf []byte
	verBuf  []byte
	out     []string
}

type group struct {
	path   int32
	lo, hi int32
}

func (m *Machine) getScratch() *scratch {
	if sc, ok := m.pool.Get().(*scratch); ok {
		return sc
	}
	return &scratch{}
}

// MatchJSON returns the names of the rules whose patterns match doc, a
// JSON object (a CloudEvent in JSON form, or any object), appended to dst.
// Each name appears once; order is unspecified. An error means doc is
// not valid JSON (values no pattern refers to are only lightly checked).
func (m *Machine) MatchJSON(doc []byte, dst []string) ([]string, error) {
	sc := m.getScratch()
	defer m.pool.Put(sc)
	mm, side := m.acquire()
	defer m.release(side)
	sc.fl.reset()
	if err := sc.fl.flattenDoc(doc, mm.root); err != nil {
		return dst, fmt.Errorf("match event: %w", err)
	}
	return mm.run(sc, dst), nil
}

// jsonContentType reports whether data of this content type is JSON.
func jsonContentType(ct string) bool {
	if ct == "" {
		return true
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	return ct == "application/json" || ct == "text/json" || strings.HasSuffix(ct, "+json")
}

// MatchEvent returns the names of the rules whose patterns match e,
// appended to dst. e's attributes are top-level string fields (id,
// source, type, subject, time, datacontenttype, specversion, kind,
// correlationid, causationid, traceparent, aggregateid, aggregateversion
// and the extensions) and its data, when JSON, is the field "data". Data
// that is not valid JSON is treated as absent.
func (m *Machine) MatchEvent(e *event.Event, dst []string) []string {
	sc := m.getScratch()
	defer m.pool.Put(sc)
	mm, side := m.acquire()
	defer m.release(side)
	sc.fl.reset()
	root := mm.root
	if root.children == nil {
		return mm.run(sc, dst)
	}
	at := &mm.attrs
	attr := func(a int, v string) {
		if n := at[a]; n != nil && n.id >= 0 && v != "" {
			sc.fl.emit(n, vString, unsafe.Slice(unsafe.StringData(v), len(v)), 0)
		}
	}
	attr(attrSpecVersion, "1.0")
	attr(attrID, e.ID)
	attr(attrSource, e.Source)
	attr(attrType, e.Type)
	attr(attrSubject, e.Subject)
	attr(attrContentType, e.DataContentType)
	if n := at[attrTime]; n != nil && n.id >= 0 && !e.Time.IsZero() {
		sc.timeBuf = e.Time.UTC().AppendFormat(sc.timeBuf[:0], time.RFC3339Nano)
		sc.fl.emit(n, vString, sc.timeBuf, 0)
	}
	if n := at[attrKind]; n != nil && n.id >= 0 {
		attr(attrKind, e.Kind.String())
	}
	attr(attrCorrelationID, e.CorrelationID)
	attr(attrCausationID, e.CausationID)
	attr(attrTraceParent, e.TraceParent)
	attr(attrAggregateID, e.AggregateID)
	if n := at[attrAggregateVersion]; n != nil && n.id >= 0 && e.AggregateVersion != 0 {
		sc.verBuf = strconv.AppendInt(sc.verBuf[:0], e.AggregateVersion, 10)
		sc.fl.emit(n, vString, sc.verBuf, 0)
	}
	for k, v := range e.Extensions {
		if n := root.children[k]; n != nil && n.id >= 0 && v != "" {
			sc.fl.emit(n, vString, unsafe.Slice(unsafe.StringData(v), len(v)), 0)
		}
	}
	if n := at[attrData]; n != nil && len(e.Data) > 0 && jsonContentType(e.DataContentType) {
		keep := len(sc.fl.fields)
		if err := sc.fl.flattenValue(e.Data, n, 1); err != nil {
			sc.fl.fields = sc.fl.fields[:keep]
		}
	}
	return mm.run(sc, dst)
}

func (mm *machine) run(sc *scratch, dst []string) []string {
	fs := sc.fl.fields
	slices.SortStableFunc(fs, func(a, b field) int { return int(a.path - b.path) })
	sc.groups = sc.groups[:0]
	for i := 0; i < len(fs); {
		j := i + 1
		for j < len(fs) && fs[j].path == fs[i].path {
			j++
		}
		sc.groups = append(sc.groups, group{fs[i].path, int32(i), int32(j)})
		i = j
	}
	if len(sc.seen) < len(mm.names) {
		sc.seen = make([]uint32, len(mm.names)+len(mm.names)/4+8)
		sc.gen = 0
	}
	sc.gen++
	if sc.gen == 0 {
		clear(sc.seen)
		sc.gen = 1
	}
	sc.out = dst
	sc.chosen = sc.chosen[:0]
	sc.nexts = sc.nexts[:0]

	// The start state: its transitions by the event's paths.
	mm.collect(sc, mm.start)
	for _, g := range sc.groups {
		if t := mm.dense[g.path]; t != nil {
			mm.visitValues(sc, t, g.lo, g.hi)
		}
	}
	for _, t := range mm.startAbsent {
		if _, _, ok := sc.find(t.path); !ok {
			for _, n := range t.absentStates() {
				mm.visit(sc, n)
			}
		}
	}
	out := sc.out
	sc.out = nil
	return out
}

func (sc *scratch) find(path int32) (int32, int32, bool) {
	for _, g := range sc.groups {
		if g.path == path {
			return g.lo, g.hi, true
		}
	}
	return 0, 0, false
}

func (mm *machine) collect(sc *scratch, s *state) {
	for _, r := range s.rules {
		if sc.seen[r] != sc.gen {
			sc.seen[r] = sc.gen
			sc.out = append(sc.out, mm.names[r])
		}
	}
}

func (mm *machine) visit(sc *scratch, s *state) {
	mm.collect(sc, s)
	for _, t := range s.trans {
		lo, hi, ok := sc.find(t.path)
		if !ok {
			for _, n := range t.absentStates() {
				mm.visit(sc, n)
			}
			continue
		}
		mm.visitValues(sc, t, lo, hi)
	}
}

func (mm *machine) visitValues(sc *scratch, t *trans, lo, hi int32) {
	fs := sc.fl.fields
	for j := lo; j < hi; j++ {
		f := &fs[j]
		hasTrail := f.t1 > f.t0
		if hasTrail {
			ok := true
			ft := sc.fl.trails[f.t0:f.t1]
			for _, c := range sc.chosen {
				cf := &fs[c]
				if !consistent(sc.fl.trails[cf.t0:cf.t1], ft) {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
		}
		base := len(sc.nexts)
		t.step(mm, sc, f)
		end := len(sc.nexts)
		if end == base {
			continue
		}
		if hasTrail {
			sc.chosen = append(sc.chosen, j)
		}
		for k := base; k < end; k++ {
			mm.visit(sc, sc.nexts[k])
		}
		if hasTrail {
			sc.chosen = sc.chosen[:len(sc.chosen)-1]
		}
		sc.nexts = sc.nexts[:base]
	}
}

func (sc *scratch) add(t *trans, ns []*state) {
	if !t.mayDup {
		sc.nexts = append(sc.nexts, ns...)
		return
	}
	for _, n := range ns {
		sc.addOne(t, n)
	}
}

func (sc *scratch) addOne(t *trans, n *state) {
	if t.mayDup {
		for _, x := range sc.nexts[max(0, len(sc.nexts)-16):] {
			if x == n {
				return
			}
		}
	}
	sc.nexts = append(sc.nexts, n)
}

// addPrefixes adds the states of the trie n at every prefix of s, the
// empty one included.
func (t *trans) addPrefixes(sc *scratch, n *trie, s []byte) {
	sc.add(t, n.out)
	for i := 0; i < len(s) && n != nil; i++ {
		if n = n.child(s[i], false); n != nil {
			sc.add(t, n.out)
		}
	}
}

// addSuffixes is addPrefixes for a trie of reversed strings: it walks s
// from its end, so it finds every suffix.
func (t *trans) addSuffixes(sc *scratch, n *trie, s []byte) {
	sc.add(t, n.out)
	for i := len(s) - 1; i >= 0 && n != nil; i-- {
		if n = n.child(s[i], false); n != nil {
			sc.add(t, n.out)
		}
	}
}

// step appends the states the value f leads to from t.
func (t *trans) step(mm *machine, sc *scratch, f *field) {
	if t.hasStrs && f.k == vString {
		if ns, ok := mm.strs[strKey{t, bytesToString(f.s)}]; ok {
			sc.add(t, ns)
		}
	}
	if t.ops != nil {
		t.stepOps(sc, f)
	}
}

// stepOps is step for the conditions in ops.
func (t *trans) stepOps(sc *scratch, f *field) {
	switch f.k {
	case vString:
		s := f.s
		if t.prefix != nil {
			t.addPrefixes(sc, t.prefix, s)
		}
		if t.suffix != nil {
			t.addSuffixes(sc, t.suffix, s)
		}
		var fold []byte
		if t.needFold {
			sc.fold = foldBytes(sc.fold, s)
			fold = sc.fold
		}
		if t.fold != nil {
			if ns, ok := t.fold[bytesToString(fold)]; ok {
				sc.add(t, ns)
			}
		}
		if t.prefixFold != nil {
			t.addPrefixes(sc, t.prefixFold, fold)
		}
		if t.suffixFold != nil {
			t.addSuffixes(sc, t.suffixFold, fold)
		}
		if t.wildTrie != nil {
			n := t.wildTrie
			t.tryWild(sc, n, s)
			for i := 0; i < len(s) && n != nil; i++ {
				if n = n.child(s[i], false); n != nil {
					t.tryWild(sc, n, s)
				}
			}
		}
		if t.wildSuffix != nil {
			n := t.wildSuffix
			for i := len(s) - 1; i >= 0 && n != nil; i-- {
				if n = n.child(s[i], false); n != nil {
					t.tryWild(sc, n, s)
				}
			}
		}
		if len(t.cidrs) > 0 {
			if a, ok := parseIP(s); ok {
				for i := range t.cidrs {
					if cidrContains(t.cidrs[i].m.Prefix, a) {
						sc.addOne(t, t.cidrs[i].next)
					}
				}
			}
		}
	case vNumber:
		if t.nums != nil {
			if ns, ok := t.nums[f.num]; ok {
				sc.add(t, ns)
			}
		}
		switch {
		case len(t.ranges) == 0:
		case len(t.ranges) <= 8:
			for i := range t.ranges {
				if inRange(&t.ranges[i].m, f.num) {
					sc.addOne(t, t.ranges[i].next)
				}
			}
		default:
			t.rangeIndex().query(f.num, func(ns []*state) {
				for _, n := range ns {
					sc.addOne(t, n)
				}
			})
		}
	case vTrue:
		sc.add(t, t.tru)
	case vFalse:
		sc.add(t, t.fal)
	case vNull:
		sc.add(t, t.null)
	}
	sc.add(t, t.exists)
	for i := range t.abs {
		if t.abs[i].matches(sc, f) {
			sc.addOne(t, t.abs[i].next)
		}
	}
}

func (t *trans) tryWild(sc *scratch, n *trie, s []byte) {
	for _, w := range n.wout {
		if t.wilds[w].w.match(s) {
			sc.addOne(t, t.wilds[w].next)
		}
	}
}

func (e *abEntry) matches(sc *scratch, f *field) bool {
	switch e.m.Kind {
	case KAnythingBut:
		switch f.k {
		case vString:
			_, ex := e.strs[bytesToString(f.s)]
			return !ex
		case vNumber:
			_, ex := e.nums[f.num]
			return !ex
		}
		return true
	case KAnythingButPrefix:
		return f.k != vString || !strings.HasPrefix(bytesToString(f.s), e.m.Str)
	case KAnythingButSuffix:
		return f.k != vString || !strings.HasSuffix(bytesToString(f.s), e.m.Str)
	case KAnythingButFold:
		if f.k != vString {
			return true
		}
		sc.fold = foldBytes(sc.fold, f.s)
		_, ex := e.strs[bytesToString(sc.fold)]
		return !ex
	case KAnythingButWildcard:
		if f.k != vString {
			return true
		}
		for i := range e.wilds {
			if e.wilds[i].match(f.s) {
				return false
			}
		}
		return true
	}
	return false
}

// rangeIndex returns the transition's numeric range index, building it
// on first use after a change (under the read lock, so it is built once
// under its own mutex and published atomically).
func (t *trans) rangeIndex() *rangeIndex {
	if ix := t.rangeIx.Load(); ix != nil {
		return ix
	}
	t.rangeMu.Lock()
	defer t.rangeMu.Unlock()
	if ix := t.rangeIx.Load(); ix != nil {
		return ix
	}
	ix := buildRangeIndex(t.ranges)
	t.rangeIx.Store(ix)
	return ix
}
