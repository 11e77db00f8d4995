package commitlog

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/internal/vfs"
)

// FileSpan is a byte range of one segment file holding whole record
// batches: the bytes Read would return, left in the file so that a caller
// can send them without copying them through its own memory (sendfile).
//
// A span holds its segment file open until Release. The bytes cannot change
// under it: a segment's bytes below its read limit are never rewritten in
// place, and retention, compaction and Close remove or replace segment
// files by unlinking or renaming, which leaves an open file's data intact.
// Release must be called exactly once for a span with Len > 0; the zero
// FileSpan needs none.
type FileSpan struct {
	seg *segment
	f   vfs.File
	// Pos is where the bytes start in the file; Len how many there are.
	Pos, Len int64
	// LastOffset bounds the offsets in the span (-1 when empty): at least
	// the last batch's last offset and below the next batch's base. It is
	// exact unless compaction left a gap after the last batch.
	LastOffset int64
}

// File returns the open segment file the span's bytes are in. It is valid
// until Release.
func (s *FileSpan) File() vfs.File { return s.f }

// Release lets the segment file close. The span must not be used after.
func (s *FileSpan) Release() {
	if s.seg != nil {
		s.seg.release()
		s.seg, s.f = nil, nil
	}
}

// AppendTo appends the span's bytes to dst.
func (s *FileSpan) AppendTo(dst []byte) ([]byte, error) {
	n := len(dst)
	dst = append(dst, make([]byte, s.Len)...)
	if _, err := s.f.ReadAt(dst[n:], s.Pos); err != nil {
		return dst[:n], fmt.Errorf("read %s at %d: %w", s.seg.path, s.Pos, err)
	}
	return dst, nil
}

// ReadSpan finds the batches Read(ctx, offset, maxBytes, ...) would return,
// restricted to batches whose base offset is below before (pass
// math.MaxInt64 for no restriction; a read_committed reader passes its last
// stable offset), and returns where they are instead of their bytes.
//
// Unlike Read it does not verify the batches' CRCs (that would mean reading
// them): what it returns is what was accepted on append, and the consumer
// checks each batch's CRC as it decodes it, as Kafka's consumers do. Batch
// headers are still parsed, from the index entry nearest the range's end,
// so a damaged header is reported as corruption.
func (l *Log) ReadSpan(ctx context.Context, offset int64, maxBytes int, before int64) (FileSpan, error) {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return FileSpan{LastOffset: -1}, err
		}
		if l.isClosed() {
			return FileSpan{LastOffset: -1}, ErrClosed
		}
		hwm := l.hwm.Load()
		segs := *l.segs.Load()
		if offset < segs[0].base || offset > hwm {
			return FileSpan{LastOffset: -1}, &OffsetOutOfRangeError{Offset: offset, Start: segs[0].base, End: hwm}
		}
		sp, err := l.spanSegments(segs, offset, maxBytes, min(hwm, before))
		if errors.Is(err, errSegmentGone) && attempt < 10 {
			continue // retention or compaction replaced the segment; reload
		}
		if IsCorruption(err) {
			l.m.corruptions.Inc()
		}
		return sp, err
	}
}

func (l *Log) spanSegments(segs []*segment, offset int64, maxBytes int, stop int64) (FileSpan, error) {
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > offset }) - 1
	for ; i < len(segs) && offset < stop; i++ {
		s := segs[i]
		end := stop
		if i+1 < len(segs) {
			end = min(stop, segs[i+1].base)
		}
		sp, err := s.span(offset, end, maxBytes)
		if err != nil || sp.Len > 0 {
			return sp, err
		}
		if i+1 < len(segs) {
			offset = max(offset, segs[i+1].base)
		}
	}
	return FileSpan{LastOffset: -1}, nil
}

// span is read without the bytes: the batches of s from the one holding
// offset, below end, within max(maxBytes, the first batch's size).
func (s *segment) span(offset, end int64, maxBytes int) (FileSpan, error) {
	none := FileSpan{LastOffset: -1}
	if s.sealed.Load() {
		if err := s.loadIndexes(); err != nil {
			return none, err
		}
	}
	limit := s.readLimit.Load()
	f, err := s.acquire()
	if err != nil {
		return none, err
	}
	held := true
	defer func() {
		if held {
			s.release()
		}
	}()
	s.imu.RLock()
	erel, epos, indexed := s.idx.lookup(uint32(offset - s.base))
	s.imu.RUnlock()
	pos, h, ok := int64(segHeaderSize), batch.Header{}, false
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
		return none, err
	}
	// What Read reads: the first batch whole, then whole batches while
	// they fit in stop and are below end.
	stop := pos + min(int64(max(maxBytes, h.Size())), limit-pos)
	cur, last := pos+int64(h.Size()), h.LastOffset()
	w := headerWalker{s: s, f: f}
	// Jump over the batches that lie wholly before the last index entry
	// within reach (entries sit at batch starts), then walk the headers
	// from there.
	if jpos, jbase, ok := s.entryBefore(stop, end); ok && jpos > cur {
		jh, err := w.header(jpos, limit)
		if err == nil && jh.BaseOffset == jbase {
			cur = jpos
			// The last offset of the batch before the entry is not known
			// without reading it; the entry's base minus one is it, as
			// offsets within a segment are dense or, after compaction,
			// at least ordered (a reader only needs an upper bound below
			// the next batch).
			last = jbase - 1
		} else if !errors.Is(err, errSegmentGone) {
			s.distrustIndex(fmt.Errorf("%w: %s entry for offset %d at byte %d", errBadIndexEntry, s.path, jbase, jpos))
		}
	}
	for cur+batch.HeaderSize <= stop {
		bh, err := w.header(cur, limit)
		if err != nil {
			return none, err
		}
		if cur+int64(bh.Size()) > stop || bh.BaseOffset >= end {
			break
		}
		last = bh.LastOffset()
		cur += int64(bh.Size())
	}
	held = false
	return FileSpan{seg: s, f: f, Pos: pos, Len: cur - pos, LastOffset: last}, nil
}

// entryBefore returns the position and base offset of the last offset
// index entry at or before byte stop whose batch's base offset is at most
// end: every batch before it is whole, within stop and below end.
func (s *segment) entryBefore(stop, end int64) (pos, base int64, ok bool) {
	s.imu.RLock()
	defer s.imu.RUnlock()
	ents := s.idx.ents
	i := sort.Search(len(ents), func(i int) bool { return int64(uint32(ents[i])) > stop }) - 1
	for ; i >= 0; i-- {
		rel, p := uint32(ents[i]>>32), int64(uint32(ents[i]))
		if s.base+int64(rel) <= end {
			return p, s.base + int64(rel), true
		}
	}
	return 0, 0, false
}

// headerWalker reads batch headers at increasing positions through a small
// buffer: enough for the headers of several small batches per read, little
// wasted on large ones.
type headerWalker struct {
	s      *segment
	f      vfs.File
	buf    [4096]byte
	bufPos int64
	n      int
}

func (w *headerWalker) header(pos, limit int64) (batch.Header, error) {
	if w.n == 0 || pos < w.bufPos || pos+batch.HeaderSize > w.bufPos+int64(w.n) {
		want := min(int64(len(w.buf)), limit-pos)
		if want < batch.HeaderSize {
			return batch.Header{}, &CorruptionError{Path: w.s.path, Pos: pos, Reason: fmt.Sprintf("%d trailing bytes are shorter than a batch header", limit-pos)}
		}
		m, err := w.f.ReadAt(w.buf[:want], pos)
		if m < batch.HeaderSize {
			return batch.Header{}, fmt.Errorf("read %s at %d: %w", w.s.path, pos, err)
		}
		w.bufPos, w.n = pos, m
	}
	h, err := batch.ParseHeader(w.buf[pos-w.bufPos:])
	if err != nil {
		return h, &CorruptionError{Path: w.s.path, Pos: pos, Reason: "bad batch header", Err: err}
	}
	return h, nil
}
