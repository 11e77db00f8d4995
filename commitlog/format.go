package commitlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/commitlog/batch"
)

// Frozen constants of the on-disk format (see doc.go). Changing any of them
// needs a new format version.
const (
	formatVersion = 1

	segMagic      = "HERALDLG"
	offIdxMagic   = "HERALDIX"
	timeIdxMagic  = "HERALDTX"
	ckptMagic     = "HERALDRP"
	segHeaderSize = 32 // also the header size of both index files

	offIdxEntrySize  = 12 // relative offset u32, position u32, CRC-32C u32
	timeIdxEntrySize = 16 // timestamp i64, relative offset u32, CRC-32C u32

	segSuffix     = ".log"
	offIdxSuffix  = ".idx"
	timeIdxSuffix = ".tix"
	cleanedSuffix = ".cleaned"
	tmpSuffix     = ".tmp"
)

// readableVersions lists the format versions this build reads, oldest first;
// it writes the last.
var readableVersions = []int{1}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fileHeader is the 32-byte header of segment and index files.
type fileHeader struct {
	magic   string
	version uint16
	base    int64
	fileID  uint64
}

func (h fileHeader) encode() []byte {
	b := make([]byte, segHeaderSize)
	copy(b, h.magic)
	binary.BigEndian.PutUint16(b[8:], h.version)
	binary.BigEndian.PutUint64(b[12:], uint64(h.base))
	binary.BigEndian.PutUint64(b[20:], h.fileID)
	binary.BigEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	return b
}

// decodeFileHeader checks magic, version and checksum.
func decodeFileHeader(b []byte, magic, path string) (fileHeader, error) {
	if len(b) < segHeaderSize {
		return fileHeader{}, &CorruptionError{Path: path, Reason: fmt.Sprintf("file header is %d bytes, want %d", len(b), segHeaderSize)}
	}
	if string(b[:8]) != magic {
		return fileHeader{}, &CorruptionError{Path: path, Reason: fmt.Sprintf("bad magic %q, want %q", b[:8], magic)}
	}
	if got, want := binary.BigEndian.Uint32(b[28:]), crc32.Checksum(b[:28], castagnoli); got != want {
		return fileHeader{}, &CorruptionError{Path: path, Reason: fmt.Sprintf("file header checksum %#08x, want %#08x", got, want)}
	}
	h := fileHeader{
		magic:   magic,
		version: binary.BigEndian.Uint16(b[8:]),
		base:    int64(binary.BigEndian.Uint64(b[12:])),
		fileID:  binary.BigEndian.Uint64(b[20:]),
	}
	if !versionReadable(int(h.version)) {
		return h, &FormatVersionError{Path: path, Found: int(h.version), Readable: readableVersions}
	}
	return h, nil
}

func versionReadable(v int) bool {
	for _, r := range readableVersions {
		if r == v {
			return true
		}
	}
	return false
}

func segmentName(base int64) string { return fmt.Sprintf("%020d", base) }

// parseSegmentName parses "00000000000000000042.log" and friends.
func parseSegmentName(name string) (base int64, suffix string, ok bool) {
	stem, suffix, found := strings.Cut(name, ".")
	if !found || len(stem) != 20 {
		return 0, "", false
	}
	base, err := strconv.ParseInt(stem, 10, 64)
	if err != nil || base < 0 {
		return 0, "", false
	}
	return base, "." + suffix, true
}

// scanErrKind classifies why a scan stopped.
type scanErrKind int

const (
	scanTorn    scanErrKind = iota + 1 // fewer bytes than the batch needs
	scanInvalid                        // header or checksum wrong
)

type scanError struct {
	kind   scanErrKind
	pos    int64
	reason string
	err    error
}

func (e *scanError) Error() string {
	if e.err != nil {
		return e.reason + ": " + e.err.Error()
	}
	return e.reason
}

// scanner walks the record batches of a segment file between two positions.
// It reads in large chunks and returns batches that alias its buffer.
type scanner struct {
	r        io.ReaderAt
	pos, end int64 // next batch position; stop position
	verify   bool  // check CRCs
	maxBatch int

	buf      []byte
	bufStart int64 // file position of buf[0]
}

const scanChunk = 1 << 20

// newScanner scans r from from to to. NB: buf may be nil; fill allocates no
// more than the bytes there are to scan, so scanning an empty tail (every
// log at a clean restart) costs no allocation.
func newScanner(r io.ReaderAt, from, to int64, verify bool, maxBatch int, buf []byte) *scanner {
	return &scanner{r: r, pos: from, end: to, verify: verify, maxBatch: maxBatch, buf: buf[:0], bufStart: from}
}

// fill makes buf hold [pos, pos+n) if the file has it, reading ahead.
func (s *scanner) fill(n int) (bool, error) {
	have := s.bufStart + int64(len(s.buf)) - s.pos
	if s.pos >= s.bufStart && have >= int64(n) {
		return true, nil
	}
	if s.pos+int64(n) > s.end {
		return false, nil
	}
	want := max(n, scanChunk)
	if rem := s.end - s.pos; int64(want) > rem {
		want = int(rem)
	}
	if cap(s.buf) < want {
		s.buf = make([]byte, want)
	}
	s.buf = s.buf[:want]
	m, err := s.r.ReadAt(s.buf, s.pos)
	s.bufStart = s.pos
	s.buf = s.buf[:m]
	if err != nil && err != io.EOF {
		return false, err
	}
	return m >= n, nil
}

// next returns the batch at the scanner's position. It returns io.EOF when
// the position reaches end exactly, and a *scanError when the bytes there
// are not a whole valid batch.
func (s *scanner) next() (pos int64, h batch.Header, raw []byte, err error) {
	if s.pos == s.end {
		return s.pos, h, nil, io.EOF
	}
	pos = s.pos
	ok, err := s.fill(batch.HeaderSize)
	if err != nil {
		return pos, h, nil, err
	}
	if !ok {
		return pos, h, nil, &scanError{kind: scanTorn, pos: pos, reason: fmt.Sprintf("%d trailing bytes are shorter than a batch header", s.end-pos)}
	}
	off := int(pos - s.bufStart)
	h, err = batch.ParseHeader(s.buf[off:])
	if err != nil {
		return pos, h, nil, &scanError{kind: scanInvalid, pos: pos, reason: "bad batch header", err: err}
	}
	size := h.Size()
	if size > s.maxBatch {
		return pos, h, nil, &scanError{kind: scanInvalid, pos: pos, reason: fmt.Sprintf("batch length %d exceeds the bound %d", size, s.maxBatch)}
	}
	ok, err = s.fill(size)
	if err != nil {
		return pos, h, nil, err
	}
	if !ok {
		return pos, h, nil, &scanError{kind: scanTorn, pos: pos, reason: fmt.Sprintf("batch of %d bytes but only %d remain", size, s.end-pos)}
	}
	off = int(pos - s.bufStart)
	raw = s.buf[off : off+size]
	if s.verify {
		if got := batch.ComputeCRC(raw); got != h.CRC {
			return pos, h, nil, &scanError{kind: scanInvalid, pos: pos, reason: fmt.Sprintf("batch checksum %#08x, want %#08x", got, h.CRC)}
		}
	}
	s.pos += int64(size)
	return pos, h, raw, nil
}
