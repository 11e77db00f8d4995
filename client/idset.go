package client

import (
	"hash/maphash"
	"sync/atomic"
	"time"
)

// idKey is an event id hashed to 128 bits with per-process seeds. At this
// width a collision (an event wrongly taken as handled) is as likely as a
// random UUID repeating; the seeds keep producers from crafting one.
type idKey [2]uint64

var idSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func keyOf(id string) idKey {
	return idKey{maphash.String(idSeeds[0], id), maphash.String(idSeeds[1], id)}
}

// idTable is the set of processed ids of one store partition: an
// open-addressing hash table (linear probing) of 16-byte slots, read
// without a lock.
//
// Slot layout: word 0 is the key's first half (0 means empty; a key whose
// first half is 0 is stored as 1); word 1 is the key's second half with its
// low tickBits replaced by the tick (expiry bucket) of the id's latest
// mark, relative to the table's base tick. So an id is known by 108 bits of
// its hash, and expiry costs no extra memory or cache line.
//
// Concurrency: any number of readers (contains) run with one writer
// (insert, under the store partition's mutex). A slot, once its word 0 is
// set, keeps its key for the table's life; the writer stores word 1 before
// word 0, so a reader that sees word 0 sees the key's word 1. Nothing is
// deleted in place: expired ids are dropped when the writer rebuilds the
// table (to grow, or to move its base tick), and swaps it in whole.
type idTable struct {
	slots []idSlot
	mask  uint64
	n     int   // occupied slots (writer only)
	base  int64 // absolute tick of stored tick 0
}

type idSlot struct{ w0, w1 atomic.Uint64 }

const (
	tickBits = 20
	tickMask = 1<<tickBits - 1
	// ticksPerTTL is how finely expiry is tracked: an id is forgotten
	// between TTL and TTL + 2·TTL/ticksPerTTL after its mark, never
	// before TTL.
	ticksPerTTL = 1024
	minTableLen = 64
)

// idClock turns times into ticks for a store's TTL.
type idClock struct {
	tick int64 // milliseconds per tick, ≥ 1
	live int64 // an entry is live while now-tick − entry-tick ≤ live
}

func newIDClock(ttl time.Duration) idClock {
	ms := max(ttl.Milliseconds(), 1)
	t := max(ms/ticksPerTTL, 1)
	return idClock{tick: t, live: (ms + t - 1) / t} // ceil(ttl / tick)
}

// at is the absolute tick of Unix time ms.
func (c idClock) at(ms int64) int64 { return ms / c.tick }

func newIDTable(n int, base int64) *idTable {
	size := minTableLen
	for size*5/8 < n {
		size *= 2
	}
	return &idTable{slots: make([]idSlot, size), mask: uint64(size - 1), base: base}
}

func slotWords(k idKey) (uint64, uint64) {
	w0 := k[0]
	if w0 == 0 {
		w0 = 1
	}
	return w0, k[1] &^ tickMask
}

// contains reports whether k was marked and is live at absolute tick now.
// Safe to call concurrently with insert.
func (t *idTable) contains(k idKey, now int64, c idClock) bool {
	w0, hi := slotWords(k)
	for i := w0 & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		v := s.w0.Load()
		if v == 0 {
			return false
		}
		if v == w0 {
			w1 := s.w1.Load()
			if w1&^tickMask == hi {
				return now-(t.base+int64(w1&tickMask)) <= c.live
			}
		}
	}
}

// insert records k as marked at absolute tick at, and returns the table to
// use from now on: t itself, or a rebuilt one (grown, or re-based so that
// at fits in tickBits) without the ids expired by then. The caller holds
// the store partition's mutex and publishes the result.
func (t *idTable) insert(k idKey, at int64, c idClock) *idTable {
	if at-t.base > tickMask || at < t.base {
		t = t.rebuild(at, c, 0)
	} else if (t.n+1)*8 > len(t.slots)*5 {
		t = t.rebuild(at, c, 1)
	}
	t.put(k, at)
	return t
}

// put stores k with tick at (in range of t.base), replacing an older tick
// of the same key.
func (t *idTable) put(k idKey, at int64) {
	w0, hi := slotWords(k)
	w1 := hi | uint64(at-t.base)
	for i := w0 & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		v := s.w0.Load()
		if v == 0 {
			s.w1.Store(w1)
			s.w0.Store(w0) // NB: last: publishes the slot to readers
			t.n++
			return
		}
		if v == w0 && s.w1.Load()&^tickMask == hi {
			if old := s.w1.Load(); int64(old&tickMask) < at-t.base {
				s.w1.Store(w1)
			}
			return
		}
	}
}

// rebuild copies the ids still live at absolute tick now into a new table
// of room for the live ones plus extra doublings, based at now − live so
// the copied ticks and the next TTL's worth of ticks fit.
func (t *idTable) rebuild(now int64, c idClock, grow int) *idTable {
	live := 0
	for i := range t.slots {
		s := &t.slots[i]
		if s.w0.Load() != 0 && now-(t.base+int64(s.w1.Load()&tickMask)) <= c.live {
			live++
		}
	}
	nt := newIDTable((live+1)<<grow, now-c.live)
	for i := range t.slots {
		s := &t.slots[i]
		w0 := s.w0.Load()
		if w0 == 0 {
			continue
		}
		w1 := s.w1.Load()
		at := t.base + int64(w1&tickMask)
		if now-at > c.live {
			continue
		}
		at = min(max(at, nt.base), nt.base+tickMask) // NB: min: a clock that stepped back
		nt.put(idKey{w0, w1}, at)                    // NB: w0 is already non-zero; put re-masks w1
	}
	return nt
}

// localIDs is a small set of id keys owned by one goroutine: the ids of a
// partition's batch whose marks are pending. Open addressing, no deletes;
// dropped with the batch.
type localIDs struct {
	slots []idKey
	n     int
}

// reserve sizes an empty set for n ids, so that adding them never grows
// it: a growth rehashes every id on some event's handler path.
func (l *localIDs) reserve(n int) {
	if l.n > 0 {
		return
	}
	size := 64
	for size < 2*n+2 {
		size *= 2
	}
	if len(l.slots) < size {
		l.slots = make([]idKey, size)
	}
}

func (l *localIDs) has(k idKey) bool {
	if l.n == 0 {
		return false
	}
	mask := uint64(len(l.slots) - 1)
	w0, _ := slotWords(k)
	for i := w0 & mask; ; i = (i + 1) & mask {
		s := l.slots[i]
		if s[0] == 0 {
			return false
		}
		if s[0] == w0 && s[1] == k[1] {
			return true
		}
	}
}

func (l *localIDs) add(k idKey) {
	if (l.n+1)*2 > len(l.slots) {
		old := l.slots
		l.slots = make([]idKey, max(2*len(old), 64))
		l.n = 0
		for _, s := range old {
			if s[0] != 0 {
				l.put(s)
			}
		}
	}
	w0, _ := slotWords(k)
	l.put(idKey{w0, k[1]})
}

func (l *localIDs) put(k idKey) {
	mask := uint64(len(l.slots) - 1)
	for i := k[0] & mask; ; i = (i + 1) & mask {
		s := &l.slots[i]
		if s[0] == 0 {
			*s = k
			l.n++
			return
		}
		if *s == k {
			return
		}
	}
}
