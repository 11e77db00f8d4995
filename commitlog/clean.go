package commitlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
)

// CleanReport says what one Clean pass did.
type CleanReport struct {
	DeletedSegments   int   // removed by retention
	DeletedBytes      int64 // their size
	CompactedSegments int   // rewritten by compaction
	RemovedRecords    int   // records compaction dropped (superseded or expired tombstones)
	ReclaimedBytes    int64 // bytes compaction saved
}

// compactHook, when set by a test, is called at each step of a segment
// rewrite so that a crash can be simulated between any two of them.
var compactHook func(step string)

func hook(step string) {
	if compactHook != nil {
		compactHook(step)
	}
}

// Clean applies the log's cleanup policy once: with CleanupDelete it removes
// whole segments older than RetentionAge or beyond RetentionBytes (oldest
// first; the active segment is rolled first if it has expired as a whole);
// with CleanupCompact it rewrites sealed segments keeping the newest record
// of every key, and dropping tombstones older than DeleteRetention. It runs
// beside appends and reads without blocking them. The Store calls it every
// CleanInterval.
func (l *Log) Clean(now time.Time) (CleanReport, error) {
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	var rep CleanReport
	if l.isClosed() {
		return rep, ErrClosed
	}
	if l.opts.Cleanup&CleanupCompact != 0 {
		if err := l.compact(now, &rep); err != nil {
			return rep, err
		}
	}
	if l.opts.Cleanup&CleanupDelete != 0 {
		if err := l.enforceRetention(now, &rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (l *Log) enforceRetention(now time.Time, rep *CleanReport) error {
	age, limit := l.opts.RetentionAge, l.opts.RetentionBytes
	if age <= 0 && limit <= 0 {
		return nil
	}
	cutoff := now.Add(-age).UnixMilli()
	if age > 0 {
		l.mu.Lock()
		a := l.mu.active
		a.imu.RLock()
		expired := a.size.Load() > segHeaderSize && a.maxTs < cutoff
		a.imu.RUnlock()
		var r *syncRound
		if expired && !l.mu.closed && l.mu.failed == nil {
			if err := l.rollLocked(); err != nil {
				l.mu.Unlock()
				return err
			}
			r = l.mu.round // the round that settles the sealed segment
		}
		l.mu.Unlock()
		if r != nil {
			<-r.done
			if r.err != nil {
				return r.err
			}
		}
	}
	segs := *l.segs.Load()
	total := l.Size()
	drop := 0
	for _, s := range segs[:len(segs)-1] {
		if !s.settled.Load() {
			break // the flusher still owns it
		}
		expired := false
		if age > 0 {
			if err := s.loadIndexes(); err != nil {
				return err
			}
			s.imu.RLock()
			expired = s.maxTs < cutoff
			s.imu.RUnlock()
		}
		if limit > 0 && total-s.size.Load() >= limit {
			expired = true
		}
		if !expired {
			break
		}
		total -= s.size.Load()
		drop++
	}
	if drop == 0 {
		return nil
	}
	l.mu.Lock()
	cur := *l.segs.Load()
	kept := append([]*segment(nil), cur[drop:]...)
	l.segs.Store(&kept)
	l.mu.Unlock()
	for _, s := range cur[:drop] {
		s.markGone()
		for _, p := range []string{s.path, s.idxPath(), s.tidxPath()} {
			if err := l.fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove expired segment: %w", err)
			}
		}
		rep.DeletedSegments++
		rep.DeletedBytes += s.size.Load()
	}
	l.m.deletedSegs.Add(float64(drop))
	l.logger.Info("retention removed segments", "log", l.name, "segments", drop, "start_offset", kept[0].base)
	return l.fs.SyncDir(l.dir)
}

func (l *Log) compact(now time.Time, rep *CleanReport) error {
	segs := *l.segs.Load()
	var sealed []*segment
	for _, s := range segs[:len(segs)-1] {
		if !s.settled.Load() {
			break
		}
		sealed = append(sealed, s)
	}
	if len(sealed) == 0 {
		return nil
	}
	latest, err := l.latestOffsets()
	if err != nil {
		return err
	}
	tombCutoff := now.Add(-l.opts.DeleteRetention).UnixMilli()
	for _, s := range sealed {
		if err := l.rewriteSegment(s, latest, tombCutoff, rep); err != nil {
			if errors.Is(err, errSegmentGone) {
				continue
			}
			return err
		}
	}
	return nil
}

// latestOffsets maps every key to the offset of its newest record below the
// high-water mark.
func (l *Log) latestOffsets() (map[string]int64, error) {
	latest := map[string]int64{}
	var it batch.Iter
	buf := make([]byte, 0, 1<<20)
	ctx := context.Background()
	for off := l.StartOffset(); off < l.HighWatermark(); {
		out, err := l.Read(ctx, off, 1<<20, buf)
		if errors.Is(err, ErrOffsetOutOfRange) {
			off = l.StartOffset()
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(out) == 0 {
			break
		}
		for p := 0; p < len(out); {
			h, _ := batch.ParseHeader(out[p:])
			raw := out[p : p+h.Size()]
			p += h.Size()
			off = h.LastOffset() + 1
			if h.Control() {
				continue
			}
			if err := it.Reset(raw); err != nil {
				return nil, fmt.Errorf("compaction: decode batch at offset %d: %w", h.BaseOffset, err)
			}
			for it.Next() {
				if k := it.Record().Key; k != nil {
					latest[string(k)] = it.Offset()
				}
			}
			if err := it.Err(); err != nil {
				return nil, fmt.Errorf("compaction: decode records at offset %d: %w", h.BaseOffset, err)
			}
		}
		buf = out
	}
	return latest, nil
}

// rewriteSegment writes a copy of s without the records compaction drops and
// swaps it in. Crash-safe at every step: the copy is fsynced under a
// temporary name, the old indexes are removed, the copy is renamed over the
// original and the directory fsynced; open() removes a leftover copy and
// rebuilds missing indexes.
func (l *Log) rewriteSegment(s *segment, latest map[string]int64, tombCutoff int64, rep *CleanReport) error {
	f, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	size := s.size.Load()
	end := l.segmentEnd(s)

	ns := l.newSegment(s.base, newFileID())
	ns.idx, ns.tidx = &offsetIndex{}, &timeIndex{}
	ns.sealed.Store(true)
	ns.settled.Store(true)
	out := fileHeader{magic: segMagic, version: formatVersion, base: s.base, fileID: ns.fileID}.encode()
	var (
		it      batch.Iter
		keep    []batch.Record
		arena   []byte
		removed int
	)
	sc := newScanner(f, segHeaderSize, size, true, MaxBatchBytesLimit, nil)
	for {
		pos, h, raw, err := sc.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return scanCorruption(s.path, err)
		}
		if h.BaseOffset >= end {
			return &CorruptionError{Path: s.path, Pos: pos, Reason: fmt.Sprintf("batch offset %d beyond the segment end %d", h.BaseOffset, end)}
		}
		if h.Control() {
			ns.indexBatchLocked(int64(len(out)), h, l.opts.IndexIntervalBytes)
			out = append(out, raw...)
			continue
		}
		if err := it.Reset(raw); err != nil {
			return &CorruptionError{Path: s.path, Pos: pos, Reason: "undecodable batch", Err: err}
		}
		keep, arena = keep[:0], arena[:0]
		n := 0
		for it.Next() {
			n++
			r := it.Record()
			if r.Key != nil {
				if latest[string(r.Key)] != it.Offset() {
					continue // superseded
				}
				if r.Value == nil && it.Timestamp() < tombCutoff {
					continue // tombstone past its retention
				}
			}
			keep = append(keep, copyRecord(r, &arena))
		}
		if err := it.Err(); err != nil {
			return &CorruptionError{Path: s.path, Pos: pos, Reason: "undecodable record", Err: err}
		}
		removed += n - len(keep)
		switch {
		case len(keep) == n:
			ns.indexBatchLocked(int64(len(out)), h, l.opts.IndexIntervalBytes)
			out = append(out, raw...)
		case len(keep) > 0:
			at := len(out)
			out, err = batch.EncodeRecords(out, h, keep)
			if err != nil {
				return fmt.Errorf("compaction: re-encode batch at offset %d: %w", h.BaseOffset, err)
			}
			nh, err := batch.ParseHeader(out[at:])
			if err != nil {
				return fmt.Errorf("compaction: re-encoded batch: %w", err)
			}
			ns.indexBatchLocked(int64(at), nh, l.opts.IndexIntervalBytes)
		}
	}
	if removed == 0 {
		return nil
	}
	ns.finishTimeIndexLocked()

	tmp := s.path + cleanedSuffix
	_ = l.fs.Remove(tmp)
	nf, err := l.fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("compaction: %w", err)
	}
	if _, err := nf.WriteAt(out, 0); err != nil {
		nf.Close()
		l.fs.Remove(tmp)
		return fmt.Errorf("compaction: write %s: %w", tmp, err)
	}
	if err := nf.Sync(); err != nil {
		nf.Close()
		l.fs.Remove(tmp)
		return fmt.Errorf("compaction: sync %s: %w", tmp, err)
	}
	nf.Close()
	hook("cleaned-written")
	for _, p := range []string{s.idxPath(), s.tidxPath()} {
		if err := l.fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("compaction: %w", err)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("compaction: %w", err)
	}
	hook("indexes-removed")
	if err := l.fs.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("compaction: %w", err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("compaction: %w", err)
	}
	hook("renamed")
	ns.size.Store(int64(len(out)))
	ns.readLimit.Store(int64(len(out)))
	ns.synced.Store(int64(len(out)))
	if err := ns.persistIndexes(true); err != nil {
		l.logger.Warn("compaction: could not write index; it will be rebuilt", "segment", ns.path, "err", err)
	}

	l.mu.Lock()
	cur := *l.segs.Load()
	next := append([]*segment(nil), cur...)
	for i := range next {
		if next[i] == s {
			next[i] = ns
		}
	}
	l.segs.Store(&next)
	l.mu.Unlock()
	s.markGone()

	rep.CompactedSegments++
	rep.RemovedRecords += removed
	rep.ReclaimedBytes += size - int64(len(out))
	l.m.compactions.Inc()
	l.logger.Debug("compacted segment", "segment", filepath.Base(s.path), "removed_records", removed, "bytes_before", size, "bytes_after", len(out))
	return nil
}

// copyRecord copies r's bytes into the arena so they outlive the iterator.
func copyRecord(r *batch.Record, arena *[]byte) batch.Record {
	cp := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(*arena)
		*arena = append(*arena, b...)
		return (*arena)[start:len(*arena):len(*arena)]
	}
	out := *r
	out.Key, out.Value = cp(r.Key), cp(r.Value)
	if len(r.Headers) > 0 {
		out.Headers = make([]batch.RecordHeader, len(r.Headers))
		for i, h := range r.Headers {
			out.Headers[i] = batch.RecordHeader{Key: cp(h.Key), Value: cp(h.Value)}
		}
	}
	return out
}
