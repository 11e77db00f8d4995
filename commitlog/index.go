package commitlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"

	"github.com/heraldhq/herald/internal/vfs"
)

// offsetIndex is a segment's sparse offset index: for some batches, the
// offset of the batch relative to the segment base and its byte position.
// Entries are strictly increasing in both. Guarded by segment.imu.
type offsetIndex struct {
	ents      []uint64 // rel<<32 | pos
	persisted int      // entries already written to the file
	written   bool     // the file holds the header and the first persisted entries
}

func (x *offsetIndex) add(rel, pos uint32) {
	x.ents = append(x.ents, uint64(rel)<<32|uint64(pos))
}

func (x *offsetIndex) last() (rel, pos uint32, ok bool) {
	if len(x.ents) == 0 {
		return 0, 0, false
	}
	e := x.ents[len(x.ents)-1]
	return uint32(e >> 32), uint32(e), true
}

// lookup returns the relative offset and position of the last indexed batch
// whose base offset is at most rel, or ok false when there is none (the caller
// starts at the header).
func (x *offsetIndex) lookup(rel uint32) (erel, pos uint32, ok bool) {
	i := sort.Search(len(x.ents), func(i int) bool { return uint32(x.ents[i]>>32) > rel })
	if i == 0 {
		return 0, 0, false
	}
	e := x.ents[i-1]
	return uint32(e >> 32), uint32(e), true
}

// timeIndex maps a running maximum timestamp to the batch at which the
// segment's maximum first reached it. Every batch at or before an entry's
// offset has a max timestamp at most the entry's timestamp.
type timeIndex struct {
	ts        []int64
	rel       []uint32
	persisted int
	written   bool
}

func (x *timeIndex) add(ts int64, rel uint32) {
	x.ts = append(x.ts, ts)
	x.rel = append(x.rel, rel)
}

func (x *timeIndex) lastTs() (int64, bool) {
	if len(x.ts) == 0 {
		return 0, false
	}
	return x.ts[len(x.ts)-1], true
}

// lookup returns the relative offset of a batch from which a forward scan
// finds the first record with timestamp >= ts, and false when the scan must
// start at the beginning of the segment.
func (x *timeIndex) lookup(ts int64) (uint32, bool) {
	i := sort.Search(len(x.ts), func(i int) bool { return x.ts[i] >= ts })
	if i == 0 {
		return 0, false
	}
	return x.rel[i-1], true
}

func (x *offsetIndex) encodeFrom(i int) []byte {
	b := make([]byte, 0, (len(x.ents)-i)*offIdxEntrySize)
	for _, e := range x.ents[i:] {
		b = appendOffEntry(b, uint32(e>>32), uint32(e))
	}
	return b
}

func (x *timeIndex) encodeFrom(i int) []byte {
	b := make([]byte, 0, (len(x.ts)-i)*timeIdxEntrySize)
	for j := i; j < len(x.ts); j++ {
		b = appendTimeEntry(b, x.ts[j], x.rel[j])
	}
	return b
}

// appendOffEntry appends an offset index entry with its checksum.
func appendOffEntry(b []byte, rel, pos uint32) []byte {
	at := len(b)
	b = binary.BigEndian.AppendUint32(b, rel)
	b = binary.BigEndian.AppendUint32(b, pos)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[at:], castagnoli))
}

// appendTimeEntry appends a time index entry with its checksum.
func appendTimeEntry(b []byte, ts int64, rel uint32) []byte {
	at := len(b)
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	b = binary.BigEndian.AppendUint32(b, rel)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[at:], castagnoli))
}

// entryOK checks the checksum that ends an index entry.
func entryOK(e []byte) bool {
	n := len(e) - 4
	return binary.BigEndian.Uint32(e[n:]) == crc32.Checksum(e[:n], castagnoli)
}

// loadOffsetIndex reads an offset index file. Entries are kept while their
// checksums hold, they are strictly increasing and they point inside the
// segment's first size bytes;
// the rest of the file (a stale or torn end) is ignored. It fails when the
// file is missing, or belongs to another segment file.
func loadOffsetIndex(fsys vfs.FS, path string, base int64, fileID uint64, size int64) (*offsetIndex, error) {
	x, _, err := loadOffsetIndexPrefix(fsys, path, base, fileID, size)
	return x, err
}

// errIndexIncomplete reports an index file with bytes after its last good
// entry: fine for the active segment (a torn end), damage for a sealed one.
var errIndexIncomplete = errors.New("index has damaged or stale entries")

// loadOffsetIndexPrefix is loadOffsetIndex that also says whether every
// byte of the file was a good entry.
func loadOffsetIndexPrefix(fsys vfs.FS, path string, base int64, fileID uint64, size int64) (*offsetIndex, bool, error) {
	b, err := vfs.ReadFile(fsys, path)
	if err != nil {
		return nil, false, err
	}
	h, err := decodeFileHeader(b, offIdxMagic, path)
	if err != nil {
		return nil, false, err
	}
	if h.base != base || h.fileID != fileID {
		return nil, false, fmt.Errorf("%s indexes another segment file", path)
	}
	b = b[segHeaderSize:]
	x := &offsetIndex{ents: make([]uint64, 0, len(b)/offIdxEntrySize)}
	var prev uint64
	for i := 0; i+offIdxEntrySize <= len(b); i += offIdxEntrySize {
		if !entryOK(b[i : i+offIdxEntrySize]) {
			break
		}
		e := binary.BigEndian.Uint64(b[i:])
		rel, pos := uint32(e>>32), uint32(e)
		if pos < segHeaderSize || int64(pos) >= size || (len(x.ents) > 0 && (rel <= uint32(prev>>32) || pos <= uint32(prev))) {
			break
		}
		x.ents = append(x.ents, e)
		prev = e
	}
	complete := len(x.ents)*offIdxEntrySize == len(b)
	x.persisted, x.written = len(x.ents), complete
	return x, complete, nil
}

// loadTimeIndex is loadOffsetIndex for the time index; maxRel bounds the
// relative offsets it accepts.
func loadTimeIndex(fsys vfs.FS, path string, base int64, fileID uint64, maxRel uint32) (*timeIndex, error) {
	x, _, err := loadTimeIndexPrefix(fsys, path, base, fileID, maxRel)
	return x, err
}

func loadTimeIndexPrefix(fsys vfs.FS, path string, base int64, fileID uint64, maxRel uint32) (*timeIndex, bool, error) {
	b, err := vfs.ReadFile(fsys, path)
	if err != nil {
		return nil, false, err
	}
	h, err := decodeFileHeader(b, timeIdxMagic, path)
	if err != nil {
		return nil, false, err
	}
	if h.base != base || h.fileID != fileID {
		return nil, false, fmt.Errorf("%s indexes another segment file", path)
	}
	b = b[segHeaderSize:]
	n := len(b) / timeIdxEntrySize
	x := &timeIndex{ts: make([]int64, 0, n), rel: make([]uint32, 0, n)}
	for i := 0; i+timeIdxEntrySize <= len(b); i += timeIdxEntrySize {
		if !entryOK(b[i : i+timeIdxEntrySize]) {
			break
		}
		ts := int64(binary.BigEndian.Uint64(b[i:]))
		rel := binary.BigEndian.Uint32(b[i+8:])
		if rel > maxRel || (len(x.ts) > 0 && (ts <= x.ts[len(x.ts)-1] || rel < x.rel[len(x.rel)-1])) {
			break
		}
		x.add(ts, rel)
	}
	complete := len(x.ts)*timeIdxEntrySize == len(b)
	x.persisted, x.written = len(x.ts), complete
	return x, complete, nil
}
