package commitlog

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/internal/vfs"
)

// errSegmentGone is returned when a segment was removed (by retention or
// replaced by compaction) while a caller held a stale list; callers reload
// the segment list and retry.
var errSegmentGone = errors.New("segment removed")

// segment is one file of a partition log plus its two sparse indexes.
//
// Lock order: Log.mu, then segment.imu, then segment.fmu, then fileCache.mu.
type segment struct {
	l      *Log
	base   int64
	path   string
	fileID uint64

	size      atomic.Int64 // bytes in the file, header included, up to the end of the last batch
	readLimit atomic.Int64 // bytes readers may see (at a batch boundary)
	synced    atomic.Int64 // bytes known to be on stable storage
	sealed    atomic.Bool
	// settled is set once a sealed segment is synced and its indexes are
	// written; only settled segments may be deleted or rewritten.
	settled atomic.Bool

	// alloc is the file's length: size plus the zero-filled space written
	// ahead of it (Options.Preallocate, or found by recovery); noPrealloc
	// is set when preallocating failed. Guarded by Log.mu once the log is
	// open.
	alloc      int64
	noPrealloc bool

	fmu  sync.Mutex
	file vfs.File
	refs int
	gone bool
	elem *list.Element // position in the file cache; guarded by fileCache.mu

	imu         sync.RWMutex
	idx         *offsetIndex // nil until loaded, for sealed segments
	tidx        *timeIndex
	maxTs       int64  // largest record timestamp in the segment; -1 if none
	maxTsRel    uint32 // relative offset of the batch that holds maxTs
	lastIdxPos  int64  // position of the batch that got the last offset index entry
	lastTidxPos int64
	lastRel     uint32 // relative last offset of the newest batch (active segment)
}

func (l *Log) newSegment(base int64, fileID uint64) *segment {
	s := &segment{l: l, base: base, fileID: fileID, path: filepath.Join(l.dir, segmentName(base)+segSuffix), maxTs: -1}
	s.lastIdxPos, s.lastTidxPos = segHeaderSize, segHeaderSize
	return s
}

func (s *segment) idxPath() string  { return filepath.Join(s.l.dir, segmentName(s.base)+offIdxSuffix) }
func (s *segment) tidxPath() string { return filepath.Join(s.l.dir, segmentName(s.base)+timeIdxSuffix) }

// acquire returns the segment's open file, opening it if needed, and holds
// it open until release.
func (s *segment) acquire() (vfs.File, error) {
	s.fmu.Lock()
	if s.gone {
		s.fmu.Unlock()
		return nil, errSegmentGone
	}
	opened := false
	if s.file == nil {
		var f vfs.File
		var err error
		if s.sealed.Load() {
			f, err = s.l.fs.Open(s.path)
		} else {
			f, err = s.l.fs.OpenRW(s.path)
		}
		if err != nil {
			s.fmu.Unlock()
			if errors.Is(err, os.ErrNotExist) {
				return nil, errSegmentGone
			}
			return nil, fmt.Errorf("open segment %s: %w", s.path, err)
		}
		s.file = f
		opened = true
	}
	s.refs++
	f := s.file
	victims := s.l.cache.touch(s, opened)
	s.fmu.Unlock()
	// Evict outside s.fmu to respect the lock order.
	for _, v := range victims {
		v.tryEvict()
	}
	return f, nil
}

func (s *segment) release() {
	s.fmu.Lock()
	s.refs--
	if s.refs == 0 && s.gone && s.file != nil {
		s.file.Close()
		s.file = nil
		s.l.cache.remove(s)
	}
	s.fmu.Unlock()
}

// markGone stops new acquires; the file closes when the last holder
// releases it.
func (s *segment) markGone() {
	s.fmu.Lock()
	s.gone = true
	if s.refs == 0 && s.file != nil {
		s.file.Close()
		s.file = nil
		s.l.cache.remove(s)
	}
	s.fmu.Unlock()
}

// tryEvict closes the file if nobody holds it and it has no unsynced bytes
// (closing a file with dirty pages could hide a later writeback error).
func (s *segment) tryEvict() bool {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.file == nil || s.refs > 0 || s.synced.Load() < s.size.Load() {
		return false
	}
	s.file.Close()
	s.file = nil
	s.l.cache.remove(s)
	return true
}

// createSegmentFile creates a new, empty segment file with its header. NB:
// nothing is fsynced here: the flush round that first makes data in the file
// durable syncs the file and its directory, and recovery rewrites a torn
// header of an empty last segment.
func createSegmentFile(fsys vfs.FS, path string, base int64, fileID uint64) error {
	f, err := fsys.Create(path)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	hdr := fileHeader{magic: segMagic, version: formatVersion, base: base, fileID: fileID}.encode()
	if _, err := f.WriteAt(hdr, 0); err != nil {
		f.Close()
		return fmt.Errorf("write segment header %s: %w", path, err)
	}
	return f.Close()
}

// indexBatchLocked updates the in-memory indexes for a batch appended at pos.
// Caller holds s.imu for writing.
func (s *segment) indexBatchLocked(pos int64, h batch.Header, interval int) {
	rel := uint32(h.BaseOffset - s.base)
	if pos-s.lastIdxPos >= int64(interval) {
		s.idx.add(rel, uint32(pos))
		s.lastIdxPos = pos
	}
	if h.MaxTimestamp > s.maxTs {
		s.maxTs = h.MaxTimestamp
		s.maxTsRel = rel
		if last, ok := s.tidx.lastTs(); (!ok || s.maxTs > last) && pos-s.lastTidxPos >= 4*int64(interval) {
			s.tidx.add(s.maxTs, s.maxTsRel)
			s.lastTidxPos = pos
		}
	}
	s.lastRel = uint32(h.LastOffset() - s.base)
}

// finishTimeIndexLocked adds the exact maximum to the time index, so that a
// sealed segment's newest timestamp is its time index's last entry.
func (s *segment) finishTimeIndexLocked() {
	if s.maxTs < 0 {
		return
	}
	if last, ok := s.tidx.lastTs(); !ok || s.maxTs > last {
		s.tidx.add(s.maxTs, s.maxTsRel)
	}
}

// persistIndexes appends index entries not yet written to the index files,
// creating them if needed. With sync it fsyncs them.
func (s *segment) persistIndexes(sync bool) error {
	s.imu.Lock()
	defer s.imu.Unlock()
	if s.idx == nil {
		return nil
	}
	if !sync && len(s.idx.ents) == 0 && len(s.tidx.ts) == 0 {
		// NB: nothing indexed yet (a segment under one index interval, as
		// most of 10,000 small partitions' are): index files would hold
		// only their headers, and creating two files per log made closing
		// thousands of logs slow. Recovery scans such a segment from its
		// start either way.
		return nil
	}
	if err := s.appendIndexFile(s.idxPath(), offIdxMagic, s.idx.written, s.idx.persisted, offIdxEntrySize, s.idx.encodeFrom, sync); err != nil {
		return err
	}
	s.idx.written, s.idx.persisted = true, len(s.idx.ents)
	if err := s.appendIndexFile(s.tidxPath(), timeIdxMagic, s.tidx.written, s.tidx.persisted, timeIdxEntrySize, s.tidx.encodeFrom, sync); err != nil {
		return err
	}
	s.tidx.written, s.tidx.persisted = true, len(s.tidx.ts)
	return nil
}

// appendIndexFile brings an index file up to date: when written, by
// appending the entries after persisted; otherwise by writing it whole.
func (s *segment) appendIndexFile(path, magic string, written bool, persisted, entSize int, encodeFrom func(int) []byte, sync bool) error {
	if !written {
		persisted = 0
	}
	ents := encodeFrom(persisted)
	if written && len(ents) == 0 && !sync {
		return nil
	}
	var f vfs.File
	var err error
	if !written {
		// Start over: whatever the file held is stale.
		_ = s.l.fs.Remove(path)
		f, err = s.l.fs.Create(path)
		if err == nil {
			_, err = f.WriteAt(fileHeader{magic: magic, version: formatVersion, base: s.base, fileID: s.fileID}.encode(), 0)
		}
	} else {
		f, err = s.l.fs.OpenRW(path)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return fmt.Errorf("write index %s: %w", path, err)
	}
	if len(ents) > 0 {
		if _, err = f.WriteAt(ents, segHeaderSize+int64(persisted*entSize)); err != nil {
			f.Close()
			return fmt.Errorf("write index %s: %w", path, err)
		}
	}
	if sync {
		if err = f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync index %s: %w", path, err)
		}
	}
	return f.Close()
}

// loadIndexes makes sure a sealed segment's indexes are in memory, loading
// the index files or, when they are missing, stale or wrong, rebuilding them
// by scanning (and verifying) the whole segment.
func (s *segment) loadIndexes() error {
	s.imu.RLock()
	loaded := s.idx != nil
	s.imu.RUnlock()
	if loaded {
		return nil
	}
	s.imu.Lock()
	defer s.imu.Unlock()
	if s.idx != nil {
		return nil
	}
	if err := s.readHeader(); err != nil {
		return err
	}
	size := s.size.Load()
	// A sealed segment's indexes were written whole and fsynced: any entry
	// that fails its checks means damage, and the index is rebuilt.
	idx, complete, err := loadOffsetIndexPrefix(s.l.fs, s.idxPath(), s.base, s.fileID, size)
	if err == nil && !complete {
		err = errIndexIncomplete
	}
	if err == nil {
		err = s.checkIndexEntry(idx)
	}
	var tidx *timeIndex
	if err == nil {
		tidx, complete, err = loadTimeIndexPrefix(s.l.fs, s.tidxPath(), s.base, s.fileID, uint32(s.l.segmentEnd(s)-1-s.base))
		if err == nil && !complete {
			err = errIndexIncomplete
		}
	}
	if err == nil && len(tidx.ts) == 0 && size > segHeaderSize {
		err = errors.New("time index empty")
	}
	if err == nil {
		s.idx, s.tidx = idx, tidx
		if ts, ok := tidx.lastTs(); ok {
			s.maxTs, s.maxTsRel = ts, tidx.rel[len(tidx.rel)-1]
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		s.l.logger.Warn("rebuilding segment index", "segment", s.path, "reason", err)
	}
	return s.rebuildIndexesLocked()
}

// readHeader checks a sealed segment's file header and learns its file id.
func (s *segment) readHeader() error {
	if s.fileID != 0 {
		return nil
	}
	f, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	hb := make([]byte, segHeaderSize)
	n, _ := f.ReadAt(hb, 0)
	h, err := decodeFileHeader(hb[:n], segMagic, s.path)
	if err != nil {
		return err
	}
	if h.base != s.base {
		return &CorruptionError{Path: s.path, Reason: fmt.Sprintf("header says base offset %d but the file name says %d (a copied or renamed segment?)", h.base, s.base)}
	}
	s.fileID = h.fileID
	return nil
}

// distrustIndex drops an index that sent a reader to the wrong place. A
// sealed segment's is rebuilt from the segment on next use. The active
// segment's is emptied: lookups of what it covered scan from the segment
// start, and later appends index as usual. (Rebuilding it here would need
// Log.mu, which ranks above imu.)
func (s *segment) distrustIndex(why error) {
	s.l.logger.Warn("dropping a damaged segment index", "segment", s.path, "reason", why)
	s.imu.Lock()
	defer s.imu.Unlock()
	if s.sealed.Load() {
		s.idx, s.tidx = nil, nil
		_ = s.l.fs.Remove(s.idxPath())
		_ = s.l.fs.Remove(s.tidxPath())
		return
	}
	s.idx, s.tidx = &offsetIndex{}, &timeIndex{}
}

// checkIndexEntry verifies that the last entry of a loaded offset index
// points at a batch with the offset it claims.
func (s *segment) checkIndexEntry(idx *offsetIndex) error {
	rel, pos, ok := idx.last()
	if !ok {
		return nil
	}
	f, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	var hb [batch.HeaderSize]byte
	if _, err := f.ReadAt(hb[:], int64(pos)); err != nil {
		return fmt.Errorf("index entry at %d: %w", pos, err)
	}
	h, err := batch.ParseHeader(hb[:])
	if err != nil || h.BaseOffset != s.base+int64(rel) {
		return fmt.Errorf("index entry for offset %d does not match the segment", s.base+int64(rel))
	}
	return nil
}

func (s *segment) rebuildIndexesLocked() error {
	f, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	s.idx, s.tidx = &offsetIndex{}, &timeIndex{}
	s.maxTs, s.lastIdxPos, s.lastTidxPos = -1, segHeaderSize, segHeaderSize
	end := s.l.segmentEnd(s)
	sc := newScanner(f, segHeaderSize, s.size.Load(), true, MaxBatchBytesLimit, nil)
	next := s.base
	for {
		pos, h, _, err := sc.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			s.idx, s.tidx = nil, nil
			return scanCorruption(s.path, err)
		}
		if h.BaseOffset < next {
			s.idx, s.tidx = nil, nil
			return &CorruptionError{Path: s.path, Pos: pos, Reason: fmt.Sprintf("batch offset %d does not follow %d", h.BaseOffset, next-1)}
		}
		if h.BaseOffset >= end {
			// This segment overlaps the next one. Reads clip by base offset,
			// so these batches are never served; the next segment's own
			// checks report whatever is wrong there.
			s.l.logger.Warn("segment holds offsets of the next segment", "segment", s.path, "offset", h.BaseOffset, "next_segment_base", end)
			break
		}
		next = h.LastOffset() + 1
		s.indexBatchLocked(pos, h, s.l.opts.IndexIntervalBytes)
	}
	s.finishTimeIndexLocked()
	s.idx.written, s.tidx.written = false, false
	s.imu.Unlock()
	err = s.persistIndexes(true)
	s.imu.Lock()
	if err != nil {
		s.l.logger.Warn("could not write rebuilt index", "segment", s.path, "err", err)
	}
	return nil
}

func scanCorruption(path string, err error) error {
	var se *scanError
	if errors.As(err, &se) {
		return &CorruptionError{Path: path, Pos: se.pos, Reason: se.reason, Err: se.err}
	}
	return fmt.Errorf("read %s: %w", path, err)
}

// fileCache bounds the number of open segment files across a Store, closing
// the least recently used idle ones.
type fileCache struct {
	mu  sync.Mutex
	lru list.List // *segment, most recently used at the front
	max int
}

// touch records a use of s, whose fmu is held, and returns the segments the
// caller should try to evict once it has released s.fmu.
func (c *fileCache) touch(s *segment, opened bool) []*segment {
	c.mu.Lock()
	if s.elem == nil {
		s.elem = c.lru.PushFront(s)
	} else {
		c.lru.MoveToFront(s.elem)
	}
	var victims []*segment
	if opened && c.lru.Len() > c.max {
		for e := c.lru.Back(); e != nil && c.lru.Len()-len(victims) > c.max; e = e.Prev() {
			if v := e.Value.(*segment); v != s {
				victims = append(victims, v)
			}
		}
	}
	c.mu.Unlock()
	return victims
}

// remove drops s from the cache; s.fmu is held.
func (c *fileCache) remove(s *segment) {
	c.mu.Lock()
	if s.elem != nil {
		c.lru.Remove(s.elem)
		s.elem = nil
	}
	c.mu.Unlock()
}

func (c *fileCache) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
