package stream

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
)

// Snapshot layout (frozen; version 1):
//
//	offset  size  field
//	0       4     magic "HSTS"
//	4       1     version (1)
//	5       4     CRC-32C of the payload, big-endian
//	9       4     payload length, big-endian (at most MaxStateBytes)
//	13      n     payload: encoding/gob of snapshotV1
//
// The payload holds the watermarks, the counters and every open window
// with its aggregate state; a fingerprint of the Config (window, key,
// aggregates) refuses a snapshot taken under another definition.

const (
	stateMagic   = "HSTS"
	stateVersion = 1
	stateHeader  = 13
	// MaxStateBytes bounds a snapshot's payload.
	MaxStateBytes = 1 << 30
)

// ErrCorruptState is returned (wrapped) for a snapshot that fails its
// checks: bad magic, version, length or checksum, or an undecodable payload.
var ErrCorruptState = errors.New("stream: corrupt state snapshot")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type snapshotV1 struct {
	Fingerprint string
	WM          int64
	WMLastAny   int64
	WMMaxAll    int64
	Parts       []partSnap
	Stats       Stats
	Windows     []winSnap
	Slides      []slideSnap
}

type partSnap struct {
	Part          int32
	Max, LastSeen int64
}

type winSnap struct {
	Key         string
	Start, Last int64 // Last: sessions only
	Nums        []float64
	HLL         [][]byte
	Top         []map[string]int64
}

type slideSnap struct {
	Key  string
	Evs  []slideEvSnap
	Ends []int64
}

type slideEvSnap struct {
	T    int64
	Nums []float64
	Strs [][]byte
}

func (p *Processor) fingerprint() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%v|%q|%q|%v|", p.win, p.cfg.Key, p.cfg.TimeField, p.cfg.ProcessingTime)
	if len(p.cfg.Keys) > 0 { // NB: after the version-1 fields, so that older snapshots still match
		fmt.Fprintf(&b, "keys=%q|", p.cfg.Keys)
	}
	for _, a := range p.lay.aggs {
		fmt.Fprintf(&b, "%s:%d:%s:%d;", a.Name, a.Kind, a.Field, a.K)
	}
	return b.String()
}

func (p *Processor) snapWindow(s uint32, key string, start, last int64) winSnap {
	nums, ext := p.state(s)
	w := winSnap{Key: key, Start: start, Last: last, Nums: append([]float64(nil), nums...)}
	if len(ext) > 0 {
		w.HLL = make([][]byte, len(ext))
		w.Top = make([]map[string]int64, len(ext))
		for i, x := range ext {
			switch x := x.(type) {
			case *hll:
				w.HLL[i] = x.reg
			case *spaceSaving:
				w.Top[i] = x.counts
			}
		}
	}
	return w
}

// snapGlobal is the state outside any key: watermarks and counters.
func (p *Processor) snapGlobal() snapshotV1 {
	s := snapshotV1{Fingerprint: p.fingerprint(), WM: p.wm, WMLastAny: p.wms.lastAny, WMMaxAll: p.wms.maxAll, Stats: p.stats}
	for part, m := range p.wms.parts {
		s.Parts = append(s.Parts, partSnap{part, m.max, m.lastSeen})
	}
	sort.Slice(s.Parts, func(i, j int) bool { return s.Parts[i].Part < s.Parts[j].Part })
	return s
}

func (p *Processor) snapSlide(kid uint32, sk *slideKey) slideSnap {
	ss := slideSnap{Key: p.keys[kid]}
	for _, e := range sk.evs {
		ss.Evs = append(ss.Evs, slideEvSnap{e.t, e.nums, e.strs})
	}
	for end := range sk.ends {
		ss.Ends = append(ss.Ends, end)
	}
	sort.Slice(ss.Ends, func(i, j int) bool { return ss.Ends[i] < ss.Ends[j] })
	return ss
}

// MarshalState writes the Processor's whole state (open windows,
// aggregates, watermarks, counters) as a snapshot that RestoreState reads.
func (p *Processor) MarshalState() ([]byte, error) {
	s := p.snapGlobal()
	switch p.win.Kind {
	case Tumbling, Hopping:
		for wk, slot := range p.aligned {
			s.Windows = append(s.Windows, p.snapWindow(slot, p.keys[wk.key], wk.start, 0))
		}
	case Session:
		for kid, ss := range p.sessions {
			for _, x := range ss {
				s.Windows = append(s.Windows, p.snapWindow(x.slot, p.keys[kid], x.start, x.last))
			}
		}
	case Sliding:
		for kid, sk := range p.sliding {
			s.Slides = append(s.Slides, p.snapSlide(kid, sk))
		}
		sort.Slice(s.Slides, func(i, j int) bool { return s.Slides[i].Key < s.Slides[j].Key })
	}
	sort.Slice(s.Windows, func(i, j int) bool {
		if s.Windows[i].Key != s.Windows[j].Key {
			return s.Windows[i].Key < s.Windows[j].Key
		}
		return s.Windows[i].Start < s.Windows[j].Start
	})
	return encodeState(&s)
}

// encodeState writes s with the header drawn above.
func encodeState(s *snapshotV1) ([]byte, error) {
	var payload bytes.Buffer
	if err := gob.NewEncoder(&payload).Encode(s); err != nil {
		return nil, fmt.Errorf("stream: encode state: %w", err)
	}
	if payload.Len() > MaxStateBytes {
		return nil, fmt.Errorf("stream: state snapshot is %d bytes, above the limit %d", payload.Len(), MaxStateBytes)
	}
	out := make([]byte, stateHeader, stateHeader+payload.Len())
	copy(out, stateMagic)
	out[4] = stateVersion
	binary.BigEndian.PutUint32(out[5:], crc32.Checksum(payload.Bytes(), crcTable))
	binary.BigEndian.PutUint32(out[9:], uint32(payload.Len()))
	return append(out, payload.Bytes()...), nil
}

func decodeState(b []byte) (*snapshotV1, error) {
	if len(b) < stateHeader {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorruptState, len(b), stateHeader)
	}
	if string(b[:4]) != stateMagic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrCorruptState, b[:4])
	}
	if b[4] != stateVersion {
		return nil, fmt.Errorf("%w: unknown version %d (this build reads %d)", ErrCorruptState, b[4], stateVersion)
	}
	n := binary.BigEndian.Uint32(b[9:])
	if n > MaxStateBytes || int(n) != len(b)-stateHeader {
		return nil, fmt.Errorf("%w: payload length %d, but %d bytes follow the header", ErrCorruptState, n, len(b)-stateHeader)
	}
	payload := b[stateHeader:]
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(b[5:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorruptState)
	}
	var s snapshotV1
	if err := gob.NewDecoder(bytes.NewReader(payload)).Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptState, err)
	}
	return &s, nil
}

// RestoreState replaces the state of p, which must be new (no events
// processed), with a snapshot from MarshalState of a Processor with the
// same window, key, time and aggregates.
func (p *Processor) RestoreState(b []byte) error {
	if p.stats.Events != 0 {
		return errors.New("stream: RestoreState on a Processor that has processed events")
	}
	s, err := decodeState(b)
	if err != nil {
		return err
	}
	return p.restore(s)
}

func (p *Processor) restore(s *snapshotV1) error {
	if s.Fingerprint != p.fingerprint() {
		return fmt.Errorf("stream: the snapshot was taken under another definition (%s), not %s", s.Fingerprint, p.fingerprint())
	}
	p.wm, p.wms.lastAny, p.wms.maxAll, p.wms.wm = s.WM, s.WMLastAny, s.WMMaxAll, s.WM
	for _, ps := range s.Parts {
		p.wms.parts[ps.Part] = &partMark{max: ps.Max, lastSeen: ps.LastSeen}
	}
	p.stats = s.Stats
	p.stats.OpenWindows = 0
	n := p.lay.nslots
	load := func(w *winSnap, slot uint32) error {
		nums, ext := p.state(slot)
		if len(w.Nums) != n {
			return fmt.Errorf("%w: window %q has %d values, want %d", ErrCorruptState, w.Key, len(w.Nums), n)
		}
		copy(nums, w.Nums)
		for i, x := range ext {
			switch x := x.(type) {
			case *hll:
				if i < len(w.HLL) && w.HLL[i] != nil {
					if len(w.HLL[i]) != 1<<hllP {
						return fmt.Errorf("%w: window %q: sketch of %d registers", ErrCorruptState, w.Key, len(w.HLL[i]))
					}
					x.reg = w.HLL[i]
				}
			case *spaceSaving:
				if i < len(w.Top) && w.Top[i] != nil {
					x.counts = w.Top[i]
				}
			}
		}
		return nil
	}
	for i := range s.Windows {
		w := &s.Windows[i]
		kid := p.internKey([]byte(w.Key))
		switch p.win.Kind {
		case Tumbling, Hopping:
			wk := winKey{kid, w.Start}
			if _, dup := p.aligned[wk]; dup {
				return fmt.Errorf("%w: window %q at %d twice", ErrCorruptState, w.Key, w.Start)
			}
			slot := p.newSlot(wk)
			p.aligned[wk] = slot
			p.maxStart = max(p.maxStart, w.Start)
			end := w.Start + p.size
			if _, ok := p.ends[end]; !ok {
				heap.Push(&p.endHeap, end)
			}
			p.ends[end] = append(p.ends[end], slot)
			if err := load(w, slot); err != nil {
				return err
			}
		case Session:
			slot := p.newSlot(winKey{kid, w.Start})
			p.sessions[kid] = append(p.sessions[kid], session{start: w.Start, last: w.Last, slot: slot})
			heap.Push(&p.closeQ, closeEntry{at: w.Last + p.gap + p.grace, key: kid, start: w.Start, name: w.Key})
			if err := load(w, slot); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: a %s window in a snapshot of fixed windows", ErrCorruptState, p.win.Kind)
		}
	}
	for _, ss := range s.Slides {
		if p.win.Kind != Sliding {
			return fmt.Errorf("%w: sliding state for a %s window", ErrCorruptState, p.win.Kind)
		}
		kid := p.internKey([]byte(ss.Key))
		sk := &slideKey{ends: map[int64]bool{}}
		p.sliding[kid] = sk
		p.refs[kid]++
		for _, e := range ss.Evs {
			if len(e.Nums) != len(p.lay.aggs) {
				return fmt.Errorf("%w: sliding event of key %q has %d values", ErrCorruptState, ss.Key, len(e.Nums))
			}
			sk.evs = append(sk.evs, slideEv{t: e.T, nums: e.Nums, strs: e.Strs})
		}
		for _, end := range ss.Ends {
			sk.ends[end] = true
			p.open++
			heap.Push(&p.closeQ, closeEntry{at: end + p.grace, key: kid, start: end, name: ss.Key})
		}
	}
	return nil
}

// TrackChanges makes the Processor remember the keys whose windows
// change, for MarshalChanges (incremental checkpoints). The first
// MarshalChanges after it returns every key.
func (p *Processor) TrackChanges() { p.dirty, p.allDirty = map[string]struct{}{}, true }

// mark records that key id kid's windows changed (TrackChanges).
func (p *Processor) mark(kid uint32) {
	if p.dirty != nil {
		p.dirty[p.keys[kid]] = struct{}{}
	}
}

// openStarts bounds the starts of the open aligned windows: from lo to
// maxStart, n of them; ok is false before the first watermark.
func (p *Processor) openStarts() (lo, n int64, ok bool) {
	if p.wm == noTime || p.maxStart == noTime {
		return 0, 0, false
	}
	// Open: end + grace > wm, so start > wm - grace - size.
	lo = floorDiv(p.wm-p.grace-p.size, p.advance) * p.advance
	if lo > p.maxStart {
		return lo, 0, true
	}
	return lo, (p.maxStart-lo)/p.advance + 1, true
}

// MarshalChanges returns the state outside any key (watermarks, counters:
// a snapshot without windows) and the windows of each key whose windows
// changed since the previous call (nil: the key has none left; the layout
// is drawn in keystate.go); see TrackChanges. RestoreChanges reads what
// the calls wrote.
//
// NB: finding a key's tumbling or hopping windows scans the open windows
// once per call (they are not indexed by key).
func (p *Processor) MarshalChanges() (global []byte, keys map[string][]byte, err error) {
	type kstate struct {
		ws     []winSnap
		slides []slideSnap
	}
	want := map[uint32]*kstate{}
	keys = map[string][]byte{}
	add := func(k string) {
		keys[k] = nil
		if kid, ok := p.keyIDs[k]; ok {
			want[kid] = &kstate{}
		}
	}
	for k := range p.dirty { // with allDirty too: the keys emptied since
		add(k)
	}
	if p.allDirty {
		for kid, k := range p.keys {
			if p.refs[kid] > 0 {
				add(k)
			}
		}
	}
	switch p.win.Kind {
	case Tumbling, Hopping:
		// A key's open windows start after wm - grace - size and at most
		// at maxStart: when few keys changed, looking those starts up
		// for each of them beats a pass over every open window.
		if lo, n, ok := p.openStarts(); ok && n*int64(len(want)) < int64(len(p.aligned)) {
			for kid, s := range want {
				for start := lo; start <= p.maxStart; start += p.advance {
					if slot, ok := p.aligned[winKey{kid, start}]; ok {
						s.ws = append(s.ws, p.snapWindow(slot, p.keys[kid], start, 0))
					}
				}
			}
		} else if len(want) > 0 {
			for wk, slot := range p.aligned {
				if s := want[wk.key]; s != nil {
					s.ws = append(s.ws, p.snapWindow(slot, p.keys[wk.key], wk.start, 0))
				}
			}
		}
	case Session:
		for kid, s := range want {
			for _, x := range p.sessions[kid] {
				s.ws = append(s.ws, p.snapWindow(x.slot, p.keys[kid], x.start, x.last))
			}
		}
	case Sliding:
		for kid, s := range want {
			if sk := p.sliding[kid]; sk != nil {
				s.slides = append(s.slides, p.snapSlide(kid, sk))
			}
		}
	}
	fp := p.fingerprint()
	for kid, s := range want {
		if len(s.ws) == 0 && len(s.slides) == 0 {
			continue
		}
		sort.Slice(s.ws, func(i, j int) bool { return s.ws[i].Start < s.ws[j].Start })
		keys[p.keys[kid]] = encodeKeyState(fp, s.ws, s.slides)
	}
	g := p.snapGlobal()
	if global, err = encodeState(&g); err != nil {
		return nil, nil, err
	}
	clear(p.dirty)
	p.allDirty = false
	return global, keys, nil
}

// RestoreChanges replaces the state of p, which must be new, with the
// global state and the keys' windows that MarshalChanges wrote.
func (p *Processor) RestoreChanges(global []byte, keys map[string][]byte) error {
	if p.stats.Events != 0 {
		return errors.New("stream: RestoreChanges on a Processor that has processed events")
	}
	s, err := decodeState(global)
	if err != nil {
		return fmt.Errorf("global: %w", err)
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	fp := p.fingerprint()
	for _, k := range names {
		ws, slides, err := decodeKeyState(keys[k], k, fp)
		if err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		s.Windows = append(s.Windows, ws...)
		s.Slides = append(s.Slides, slides...)
	}
	return p.restore(s)
}
