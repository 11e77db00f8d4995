package commitlog

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/internal/vfs"
)

// Log is one partition: an append-only sequence of Kafka v2 record batches
// with dense offsets, split into segment files.
//
// All methods are safe for concurrent use. Appends are serialized; reads run
// in parallel with appends and with each other and never see bytes above the
// high-water mark.
type Log struct {
	name   string
	dir    string
	opts   Options
	store  *Store
	fs     vfs.FS
	cache  *fileCache
	logger *slog.Logger
	m      *metrics

	segs     atomic.Pointer[[]*segment] // copy on write; oldest first
	hwm      atomic.Int64               // offsets below are visible to readers
	notify   atomic.Pointer[chan struct{}]
	waiters  atomic.Int32
	closedCh chan struct{}
	recovery RecoveryReport

	mu struct {
		sync.Mutex
		next       int64 // offset the next record gets
		active     *segment
		closed     bool
		failed     error
		round      *syncRound // the round that will sync the next write
		flushing   bool       // a flush goroutine is running
		timerArmed bool
		timer      *time.Timer
		unsynced   []*segment // sealed segments whose tail is not yet synced
		dirSync    bool       // a segment file was created since the last round
		parentSync bool       // the log's directory was created: sync its parents too
		rp         recoveryPoint
		created    time.Time // when the active segment got its first batch
	}

	cleanMu sync.Mutex // serializes retention and compaction
	wg      sync.WaitGroup
}

type syncRound struct {
	done chan struct{}
	err  error
}

func newRound() *syncRound { return &syncRound{done: make(chan struct{})} }

// recoveryPoint says how much of a log is known durable: everything before
// position pos of segment seg (offsets below next). Recovery validates only
// what lies after it.
type recoveryPoint struct {
	seg      int64
	fileID   uint64
	pos      int64
	next     int64
	maxTs    int64 // the segment's max timestamp below pos
	maxTsRel uint32
}

// RecoveryReport describes what opening a log found after the recovery
// point. A clean shutdown or a crash that tore nothing reports no loss.
type RecoveryReport struct {
	ScannedBytes   int64  // bytes validated after the recovery point
	TruncatedBytes int64  // bytes dropped from the tail, including removed segments
	DroppedBatches int    // batches (or pieces of one) in the dropped bytes
	Segment        string // file that was truncated, if any
	Position       int64  // where it was truncated
	Reason         string // why the first dropped byte was not accepted
	// UnwrittenBytes is zero-filled space found after the last batch:
	// preallocated (Options.Preallocate), or an append none of whose
	// bytes reached the disk. It holds no data, so it is not a loss.
	UnwrittenBytes int64
}

// Lost reports whether recovery dropped anything.
func (r RecoveryReport) Lost() bool { return r.TruncatedBytes > 0 }

// Name returns the log's name within its store.
func (l *Log) Name() string { return l.name }

// Options returns the log's options with defaults applied.
func (l *Log) Options() Options { return l.opts }

// Recovery returns what opening the log found and truncated.
func (l *Log) Recovery() RecoveryReport { return l.recovery }

// HighWatermark returns the offset after the last record readers may see.
func (l *Log) HighWatermark() int64 { return l.hwm.Load() }

// StartOffset returns the first offset still in the log.
func (l *Log) StartOffset() int64 { return (*l.segs.Load())[0].base }

// EndOffset returns the offset the next appended record will get. Records
// between HighWatermark and EndOffset are written but not yet durable.
func (l *Log) EndOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.next
}

// Size returns the bytes of all segment files.
func (l *Log) Size() int64 {
	var n int64
	for _, s := range *l.segs.Load() {
		n += s.size.Load()
	}
	return n
}

// Segments returns the number of segment files.
func (l *Log) Segments() int { return len(*l.segs.Load()) }

func (l *Log) segmentEnd(s *segment) int64 {
	segs := *l.segs.Load()
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > s.base })
	if i < len(segs) {
		return segs[i].base
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.next
}

// Append writes one or more whole record batches (as a Kafka producer sends
// them, concatenated) and returns the offset given to the first record.
//
// Append assigns offsets by rewriting each batch's base offset and
// partition leader epoch in place, so the caller must not use b
// concurrently. Each batch is checked first: a batch with a bad CRC,
// impossible lengths, no records, or more than MaxBatchBytes is refused and
// nothing of b is written.
//
// Append returns when the batches are durable under the log's mode: after
// their fsync for SyncAlways (concurrent appends share fsyncs), after the
// write to the operating system otherwise. If ctx ends while Append waits
// for the fsync, it returns ctx.Err(), and the batches may or may not be
// durable. After an fsync error the log refuses further appends with an
// error matching ErrLogFailed.
func (l *Log) Append(ctx context.Context, b []byte) (int64, error) {
	p, err := l.AppendAsync(ctx, b)
	if err != nil {
		return -1, err
	}
	if err := p.Wait(ctx); err != nil {
		return -1, err
	}
	return p.BaseOffset, nil
}

// Pending is an append that is written but may not be durable yet.
type Pending struct {
	// BaseOffset is the offset of the append's first record.
	BaseOffset int64
	round      *syncRound // nil when the append is already durable under the mode
}

// Durable reports whether the append is durable under the log's mode
// already, so that Wait would return nil at once.
func (p Pending) Durable() bool {
	if p.round == nil {
		return true
	}
	select {
	case <-p.round.done:
		return p.round.err == nil
	default:
		return false
	}
}

// Wait returns once the append is durable under the log's mode, with the
// sync error if that failed, or ctx.Err() if ctx ends first (the append may
// then still become durable).
func (p Pending) Wait(ctx context.Context) error {
	if p.round == nil {
		return nil
	}
	select {
	case <-p.round.done:
		return p.round.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AppendAsync is Append without the wait: it returns once the batches are
// written and offsets assigned; Pending.Wait waits for durability. Callers
// appending to many logs at once (a produce request over many partitions)
// use it to wait for all their fsyncs together.
func (l *Log) AppendAsync(ctx context.Context, b []byte) (Pending, error) {
	if err := ctx.Err(); err != nil {
		return Pending{}, err
	}
	records, err := l.check(b)
	if err != nil {
		return Pending{}, err
	}

	l.mu.Lock()
	if err := l.writableLocked(); err != nil {
		l.mu.Unlock()
		return Pending{}, err
	}
	if l.needsRollLocked(len(b)) {
		if err := l.rollLocked(); err != nil {
			l.mu.Unlock()
			return Pending{}, err
		}
	}
	s := l.mu.active
	base := l.mu.next
	next := base
	for p := 0; p < len(b); {
		h, _ := batch.ParseHeader(b[p:])
		batch.SetBaseOffset(b[p:], next)
		batch.SetPartitionLeaderEpoch(b[p:], 0)
		next += int64(h.LastOffsetDelta) + 1
		p += h.Size()
	}
	if err := l.writeLocked(s, b); err != nil {
		l.mu.Unlock()
		return Pending{}, err
	}
	if s.size.Load() == int64(segHeaderSize+len(b)) {
		l.mu.created = time.Now()
	}
	l.mu.next = next
	l.m.appendRecords.Add(float64(records))
	l.m.appendBytes.Add(float64(len(b)))

	switch l.opts.Durability.Mode {
	case SyncAlways:
		r := l.mu.round
		l.kickLocked()
		l.mu.Unlock()
		return Pending{BaseOffset: base, round: r}, nil
	case SyncInterval:
		s.readLimit.Store(s.size.Load())
		l.publishLocked(next)
		if !l.mu.timerArmed {
			l.mu.timerArmed = true
			l.mu.timer = time.AfterFunc(l.opts.Durability.Interval, l.intervalTick)
		}
	default:
		s.readLimit.Store(s.size.Load())
		l.publishLocked(next)
	}
	l.mu.Unlock()
	return Pending{BaseOffset: base}, nil
}

// check validates every batch in b and returns the record count.
func (l *Log) check(b []byte) (int, error) { return CheckBatches(b, l.opts.MaxBatchBytes) }

// CheckBatches validates b as Append does (whole v2 batches, each with a good
// CRC, at least one record, dense offset deltas and at most maxBatch bytes)
// and returns the record count. Other log implementations use it to accept
// exactly what a Log accepts.
func CheckBatches(b []byte, maxBatch int) (int, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: no batches", ErrInvalidBatch)
	}
	records := 0
	for p := 0; p < len(b); {
		if len(b)-p < batch.HeaderSize {
			return 0, fmt.Errorf("%w: %d trailing bytes at byte %d are shorter than a batch header", ErrInvalidBatch, len(b)-p, p)
		}
		h, err := batch.ParseHeader(b[p:])
		if err != nil {
			return 0, fmt.Errorf("batch at byte %d: %w", p, err)
		}
		if h.Size() > len(b)-p {
			if h.Size() > maxBatch {
				return 0, &batch.TooLargeError{Size: h.Size(), Limit: maxBatch}
			}
			return 0, fmt.Errorf("%w: batch at byte %d claims %d bytes but %d remain", ErrInvalidBatch, p, h.Size(), len(b)-p)
		}
		if _, err := batch.Validate(b[p:p+h.Size()], maxBatch); err != nil {
			return 0, fmt.Errorf("batch at byte %d: %w", p, err)
		}
		if h.NumRecords <= 0 || int64(h.LastOffsetDelta) != int64(h.NumRecords)-1 {
			return 0, fmt.Errorf("%w: batch at byte %d has %d records and last offset delta %d", ErrInvalidBatch, p, h.NumRecords, h.LastOffsetDelta)
		}
		records += int(h.NumRecords)
		p += h.Size()
	}
	return records, nil
}

func (l *Log) writableLocked() error {
	if l.mu.closed {
		return ErrClosed
	}
	if l.mu.failed != nil {
		return fmt.Errorf("%w: %v", ErrLogFailed, l.mu.failed)
	}
	return nil
}

// writeLocked writes b at the end of s and indexes its batches. On a write
// error it truncates the partial write away; if that fails too, the log
// fails.
func (l *Log) writeLocked(s *segment, b []byte) error {
	f, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	pos := s.size.Load()
	if _, err := f.WriteAt(b, pos); err != nil {
		err = fmt.Errorf("write %s: %w", s.path, err)
		if terr := f.Truncate(pos); terr != nil {
			l.failLocked(fmt.Errorf("%v; truncate after it: %w", err, terr))
		}
		s.alloc = pos
		return err
	}
	end := pos + int64(len(b))
	s.size.Store(end)
	if end > s.alloc {
		s.alloc = end
		if l.opts.Preallocate > 0 && !s.noPrealloc {
			l.preallocateLocked(s, f, end)
		}
	}
	s.imu.Lock()
	for p := 0; p < len(b); {
		h, _ := batch.ParseHeader(b[p:])
		s.indexBatchLocked(pos+int64(p), h, l.opts.IndexIntervalBytes)
		p += h.Size()
	}
	s.imu.Unlock()
	return nil
}

// zeros is what preallocation writes.
var zeros [256 << 10]byte

// preallocateLocked writes zeros after end, the new end of s's last batch,
// up to Options.Preallocate bytes ahead (not past the segment size, unless
// a batch already is). The zeros reach the disk with the same fsync as the
// batch; the fsyncs after it write into blocks the file already has. A
// failure (a full disk) stops preallocating for this segment only: the
// append itself succeeded, and a partial run of zeros is an unwritten
// tail, which recovery expects.
func (l *Log) preallocateLocked(s *segment, f vfs.File, end int64) {
	to := max(min(end+l.opts.Preallocate, l.opts.SegmentBytes), end)
	for p := end; p < to; {
		n := int(min(to-p, int64(len(zeros))))
		if _, err := f.WriteAt(zeros[:n], p); err != nil {
			l.logger.Warn("cannot preallocate segment space; this segment goes on without it", "log", l.name, "segment", s.path, "err", err)
			l.m.preallocFailures.Inc()
			s.noPrealloc = true
			return
		}
		p += int64(n)
		s.alloc = p
		l.m.preallocBytes.Add(float64(n))
	}
}

// trimLocked cuts the zero-filled space off s before it is sealed, and
// makes that durable before the next segment is created: a sealed segment
// ends at its last batch, and recovery validates only the newest two.
func (l *Log) trimLocked(s *segment) error {
	size := s.size.Load()
	if s.alloc <= size {
		return nil
	}
	f, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("trim preallocated space of %s: %w", s.path, err)
	}
	if err := f.Sync(); err != nil {
		l.failLocked(fmt.Errorf("sync %s after trimming it: %w", s.path, err))
		return fmt.Errorf("sync %s after trimming it: %w", s.path, err)
	}
	s.alloc = size
	return nil
}

func (l *Log) needsRollLocked(n int) bool {
	s := l.mu.active
	size := s.size.Load()
	if size <= segHeaderSize {
		return false
	}
	if size+int64(n) > l.opts.SegmentBytes {
		return true
	}
	return l.opts.SegmentAge > 0 && time.Since(l.mu.created) >= l.opts.SegmentAge
}

// rollLocked seals the active segment and starts a new one at the next
// offset. The sealed segment's tail is synced by the next flush round, which
// this kicks off.
func (l *Log) rollLocked() error {
	old := l.mu.active
	if err := l.trimLocked(old); err != nil {
		return err
	}
	s := l.newSegment(l.mu.next, newFileID())
	if err := createSegmentFile(l.fs, s.path, s.base, s.fileID); err != nil {
		return err
	}
	s.alloc = segHeaderSize
	s.size.Store(segHeaderSize)
	s.readLimit.Store(segHeaderSize)
	s.synced.Store(segHeaderSize)
	s.idx, s.tidx = &offsetIndex{}, &timeIndex{}

	old.imu.Lock()
	old.finishTimeIndexLocked()
	old.imu.Unlock()
	old.sealed.Store(true)
	l.mu.unsynced = append(l.mu.unsynced, old)
	l.mu.dirSync = true
	l.mu.active = s
	segs := append(append([]*segment(nil), *l.segs.Load()...), s)
	l.segs.Store(&segs)
	l.kickLocked()
	l.logger.Debug("rolled segment", "log", l.name, "base", s.base)
	return nil
}

func newFileID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// publishLocked makes offsets below next visible and wakes waiting readers.
func (l *Log) publishLocked(next int64) {
	l.hwm.Store(next)
	if l.waiters.Load() > 0 {
		ch := make(chan struct{})
		close(*l.notify.Swap(&ch))
	}
}

func (l *Log) failLocked(err error) {
	if l.mu.failed == nil {
		l.mu.failed = err
		l.m.failures.Inc()
		l.logger.Error("log failed; it refuses writes until reopened", "log", l.name, "err", err)
	}
}

func (l *Log) kickLocked() {
	if !l.mu.flushing {
		l.mu.flushing = true
		l.wg.Add(1)
		go l.flushLoop()
	}
}

func (l *Log) intervalTick() {
	l.mu.Lock()
	l.mu.timerArmed = false
	if !l.mu.closed {
		l.kickLocked()
	}
	l.mu.Unlock()
}

func (l *Log) flushLoop() {
	defer l.wg.Done()
	for l.flushRound(false) {
	}
}

// flushRound syncs everything written so far, then completes the round that
// covered it. It reports false when there was nothing to do (and, unless
// final, marks the flusher stopped).
func (l *Log) flushRound(final bool) bool {
	l.mu.Lock()
	s := l.mu.active
	size := s.size.Load()
	if l.mu.failed != nil || (len(l.mu.unsynced) == 0 && s.synced.Load() == size && !l.mu.dirSync) {
		r := l.mu.round
		if l.mu.failed != nil {
			r.err = fmt.Errorf("%w: %v", ErrLogFailed, l.mu.failed)
			l.mu.round = newRound()
			close(r.done)
		}
		if !final {
			l.mu.flushing = false
		}
		l.mu.Unlock()
		return false
	}
	r := l.mu.round
	l.mu.round = newRound()
	sealed := l.mu.unsynced
	l.mu.unsynced = nil
	dirSync, parentSync := l.mu.dirSync, l.mu.parentSync
	l.mu.dirSync, l.mu.parentSync = false, false
	next := l.mu.next
	s.imu.RLock()
	rp := recoveryPoint{seg: s.base, fileID: s.fileID, pos: size, next: next, maxTs: s.maxTs, maxTsRel: s.maxTsRel}
	s.imu.RUnlock()
	l.mu.Unlock()

	start := time.Now()
	err := l.syncFiles(sealed, s, dirSync, parentSync)
	took := time.Since(start)
	l.m.fsyncSeconds.Observe(took.Seconds())
	if took > slowSync {
		l.logger.Warn("slow fsync", "log", l.name, "took", took)
	}

	l.mu.Lock()
	if err != nil {
		l.failLocked(err)
		r.err = fmt.Errorf("%w: %v", ErrLogFailed, err)
		l.mu.Unlock()
		close(r.done)
		return true // the next round fails the waiters that came later
	}
	for _, o := range sealed {
		o.synced.Store(o.size.Load())
		o.readLimit.Store(o.size.Load())
		o.settled.Store(true)
	}
	s.synced.Store(size)
	if l.opts.Durability.Mode == SyncAlways {
		s.readLimit.Store(size)
		l.publishLocked(next)
	}
	l.mu.rp = rp
	l.mu.Unlock()
	close(r.done)
	l.m.syncRounds.Inc()
	return true
}

const slowSync = time.Second

func (l *Log) syncFiles(sealed []*segment, active *segment, dirSync, parentSync bool) error {
	for _, o := range sealed {
		if err := syncSegment(o); err != nil {
			return err
		}
		if err := o.persistIndexes(true); err != nil {
			return err
		}
	}
	if err := syncSegment(active); err != nil {
		return err
	}
	if dirSync {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("sync dir %s: %w", l.dir, err)
		}
	}
	if parentSync {
		// The directories from the log's up to the store's logs directory
		// may all be new (MkdirAll).
		root := filepath.Join(l.store.dir, logsDir)
		for d := filepath.Dir(l.dir); strings.HasPrefix(d, root); d = filepath.Dir(d) {
			if err := l.fs.SyncDir(d); err != nil {
				return fmt.Errorf("sync dir %s: %w", d, err)
			}
			if d == root {
				break
			}
		}
	}
	return nil
}

func syncSegment(s *segment) error {
	f, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", s.path, err)
	}
	return nil
}

// Sync makes everything appended so far durable, whatever the log's mode.
func (l *Log) Sync(ctx context.Context) error {
	l.mu.Lock()
	if err := l.writableLocked(); err != nil {
		l.mu.Unlock()
		return err
	}
	r := l.mu.round
	l.mu.dirSync = true // forces a round even when nothing is dirty
	l.kickLocked()
	l.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait blocks until the high-water mark passes offset (a record at offset
// is readable), ctx ends, or the log closes.
func (l *Log) Wait(ctx context.Context, offset int64) error {
	l.waiters.Add(1)
	defer l.waiters.Add(-1)
	for {
		ch := *l.notify.Load()
		if l.hwm.Load() > offset {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.closedCh:
			return ErrClosed
		}
	}
}

// Watch returns a channel that is closed when the high-water mark may have
// passed offset (at once if it already has), for callers that wait on many
// logs at once. Spurious wake-ups are possible: re-check HighWatermark. The
// caller must call stop when done watching.
func (l *Log) Watch(offset int64) (ch <-chan struct{}, stop func()) {
	l.waiters.Add(1)
	stop = func() { l.waiters.Add(-1) }
	c := *l.notify.Load()
	if l.hwm.Load() > offset || l.isClosed() {
		return closedChan, stop
	}
	return c, stop
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Read appends to dst[:0] whole batches starting with the one that holds
// offset, at most maxBytes of them unless the first batch alone is larger (it
// is then returned whole, so a reader always progresses). Batches come from
// one segment; the next Read continues from the last returned offset + 1.
// Every returned batch has passed its CRC.
//
// Reading at the high-water mark returns no bytes; below StartOffset or past
// the high-water mark it returns an *OffsetOutOfRangeError.
func (l *Log) Read(ctx context.Context, offset int64, maxBytes int, dst []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return dst[:0], err
		}
		if l.isClosed() {
			return dst[:0], ErrClosed
		}
		hwm := l.hwm.Load()
		segs := *l.segs.Load()
		if offset < segs[0].base || offset > hwm {
			return dst[:0], &OffsetOutOfRangeError{Offset: offset, Start: segs[0].base, End: hwm}
		}
		out, err := l.readSegments(segs, offset, maxBytes, hwm, dst)
		if errors.Is(err, errSegmentGone) && attempt < 10 {
			continue // retention or compaction replaced the segment; reload
		}
		if IsCorruption(err) {
			l.m.corruptions.Inc()
		}
		return out, err
	}
}

func (l *Log) readSegments(segs []*segment, offset int64, maxBytes int, hwm int64, dst []byte) ([]byte, error) {
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > offset }) - 1
	for ; i < len(segs) && offset < hwm; i++ {
		s := segs[i]
		end := hwm
		if i+1 < len(segs) {
			end = min(hwm, segs[i+1].base)
		}
		out, err := s.read(offset, end, maxBytes, dst)
		if err != nil || len(out) > 0 {
			return out, err
		}
		// Nothing at or after offset in this segment (compaction removed
		// it, or offset is its end): continue in the next.
		if i+1 < len(segs) {
			offset = max(offset, segs[i+1].base)
		}
	}
	return dst[:0], nil
}

func (l *Log) isClosed() bool {
	select {
	case <-l.closedCh:
		return true
	default:
		return false
	}
}

var headerBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// read returns batches of s from the one holding offset, below end.
func (s *segment) read(offset, end int64, maxBytes int, dst []byte) ([]byte, error) {
	if s.sealed.Load() {
		if err := s.loadIndexes(); err != nil {
			return dst[:0], err
		}
	}
	limit := s.readLimit.Load()
	f, err := s.acquire()
	if err != nil {
		return dst[:0], err
	}
	defer s.release()
	s.imu.RLock()
	erel, epos, indexed := s.idx.lookup(uint32(offset - s.base))
	s.imu.RUnlock()
	pos, h, ok, err := int64(segHeaderSize), batch.Header{}, false, error(nil)
	if indexed {
		pos, h, ok, err = s.locate(f, int64(epos), limit, offset, end, s.base+int64(erel))
		if errors.Is(err, errBadIndexEntry) {
			s.distrustIndex(err)
			indexed = false
		}
	}
	if !indexed {
		pos, h, ok, err = s.locate(f, segHeaderSize, limit, offset, end, -1)
	}
	if err != nil || !ok {
		return dst[:0], err
	}
	n := min(int64(max(maxBytes, h.Size())), limit-pos)
	dst = grow(dst, int(n))
	if _, err := f.ReadAt(dst, pos); err != nil {
		return dst[:0], fmt.Errorf("read %s at %d: %w", s.path, pos, err)
	}
	prevLast := offset - 1
	if h.BaseOffset <= prevLast {
		prevLast = h.BaseOffset - 1
	}
	p := 0
	for p+batch.HeaderSize <= len(dst) {
		bh, err := batch.ParseHeader(dst[p:])
		if err != nil {
			return dst[:0], &CorruptionError{Path: s.path, Pos: pos + int64(p), Reason: "bad batch header", Err: err}
		}
		if p+bh.Size() > len(dst) || bh.BaseOffset >= end {
			break
		}
		if bh.BaseOffset <= prevLast {
			return dst[:0], &CorruptionError{Path: s.path, Pos: pos + int64(p), Reason: fmt.Sprintf("batch offset %d does not follow %d", bh.BaseOffset, prevLast)}
		}
		if got := batch.ComputeCRC(dst[p : p+bh.Size()]); got != bh.CRC {
			return dst[:0], &CorruptionError{Path: s.path, Pos: pos + int64(p), Reason: fmt.Sprintf("batch checksum %#08x, want %#08x", got, bh.CRC)}
		}
		prevLast = bh.LastOffset()
		p += bh.Size()
	}
	return dst[:p], nil
}

// errBadIndexEntry is returned by locate when an index entry does not point
// at the batch it names.
var errBadIndexEntry = errors.New("index entry does not match the segment")

// locate walks batch headers from pos to the first batch whose last offset
// is at least offset and whose base is below end. When pos came from an
// index entry, want is the base offset the entry claims for the batch there
// (else -1); a mismatch returns errBadIndexEntry.
func (s *segment) locate(f vfs.File, pos, limit, offset, end, want int64) (int64, batch.Header, bool, error) {
	bp := headerBufPool.Get().(*[]byte)
	defer headerBufPool.Put(bp)
	buf := *bp
	var bufPos int64 = -1
	var n int
	for pos+batch.HeaderSize <= limit {
		if bufPos < 0 || pos+batch.HeaderSize > bufPos+int64(n) {
			want := min(int64(len(buf)), limit-pos)
			m, err := f.ReadAt(buf[:want], pos)
			if int64(m) < batch.HeaderSize && err != nil {
				return 0, batch.Header{}, false, fmt.Errorf("read %s at %d: %w", s.path, pos, err)
			}
			bufPos, n = pos, m
		}
		h, err := batch.ParseHeader(buf[pos-bufPos:])
		if want >= 0 {
			if err != nil || h.BaseOffset != want {
				return 0, h, false, fmt.Errorf("%w: %s entry for offset %d at byte %d", errBadIndexEntry, s.path, want, pos)
			}
			want = -1
		}
		if err != nil {
			return 0, h, false, &CorruptionError{Path: s.path, Pos: pos, Reason: "bad batch header", Err: err}
		}
		if h.BaseOffset >= end {
			return 0, h, false, nil
		}
		if pos+int64(h.Size()) > limit {
			// NB: limit is always at a batch boundary (a sealed segment's
			// size, or the active one's durable end), so a batch that
			// crosses it is damage, not a tail still being written.
			return 0, h, false, &CorruptionError{Path: s.path, Pos: pos, Reason: fmt.Sprintf("batch of %d bytes but the segment has only %d more", h.Size(), limit-pos)}
		}
		if h.LastOffset() >= offset {
			return pos, h, true, nil
		}
		pos += int64(h.Size())
	}
	if pos < limit {
		return 0, batch.Header{}, false, &CorruptionError{Path: s.path, Pos: pos, Reason: fmt.Sprintf("%d trailing bytes are shorter than a batch header", limit-pos)}
	}
	return 0, batch.Header{}, false, nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// OffsetForTime returns the offset of the first record whose timestamp is at
// least ts (milliseconds since the epoch), or the high-water mark when there
// is none.
func (l *Log) OffsetForTime(ctx context.Context, ts int64) (int64, error) {
	for attempt := 0; ; attempt++ {
		if l.isClosed() {
			return -1, ErrClosed
		}
		hwm := l.hwm.Load()
		segs := *l.segs.Load()
		off, err := l.offsetForTime(ctx, segs, ts, hwm)
		if errors.Is(err, errSegmentGone) && attempt < 10 {
			continue
		}
		return off, err
	}
}

func (l *Log) offsetForTime(ctx context.Context, segs []*segment, ts, hwm int64) (int64, error) {
	var it batch.Iter
	for i, s := range segs {
		if err := ctx.Err(); err != nil {
			return -1, err
		}
		if s.base >= hwm {
			break
		}
		if s.sealed.Load() {
			if err := s.loadIndexes(); err != nil {
				return -1, err
			}
		}
		s.imu.RLock()
		maxTs := s.maxTs
		pos, want := int64(segHeaderSize), int64(-1)
		if rel, ok := s.tidx.lookup(ts); ok {
			if erel, epos, ok := s.idx.lookup(rel); ok {
				pos, want = int64(epos), s.base+int64(erel)
			}
		}
		s.imu.RUnlock()
		if maxTs < ts {
			continue
		}
		end := hwm
		if i+1 < len(segs) {
			end = min(end, segs[i+1].base)
		}
		off, found, err := s.scanForTime(&it, pos, end, ts, want)
		if errors.Is(err, errBadIndexEntry) {
			s.distrustIndex(err)
			off, found, err = s.scanForTime(&it, segHeaderSize, end, ts, -1)
		}
		if err != nil || found {
			return off, err
		}
	}
	return hwm, nil
}

func (s *segment) scanForTime(it *batch.Iter, pos, end, ts, want int64) (int64, bool, error) {
	f, err := s.acquire()
	if err != nil {
		return -1, false, err
	}
	defer s.release()
	sc := newScanner(f, pos, s.readLimit.Load(), true, MaxBatchBytesLimit, nil)
	for {
		p, h, raw, err := sc.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return -1, false, nil
			}
			return -1, false, scanCorruption(s.path, err)
		}
		if want >= 0 {
			if h.BaseOffset != want {
				return -1, false, fmt.Errorf("%w: %s entry for offset %d at byte %d", errBadIndexEntry, s.path, want, p)
			}
			want = -1
		}
		if h.BaseOffset >= end {
			return -1, false, nil
		}
		if h.MaxTimestamp < ts {
			continue
		}
		if err := it.Reset(raw); err != nil {
			return -1, false, &CorruptionError{Path: s.path, Pos: p, Reason: "undecodable batch", Err: err}
		}
		for it.Next() {
			if it.Timestamp() >= ts {
				return it.Offset(), true, nil
			}
		}
		if err := it.Err(); err != nil {
			return -1, false, &CorruptionError{Path: s.path, Pos: p, Reason: "undecodable record", Err: err}
		}
	}
}

// Close syncs everything appended (in every durability mode), records the
// recovery point, and releases the log's files. Blocked Wait calls return
// ErrClosed. Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil
	}
	l.mu.closed = true
	if l.mu.timer != nil {
		l.mu.timer.Stop()
	}
	l.mu.Unlock()
	close(l.closedCh)
	close(*l.notify.Swap(&closedChan)) // wakes Watch callers; later ones see it closed
	l.wg.Wait()
	for l.flushRound(true) {
	}
	l.mu.Lock()
	err := l.mu.failed
	active := l.mu.active
	l.mu.Unlock()
	if err == nil {
		// NB: not fsynced: indexes are hints that recovery checks, and
		// skipping the fsyncs keeps closing thousands of logs fast.
		err = active.persistIndexes(false)
	}
	for _, s := range *l.segs.Load() {
		s.markGone()
	}
	l.store.logClosed(l, err == nil)
	if err != nil {
		return fmt.Errorf("close log %s: %w", l.name, err)
	}
	return nil
}
