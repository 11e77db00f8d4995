package subscription

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/internal/httpjson"
)

// Entry states. Every offset of a partition's window (base up to the read
// position) has one.
const (
	stWaiting uint8 = iota // unacked, not out: deliverable at due (it is in the heap)
	stReady                // read, queued with its data in the ready FIFO
	stOut                  // delivered; its ack deadline is due (in the heap)
	stBlocked              // ordering: waits behind an earlier message of its key
	stAcked
	stUnread // unacked, to be read again by the fetcher, in offset order (after a restart or seek)
)

// ent is the bookkeeping of one message above the cursor: 16 bytes.
type ent struct {
	due      int64 // unix ms
	attempts uint16
	state    uint8
}

// part is one partition's window.
type part struct {
	base    int64 // every offset below is acknowledged
	ents    []ent // offsets base .. base+len(ents)-1, read so far
	acked   int   // acked entries in ents
	readPos int64 // where the fetcher reads next: <= next(), below it only stUnread entries are picked up
}

func (p *part) next() int64 { return p.base + int64(len(p.ents)) }

// hitem is a heap entry: a message due at due. Entries are not removed when
// their message changes; a popped entry whose message no longer has that
// due time is stale and skipped.
type hitem struct {
	due int64
	pk  uint64 // partition<<48 | offset
}

func mkpk(p int, off int64) uint64   { return uint64(p)<<48 | uint64(off) }
func splitpk(pk uint64) (int, int64) { return int(pk >> 48), int64(pk & (1<<48 - 1)) }

type hheap []hitem

func (h hheap) Len() int { return len(h) }
func (h hheap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].pk < h[j].pk
}
func (h hheap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *hheap) Push(x any)   { *h = append(*h, x.(hitem)) }
func (h *hheap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// msg is a message read from the log, with its attributes.
type msg struct {
	p     int
	rec   eventlog.Record
	attrs map[string]string
	isCE  bool
}

func (m *msg) size() int { return len(m.rec.Value) + len(m.rec.Key) + 64 }

type keyRef struct {
	p   int
	key string
}

// sub is one subscription's runtime. Lock order: Manager.mu, then sub.mu.
type sub struct {
	m    *Manager
	name string

	ctx    context.Context // ends at delete or close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		st         *settings
		parts      []*part
		heap       hheap
		ready      []*msg
		readyBytes int
		keyHold    map[keyRef]int64  // ordering: the message that holds a key
		holders    map[uint64]string // pk -> key, for the holders
		blocked    map[keyRef][]int64
		recHolds   map[uint64]string // recovery only: pk -> ordering key of messages delivered under ordering
		inc        uint32            // in every ack id; new at load and at each seek
		gen        uint64            // bumped by seek: reads in flight are dropped
		notify     chan struct{}
		counters   [5]int64 // delivered, acked, redeliveries, dead-lettered, filtered
		dirty      bool
		deleted    bool
		pushConc   int
	}
}

const (
	cDelivered = iota
	cAcked
	cRedeliveries
	cDLQ
	cFiltered
)

const (
	prefetchMsgs  = 8192
	prefetchBytes = 16 << 20
	readBytes     = 1 << 20
)

func newInc() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

func newSub(m *Manager, st *settings) *sub {
	s := &sub{m: m, name: st.def.Name}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.st = st
	s.mu.keyHold = map[keyRef]int64{}
	s.mu.holders = map[uint64]string{}
	s.mu.blocked = map[keyRef][]int64{}
	s.mu.inc = newInc()
	s.mu.notify = make(chan struct{})
	s.mu.pushConc = st.pushConc
	return s
}

// signalLocked wakes everyone waiting for a change.
func (s *sub) signalLocked() {
	close(s.mu.notify)
	s.mu.notify = make(chan struct{})
}

// setPositionsLocked resets the windows to pos: offsets not acked there are
// waiting, deliverable at once.
func (s *sub) setPositionsLocked(pos positions, inc uint32, now int64) {
	s.mu.heap = s.mu.heap[:0]
	s.mu.ready, s.mu.readyBytes = nil, 0
	clear(s.mu.keyHold)
	clear(s.mu.holders)
	clear(s.mu.blocked)
	s.mu.recHolds = nil
	s.mu.parts = make([]*part, len(pos))
	for k, pp := range pos {
		p := &part{base: pp.Base}
		if n := len(pp.Acked); n > 0 {
			end := pp.Acked[n-1][1] + 1
			p.ents = make([]ent, end-pp.Base)
			for _, r := range pp.Acked {
				for o := r[0]; o <= r[1]; o++ {
					p.ents[o-pp.Base].state = stAcked
					p.acked++
				}
			}
			for i := range p.ents {
				if p.ents[i].state != stAcked {
					p.ents[i].state = stUnread
				}
			}
		}
		p.readPos = p.base
		s.mu.parts[k] = p
		s.advanceLocked(p)
	}
	heap.Init(&s.mu.heap)
	s.mu.inc = inc
	s.mu.gen++
	s.signalLocked()
}

// positionsLocked captures the windows' acknowledged state.
func (s *sub) positionsLocked() positions {
	pos := make(positions, len(s.mu.parts))
	for k, p := range s.mu.parts {
		pos[k].Base = p.base
		for i := 0; i < len(p.ents); i++ {
			if p.ents[i].state != stAcked {
				continue
			}
			j := i
			for j+1 < len(p.ents) && p.ents[j+1].state == stAcked {
				j++
			}
			pos[k].Acked = append(pos[k].Acked, [2]int64{p.base + int64(i), p.base + int64(j)})
			i = j
		}
	}
	return pos
}

// advanceLocked moves the cursor over the acknowledged prefix.
func (s *sub) advanceLocked(p *part) {
	n := 0
	for n < len(p.ents) && p.ents[n].state == stAcked {
		n++
	}
	if n == 0 {
		return
	}
	p.ents = p.ents[n:]
	p.base += int64(n)
	p.acked -= n
	p.readPos = max(p.readPos, p.base)
	if len(p.ents) == 0 {
		p.ents = nil // drop the old array
	} else if cap(p.ents) > 4*len(p.ents)+1024 {
		p.ents = slices.Clone(p.ents)
	}
	s.mu.dirty = true
}

// compactHeapLocked drops stale heap items (of messages acked, or whose
// due time changed) once they outnumber the window: an acked message's
// item otherwise stays until its deadline, up to 600 s of traffic.
func (s *sub) compactHeapLocked() {
	window := 0
	for _, p := range s.mu.parts {
		window += len(p.ents)
	}
	if len(s.mu.heap) <= 2*window+65536 {
		return
	}
	h := s.mu.heap[:0]
	for _, it := range s.mu.heap {
		p, off := splitpk(it.pk)
		if e := s.entLocked(p, off); e != nil && e.due == it.due && (e.state == stOut || e.state == stWaiting) {
			h = append(h, it)
		}
	}
	clear(s.mu.heap[len(h):])
	s.mu.heap = h
	if cap(h) > 4*len(h)+65536 {
		s.mu.heap = slices.Clone(h)
	}
	heap.Init(&s.mu.heap)
}

// entLocked returns the entry of (p, off), or nil outside the window.
func (s *sub) entLocked(p int, off int64) *ent {
	if p < 0 || p >= len(s.mu.parts) {
		return nil
	}
	pt := s.mu.parts[p]
	if off < pt.base || off >= pt.next() {
		return nil
	}
	return &pt.ents[off-pt.base]
}

// ackLocked acknowledges (p, off), which must be unacked in the window.
func (s *sub) ackLocked(p int, off int64, now int64) {
	pt := s.mu.parts[p]
	e := &pt.ents[off-pt.base]
	e.state = stAcked
	pt.acked++
	s.releaseKeyLocked(p, off, now)
	if off == pt.base {
		s.advanceLocked(pt)
	}
	s.mu.dirty = true
}

// releaseKeyLocked hands the key (p, off) holds, if any, to the next
// blocked message of that key.
func (s *sub) releaseKeyLocked(p int, off int64, now int64) {
	pk := mkpk(p, off)
	key, ok := s.mu.holders[pk]
	if !ok {
		return
	}
	delete(s.mu.holders, pk)
	kr := keyRef{p, key}
	bl := s.mu.blocked[kr]
	for len(bl) > 0 {
		next := bl[0]
		bl = bl[1:]
		e := s.entLocked(p, next)
		if e == nil || e.state != stBlocked {
			continue
		}
		s.mu.keyHold[kr] = next
		s.mu.holders[mkpk(p, next)] = key
		e.state, e.due = stWaiting, now
		heap.Push(&s.mu.heap, hitem{due: now, pk: mkpk(p, next)})
		if len(bl) == 0 {
			delete(s.mu.blocked, kr)
		} else {
			s.mu.blocked[kr] = bl
		}
		return
	}
	delete(s.mu.blocked, kr)
	delete(s.mu.keyHold, kr)
}

// holdKeyLocked reports whether (p, off) with key may be delivered now
// under ordering; if not, it is blocked behind the key's holder.
func (s *sub) holdKeyLocked(p int, off int64, key string) bool {
	if !s.mu.st.def.EnableMessageOrdering || key == "" {
		return true
	}
	kr := keyRef{p, key}
	h, held := s.mu.keyHold[kr]
	if !held || h == off {
		s.mu.keyHold[kr] = off
		s.mu.holders[mkpk(p, off)] = key
		return true
	}
	bl := s.mu.blocked[kr]
	i, found := slices.BinarySearch(bl, off)
	if !found {
		bl = slices.Insert(bl, i, off)
	}
	s.mu.blocked[kr] = bl
	return false
}

// Received is one delivered message, in Pub/Sub's REST shape.
type Received struct {
	AckID           string  `json:"ackId"`
	Message         Message `json:"message"`
	DeliveryAttempt int     `json:"deliveryAttempt"`
}

// Message is a message's content, in Pub/Sub's REST shape: Data is sent
// as base64.
type Message struct {
	Data        []byte            `json:"data"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	MessageID   string            `json:"messageId"`
	PublishTime time.Time         `json:"publishTime"`
	OrderingKey string            `json:"orderingKey,omitempty"`
}

func ackID(inc uint32, p int, off int64, attempt uint16) string {
	var buf [48]byte
	b := strconv.AppendUint(buf[:0], uint64(inc)|1<<32, 16)[1:] // 8 hex digits, zero-padded
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(p), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, off, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(attempt), 10)
	return string(b)
}

// parseAckID parses "<8 hex digits>-<partition>-<offset>-<attempt>"
// without allocating (the ack path parses up to 10,000 per request).
func parseAckID[T string | []byte](id T) (inc uint32, p int, off int64, attempt uint16, ok bool) {
	if len(id) < 14 || id[8] != '-' {
		return
	}
	var v uint64
	for i := range 8 {
		c := id[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return
		}
		v = v<<4 | uint64(c)
	}
	i := 9
	// field reads a decimal number below limit ending at sep (or at the
	// end when sep is 0).
	field := func(limit uint64, sep byte) (uint64, bool) {
		start, n := i, uint64(0)
		for i < len(id) && id[i] >= '0' && id[i] <= '9' {
			n = n*10 + uint64(id[i]-'0')
			if n >= limit {
				return 0, false
			}
			i++
		}
		if i == start {
			return 0, false
		}
		if sep == 0 {
			return n, i == len(id)
		}
		if i >= len(id) || id[i] != sep {
			return 0, false
		}
		i++
		return n, true
	}
	pp, ok1 := field(1<<15, '-')
	o, ok2 := field(1<<48, '-')
	a, ok3 := field(1<<16, 0)
	if !ok1 || !ok2 || !ok3 {
		return
	}
	return uint32(v), int(pp), int64(o), uint16(a), true
}

// attributesOf returns a record's message attributes: a CloudEvent's
// attributes and extensions, or a plain record's headers.
func attributesOf(rec eventlog.Record) (map[string]string, bool) {
	hs := make([]event.Header, len(rec.Headers))
	for i, h := range rec.Headers {
		hs[i] = event.Header{Key: h.Key, Value: h.Value}
	}
	attrs := make(map[string]string, len(rec.Headers))
	if _, err := event.Decode(event.Message{Key: rec.Key, Value: rec.Value, Headers: hs}); err == nil {
		for _, h := range rec.Headers {
			switch {
			case h.Key == event.HeaderContentType:
				attrs["datacontenttype"] = string(h.Value)
			case strings.HasPrefix(h.Key, event.HeaderPrefix):
				attrs[h.Key[len(event.HeaderPrefix):]] = string(h.Value)
			}
		}
		return attrs, true
	}
	for _, h := range rec.Headers {
		attrs[h.Key] = string(h.Value)
	}
	return attrs, false
}

// decoded is a record read ahead, with its attributes and whether the
// filter matched: computed outside the lock.
type decoded struct {
	rec   eventlog.Record
	attrs map[string]string
	isCE  bool
	match bool
}

func decodeAll(recs []eventlog.Record, f *Filter) []decoded {
	out := make([]decoded, len(recs))
	for i, r := range recs {
		attrs, isCE := attributesOf(r)
		out[i] = decoded{rec: r, attrs: attrs, isCE: isCE, match: f.MatchMap(attrs)}
	}
	return out
}

// ingestLocked adds records read from partition p at the window's end
// (their offsets are at or after it: compaction leaves gaps, acked here).
func (s *sub) ingestLocked(p int, recs []decoded) {
	pt := s.mu.parts[p]
	for _, d := range recs {
		r := d.rec
		if r.Offset < pt.readPos {
			continue
		}
		// Inside the window only unread entries are taken up; offsets the
		// log no longer has (compaction) count as acknowledged.
		for pt.readPos < r.Offset && pt.readPos < pt.next() {
			if e := &pt.ents[pt.readPos-pt.base]; e.state == stUnread {
				e.state = stAcked
				pt.acked++
			}
			pt.readPos++
		}
		if r.Offset < pt.next() {
			pt.readPos = r.Offset + 1
			e := &pt.ents[r.Offset-pt.base]
			if e.state != stUnread {
				continue
			}
			if !d.match {
				e.state = stAcked
				pt.acked++
				s.mu.counters[cFiltered]++
				continue
			}
			e.state = stReady
			m := &msg{p: p, rec: r, attrs: d.attrs, isCE: d.isCE}
			s.mu.ready = append(s.mu.ready, m)
			s.mu.readyBytes += m.size()
			continue
		}
		pt.readPos = r.Offset + 1
		for pt.next() < r.Offset { // a gap
			pt.ents = append(pt.ents, ent{state: stAcked})
			pt.acked++
		}
		if !d.match {
			pt.ents = append(pt.ents, ent{state: stAcked})
			pt.acked++
			s.mu.counters[cFiltered]++
			continue
		}
		pt.ents = append(pt.ents, ent{state: stReady})
		m := &msg{p: p, rec: r, attrs: d.attrs, isCE: d.isCE}
		s.mu.ready = append(s.mu.ready, m)
		s.mu.readyBytes += m.size()
	}
	s.advanceLocked(pt)
	s.signalLocked()
}

// fetch reads partition p from the log into the ready FIFO, keeping at
// most prefetchMsgs/prefetchBytes read ahead.
func (s *sub) fetch(p int) {
	defer s.wg.Done()
	log, topic := s.m.cfg.Log, ""
	for {
		s.mu.Lock()
		for len(s.mu.ready) >= prefetchMsgs || s.mu.readyBytes >= prefetchBytes {
			ch := s.mu.notify
			s.mu.Unlock()
			select {
			case <-ch:
			case <-s.ctx.Done():
				return
			}
			s.mu.Lock()
		}
		if p >= len(s.mu.parts) {
			s.mu.Unlock()
			return
		}
		gen, off := s.mu.gen, s.mu.parts[p].readPos
		topic = s.mu.st.def.Topic
		filter := s.mu.st.filter
		s.mu.Unlock()
		recs, err := log.Read(s.ctx, topic, int32(p), off, eventlog.ReadOptions{MaxBytes: readBytes, Wait: 500 * time.Millisecond})
		if s.ctx.Err() != nil {
			return
		}
		if errors.Is(err, eventlog.ErrOffsetOutOfRange) {
			start, end, oerr := log.Offsets(s.ctx, topic, int32(p))
			if oerr == nil {
				s.mu.Lock()
				if gen == s.mu.gen {
					s.skipToLocked(p, start, end)
				}
				s.mu.Unlock()
				continue
			}
			err = oerr
		}
		if err != nil {
			s.m.logger.Warn("subscription read failed", "subscription", s.name, "topic", topic, "partition", p, "err", err)
			select {
			case <-time.After(time.Second):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		if len(recs) == 0 {
			continue
		}
		ds := decodeAll(recs, filter)
		s.mu.Lock()
		if gen == s.mu.gen && off == s.mu.parts[p].readPos {
			s.ingestLocked(p, ds)
		}
		s.mu.Unlock()
	}
}

// skipToLocked handles a read position outside [start, end]: below start
// the records are gone (retention), so they count as acknowledged; beyond
// end (the topic was recreated) the window restarts at end.
func (s *sub) skipToLocked(p int, start, end int64) {
	pt := s.mu.parts[p]
	now := time.Now().UnixMilli()
	if pt.readPos > end {
		s.ackBelowLocked(p, end, now)
		pt.base, pt.ents, pt.acked, pt.readPos = end, nil, 0, end
		s.mu.dirty = true
		return
	}
	s.ackBelowLocked(p, start, now)
	pt.readPos = max(pt.readPos, start)
}

// ackBelowLocked acknowledges every offset of p below off.
func (s *sub) ackBelowLocked(p int, off int64, now int64) {
	pt := s.mu.parts[p]
	for o := pt.base; o < off && o < pt.next(); o++ {
		if e := &pt.ents[o-pt.base]; e.state != stAcked {
			if e.state == stReady {
				s.dropReadyLocked(p, o)
			}
			e.state = stAcked
			pt.acked++
			s.releaseKeyLocked(p, o, now)
		}
	}
	if off > pt.next() {
		pt.base, pt.ents, pt.acked = off, nil, 0
	}
	pt.readPos = max(pt.readPos, pt.base)
	s.advanceLocked(pt)
	s.mu.dirty = true
}

func (s *sub) dropReadyLocked(p int, off int64) {
	s.mu.ready = slices.DeleteFunc(s.mu.ready, func(m *msg) bool {
		if m.p == p && m.rec.Offset == off {
			s.mu.readyBytes -= m.size()
			return true
		}
		return false
	})
}

// claim is a message due for (re)delivery, before its record is read.
type claim struct {
	p        int
	off      int64
	attempts uint16 // after this delivery
	dead     bool   // to the dead-letter topic instead
}

// pull delivers up to max messages, waiting up to wait for some.
//
// The messages' delivery attempts (and, under ordering, the key each
// holds) are durable before they are handed out, in one group-committed
// journal append per call: a crash never makes a delivery attempt count
// go backwards or under-count, and an ack id handed out stays valid
// across a restart until its deadline.
func (s *sub) pull(ctx context.Context, maxN int, wait time.Duration) ([]Received, error) {
	deadline := time.Now().Add(wait)
	for {
		out, nextDue, ch, err := s.pullOnce(ctx, maxN)
		if err != nil || len(out) > 0 {
			return out, err
		}
		now := time.Now()
		if !now.Before(deadline) {
			return nil, nil
		}
		d := deadline.Sub(now)
		if nextDue > 0 {
			if dd := time.UnixMilli(nextDue).Sub(now); dd < d {
				d = max(dd, time.Millisecond)
			}
		}
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-s.ctx.Done():
			t.Stop()
			return nil, errNotFound(s.name)
		}
		t.Stop()
	}
}

func (s *sub) pullOnce(ctx context.Context, maxN int) (out []Received, nextDue int64, notify chan struct{}, err error) {
	now := time.Now()
	nowMs := now.UnixMilli()
	s.mu.Lock()
	if s.mu.deleted {
		s.mu.Unlock()
		return nil, 0, nil, errNotFound(s.name)
	}
	st := s.mu.st
	deadline := nowMs + st.ackDeadline.Milliseconds()
	var claims []claim
	for len(s.mu.heap) > 0 && len(claims) < maxN && s.mu.heap[0].due <= nowMs {
		it := heap.Pop(&s.mu.heap).(hitem)
		p, off := splitpk(it.pk)
		e := s.entLocked(p, off)
		if e == nil || e.due != it.due || (e.state != stWaiting && e.state != stOut) {
			continue // stale
		}
		c := claim{p: p, off: off}
		if st.maxAttempts > 0 && int(e.attempts) >= st.maxAttempts {
			c.dead = true
			e.state, e.due = stOut, deadline // claimed
		} else {
			if e.attempts < 0xffff {
				e.attempts++
			}
			e.state, e.due = stOut, deadline
			heap.Push(&s.mu.heap, hitem{due: deadline, pk: it.pk})
		}
		c.attempts = e.attempts
		claims = append(claims, c)
	}
	gen, inc := s.mu.gen, s.mu.inc
	var fresh, freshDead []*msg
	var freshAttempts []uint16
	for len(claims)+len(fresh) < maxN && len(s.mu.ready) > 0 {
		m := s.mu.ready[0]
		s.mu.ready[0] = nil
		s.mu.ready = s.mu.ready[1:]
		s.mu.readyBytes -= m.size()
		e := s.entLocked(m.p, m.rec.Offset)
		if e == nil || e.state != stReady {
			continue
		}
		if !s.holdKeyLocked(m.p, m.rec.Offset, string(m.rec.Key)) {
			e.state = stBlocked
			continue
		}
		if st.maxAttempts > 0 && int(e.attempts) >= st.maxAttempts { // read again after a restart
			e.state, e.due = stOut, deadline
			freshDead = append(freshDead, m)
			continue
		}
		if e.attempts < 0xffff {
			e.attempts++
		}
		if e.attempts > 1 {
			s.mu.counters[cRedeliveries]++
		}
		e.state, e.due = stOut, deadline
		heap.Push(&s.mu.heap, hitem{due: deadline, pk: mkpk(m.p, m.rec.Offset)})
		fresh = append(fresh, m)
		freshAttempts = append(freshAttempts, e.attempts)
	}
	if len(s.mu.ready) == 0 {
		s.mu.ready = nil
	}
	if len(fresh) > 0 {
		s.signalLocked() // the fetchers may read ahead again
	}
	notify = s.mu.notify
	s.mu.Unlock()

	var states map[int][]stateEnt
	var holds map[int][]holdEnt
	ordered := st.def.EnableMessageOrdering
	record := func(p int, off int64, attempts uint16, key []byte) {
		if states == nil {
			states = map[int][]stateEnt{}
		}
		states[p] = append(states[p], stateEnt{Off: off, Attempts: attempts, Due: deadline, Out: true})
		if ordered {
			if holds == nil {
				holds = map[int][]holdEnt{}
			}
			holds[p] = append(holds[p], holdEnt{Off: off, Key: string(key)})
		}
	}
	if len(freshDead) > 0 {
		s.deadLetter(ctx, gen, freshDead)
	}
	for i, m := range fresh {
		out = append(out, s.received(inc, m, freshAttempts[i]))
		record(m.p, m.rec.Offset, freshAttempts[i], m.rec.Key)
	}
	if len(claims) > 0 {
		msgs, err := s.reread(ctx, claims)
		if err != nil {
			s.m.logger.Warn("subscription re-read failed", "subscription", s.name, "err", err)
		}
		var dead []*msg
		s.mu.Lock()
		if gen == s.mu.gen {
			for k, c := range claims {
				e := s.entLocked(c.p, c.off)
				if e == nil || e.state != stOut || e.attempts != c.attempts {
					continue
				}
				m := msgs[k]
				switch {
				case m == nil && err != nil: // could not read: try again soon
					if !c.dead {
						e.attempts--
					}
					e.state, e.due = stWaiting, nowMs+1000
					heap.Push(&s.mu.heap, hitem{due: e.due, pk: mkpk(c.p, c.off)})
				case m == nil: // gone from the log (retention)
					s.ackLocked(c.p, c.off, nowMs)
				case !st.filter.MatchMap(m.attrs):
					s.mu.counters[cFiltered]++
					s.ackLocked(c.p, c.off, nowMs)
				case !s.holdKeyLocked(c.p, c.off, string(m.rec.Key)):
					if !c.dead {
						e.attempts--
					}
					e.state = stBlocked
				case c.dead:
					dead = append(dead, m)
				default:
					if c.attempts > 1 {
						s.mu.counters[cRedeliveries]++
					}
					out = append(out, s.received(inc, m, c.attempts))
					record(c.p, c.off, c.attempts, m.rec.Key)
				}
			}
		}
		s.mu.Unlock()
		if len(dead) > 0 {
			s.deadLetter(ctx, gen, dead)
		}
	}
	if len(out) == 0 {
		s.mu.Lock()
		if len(s.mu.heap) > 0 {
			nextDue = s.mu.heap[0].due
		}
		s.mu.Unlock()
		return nil, nextDue, notify, nil
	}
	s.mu.Lock()
	s.mu.counters[cDelivered] += int64(len(out))
	s.mu.dirty = true
	// The delivery attempts are durable before the messages are handed out,
	// so an attempt count never goes backwards and a restart cannot make a
	// handed-out ack id valid again.
	var w *jwait
	if !s.mu.deleted {
		vals := make([][]byte, 0, len(states)+len(holds))
		for p, ss := range states {
			slices.SortFunc(ss, func(a, b stateEnt) int { return int(a.Off - b.Off) })
			vals = append(vals, encState(int32(p), ss))
		}
		for p, hs := range holds {
			slices.SortFunc(hs, func(a, b holdEnt) int { return int(a.Off - b.Off) })
			vals = append(vals, encHold(int32(p), hs))
		}
		w = s.m.journal.add(s.name, vals...)
	}
	s.mu.Unlock()
	if w != nil {
		if err := w.wait(ctx); err != nil {
			// Claimed and never handed out (the caller went away, or the
			// journal failed): they go back, the attempt not counted,
			// instead of waiting out their ack deadline.
			ids := make([]string, len(out))
			for i, r := range out {
				ids[i] = r.AckID
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if rerr := s.release(rctx, ids); rerr != nil {
				s.m.logger.Warn("subscription: could not give back messages pulled by a caller that went away; they come again after their ack deadline",
					"subscription", s.name, "messages", len(ids), "err", rerr)
			}
			cancel()
			return nil, 0, nil, err
		}
	}
	return out, 0, notify, nil
}

func (s *sub) received(inc uint32, m *msg, attempt uint16) Received {
	r := Received{
		AckID:           ackID(inc, m.p, m.rec.Offset, attempt),
		DeliveryAttempt: int(attempt),
		Message: Message{
			Data:        m.rec.Value,
			Attributes:  m.attrs,
			MessageID:   strconv.Itoa(m.p) + "-" + strconv.FormatInt(m.rec.Offset, 10),
			PublishTime: m.rec.Timestamp.UTC(),
			OrderingKey: string(m.rec.Key),
		},
	}
	if r.Message.Data == nil {
		r.Message.Data = []byte{}
	}
	return r
}

// reread reads the records of claims from the log, in as few reads as
// possible. A claim whose record is gone gets nil.
func (s *sub) reread(ctx context.Context, claims []claim) ([]*msg, error) {
	out := make([]*msg, len(claims))
	idx := make([]int, len(claims))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if claims[a].p != claims[b].p {
			return claims[a].p - claims[b].p
		}
		return int(claims[a].off - claims[b].off)
	})
	s.mu.Lock()
	topic := s.mu.st.def.Topic
	s.mu.Unlock()
	var have []eventlog.Record
	havePart := -1
	var firstErr error
	for _, i := range idx {
		c := claims[i]
		// Use what the previous read returned when it covers this offset.
		for len(have) > 0 && (havePart != c.p || have[0].Offset < c.off) {
			if havePart != c.p || have[len(have)-1].Offset < c.off {
				have = nil
				break
			}
			have = have[1:]
		}
		if len(have) == 0 {
			recs, err := s.m.cfg.Log.Read(ctx, topic, int32(c.p), c.off, eventlog.ReadOptions{MaxBytes: 256 << 10})
			if errors.Is(err, eventlog.ErrOffsetOutOfRange) {
				continue // gone: nil
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				out[i] = nil
				continue
			}
			have, havePart = recs, c.p
		}
		if len(have) > 0 && have[0].Offset == c.off {
			attrs, isCE := attributesOf(have[0])
			out[i] = &msg{p: c.p, rec: have[0], attrs: attrs, isCE: isCE}
		}
	}
	return out, firstErr
}

// deadLetter forwards messages to the dead-letter topic, then acks them.
// A message that cannot be forwarded is retried later.
func (s *sub) deadLetter(ctx context.Context, gen uint64, msgs []*msg) {
	s.mu.Lock()
	st := s.mu.st
	s.mu.Unlock()
	recs := make([]eventlog.Record, len(msgs))
	for i, m := range msgs {
		hs := slices.Clone(m.rec.Headers)
		hs = append(hs,
			eventlog.Header{Key: "herald_subscription", Value: []byte(s.name)},
			eventlog.Header{Key: "herald_source_topic", Value: []byte(st.def.Topic)},
			eventlog.Header{Key: "herald_source_partition", Value: []byte(strconv.Itoa(m.p))},
			eventlog.Header{Key: "herald_source_offset", Value: []byte(strconv.FormatInt(m.rec.Offset, 10))},
			eventlog.Header{Key: "herald_delivery_attempts", Value: []byte(strconv.Itoa(st.maxAttempts))},
		)
		recs[i] = eventlog.Record{Key: m.rec.Key, Value: m.rec.Value, Headers: hs, Timestamp: m.rec.Timestamp}
	}
	_, err := eventlog.NewProducer(s.m.cfg.Log).Append(ctx, st.def.DeadLetterPolicy.DeadLetterTopic, recs...)
	now := time.Now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.mu.gen {
		return
	}
	acked := map[int][]int64{}
	for _, m := range msgs {
		e := s.entLocked(m.p, m.rec.Offset)
		if e == nil || e.state != stOut {
			continue
		}
		if err != nil {
			e.state, e.due = stWaiting, now+st.backoff(int(e.attempts)).Milliseconds()+1000
			heap.Push(&s.mu.heap, hitem{due: e.due, pk: mkpk(m.p, m.rec.Offset)})
			continue
		}
		s.mu.counters[cDLQ]++
		s.ackLocked(m.p, m.rec.Offset, now)
		if h := s.m.cfg.OnEvent; h != nil {
			d := DeadLetteredEvent{Subscription: s.name, Topic: st.def.Topic, Partition: m.p, Offset: m.rec.Offset,
				DeadLetterTopic: st.def.DeadLetterPolicy.DeadLetterTopic, Attempts: st.maxAttempts}
			if m.isCE {
				d.EventID, d.EventSource, d.EventType = m.attrs["id"], m.attrs["source"], m.attrs["type"]
			}
			h.Emit(ctx, SystemSource, TypeDeadLettered, s.name, d)
		}
		acked[m.p] = append(acked[m.p], m.rec.Offset)
	}
	if err != nil {
		s.m.logger.Warn("dead-lettering failed; will retry", "subscription", s.name, "topic", st.def.DeadLetterPolicy.DeadLetterTopic, "err", err)
	}
	s.journalAcksLocked(acked)
}

func (s *sub) journalAcksLocked(acked map[int][]int64) *jwait {
	if len(acked) == 0 {
		return nil
	}
	vals := make([][]byte, 0, len(acked))
	for p, offs := range acked {
		slices.Sort(offs)
		vals = append(vals, encAck(int32(p), offs))
	}
	return s.m.journal.add(s.name, vals...)
}

// ackResult is what acknowledge and modifyAckDeadline report.
type ackResult struct {
	invalid []string
}

// ackRef is a parsed ack id; ok is false when it did not parse.
type ackRef struct {
	inc     uint32
	p       int
	off     int64
	attempt uint16
	ok      bool
}

func parseAckRef[T string | []byte](id T) ackRef {
	var r ackRef
	r.inc, r.p, r.off, r.attempt, r.ok = parseAckID(id)
	return r
}

// acknowledge acks the messages of ids. Ids that are unknown, stale (a
// newer delivery's id exists, under exactly-once) or already acknowledged
// are returned as invalid and change nothing. The acks are durable when
// it returns.
func (s *sub) acknowledge(ctx context.Context, ids []string) ([]string, error) {
	refs := make([]ackRef, len(ids))
	for i, id := range ids {
		refs[i] = parseAckRef(id)
	}
	bad, err := s.ackRefs(ctx, refs)
	var invalid []string
	for _, i := range bad {
		invalid = append(invalid, ids[i])
	}
	return invalid, err
}

// ackRefs is acknowledge on parsed ids; it returns the indexes of the
// invalid ones.
func (s *sub) ackRefs(ctx context.Context, refs []ackRef) ([]int, error) {
	now := time.Now().UnixMilli()
	var invalid []int
	acked := map[int][]int64{}
	s.mu.Lock()
	if s.mu.deleted {
		s.mu.Unlock()
		return nil, errNotFound(s.name)
	}
	eod := s.mu.st.def.EnableExactlyOnceDelivery
	n := 0
	for i, r := range refs {
		p, off := r.p, r.off
		e := s.entLocked(p, off)
		ok := r.ok && r.inc == s.mu.inc && e != nil && e.state != stAcked
		if ok && eod {
			ok = e.state == stOut && e.attempts == r.attempt && e.due > now
		}
		if !ok {
			invalid = append(invalid, i)
			continue
		}
		s.ackLocked(p, off, now)
		acked[p] = append(acked[p], off)
		n++
	}
	s.mu.counters[cAcked] += int64(n)
	w := s.journalAcksLocked(acked)
	if n > 0 {
		s.compactHeapLocked()
		s.signalLocked()
	}
	s.mu.Unlock()
	if w != nil {
		if err := w.wait(ctx); err != nil {
			return invalid, err
		}
	}
	return invalid, nil
}

// modifyAckDeadline sets the deadline of outstanding messages to secs from
// now; 0 nacks them (redelivery after the retry policy's backoff).
func (s *sub) modifyAckDeadline(ctx context.Context, ids []string, secs int) ([]string, error) {
	now := time.Now().UnixMilli()
	var invalid []string
	states := map[int][]stateEnt{}
	s.mu.Lock()
	if s.mu.deleted {
		s.mu.Unlock()
		return nil, errNotFound(s.name)
	}
	st := s.mu.st
	for _, id := range ids {
		inc, p, off, attempt, _ := parseAckID(id)
		e := s.entLocked(p, off)
		if inc != s.mu.inc || e == nil || e.state != stOut || e.attempts != attempt {
			invalid = append(invalid, id)
			continue
		}
		if secs == 0 {
			e.state, e.due = stWaiting, now+st.backoff(int(e.attempts)).Milliseconds()
		} else {
			e.due = now + int64(secs)*1000
		}
		heap.Push(&s.mu.heap, hitem{due: e.due, pk: mkpk(p, off)})
		states[p] = append(states[p], stateEnt{Off: off, Attempts: e.attempts, Due: e.due, Out: e.state == stOut})
	}
	w := s.journalStatesLocked(states)
	s.mu.Unlock()
	if w != nil {
		if err := w.wait(ctx); err != nil {
			return invalid, err
		}
	}
	return invalid, nil
}

// journalStatesLocked journals the new states of messages, by partition,
// and wakes the pullers; nil if there are none.
func (s *sub) journalStatesLocked(states map[int][]stateEnt) *jwait {
	if len(states) == 0 {
		return nil
	}
	vals := make([][]byte, 0, len(states))
	for p, ss := range states {
		slices.SortFunc(ss, func(a, b stateEnt) int { return int(a.Off - b.Off) })
		vals = append(vals, encState(int32(p), ss))
	}
	w := s.m.journal.add(s.name, vals...)
	s.mu.dirty = true
	s.signalLocked()
	return w
}

// release gives back messages that were pulled but never delivered (a
// push subscription stopped with messages pulled ahead): they are
// deliverable at once, and the attempt their pull counted is taken back,
// so a restart neither waits for their ack deadline nor counts an attempt
// that was never made.
func (s *sub) release(ctx context.Context, ids []string) error {
	now := time.Now().UnixMilli()
	states := map[int][]stateEnt{}
	s.mu.Lock()
	if s.mu.deleted {
		s.mu.Unlock()
		return nil
	}
	for _, id := range ids {
		inc, p, off, attempt, _ := parseAckID(id)
		e := s.entLocked(p, off)
		if inc != s.mu.inc || e == nil || e.state != stOut || e.attempts != attempt {
			continue
		}
		e.state, e.due = stWaiting, now
		if e.attempts > 0 {
			e.attempts--
		}
		heap.Push(&s.mu.heap, hitem{due: e.due, pk: mkpk(p, off)})
		states[p] = append(states[p], stateEnt{Off: off, Attempts: e.attempts, Due: e.due})
	}
	w := s.journalStatesLocked(states)
	s.mu.Unlock()
	if w != nil {
		return w.wait(ctx)
	}
	return nil
}

// seekTo resets the subscription to pos (a seek to a time or snapshot).
func (s *sub) seekTo(ctx context.Context, pos positions) error {
	s.mu.Lock()
	if s.mu.deleted {
		s.mu.Unlock()
		return errNotFound(s.name)
	}
	if len(pos) < len(s.mu.parts) {
		s.mu.Unlock()
		return httpjson.Errorf(httpjson.CodeFailedPrecondition, "snapshot", "the snapshot has %d partitions, the topic %d", len(pos), len(s.mu.parts))
	}
	inc := newInc()
	s.setPositionsLocked(pos, inc, time.Now().UnixMilli())
	s.mu.dirty = true
	w := s.m.journal.add(s.name, encPositions(pos, inc))
	s.mu.Unlock()
	return w.wait(ctx)
}

// checkpointLocked encodes the subscription's whole state.
func (s *sub) checkpointLocked(def []byte) [][]byte {
	bases := make([]int64, len(s.mu.parts))
	for k, p := range s.mu.parts {
		bases[k] = p.base
	}
	vals := [][]byte{encCkpt(def, s.mu.counters, bases, s.mu.inc)}
	for k, p := range s.mu.parts {
		var runs []run
		first := p.base
		for i := 0; i < len(p.ents); {
			e := p.ents[i]
			r := run{N: 1, Acked: e.state == stAcked}
			if !r.Acked {
				r.Attempts, r.Out = e.attempts, e.state == stOut
				if e.state == stOut || e.state == stWaiting {
					r.Due = e.due
				}
			}
			j := i + 1
			for j < len(p.ents) {
				f := p.ents[j]
				fa := f.state == stAcked
				if fa != r.Acked {
					break
				}
				if !fa {
					due := int64(0)
					if f.state == stOut || f.state == stWaiting {
						due = f.due
					}
					if f.attempts != r.Attempts || due != r.Due || (f.state == stOut) != r.Out {
						break
					}
				}
				j++
			}
			r.N = int64(j - i)
			runs = append(runs, r)
			i = j
			if len(runs) == maxRunsPerRec {
				vals = append(vals, encRuns(int32(k), first, runs))
				first, runs = p.base+int64(i), nil
			}
		}
		if len(runs) > 0 {
			vals = append(vals, encRuns(int32(k), first, runs))
		}
		if s.mu.st.def.EnableMessageOrdering {
			// The messages delivered or due again, with the key each holds:
			// after a restart they keep their keys and ack ids.
			var hs []holdEnt
			for i, e := range p.ents {
				if e.state != stOut && e.state != stWaiting {
					continue
				}
				off := p.base + int64(i)
				hs = append(hs, holdEnt{Off: off, Key: s.mu.holders[mkpk(k, off)]})
				if len(hs) == maxRunsPerRec {
					vals = append(vals, encHold(int32(k), hs))
					hs = nil
				}
			}
			if len(hs) > 0 {
				vals = append(vals, encHold(int32(k), hs))
			}
		}
	}
	s.mu.dirty = false
	return vals
}

// growLocked extends partition p's window to cover off with unread,
// waiting entries (recovery).
func (s *sub) growLocked(p int, off int64) *ent {
	pt := s.mu.parts[p]
	if off < pt.base {
		return nil
	}
	for pt.next() <= off {
		pt.ents = append(pt.ents, ent{state: stUnread})
	}
	return &pt.ents[off-pt.base]
}

// ensureParts makes sure there is a window for n partitions (new ones
// start at offset 0).
func (s *sub) ensurePartsLocked(n int) bool {
	grew := false
	for len(s.mu.parts) < n {
		s.mu.parts = append(s.mu.parts, &part{})
		grew = true
	}
	return grew
}

// finishRecoveryLocked prepares the windows after a restart. A delivered
// message whose deadline has not passed stays out (its ack id stays valid)
// and a nacked one waits for its redelivery time, in the heap; every other
// unacked message is read again by the fetcher, in offset order. Under
// ordering the journal's hold records say which message holds each key:
// it keeps the key (and, still due later, its state), and the key's later
// messages block behind it when read again. A message with no hold record
// (a journal written before hold records existed) is read again.
func (s *sub) finishRecoveryLocked(now int64) {
	s.mu.heap = s.mu.heap[:0]
	ordered := s.mu.st.def.EnableMessageOrdering
	for k, p := range s.mu.parts {
		for i := range p.ents {
			e := &p.ents[i]
			if e.state == stAcked {
				continue
			}
			off := p.base + int64(i)
			pk := mkpk(k, off)
			key, held := s.mu.recHolds[pk]
			if ordered && held && key != "" {
				kr := keyRef{k, key}
				if h, ok := s.mu.keyHold[kr]; !ok || off < h {
					if ok {
						delete(s.mu.holders, mkpk(k, h))
					}
					s.mu.keyHold[kr] = off
					s.mu.holders[pk] = key
				}
			}
			if (ordered && !held) || e.due <= now || (e.state != stOut && e.state != stWaiting) {
				e.state = stUnread
				continue
			}
			s.mu.heap = append(s.mu.heap, hitem{due: e.due, pk: pk})
		}
		p.readPos = p.base
		s.advanceLocked(p)
	}
	s.mu.recHolds = nil
	heap.Init(&s.mu.heap)
}

// stats computes the subscription's statistics; it reads the log for the
// end offsets and the oldest unacked message's time.
func (s *sub) stats(ctx context.Context) Stats {
	s.mu.Lock()
	topic := s.mu.st.def.Topic
	var st Stats
	type pinfo struct {
		base, next int64
		acked      int
	}
	ps := make([]pinfo, len(s.mu.parts))
	for k, p := range s.mu.parts {
		ps[k] = pinfo{p.base, p.next(), p.acked}
		for _, e := range p.ents {
			if e.state == stOut {
				st.Outstanding++
			}
		}
	}
	st.Delivered, st.Acked, st.Redeliveries = s.mu.counters[cDelivered], s.mu.counters[cAcked], s.mu.counters[cRedeliveries]
	st.DeadLettered, st.Filtered = s.mu.counters[cDLQ], s.mu.counters[cFiltered]
	st.PushConcurrency = s.mu.pushConc
	s.mu.Unlock()
	var oldest time.Time
	for k, p := range ps {
		_, end, err := s.m.cfg.Log.Offsets(ctx, topic, int32(k))
		if err != nil {
			continue
		}
		st.Backlog += max(0, end-p.base) - int64(p.acked)
		if p.base < end {
			recs, err := s.m.cfg.Log.Read(ctx, topic, int32(k), p.base, eventlog.ReadOptions{MaxBytes: 1})
			if err == nil && len(recs) > 0 && (oldest.IsZero() || recs[0].Timestamp.Before(oldest)) {
				oldest = recs[0].Timestamp
			}
		}
	}
	if !oldest.IsZero() && st.Backlog > 0 {
		st.OldestUnackedAgeSecs = max(0, time.Since(oldest).Seconds())
	}
	return st
}
