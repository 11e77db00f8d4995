// Package embedded is the event store on Herald's commit log.
//
// # Layout
//
// One commitlog.Log named "all" holds every record of the store, in the
// order of $all: an event's position is its offset. One append (one stream
// or several) is one Kafka record batch, so the commit log's all-or-nothing
// batch write and CRC make a multi-stream append atomic across crashes: a
// torn batch is cut off whole by recovery. A record's key is the stream name,
// a NUL, and a kind: 'e' plus the version (u64) for an event, so every event
// has a key of its own; 'm', 's' or 't' for the stream's metadata, soft
// delete and tombstone, so only the newest of each survives compaction. Its
// value is (all integers big-endian, strings and byte fields
// uvarint-length-prefixed):
//
//	| format u8 = 1 | kind u8 | body by kind
//	kind 1 event:     version i64 | time ns i64 | id | type | metadata | data
//	kind 2 metadata:  maxCount i64 | maxAge ns i64 | truncateBefore i64
//	kind 3 soft del:  truncateBefore i64
//	kind 4 tombstone: (empty)
//
// A null value under an event key is a scavenge marker: the event is gone
// once compaction has run. Frozen: the key kinds, the value kinds and the
// layout of format 1.
//
// # Scavenging
//
// The log uses the commit log's compaction (newest record per key). To
// reclaim hidden events, Scavenge appends a marker per event and runs
// compaction, which rewrites sealed segments without the events (and, in
// the same pass, without the markers; offsets are kept, so positions never
// change). Scavenging removes only a prefix of a stream and never its last
// event (a soft delete's record carries the version instead), so the index
// rebuilt after a restart still knows every stream's version: the versions
// before the first surviving event are recorded as scavenged.
//
// # Stream index
//
// The per-stream index (version -> position, a 64-bit hash of each event
// ID for idempotent retries, metadata and delete state) lives in memory.
// It is saved to the index file now and then (as the log grows, before
// compaction, at a clean Close); Open loads that and scans the log after
// the position it covers (index.go). The log is the only source of truth:
// without a usable file, Open scans all of it.
//
// # Concurrency and durability
//
// Appends are ordered by Store.wmu: check the expected versions against
// the index, encode one batch, take its positions, update the index,
// queue the batch, release wmu, then wait for the commit. One flusher
// writes every queued batch with one write and waits for the one fsync
// that covers them, then acknowledges them all; the next group gathers
// during that fsync (group commit; commit.go says how the flusher waits
// for writers so that they do not split into alternating halves). The
// index is never written to disk on the append path: a save copies it
// aside under wmu (a shallow copy per stream) and writes it off the path.
// Readers never see an event before it is durable: they stop at the log's
// high-water mark, which covers only synced bytes.
// A write or fsync error fails the store until reopened (the index would
// otherwise claim events the disk may not hold).
//
// Lock order: scavMu, ckMu, wmu, mu; the commit queue's lock is a leaf.
// The flusher takes none of the first four.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/internal/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Store.
type Config struct {
	// Dir is the data directory (created if missing).
	Dir string
	// Durability of appends; the zero value fsyncs before acknowledging.
	Durability commitlog.Durability
	// MaxEventBytes bounds an event's data plus metadata; 0 means
	// eventstore.DefaultMaxEventBytes.
	MaxEventBytes int
	// MaxAppendBytes bounds one append's encoded size; 0 means 16 MiB.
	MaxAppendBytes int
	// SegmentBytes of the log's segments; 0 means 1 GiB.
	SegmentBytes int64
	// Preallocate is how far ahead of the last event the log keeps
	// zero-filled space (commitlog.Options.Preallocate), so that an
	// append's fsync writes data but no file size. Durability always
	// only; 0 means DefaultPreallocate, negative means none.
	Preallocate int64
	Logger      *slog.Logger
	// Registerer receives the store's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// IndexCheckpointRecords: the stream index is saved to the index file
	// whenever the log has grown, since the last save, by this many
	// records and by a quarter of what that save covered, so that an open
	// after a crash loads it and scans only the rest of the log. 0 means
	// DefaultIndexCheckpointRecords; negative means only a clean Close
	// saves the index (an open after a crash scans the whole log).
	IndexCheckpointRecords int64

	fs              vfs.FS        // the log's filesystem (tests inject faults); nil: the OS's
	indexCheckEvery time.Duration // how often the log's growth is checked; 0: 5 s
}

// DefaultIndexCheckpointRecords is Config.IndexCheckpointRecords' default.
// The scan at open reads one to four million records a second here, so
// after a crash the tail it scans takes about a second at most plus a
// quarter of a full scan; each save writes the whole index (16 bytes per
// event).
const DefaultIndexCheckpointRecords = 1 << 20

const logName = "all"

// DefaultPreallocate is Config.Preallocate's default: one metadata commit
// per MiB of events (about 200 fsyncs of 8 small appends) instead of one
// per fsync.
const DefaultPreallocate = 1 << 20

// Store is the embedded event store. See the package doc.
type Store struct {
	cfg    Config
	logger *slog.Logger
	cl     *commitlog.Store
	log    *commitlog.Log
	m      *metrics
	logReg *prometheus.Registry // the commit log's metrics
	closed atomic.Bool

	scavMu  sync.Mutex // one scavenge at a time
	wmu     sync.Mutex // serialises appends, metadata writes and deletes
	scratch struct {
		recs []batch.Rec
		vals []byte
	}

	nextPos int64 // under wmu: the position the next queued record gets
	q       commitQueue

	mu      sync.RWMutex
	streams map[string]*stream

	failed atomic.Pointer[error] // set once: the store must be reopened

	testHookQueued func(end int64) // called under wmu once an append is queued

	indexLoaded  bool  // the index came from the index file, not a whole scan
	indexScanned int64 // records scanned at open after the index file's position

	// The index file (index.go). ckMu orders its writers (checkpoints,
	// Scavenge's, Close's); Lock order: scavMu, ckMu, wmu, mu.
	ckMu    sync.Mutex
	ckPos   atomic.Int64       // position the index file covers; -1: no file
	ckStop  context.CancelFunc // ends the checkpointer (nil: none)
	ckDone  chan struct{}      // closed when it has
	ckCount atomic.Int64       // checkpoints written
	ckHeld  atomic.Int64       // ns the last save held the writers (its copy)
}

// stream is one stream's index entry.
type stream struct {
	pos            []int64  // pos[v] is the position of version v (-1 if scavenged)
	first          int64    // versions below were scavenged
	idh            []uint64 // idh[v] is the hash of version v's ID
	meta           eventstore.StreamMetadata
	truncateBefore int64
	deleted        bool
	tombstoned     bool
}

// idHash is the 64-bit FNV-1a hash of an event ID. It is saved in the
// index file, so it must not change between processes (a seeded hash,
// such as hash/maphash's, made retries after a restart look new).
func idHash(id string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= prime
	}
	return h
}

// Open opens (or creates) the store in cfg.Dir, rebuilding the stream index
// from the log.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("embedded event store: Dir is empty")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = eventstore.DefaultMaxEventBytes
	}
	if cfg.MaxAppendBytes <= 0 {
		cfg.MaxAppendBytes = 16 << 20
	}
	if cfg.SegmentBytes != 0 && cfg.SegmentBytes < int64(cfg.MaxAppendBytes)+64<<10 {
		return nil, fmt.Errorf("embedded event store: segment bytes %d must exceed max append bytes %d by 64 KiB", cfg.SegmentBytes, cfg.MaxAppendBytes)
	}
	switch {
	case cfg.Durability.Mode != commitlog.SyncAlways || cfg.Preallocate < 0:
		cfg.Preallocate = 0
	case cfg.Preallocate == 0:
		cfg.Preallocate = DefaultPreallocate
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded event store: %w", err)
	}
	// The log's own metrics go to a private registry: their names would
	// collide with the broker's commit log in a shared one. The store
	// re-exports what concerns it (fsyncs and group commit rounds).
	logReg := prometheus.NewRegistry()
	cl, err := commitlog.OpenStore(filepath.Join(cfg.Dir), commitlog.StoreOptions{
		Logger: cfg.Logger, CleanInterval: -1, Registerer: logReg, FS: cfg.fs,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded event store: %w", err)
	}
	l, err := cl.OpenLog(logName, commitlog.Options{
		Durability:   cfg.Durability,
		SegmentBytes: cfg.SegmentBytes,
		// The append size estimate bounds the records; add the batch header.
		MaxBatchBytes: cfg.MaxAppendBytes + 4<<10,
		SegmentAge:    -1,
		// Scavenging is the commit log's compaction: every event has a
		// key of its own, and a scavenge marker (same key, null value)
		// drops it. Markers can go as soon as a pass has dropped their
		// events, which happens in the same pass.
		Cleanup:         commitlog.CleanupCompact,
		DeleteRetention: time.Millisecond,
		Preallocate:     cfg.Preallocate,
	})
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("embedded event store: %w", err)
	}
	s := &Store{cfg: cfg, logger: cfg.Logger, cl: cl, log: l, logReg: logReg, streams: map[string]*stream{}}
	s.ckPos.Store(-1)
	start := time.Now()
	loaded, err := s.loadIndex()
	if err == nil && !loaded {
		if err = s.scanIndex(s.streams, s.log.StartOffset(), s.log.HighWatermark()); err != nil {
			err = fmt.Errorf("rebuild stream index: %w", err)
		}
	}
	if err != nil {
		l.Close()
		cl.Close()
		return nil, fmt.Errorf("embedded event store: %w", err)
	}
	s.nextPos = l.EndOffset()
	s.q.wake = make(chan struct{}, 1)
	s.q.done = make(chan struct{})
	go s.flusher()
	s.m = newMetrics(s)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.m); err != nil {
			s.stopFlusher()
			l.Close()
			cl.Close()
			return nil, fmt.Errorf("embedded event store: register metrics: %w", err)
		}
	}
	if cfg.IndexCheckpointRecords >= 0 {
		ctx, stop := context.WithCancel(context.Background())
		s.ckStop, s.ckDone = stop, make(chan struct{})
		go s.checkpointer(ctx)
	}
	s.logger.Info("event store opened", "dir", cfg.Dir, "streams", len(s.streams),
		"head", l.HighWatermark(), "index_file", s.indexLoaded, "scanned_records", s.indexScanned,
		"took", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// scanIndex applies the records at positions [from, to) to streams: the
// whole log into an empty index, or the log after the index file's
// position into the index it held.
func (s *Store) scanIndex(streams map[string]*stream, from, to int64) error {
	var bad error
	err := s.scan(context.Background(), from, to, 1<<62, func(off int64, key []byte, r record) bool {
		st := streams[string(key)]
		if st == nil {
			st = &stream{}
			streams[string(key)] = st
		}
		switch r.kind {
		case kindEvent:
			if n := int64(len(st.pos)); r.version != n {
				// Scavenging removes a prefix of a stream: the versions
				// before its first surviving event, or those its markers
				// name.
				if r.version < n || (n > 0 && r.version > st.first) {
					bad = eventstore.Inconsistent("position %d: stream %q event version %d, want %d", off, key, r.version, n)
					return false
				}
				for int64(len(st.pos)) < r.version {
					st.pos = append(st.pos, -1)
					st.idh = append(st.idh, 0)
				}
				st.first = max(st.first, r.version)
			}
			st.pos = append(st.pos, off)
			st.idh = append(st.idh, idHash(r.id))
			st.deleted = false
		case kindScavenged:
			st.first = max(st.first, r.version+1)
		case kindMetadata:
			st.meta = eventstore.StreamMetadata{MaxCount: r.maxCount, MaxAge: time.Duration(r.maxAgeNano), TruncateBefore: r.truncateBefore}
		case kindSoftDel:
			st.deleted, st.truncateBefore = true, r.truncateBefore
			// The versions below it may all have been scavenged.
			for int64(len(st.pos)) < r.truncateBefore {
				st.pos = append(st.pos, -1)
				st.idh = append(st.idh, 0)
			}
			st.first = max(st.first, r.truncateBefore)
		case kindTombstone:
			st.tombstoned = true
		}
		return true
	})
	if bad != nil {
		return bad
	}
	return err
}

// scan decodes the records at positions [from, to) in order, calling fn
// until it returns false or maxBytes of batches have been read. It returns
// fn's stop, the position after the last record examined, and any error.
func (s *Store) scanRange(ctx context.Context, from, to int64, maxBytes int, fn func(off int64, key []byte, r record) bool) (next int64, err error) {
	next = from
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	defer func() { *bp = buf[:0] }()
	var it batch.Iter
	read := 0
	for next < to && read < maxBytes {
		buf, err = s.log.Read(ctx, next, 1<<20, buf)
		if err != nil {
			return next, s.readErr(err)
		}
		if len(buf) == 0 {
			return next, nil
		}
		read += len(buf)
		for p := 0; p < len(buf); {
			h, err := batch.ParseHeader(buf[p:])
			if err != nil {
				return next, err
			}
			if err := it.Reset(buf[p : p+h.Size()]); err != nil {
				return next, err
			}
			for it.Next() {
				off := it.Offset()
				if off < next {
					continue
				}
				if off >= to {
					return to, nil
				}
				rec := it.Record()
				stream, r, err := decodeKeyed(rec.Key, rec.Value, false)
				if err != nil {
					return next, s.corrupt(off, err)
				}
				if !fn(off, stream, r) {
					return off + 1, errStop
				}
				next = off + 1
			}
			if err := it.Err(); err != nil {
				return next, err
			}
			next = max(next, h.LastOffset()+1)
			p += h.Size()
		}
	}
	return next, nil
}

var errStop = errors.New("stop")

func (s *Store) scan(ctx context.Context, from, to int64, maxBytes int, fn func(off int64, key []byte, r record) bool) error {
	_, err := s.scanRange(ctx, from, to, maxBytes, fn)
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// corrupt reports an undecodable record, which the batch CRC vouched for:
// a bug or a foreign file, never a torn write.
func (s *Store) corrupt(off int64, err error) error {
	return fmt.Errorf("event store %s: position %d: %w: %v", s.cfg.Dir, off, commitlog.ErrCorrupt, err)
}

func (s *Store) readErr(err error) error {
	if errors.Is(err, commitlog.ErrClosed) {
		return eventstore.ErrClosed
	}
	return err
}

func (s *Store) usable() error {
	if s.closed.Load() {
		return eventstore.ErrClosed
	}
	return nil
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.AppendMulti(ctx, []eventstore.StreamAppend{{Stream: stream, Expected: expected, Events: events}})
	if err != nil {
		return eventstore.AppendResult{}, unwrapSingle(err)
	}
	return res[0], nil
}

// unwrapSingle turns "appends[0].events[1].data" into "events[1].data" for
// a single-stream append.
func unwrapSingle(err error) error {
	var ie *eventstore.InvalidError
	if errors.As(err, &ie) && len(ie.Field) > len("appends[0].") && ie.Field[:11] == "appends[0]." {
		return &eventstore.InvalidError{Field: ie.Field[11:], Reason: ie.Reason}
	}
	return err
}

// AppendMulti implements eventstore.Store.
func (s *Store) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if err := eventstore.ValidateAppends(appends, s.cfg.MaxEventBytes); err != nil {
		return nil, err
	}
	size := 0
	for _, a := range appends {
		for _, e := range a.Events {
			size += len(a.Stream) + len(e.ID) + len(e.Type) + len(e.Data) + len(e.Metadata) + 64
		}
	}
	if size > s.cfg.MaxAppendBytes {
		return nil, eventstore.Invalid("appends", "encode to about %d bytes, the limit is %d", size, s.cfg.MaxAppendBytes)
	}
	start := time.Now()

	s.wmu.Lock()
	if err := s.writableLocked(); err != nil {
		s.wmu.Unlock()
		return nil, err
	}
	results := make([]eventstore.AppendResult, len(appends))
	cur := make([]int64, len(appends))
	retried := 0 // appends already present (idempotent retry)
	var conflict error
	var conflictPos int64 = -1
	for i, a := range appends {
		st := s.streams[a.Stream] // read under wmu: only wmu holders modify the map
		version, deleted := int64(-1), false
		if st != nil {
			if st.tombstoned {
				s.wmu.Unlock()
				return nil, &eventstore.StreamDeletedError{Stream: a.Stream}
			}
			version, deleted = int64(len(st.pos))-1, st.deleted
		}
		cur[i] = version
		err := eventstore.CheckExpected(a.Stream, a.Expected, version, deleted)
		if r, ok := s.alreadyAppended(st, a, err == nil); ok {
			results[i] = r
			retried++
			continue
		}
		if err != nil && conflict == nil {
			conflict = err
			if st != nil && len(st.pos) > 0 {
				conflictPos = st.pos[len(st.pos)-1]
			}
		}
	}
	if conflict != nil || retried == len(appends) {
		s.wmu.Unlock()
		if conflict != nil {
			s.m.conflicts.Inc()
			// The version the conflict reports may still be on its way to
			// disk; wait, so a reload after the conflict sees it.
			if conflictPos >= 0 {
				if err := s.log.Wait(ctx, conflictPos); err != nil {
					return nil, s.readErr(err)
				}
			}
			return nil, conflict
		}
		// The events are in the log; make sure they are durable before
		// saying so again.
		last := int64(0)
		for _, r := range results {
			last = max(last, r.Position)
		}
		if err := s.log.Wait(ctx, last); err != nil {
			return nil, s.readErr(err)
		}
		return results, nil
	}
	if retried > 0 {
		// Some streams hold these events and others do not: this cannot be
		// a retry of one atomic append.
		s.wmu.Unlock()
		for i, a := range appends {
			if results[i].Stream == "" {
				continue
			}
			s.m.conflicts.Inc()
			return nil, &eventstore.WrongExpectedVersionError{Stream: a.Stream, Expected: a.Expected, Actual: cur[i]}
		}
	}

	now := time.Now()
	recs := s.scratch.recs[:0]
	vals := s.scratch.vals[:0]
	type span struct{ kfrom, vfrom, vto int }
	spans := make([]span, 0, 16)
	for i, a := range appends {
		for j, e := range a.Events {
			kfrom := len(vals)
			vals = eventKey(vals, a.Stream, cur[i]+1+int64(j))
			vfrom := len(vals)
			vals = encodeEvent(vals, cur[i]+1+int64(j), now.UnixNano(), e.ID, e.Type, e.Metadata, e.Data)
			spans = append(spans, span{kfrom, vfrom, len(vals)})
			recs = append(recs, batch.Rec{Timestamp: now.UnixMilli()})
		}
	}
	for k := range recs {
		recs[k].Key = vals[spans[k].kfrom:spans[k].vfrom]
		recs[k].Value = vals[spans[k].vfrom:spans[k].vto]
	}
	// The batch goes to the commit queue, which owns it from there.
	out, err := batch.Encode(make([]byte, 0, len(vals)+len(recs)*24+128), batch.BuildOptions{}, recs)
	s.scratch.recs, s.scratch.vals = recs[:0], vals[:0]
	if err != nil {
		s.wmu.Unlock()
		return nil, err
	}
	// The index first, then the queue: once queued, the batch may be
	// committed and the high-water mark pass it at any moment, and every
	// event below the high-water mark must be in the index (else a reader
	// that sees the new mark finds no event, and waits past it).
	type prior struct {
		st               *stream
		n                int
		deleted, created bool
	}
	priors := make([]prior, len(appends))
	pos := s.nextPos
	s.mu.Lock()
	for i, a := range appends {
		st, created := s.streams[a.Stream], false
		if st == nil {
			st, created = &stream{}, true
			s.streams[a.Stream] = st
		}
		priors[i] = prior{st, len(st.pos), st.deleted, created}
		for _, e := range a.Events {
			st.pos = append(st.pos, pos)
			st.idh = append(st.idh, idHash(e.ID))
			pos++
		}
		st.deleted = false
		results[i] = eventstore.AppendResult{Stream: a.Stream, Version: int64(len(st.pos)) - 1, Position: pos - 1}
	}
	s.mu.Unlock()
	req, err := s.enqueueLocked(out, len(recs))
	if err != nil { // closed or failed: take the entries back
		s.mu.Lock()
		for i := len(appends) - 1; i >= 0; i-- {
			p := priors[i]
			p.st.pos, p.st.idh, p.st.deleted = p.st.pos[:p.n], p.st.idh[:p.n], p.deleted
			if p.created {
				delete(s.streams, appends[i].Stream)
			}
		}
		s.mu.Unlock()
		s.wmu.Unlock()
		return nil, err
	}
	if s.testHookQueued != nil {
		s.testHookQueued(req.base + req.n)
	}
	s.wmu.Unlock()

	if err := req.wait(ctx); err != nil {
		return nil, err
	}
	n := 0
	for _, a := range appends {
		n += len(a.Events)
	}
	s.m.appends.Inc()
	s.m.events.Add(float64(n))
	s.m.latency.Observe(time.Since(start).Seconds())
	return results, nil
}

// alreadyAppended reports whether a's events are already in the stream
// where a retry of a would have put them: for an exact expected version
// right after it, for no-stream at the start, for any or exists at the
// stream's end. checked says the expected version matched (then only any
// can be a retry).
func (s *Store) alreadyAppended(st *stream, a eventstore.StreamAppend, checked bool) (eventstore.AppendResult, bool) {
	if st == nil {
		return eventstore.AppendResult{}, false
	}
	n := int64(len(a.Events))
	var first int64
	switch {
	case a.Expected >= 0:
		first = int64(a.Expected) + 1
	case a.Expected == eventstore.NoStream:
		first = max(st.truncateBefore, 0)
		if st.deleted {
			return eventstore.AppendResult{}, false
		}
	default:
		first = int64(len(st.pos)) - n
	}
	if checked && a.Expected != eventstore.Any {
		return eventstore.AppendResult{}, false
	}
	if first < 0 || first+n > int64(len(st.pos)) {
		return eventstore.AppendResult{}, false
	}
	for j, e := range a.Events {
		if st.idh[first+int64(j)] != idHash(e.ID) {
			return eventstore.AppendResult{}, false
		}
	}
	last := first + n - 1
	return eventstore.AppendResult{Stream: a.Stream, Version: last, Position: st.pos[last]}, true
}

// fail fails the store for good (until reopened). It takes no lock, so
// the flusher may call it while a writer holds wmu.
func (s *Store) fail(err error) {
	ferr := fmt.Errorf("event store failed, reopen it: %w", err)
	if s.failed.CompareAndSwap(nil, &ferr) {
		s.logger.Error("event store failed", "err", err)
	}
}

// failure is the error that failed the store, or nil.
func (s *Store) failure() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// writableLocked is nil when writes may be queued. Caller holds wmu.
func (s *Store) writableLocked() error {
	if s.closed.Load() {
		return eventstore.ErrClosed
	}
	return s.failure()
}

// visibleInfoLocked is a stream's state as readers may see it: only events
// below the high-water mark. Caller holds mu (read).
func (s *Store) visibleInfoLocked(name string, st *stream, hwm int64) eventstore.StreamInfo {
	info := eventstore.StreamInfo{Stream: name, Version: -1}
	if st == nil {
		return info
	}
	v := int64(len(st.pos)) - 1
	for v >= 0 && st.pos[v] >= hwm {
		v--
	}
	info.Version = v
	info.Deleted, info.Tombstoned = st.deleted, st.tombstoned
	info.Metadata, info.TruncateBefore = st.meta, max(st.truncateBefore, st.first)
	return info
}

// StreamInfo implements eventstore.Store.
func (s *Store) StreamInfo(ctx context.Context, name string) (eventstore.StreamInfo, error) {
	if err := s.usable(); err != nil {
		return eventstore.StreamInfo{}, err
	}
	if err := eventstore.ValidateStreamName("stream", name); err != nil {
		return eventstore.StreamInfo{}, err
	}
	hwm := s.log.HighWatermark()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.visibleInfoLocked(name, s.streams[name], hwm), nil
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, name string, opts eventstore.ReadStreamOptions) ([]eventstore.RecordedEvent, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if err := eventstore.CheckReadStream(name, opts); err != nil {
		return nil, err
	}
	hwm := s.log.HighWatermark()
	s.mu.RLock()
	st := s.streams[name]
	info := s.visibleInfoLocked(name, st, hwm)
	switch {
	case info.Tombstoned:
		s.mu.RUnlock()
		return nil, &eventstore.StreamDeletedError{Stream: name}
	case info.Version < 0 || info.Deleted:
		s.mu.RUnlock()
		return nil, eventstore.NotFound(name)
	}
	lo, hi, ok := eventstore.StreamRange(info, opts)
	var positions []int64
	if ok {
		positions = slices.Clone(st.pos[lo : hi+1])
	}
	s.mu.RUnlock()

	evs := make([]eventstore.RecordedEvent, 0, len(positions))
	cutoff := eventstore.MaxAgeCutoff(info.Metadata, time.Now())
	err := s.readPositions(ctx, positions, func(off int64, key []byte, r record) error {
		if r.kind != kindEvent || string(key) != name {
			return eventstore.Inconsistent("position %d holds no event of stream %q", off, name)
		}
		ev := toEvent(off, key, r)
		if !cutoff.IsZero() && ev.Time.Before(cutoff) {
			return nil
		}
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if opts.Backwards {
		slices.Reverse(evs)
	}
	s.m.reads.Inc()
	return evs, nil
}

func toEvent(off int64, key []byte, r record) eventstore.RecordedEvent {
	return eventstore.RecordedEvent{
		Stream: string(key), Version: r.version, Position: off, ID: r.id, Type: r.typ,
		Data: r.data, Metadata: r.metadata, Time: time.Unix(0, r.timeNano),
	}
}

// readPositions decodes the records at the given ascending positions, with
// copied byte fields.
func (s *Store) readPositions(ctx context.Context, positions []int64, fn func(off int64, key []byte, r record) error) error {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	defer func() { *bp = buf[:0] }()
	var arena []byte // copies of data and metadata, one allocation for many events
	var it batch.Iter
	i := 0
	for i < len(positions) {
		var err error
		buf, err = s.log.Read(ctx, positions[i], 64<<10, buf)
		if err != nil {
			return s.readErr(err)
		}
		if len(buf) == 0 {
			return eventstore.Inconsistent("position %d is past the end of the log", positions[i])
		}
		for p := 0; p < len(buf) && i < len(positions); {
			h, err := batch.ParseHeader(buf[p:])
			if err != nil {
				return err
			}
			if positions[i] > h.LastOffset() {
				p += h.Size()
				continue
			}
			if err := it.Reset(buf[p : p+h.Size()]); err != nil {
				return err
			}
			for i < len(positions) && it.Next() {
				off := it.Offset()
				if off < positions[i] {
					continue
				}
				for i < len(positions) && off > positions[i] {
					i++ // scavenged under this read: it was hidden anyway
				}
				if i == len(positions) || off != positions[i] {
					continue
				}
				rec := it.Record()
				stream, r, err := decodeKeyed(rec.Key, rec.Value, false)
				if err != nil {
					return s.corrupt(off, err)
				}
				r.data, r.metadata, arena = copyOut(arena, r.data, r.metadata)
				if err := fn(off, stream, r); err != nil {
					return err
				}
				i++
			}
			if err := it.Err(); err != nil {
				return err
			}
			p += h.Size()
		}
	}
	return nil
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.AllPage, error) {
	if err := s.usable(); err != nil {
		return eventstore.AllPage{}, err
	}
	m, err := eventstore.CheckReadAll(opts)
	if err != nil {
		return eventstore.AllPage{}, err
	}
	max := opts.Max
	if max == 0 {
		max = eventstore.DefaultMax
	}
	hwm := s.log.HighWatermark()
	const scanLimit = 32 << 20 // bytes scanned per call, so filtered reads stay bounded
	var page eventstore.AllPage
	var arena []byte
	collect := func(off int64, key []byte, r record) bool {
		if r.kind != kindEvent || !m.Match(string(key), r.typ) {
			return true
		}
		r.data, r.metadata, arena = copyOut(arena, r.data, r.metadata)
		page.Events = append(page.Events, toEvent(off, key, r))
		return len(page.Events) < max
	}
	if !opts.Backwards {
		from := max64(opts.From, s.log.StartOffset())
		next, err := s.scanRange(ctx, from, hwm, scanLimit, collect)
		if err != nil && !errors.Is(err, errStop) {
			return eventstore.AllPage{}, err
		}
		page.Next = next
		page.IsEnd = next >= hwm
		return page, nil
	}
	cur := hwm - 1
	if opts.From != eventstore.End && opts.From < cur {
		cur = opts.From
	}
	start := s.log.StartOffset()
	const window = 1024
	scanned := 0
	for cur >= start && len(page.Events) < max && scanned < scanLimit {
		lo := max64(start, cur-window+1)
		var got []eventstore.RecordedEvent
		_, err := s.scanRange(ctx, lo, cur+1, scanLimit, func(off int64, key []byte, r record) bool {
			if r.kind == kindEvent && m.Match(string(key), r.typ) {
				r.data, r.metadata, arena = copyOut(arena, r.data, r.metadata)
				got = append(got, toEvent(off, key, r))
			}
			scanned += len(r.data) + len(r.metadata) + 64
			return true
		})
		if err != nil {
			return eventstore.AllPage{}, err
		}
		for k := len(got) - 1; k >= 0 && len(page.Events) < max; k-- {
			page.Events = append(page.Events, got[k])
			cur = got[k].Position
		}
		if len(page.Events) >= max {
			cur--
			break
		}
		cur = lo - 1
	}
	page.Next = cur
	page.IsEnd = cur < start
	return page, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if err := s.usable(); err != nil {
		return 0, err
	}
	return s.log.HighWatermark(), nil
}

// WaitAll implements eventstore.Store.
func (s *Store) WaitAll(ctx context.Context, pos int64) error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.readErr(s.log.Wait(ctx, pos))
}

// writeControl appends one non-event record for a stream and waits until
// it is durable, all under wmu, then applies it to the index: deletes and
// metadata are rare, and applying them only once durable keeps readers from
// seeing a change a crash could undo.
func (s *Store) writeControl(ctx context.Context, name string, value []byte, apply func(st *stream)) error {
	key := controlKey(name, keyKindOf(value[1]))
	out, err := batch.Encode(nil, batch.BuildOptions{}, []batch.Rec{{Timestamp: time.Now().UnixMilli(), Key: key, Value: value}})
	if err != nil {
		return err
	}
	req, err := s.enqueueLocked(out, 1)
	if err != nil {
		return err
	}
	if err := req.wait(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	st := s.streams[name]
	if st == nil {
		st = &stream{}
		s.streams[name] = st
	}
	apply(st)
	s.mu.Unlock()
	return nil
}

// SetMetadata implements eventstore.Store.
func (s *Store) SetMetadata(ctx context.Context, name string, md eventstore.StreamMetadata) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := eventstore.ValidateStreamName("stream", name); err != nil {
		return err
	}
	if err := eventstore.ValidateMetadata(md); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writableLocked(); err != nil {
		return err
	}
	if st := s.streams[name]; st != nil && st.tombstoned {
		return &eventstore.StreamDeletedError{Stream: name}
	}
	return s.writeControl(ctx, name, encodeMetadata(nil, md.MaxCount, int64(md.MaxAge), md.TruncateBefore), func(st *stream) { st.meta = md })
}

// Delete implements eventstore.Store.
func (s *Store) Delete(ctx context.Context, name string, expected eventstore.ExpectedVersion, hard bool) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := eventstore.ValidateStreamName("stream", name); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writableLocked(); err != nil {
		return err
	}
	st := s.streams[name]
	version, deleted := int64(-1), false
	if st != nil {
		if st.tombstoned {
			return &eventstore.StreamDeletedError{Stream: name}
		}
		version, deleted = int64(len(st.pos))-1, st.deleted
	}
	if err := eventstore.CheckExpected(name, expected, version, deleted); err != nil {
		s.m.conflicts.Inc()
		return err
	}
	if hard {
		return s.writeControl(ctx, name, encodeTombstone(nil), func(st *stream) { st.tombstoned = true })
	}
	if version < 0 || deleted {
		return eventstore.NotFound(name)
	}
	return s.writeControl(ctx, name, encodeSoftDelete(nil, version+1), func(st *stream) {
		st.deleted, st.truncateBefore = true, version+1
	})
}

// Streams lists the names of streams that have events and are not
// deleted, sorted, starting after `after`, at most max.
func (s *Store) Streams(ctx context.Context, after string, max int) ([]string, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	var names []string
	for name, st := range s.streams {
		if name > after && len(st.pos) > 0 && !st.deleted && !st.tombstoned {
			names = append(names, name)
		}
	}
	s.mu.RUnlock()
	slices.Sort(names)
	if max <= 0 {
		max = eventstore.DefaultMax
	}
	if len(names) > max {
		names = names[:max]
	}
	return names, nil
}

// Exclusive reports that one process owns the store (it holds its
// directory's lock), so persistent groups over it need no hosting lease.
func (s *Store) Exclusive() bool { return true }

// Close closes the store; appends waiting for their fsync complete first.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.ckStop != nil {
		s.ckStop()
		<-s.ckDone
	}
	s.scavMu.Lock()
	defer s.scavMu.Unlock()
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	// Writers holding wmu finish queuing; later ones see closed. Then the
	// flusher commits the queue and exits (it takes no wmu).
	s.wmu.Lock()
	s.wmu.Unlock()
	s.stopFlusher()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.cfg.Registerer != nil {
		s.cfg.Registerer.Unregister(s.m)
	}
	hwm := s.log.HighWatermark()
	err := s.log.Close()
	if err == nil && s.failure() == nil {
		// Everything below hwm is on disk now: save the index for a fast
		// open. A failure only costs the next open a scan.
		s.mu.RLock()
		data := encodeIndex(hwm, s.streams)
		s.mu.RUnlock()
		if werr := vfs.WriteFileAtomic(vfs.Default, filepath.Join(s.cfg.Dir, indexFile), data); werr != nil {
			s.logger.Warn("saving the stream index failed; the next open scans the log after the last checkpoint", "err", werr)
		}
	}
	return errors.Join(err, s.cl.Close())
}

// loadIndex loads the index file, if there is one, and scans the log
// after the position it covers; see index.go. It reports whether the
// index came from the file. A file that cannot be used is removed before
// anything is appended (else the log could grow past its position with
// other records, and a later open trust it); failing that, Open fails.
func (s *Store) loadIndex() (bool, error) {
	path := filepath.Join(s.cfg.Dir, indexFile)
	data, err := vfs.ReadFile(vfs.Default, path)
	if err != nil {
		return false, nil // none: a first open, or no save yet
	}
	hwm := s.log.HighWatermark()
	pos, streams, err := decodeIndex(data)
	switch {
	case err != nil:
		s.logger.Warn("stream index file unusable; scanning the log", "err", err)
	case pos > hwm || pos < s.log.StartOffset():
		// Saved only once durable, so only a log that lost records (or
		// was replaced) ends before it.
		err = fmt.Errorf("covers position %d, the log holds [%d, %d)", pos, s.log.StartOffset(), hwm)
		s.logger.Warn("stream index file does not match the log; scanning it", "index_position", pos, "log_position", hwm)
	default:
		if err = s.scanIndex(streams, pos, hwm); err != nil {
			s.logger.Warn("the log after the stream index file does not follow it; scanning the whole log", "index_position", pos, "err", err)
		}
	}
	if err != nil {
		if err := vfs.Default.Remove(path); err != nil {
			return false, fmt.Errorf("remove the unusable stream index file: %w", err)
		}
		if err := vfs.Default.SyncDir(s.cfg.Dir); err != nil {
			return false, fmt.Errorf("remove the unusable stream index file: %w", err)
		}
		return false, nil
	}
	s.streams, s.indexLoaded, s.indexScanned = streams, true, hwm-pos
	s.ckPos.Store(pos)
	return true, nil
}

// checkpointIndex saves the index to the index file: a copy taken under
// wmu (so it holds exactly the records before nextPos), written once those
// records are durable. Writers wait only for the copy of the streams'
// entries, not for the encoding or the write.
func (s *Store) checkpointIndex(ctx context.Context) error {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	s.wmu.Lock()
	held := time.Now()
	if err := s.writableLocked(); err != nil {
		s.wmu.Unlock()
		return err
	}
	pos := s.nextPos
	if pos == s.ckPos.Load() {
		s.wmu.Unlock()
		return nil
	}
	// Entries only grow at their ends (appends write past a copy's
	// length), so a shallow copy of each is a snapshot.
	s.mu.RLock()
	snap := make(map[string]*stream, len(s.streams))
	for name, st := range s.streams {
		c := *st
		snap[name] = &c
	}
	s.mu.RUnlock()
	s.wmu.Unlock()
	s.ckHeld.Store(int64(time.Since(held)))
	if pos > 0 {
		if err := s.log.Wait(ctx, pos-1); err != nil {
			return err
		}
	}
	if err := s.log.Sync(ctx); err != nil { // whatever the durability mode
		return err
	}
	if err := s.failure(); err != nil {
		return err
	}
	if err := vfs.WriteFileAtomic(vfs.Default, filepath.Join(s.cfg.Dir, indexFile), encodeIndex(pos, snap)); err != nil {
		return err
	}
	s.ckPos.Store(pos)
	s.ckCount.Add(1)
	return nil
}

// checkpointer saves the index whenever the log has grown enough since the
// last save (Config.IndexCheckpointRecords), until ctx ends.
func (s *Store) checkpointer(ctx context.Context) {
	defer close(s.ckDone)
	every := s.cfg.indexCheckEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	minRecs := s.cfg.IndexCheckpointRecords
	if minRecs == 0 {
		minRecs = DefaultIndexCheckpointRecords
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		covered := max(s.ckPos.Load(), 0)
		if grown := s.log.HighWatermark() - covered; grown < max(minRecs, covered/4) {
			continue
		}
		start := time.Now()
		if err := s.checkpointIndex(ctx); err != nil {
			if ctx.Err() == nil && s.failure() == nil {
				s.logger.Warn("saving the stream index failed; an open after a crash scans the log after the previous save", "err", err)
			}
			continue
		}
		s.logger.Debug("stream index saved", "position", s.ckPos.Load(), "took", time.Since(start).Round(time.Millisecond),
			"writers_held", time.Duration(s.ckHeld.Load()))
	}
}

var (
	_ eventstore.Store     = (*Store)(nil)
	_ eventstore.Scavenger = (*Store)(nil)
)

// Scavenge reclaims the space of events no read can return any more. The
// report counts the events marked; ReclaimedBytes is what compaction freed
// in sealed segments. It
// appends a scavenge marker for each (a null-valued record under the
// event's key; see the package doc), then runs the commit log's compaction,
// which rewrites sealed segments without them while appends and reads go
// on (it swaps segment files; readers never wait for it). Crash-safe at
// every step: markers are ordinary appends, compaction swaps files by
// rename. Events of max-age streams are checked by reading them; the
// writers are held only while the markers are written.
func (s *Store) Scavenge(ctx context.Context) (eventstore.ScavengeReport, error) {
	if err := s.usable(); err != nil {
		return eventstore.ScavengeReport{}, err
	}
	s.scavMu.Lock()
	defer s.scavMu.Unlock()
	start := time.Now()
	var rep eventstore.ScavengeReport

	// Max-age cut points need the events' times: read them without locks.
	type ageCut struct {
		keep int64
		meta eventstore.StreamMetadata
	}
	ages := map[string]ageCut{}
	hwm := s.log.HighWatermark()
	s.mu.RLock()
	type cand struct {
		name      string
		from, end int64
		positions []int64
		meta      eventstore.StreamMetadata
	}
	var cands []cand
	for name, st := range s.streams {
		if st.meta.MaxAge > 0 && !st.tombstoned {
			info := s.visibleInfoLocked(name, st, hwm)
			from := eventstore.FirstVisible(info)
			if from <= info.Version {
				cands = append(cands, cand{name, from, info.Version + 1, slices.Clone(st.pos[from : info.Version+1]), st.meta})
			}
		}
	}
	s.mu.RUnlock()
	for _, c := range cands {
		cutoff := start.Add(-c.meta.MaxAge).UnixNano()
		keep := c.from
		stop := errors.New("young")
		err := s.readPositions(ctx, c.positions, func(off int64, _ []byte, r record) error {
			if r.timeNano >= cutoff {
				return stop
			}
			keep = r.version + 1
			return nil
		})
		if err != nil && err != stop {
			return rep, err
		}
		ages[c.name] = ageCut{keep, c.meta}
	}

	s.wmu.Lock()
	if err := s.writableLocked(); err != nil {
		s.wmu.Unlock()
		return rep, err
	}
	var recs []batch.Rec
	var keys []byte
	var keyEnds []int // recs[i]'s key is keys[keyEnds[i-1]:keyEnds[i]]
	type cut struct {
		st   *stream
		keep int64
	}
	var cuts []cut
	var last *commitReq
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		p := 0
		for i := range recs {
			recs[i].Key = keys[p:keyEnds[i]]
			p = keyEnds[i]
		}
		out, err := batch.Encode(nil, batch.BuildOptions{}, recs)
		if err != nil {
			return err
		}
		if last, err = s.enqueueLocked(out, len(recs)); err != nil {
			return err
		}
		rep.Events += int64(len(recs))
		recs, keys, keyEnds = recs[:0], keys[:0], keyEnds[:0]
		return nil
	}
	ts := start.UnixMilli()
	var err error
	for name, st := range s.streams {
		n := int64(len(st.pos))
		keep := n
		if !st.tombstoned {
			info := eventstore.StreamInfo{Version: n - 1, Metadata: st.meta, TruncateBefore: st.truncateBefore}
			keep = eventstore.FirstVisible(info)
			if a, ok := ages[name]; ok && a.meta == st.meta {
				keep = max(keep, min(a.keep, n))
			}
			if !st.deleted {
				// The last event carries the stream's version across a
				// restart (a soft delete's record carries it otherwise):
				// never reclaim it, or versions would be reused.
				keep = min(keep, n-1)
			}
		}
		if keep <= st.first {
			continue
		}
		for v := st.first; v < keep && err == nil; v++ {
			keys = eventKey(keys, name, v)
			keyEnds = append(keyEnds, len(keys))
			recs = append(recs, batch.Rec{Timestamp: ts}) // Value nil: a marker
			// A marker batch stays well under the log's batch limit (and
			// the group commit's), whatever MaxAppendBytes is.
			if len(recs) >= 10000 || len(keys)+32*len(recs) >= min(4<<20, s.cfg.MaxAppendBytes/2) {
				err = flush()
			}
		}
		cuts = append(cuts, cut{st, keep})
		if err != nil {
			break
		}
	}
	if err == nil {
		err = flush()
	}
	if err == nil {
		// Reads stop asking for the marked versions at once; they were
		// hidden already.
		s.mu.Lock()
		for _, c := range cuts {
			c.st.first = c.keep
		}
		s.mu.Unlock()
	}
	s.wmu.Unlock()
	if err != nil {
		return rep, s.readErr(err)
	}
	if last != nil {
		if err := last.wait(ctx); err != nil {
			return rep, s.readErr(err)
		}
	}
	// Compaction drops the markers with their events, so a scan that
	// starts at the index file's position after a crash could no longer
	// learn what they hid: the file must cover them first. (Each save
	// covers every marker written before it, so with no new markers the
	// file already does; with no file, an open scans the whole log.)
	if rep.Events > 0 && s.ckPos.Load() >= 0 {
		if err := s.checkpointIndex(ctx); err != nil {
			return rep, s.readErr(fmt.Errorf("save the stream index before compaction: %w", err))
		}
	}
	cr, err := s.log.Clean(time.Now())
	if err != nil {
		return rep, s.readErr(err)
	}
	rep.ReclaimedBytes = cr.ReclaimedBytes
	rep.Duration = time.Since(start)
	s.logger.Info("event store scavenged", "events", rep.Events, "reclaimed_bytes", rep.ReclaimedBytes, "took", rep.Duration.Round(time.Millisecond))
	return rep, nil
}

// readBufs recycles the batch buffers of reads.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// copyOut copies data and metadata (which alias a read buffer) into arena,
// returning the copies (capped, so appends to them never overwrite each
// other) and the grown arena. Many events share one allocation; a full
// arena is left to the events that point into it and a new one started.
func copyOut(arena, data, metadata []byte) ([]byte, []byte, []byte) {
	need := len(data) + len(metadata)
	if cap(arena)-len(arena) < need {
		arena = make([]byte, 0, max(32<<10, need))
	}
	p := len(arena)
	arena = append(arena, data...)
	arena = append(arena, metadata...)
	d := arena[p : p+len(data) : p+len(data)]
	var m []byte
	if metadata != nil {
		m = arena[p+len(data) : p+need : p+need]
	}
	return d, m, arena
}
