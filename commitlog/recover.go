package commitlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/internal/vfs"
)

// openLog opens (or creates) the log in dir and recovers it: everything
// after the log's recovery point is validated batch by batch, a torn or
// corrupt tail is truncated, and segments after it are removed.
func (st *Store) openLog(name, dir string, opts Options, rp recoveryPoint, hasRP bool) (*Log, error) {
	l := &Log{
		name: name, dir: dir, opts: opts, store: st, fs: st.fs, cache: &st.cache,
		logger: st.logger, m: st.m, closedCh: make(chan struct{}),
	}
	ch := make(chan struct{})
	l.notify.Store(&ch)
	l.mu.round = newRound()

	if err := l.fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	names, err := l.fs.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list log dir: %w", err)
	}
	var bases []int64
	logs := map[int64]bool{}
	var indexes []string
	for _, n := range names {
		base, suffix, ok := parseSegmentName(n)
		switch {
		case ok && suffix == segSuffix:
			bases = append(bases, base)
			logs[base] = true
		case ok && (suffix == offIdxSuffix || suffix == timeIdxSuffix):
			indexes = append(indexes, n)
		case strings.HasSuffix(n, cleanedSuffix) || strings.HasSuffix(n, tmpSuffix):
			// Left by a compaction or index write that a crash interrupted;
			// the originals are intact.
			l.logger.Info("removing leftover file", "log", name, "file", n)
			if err := l.fs.Remove(filepath.Join(dir, n)); err != nil {
				return nil, fmt.Errorf("remove leftover %s: %w", n, err)
			}
		default:
			l.logger.Warn("ignoring unknown file in log directory", "log", name, "file", n)
		}
	}
	for _, n := range indexes {
		if base, _, _ := parseSegmentName(n); !logs[base] {
			_ = l.fs.Remove(filepath.Join(dir, n))
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	if len(bases) == 0 {
		if err := createSegmentFile(l.fs, filepath.Join(dir, segmentName(0)+segSuffix), 0, newFileID()); err != nil {
			return nil, err
		}
		// The first flush round makes the new file, its directory and the
		// directories above durable (once, not per log created).
		l.mu.dirSync, l.mu.parentSync = true, true
		bases = []int64{0}
		hasRP = false
	}

	segs := make([]*segment, len(bases))
	for i, base := range bases {
		s := l.newSegment(base, 0)
		fi, err := l.fs.Stat(s.path)
		if err != nil {
			return nil, fmt.Errorf("stat segment: %w", err)
		}
		s.size.Store(fi.Size())
		s.alloc = fi.Size()
		s.readLimit.Store(fi.Size())
		s.synced.Store(fi.Size())
		s.sealed.Store(i < len(bases)-1)
		s.settled.Store(i < len(bases)-1)
		segs[i] = s
	}
	l.segs.Store(&segs)

	// Where validation starts: the recovery point, if it names a segment we
	// have, else the first segment.
	from := 0
	if hasRP {
		i := sort.Search(len(segs), func(i int) bool { return segs[i].base >= rp.seg })
		if i < len(segs) && segs[i].base == rp.seg && rp.pos <= segs[i].size.Load() && rp.pos >= segHeaderSize {
			from = i
		} else {
			l.logger.Warn("recovery point does not match the log; validating all of it", "log", name)
			hasRP = false
		}
	}
	if !hasRP {
		// Without a recovery point, validate the last two segments: a crash
		// can tear the tail of the active one, and of the one sealed just
		// before it if its sync had not finished. Older segments were synced
		// when they were sealed; damage in them is corruption, reported by
		// reads, never truncated away with everything after it.
		from = max(0, len(segs)-2)
		rp = recoveryPoint{seg: segs[from].base, pos: segHeaderSize, next: segs[from].base, maxTs: -1}
	}

	next := rp.next
	for i := from; i < len(segs); i++ {
		s := segs[i]
		start := recoveryPoint{seg: s.base, pos: segHeaderSize, next: next, maxTs: -1}
		if i == from {
			start = rp
		}
		n, torn, err := l.recoverSegment(s, start, i == len(segs)-1)
		if err != nil {
			return nil, err
		}
		next = n
		if torn != nil {
			if err := l.dropAfter(segs, i, torn); err != nil {
				return nil, err
			}
			segs = segs[:i+1]
			segs[i].sealed.Store(false)
			segs[i].settled.Store(false)
			l.segs.Store(&segs)
			break
		}
	}
	active := segs[len(segs)-1]
	if active.idx == nil {
		// The active segment was before the recovery point's segment: cannot
		// happen with a consistent recovery point, but be safe.
		if _, _, err := l.recoverSegment(active, recoveryPoint{seg: active.base, pos: segHeaderSize, next: active.base, maxTs: -1}, true); err != nil {
			return nil, err
		}
	}
	l.mu.active = active
	l.mu.next = next
	l.mu.created = time.Now()
	l.hwm.Store(next)
	size := active.size.Load()
	l.mu.rp = recoveryPoint{seg: active.base, fileID: active.fileID, pos: size, next: next, maxTs: active.maxTs, maxTsRel: active.maxTsRel}
	if l.recovery.Lost() {
		l.m.truncatedBytes.Add(float64(l.recovery.TruncatedBytes))
		l.logger.Warn("recovery truncated a torn or corrupt tail", "log", name,
			"segment", l.recovery.Segment, "position", l.recovery.Position,
			"bytes", l.recovery.TruncatedBytes, "batches", l.recovery.DroppedBatches, "reason", l.recovery.Reason)
	}
	// Make a recovered tail durable before anything is appended after it.
	// A clean reopen (nothing after the recovery point) needs no fsync,
	// which keeps a restart with thousands of logs fast.
	if l.recovery.ScannedBytes > 0 || l.recovery.Lost() {
		if err := syncSegment(active); err != nil {
			return nil, err
		}
	}
	if err := active.persistIndexes(false); err != nil {
		return nil, err
	}
	return l, nil
}

// recoverSegment validates s from the recovery point rp (whose segment is
// s) to its end. Bytes below rp.pos that fail validation are corruption;
// bytes at or after it that fail are a torn tail, returned in torn (the
// segment is already truncated there). It leaves s's indexes in memory and
// returns the offset after its last batch.
func (l *Log) recoverSegment(s *segment, rp recoveryPoint, last bool) (next int64, torn *scanError, err error) {
	size := s.size.Load()
	f, err := l.fs.OpenRW(s.path)
	if err != nil {
		return 0, nil, fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	hb := make([]byte, segHeaderSize)
	n, _ := f.ReadAt(hb, 0)
	h, herr := decodeFileHeader(hb[:n], segMagic, s.path)
	if errors.Is(herr, ErrUnsupportedFormat) {
		return 0, nil, herr
	}
	if herr != nil {
		if last && size <= segHeaderSize && rp.pos == segHeaderSize {
			// A crash while creating the file: it holds nothing.
			l.logger.Warn("rewriting a torn segment header", "segment", s.path)
			f.Close()
			if err := l.fs.Remove(s.path); err != nil {
				return 0, nil, fmt.Errorf("remove torn segment: %w", err)
			}
			s.fileID = newFileID()
			if err := createSegmentFile(l.fs, s.path, s.base, s.fileID); err != nil {
				return 0, nil, err
			}
			s.size.Store(segHeaderSize)
			s.alloc = segHeaderSize
			s.readLimit.Store(segHeaderSize)
			s.synced.Store(segHeaderSize)
			s.idx, s.tidx = &offsetIndex{}, &timeIndex{}
			return rp.next, nil, l.fs.SyncDir(l.dir)
		}
		return 0, nil, herr
	}
	if h.base != s.base {
		return 0, nil, &CorruptionError{Path: s.path, Reason: fmt.Sprintf("header says base offset %d but the file name says %d (a copied or renamed segment?)", h.base, s.base)}
	}
	if rp.pos == segHeaderSize && rp.next > s.base {
		return 0, nil, &CorruptionError{Path: s.path, Reason: fmt.Sprintf("segment starts at offset %d but the previous one ends at %d (a duplicated segment?)", s.base, rp.next)}
	}
	if rp.fileID != 0 && rp.fileID != h.fileID {
		rp = recoveryPoint{seg: s.base, pos: segHeaderSize, next: s.base, maxTs: -1}
	}
	s.fileID = h.fileID

	// Start from the persisted indexes up to the recovery point.
	scanFrom := int64(segHeaderSize)
	s.idx, s.tidx = &offsetIndex{}, &timeIndex{}
	s.maxTs, s.maxTsRel = -1, 0
	next = s.base
	if rp.pos > segHeaderSize {
		// Resume from the last index entry at or below the recovery point,
		// if the index files hold one that points at its batch. Otherwise
		// scan (and index) the segment from its start.
		idx, c1, err1 := loadOffsetIndexPrefix(l.fs, s.idxPath(), s.base, s.fileID, rp.pos)
		tidx, c2, err2 := loadTimeIndexPrefix(l.fs, s.tidxPath(), s.base, s.fileID, uint32(rp.next-1-s.base))
		if err1 == nil && err2 == nil {
			// NB: a file with entries past the recovery point (or damaged
			// ones) is not written (loaded with c false): it is rewritten
			// whole on the next persist.
			_, _ = c1, c2
			if rel, pos, ok := idx.last(); ok && batchAt(f, int64(pos), s.base+int64(rel)) {
				s.idx, s.tidx = idx, tidx
				scanFrom, next = int64(pos), s.base+int64(rel)
				s.lastIdxPos, s.lastTidxPos = scanFrom, scanFrom
				// The batches skipped are covered by the recovery point's max.
				s.maxTs, s.maxTsRel = rp.maxTs, rp.maxTsRel
				if ts, ok := tidx.lastTs(); ok && ts > s.maxTs {
					s.maxTs, s.maxTsRel = ts, tidx.rel[len(tidx.rel)-1]
				}
			}
		}
	}

	sc := newScanner(f, scanFrom, size, true, MaxBatchBytesLimit, nil)
	end := size // where the last batch ends
	for {
		pos, bh, _, err := sc.next()
		if err == io.EOF {
			break
		}
		var se *scanError
		if err != nil && !errors.As(err, &se) {
			return 0, nil, fmt.Errorf("read %s: %w", s.path, err)
		}
		// The active segment is dense; sealed ones may have gaps left by
		// compaction.
		if se == nil && (bh.BaseOffset < next || (last && bh.BaseOffset != next)) {
			se = &scanError{kind: scanInvalid, pos: pos, reason: fmt.Sprintf("batch offset %d, want %d", bh.BaseOffset, next)}
		}
		if se == nil && bh.PartitionLeaderEpoch != 0 {
			se = &scanError{kind: scanInvalid, pos: pos, reason: fmt.Sprintf("partition leader epoch %d, want 0", bh.PartitionLeaderEpoch)}
		}
		if se != nil {
			if pos < rp.pos {
				return 0, nil, &CorruptionError{Path: s.path, Pos: pos, Reason: se.reason + " (below the recovery point)", Err: se.err}
			}
			zero, err := zeroFilled(f, pos, size)
			if err != nil {
				return 0, nil, fmt.Errorf("read %s: %w", s.path, err)
			}
			if !zero {
				l.recovery.ScannedBytes += pos - max(rp.pos, scanFrom)
				return next, se, l.truncateTail(f, s, pos, size, se)
			}
			// Space no batch was written to: preallocated, or an append
			// none of whose bytes reached the disk. Nothing is lost.
			if err := l.unwrittenTail(f, s, pos, size, last); err != nil {
				return 0, nil, err
			}
			end = pos
			break
		}
		s.indexBatchLocked(pos, bh, l.opts.IndexIntervalBytes)
		next = bh.LastOffset() + 1
	}
	l.recovery.ScannedBytes += end - max(rp.pos, scanFrom)
	if !last {
		s.finishTimeIndexLocked()
		if err := s.persistIndexes(true); err != nil {
			return 0, nil, err
		}
	}
	return next, nil, nil
}

// batchAt reports whether a batch with base offset want starts at pos.
func batchAt(r io.ReaderAt, pos, want int64) bool {
	var hb [batch.HeaderSize]byte
	if _, err := r.ReadAt(hb[:], pos); err != nil {
		return false
	}
	h, err := batch.ParseHeader(hb[:])
	return err == nil && h.BaseOffset == want
}

// zeroFilled reports whether every byte of r in [pos, end) is zero.
func zeroFilled(r io.ReaderAt, pos, end int64) (bool, error) {
	buf := make([]byte, min(end-pos, 64<<10))
	for pos < end {
		n := int(min(end-pos, int64(len(buf))))
		if _, err := r.ReadAt(buf[:n], pos); err != nil {
			return false, err
		}
		if !bytes.Equal(buf[:n], zeros[:n]) {
			return false, nil
		}
		pos += int64(n)
	}
	return true, nil
}

// unwrittenTail ends s's batches at pos, before a zero-filled tail up to
// size. The active segment keeps the zeros for its next appends; a sealed
// one is trimmed (durably), as sealing would have done.
func (l *Log) unwrittenTail(f vfs.File, s *segment, pos, size int64, last bool) error {
	l.recovery.UnwrittenBytes += size - pos
	s.size.Store(pos)
	s.readLimit.Store(pos)
	s.synced.Store(pos)
	if last {
		return nil
	}
	if err := f.Truncate(pos); err != nil {
		return fmt.Errorf("trim unwritten tail of %s at %d: %w", s.path, pos, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", s.path, err)
	}
	s.alloc = pos
	return nil
}

// truncateTail cuts s at pos and records the loss.
func (l *Log) truncateTail(f interface{ Truncate(int64) error }, s *segment, pos, size int64, why *scanError) error {
	l.recovery.Segment = s.path
	l.recovery.Position = pos
	l.recovery.Reason = why.Error()
	l.recovery.TruncatedBytes += size - pos
	l.recovery.DroppedBatches += countBatches(f, pos, size)
	if err := f.Truncate(pos); err != nil {
		return fmt.Errorf("truncate %s at %d: %w", s.path, pos, err)
	}
	s.size.Store(pos)
	s.alloc = pos
	s.readLimit.Store(pos)
	s.synced.Store(pos)
	return nil
}

// countBatches estimates how many batches lie in [pos, size): the first
// (bad) one plus every whole, valid batch that follows a believable length.
func countBatches(f any, pos, size int64) int {
	if pos >= size {
		return 0
	}
	r, ok := f.(io.ReaderAt)
	if !ok {
		return 1
	}
	n := 1
	var hb [batch.HeaderSize]byte
	if _, err := r.ReadAt(hb[:], pos); err != nil {
		return n
	}
	h, err := batch.ParseHeader(hb[:])
	if err != nil || h.Size() > MaxBatchBytesLimit {
		return n
	}
	sc := newScanner(r, pos+int64(h.Size()), size, true, MaxBatchBytesLimit, nil)
	for {
		if _, _, _, err := sc.next(); err != nil {
			return n
		}
		n++
	}
}

// dropAfter removes the segments after segs[i], which follow a torn tail.
func (l *Log) dropAfter(segs []*segment, i int, torn *scanError) error {
	for _, s := range segs[i+1:] {
		sz := s.size.Load()
		l.recovery.TruncatedBytes += sz - segHeaderSize
		if f, err := l.fs.Open(s.path); err == nil {
			l.recovery.DroppedBatches += countBatches(f, segHeaderSize, sz)
			f.Close()
		}
		for _, p := range []string{s.path, s.idxPath(), s.tidxPath()} {
			if err := l.fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove segment after torn tail: %w", err)
			}
		}
	}
	if len(segs) > i+1 {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("sync log dir: %w", err)
		}
	}
	return nil
}
