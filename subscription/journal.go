package subscription

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/internal/binrec"
)

// Journal record kinds. Frozen: see the package doc.
const (
	recVersion = 1

	kDef        = 1  // key: subscription; json definition + positions at creation
	kDelete     = 2  // key: subscription
	kAck        = 3  // key: subscription; partition, acked offsets
	kState      = 4  // key: subscription; partition, (offset, attempts, due) of unacked messages
	kPositions  = 5  // key: subscription; a seek: new positions
	kCkpt       = 6  // key: subscription; definition, counters, bases
	kRuns       = 7  // key: subscription; run-length encoded window of one partition
	kSnap       = 8  // key: "" ; a snapshot
	kSnapDelete = 9  // key: "" ; snapshot deleted
	kBegin      = 10 // key: "" ; a checkpoint cycle starts here
	kHold       = 11 // key: subscription; ordering: partition, (offset, ordering key) of delivered messages

	maxJournalBatch = 900 << 10 // under the 1 MiB batch limit of Kafka clients and brokers
	maxRunsPerRec   = 32 << 10
)

// errCorrupt is wrapped by every journal decoding error.
var errCorrupt = errors.New("subscription journal: corrupt record")

// positions are where a subscription stands in each partition: everything
// below Base is acknowledged, and so are the Acked ranges above it.
type positions []partPos

type partPos struct {
	Base  int64
	Acked [][2]int64 // [first, last] inclusive, ascending, above Base
}

// stateEnt is one unacked message's durable state.
type stateEnt struct {
	Off      int64
	Attempts uint16
	Due      int64 // unix ms; 0: deliverable at once
	Out      bool  // delivered, Due is its ack deadline (else a redelivery time)
}

// holdEnt is a message delivered under ordering, with its ordering key
// ("" for none): while unacked it holds its key.
type holdEnt struct {
	Off int64
	Key string
}

// run is a run of window entries that share their state.
type run struct {
	N        int64
	Acked    bool
	Out      bool
	Attempts uint16
	Due      int64
}

// jrec is a decoded journal record.
type jrec struct {
	kind      byte
	sub       string
	def       []byte // kDef, kCkpt: the JSON definition
	pos       positions
	part      int32
	offs      []int64    // kAck
	states    []stateEnt // kState
	holds     []holdEnt  // kHold
	first     int64      // kRuns
	runs      []run      // kRuns
	counters  [5]int64   // kCkpt: delivered, acked, redeliveries, dead-lettered, filtered
	snapName  string     // kSnap, kSnapDelete
	snapSub   string     // kSnap
	snapTopic string     // kSnap
	snapTime  int64      // kSnap: unix ms
	inc       uint32     // kDef, kPositions, kCkpt: the ack id incarnation
}

type enc struct{ b []byte }

func (e *enc) u(v uint64)  { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) s(v string)  { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) by(v []byte) { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) pos(p positions) {
	e.u(uint64(len(p)))
	for _, pp := range p {
		e.i(pp.Base)
		e.u(uint64(len(pp.Acked)))
		prev := pp.Base
		for _, r := range pp.Acked {
			e.i(r[0] - prev)
			e.u(uint64(r[1] - r[0]))
			prev = r[1]
		}
	}
}

func newEnc(kind byte) *enc { return &enc{b: []byte{recVersion, kind}} }

// dec is a journal record reader; failures wrap errCorrupt.
type dec struct{ *binrec.Reader }

func (d dec) inc() uint32 {
	v := d.Uvarint("incarnation")
	if v > math.MaxUint32 {
		d.Fail("incarnation out of range")
	}
	return uint32(v)
}

// pos reads positions; every count is bounded by what is left (a partition
// and an acked range take at least 2 bytes each), so a corrupt count cannot
// make us allocate much.
func (d dec) pos() positions {
	p := make(positions, d.UvarintCount("partition count", 2))
	for k := range p {
		p[k].Base = d.Varint("base")
		nr := d.UvarintCount("acked range count", 2)
		prev := p[k].Base
		for range nr {
			first := prev + d.Varint("acked range start delta")
			last := first + int64(d.Uvarint("acked range length"))
			if first < prev || last < first || first < p[k].Base {
				d.Fail("acked ranges out of order")
				return nil
			}
			p[k].Acked = append(p[k].Acked, [2]int64{first, last})
			prev = last
		}
	}
	return p
}

func encDef(def []byte, pos positions, inc uint32) []byte {
	e := newEnc(kDef)
	e.by(def)
	e.pos(pos)
	e.u(uint64(inc))
	return e.b
}

func encAck(part int32, offs []int64) []byte {
	e := newEnc(kAck)
	e.i(int64(part))
	e.u(uint64(len(offs)))
	prev := int64(0)
	for _, o := range offs {
		e.i(o - prev)
		prev = o
	}
	return e.b
}

func encState(part int32, ss []stateEnt) []byte {
	e := newEnc(kState)
	e.i(int64(part))
	e.u(uint64(len(ss)))
	prev := int64(0)
	for _, s := range ss {
		e.i(s.Off - prev)
		prev = s.Off
		a := uint64(s.Attempts) << 1
		if s.Out {
			a |= 1
		}
		e.u(a)
		e.i(s.Due)
	}
	return e.b
}

func encHold(part int32, hs []holdEnt) []byte {
	e := newEnc(kHold)
	e.i(int64(part))
	e.u(uint64(len(hs)))
	prev := int64(0)
	for _, h := range hs {
		e.i(h.Off - prev)
		prev = h.Off
		e.s(h.Key)
	}
	return e.b
}

func encPositions(pos positions, inc uint32) []byte {
	e := newEnc(kPositions)
	e.pos(pos)
	e.u(uint64(inc))
	return e.b
}

func encCkpt(def []byte, counters [5]int64, bases []int64, inc uint32) []byte {
	e := newEnc(kCkpt)
	e.u(uint64(inc))
	e.by(def)
	for _, c := range counters {
		e.i(c)
	}
	e.u(uint64(len(bases)))
	for _, b := range bases {
		e.i(b)
	}
	return e.b
}

func encRuns(part int32, first int64, runs []run) []byte {
	e := newEnc(kRuns)
	e.i(int64(part))
	e.i(first)
	e.u(uint64(len(runs)))
	for _, r := range runs {
		e.u(uint64(r.N))
		a := uint64(r.Attempts) << 2
		if r.Out {
			a |= 2
		}
		if r.Acked {
			a |= 1
		}
		e.u(a)
		e.i(r.Due)
	}
	return e.b
}

func encSnap(name, sub, topic string, created int64, pos positions) []byte {
	e := newEnc(kSnap)
	e.s(name)
	e.s(sub)
	e.s(topic)
	e.i(created)
	e.pos(pos)
	return e.b
}

func encSnapDelete(name string) []byte {
	e := newEnc(kSnapDelete)
	e.s(name)
	return e.b
}

// decodeRecord parses one journal record. Every error wraps errCorrupt.
func decodeRecord(key, value []byte) (*jrec, error) {
	if len(value) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", errCorrupt, len(value))
	}
	if value[0] != recVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errCorrupt, value[0], recVersion)
	}
	r := &jrec{kind: value[1], sub: string(key)}
	d := dec{binrec.NewReader(value[2:], errCorrupt, recVersion)}
	switch r.kind {
	case kDef:
		r.def = d.UvarintBytes("definition")
		r.pos = d.pos()
		r.inc = d.inc()
	case kDelete, kBegin:
	case kAck:
		r.part = int32(d.Varint("partition"))
		n := d.UvarintCount("offset count", 1)
		prev := int64(0)
		for range n {
			o := prev + d.Varint("offset delta")
			if o < prev {
				d.Fail("offsets out of order")
				break
			}
			r.offs = append(r.offs, o)
			prev = o
		}
	case kState:
		r.part = int32(d.Varint("partition"))
		n := d.UvarintCount("state count", 3)
		prev := int64(0)
		for range n {
			o := prev + d.Varint("state offset delta")
			a := d.Uvarint("state attempts")
			due := d.Varint("state due time")
			if o < prev || a>>1 > 0xffff {
				d.Fail("bad state entry")
				break
			}
			r.states = append(r.states, stateEnt{Off: o, Attempts: uint16(a >> 1), Out: a&1 == 1, Due: due})
			prev = o
		}
	case kHold:
		r.part = int32(d.Varint("partition"))
		n := d.UvarintCount("hold count", 2)
		prev := int64(0)
		for range n {
			o := prev + d.Varint("hold offset delta")
			k := d.UvarintStr("ordering key")
			if o < prev {
				d.Fail("offsets out of order")
				break
			}
			r.holds = append(r.holds, holdEnt{Off: o, Key: k})
			prev = o
		}
	case kPositions:
		r.pos = d.pos()
		r.inc = d.inc()
	case kCkpt:
		r.inc = d.inc()
		r.def = d.UvarintBytes("definition")
		for k := range r.counters {
			r.counters[k] = d.Varint("counter")
		}
		n := d.UvarintCount("base count", 1)
		for range n {
			r.pos = append(r.pos, partPos{Base: d.Varint("base")})
		}
	case kRuns:
		r.part = int32(d.Varint("partition"))
		r.first = d.Varint("first offset")
		n := d.UvarintCount("run count", 3)
		for range n {
			c, a, due := d.Uvarint("run length"), d.Uvarint("run attempts"), d.Varint("run due time")
			if c == 0 || c > 1<<40 || a>>2 > 0xffff {
				d.Fail("bad run")
				break
			}
			r.runs = append(r.runs, run{N: int64(c), Acked: a&1 == 1, Out: a&2 == 2, Attempts: uint16(a >> 2), Due: due})
		}
	case kSnap:
		r.snapName, r.snapSub, r.snapTopic = d.UvarintStr("snapshot name"), d.UvarintStr("snapshot subscription"), d.UvarintStr("snapshot topic")
		r.snapTime = d.Varint("snapshot time")
		r.pos = d.pos()
	case kSnapDelete:
		r.snapName = d.UvarintStr("snapshot name")
	default:
		return nil, fmt.Errorf("%w: unknown kind %d", errCorrupt, r.kind)
	}
	if err := d.End("record"); err != nil {
		return nil, fmt.Errorf("kind %d: %w", r.kind, err)
	}
	if r.part < 0 {
		return nil, fmt.Errorf("%w: partition %d", errCorrupt, r.part)
	}
	return r, nil
}

// journal appends records to the state topic in the order they were
// added, in batches (group commit): one flusher goroutine takes whatever
// is queued and appends it with one Append.
type journal struct {
	log    eventlog.Log
	topic  string
	logger *slog.Logger
	wake   chan struct{}
	mu     struct {
		sync.Mutex
		q       []eventlog.Record
		waiters []*jwait
		closed  bool
	}
	done chan struct{}
}

// jwait is the outcome of added records: done closes when they are durable
// (err nil, offset of the first) or failed.
type jwait struct {
	done  chan struct{}
	first int // index in the flushed batch
	n     int
	base  int64
	err   error
}

func (w *jwait) wait(ctx context.Context) error {
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newJournal(log eventlog.Log, topic string, logger *slog.Logger) *journal {
	j := &journal{log: log, topic: topic, logger: logger, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go j.run()
	return j
}

// add queues records; callers that need an order between their records
// add them under their own lock.
func (j *journal) add(key string, values ...[]byte) *jwait {
	w := &jwait{done: make(chan struct{}), n: len(values)}
	j.mu.Lock()
	if j.mu.closed {
		j.mu.Unlock()
		w.err = eventlog.ErrClosed
		close(w.done)
		return w
	}
	w.first = len(j.mu.q)
	for _, v := range values {
		j.mu.q = append(j.mu.q, eventlog.Record{Key: []byte(key), Value: v})
	}
	j.mu.waiters = append(j.mu.waiters, w)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return w
}

func (j *journal) run() {
	defer close(j.done)
	for {
		j.mu.Lock()
		q, ws, closed := j.mu.q, j.mu.waiters, j.mu.closed
		// Cut the batch at a waiter boundary under maxJournalBatch.
		cut, size := len(ws), 0
		for k, w := range ws {
			for _, r := range q[w.first : w.first+w.n] {
				size += len(r.Key) + len(r.Value) + 16
			}
			if size > maxJournalBatch && k > 0 {
				cut = k
				break
			}
		}
		var batch []eventlog.Record
		if cut < len(ws) {
			end := ws[cut].first
			batch = q[:end:end]
			rest := slices.Clone(q[end:])
			shift := end
			j.mu.waiters = slices.Clone(ws[cut:])
			for _, w := range j.mu.waiters {
				w.first -= shift
			}
			j.mu.q = rest
			ws = ws[:cut]
		} else {
			batch = q
			j.mu.q, j.mu.waiters = nil, nil
		}
		j.mu.Unlock()
		if len(ws) == 0 {
			if closed {
				return
			}
			<-j.wake
			continue
		}
		var base int64
		var err error
		if len(batch) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			start := time.Now()
			base, err = j.log.Append(ctx, j.topic, 0, batch)
			cancel()
			if err != nil {
				j.logger.Error("subscription journal append failed", "records", len(batch), "err", err)
				err = fmt.Errorf("write subscription state: %w", err)
			} else if d := time.Since(start); d > time.Second {
				j.logger.Warn("slow subscription journal append", "records", len(batch), "took", d)
			}
		}
		for _, w := range ws {
			w.err, w.base = err, base+int64(w.first)
			close(w.done)
		}
	}
}

// close flushes what is queued and stops the flusher.
func (j *journal) close() {
	j.mu.Lock()
	j.mu.closed = true
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	<-j.done
}
