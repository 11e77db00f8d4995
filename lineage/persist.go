package lineage

// The index file (Config.Dir/lineage.idx) keeps the index across restarts,
// so that a restart reads it instead of decoding every event of every topic
// again. It is derived data: lost or damaged, it is rebuilt from the topics.
//
// Layout (integers big-endian; frozen for version 1):
//
//	header   magic "HLINEAGE" (8) | version uint16 = 1 | CRC-32C of the ten bytes before (4)
//	record*  length uint32 (of body) | CRC-32C of body uint32 | body
//	body     kind byte, then
//	  1 entry       id, source, type, subject, topic (strings), partition int32,
//	                offset int64, time (Unix ns) int64, correlation id, causation id (strings)
//	  2 checkpoint  count uvarint, then count x (topic string, partition int32, next offset int64)
//	string   uvarint length | bytes
//
// Entries are appended as they are indexed; a checkpoint follows the
// indexer rounds that indexed something (at most one a second) and ends the
// file at close: every entry before it covers the topics up to its offsets. Opening reads records up to the end or the first
// that does not check (a torn tail: the file is cut there), takes the last
// checkpoint's offsets as where to go on reading the topics, and rewrites the
// file without the entries of partitions that are gone or whose records
// retention removed, as a rebuild from the topics would. A record longer than
// maxFileRecord, a bad header or an unknown version is corruption: the file
// is set aside (renamed *.corrupt) and the index rebuilt from the topics.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"
)

const (
	fileMagic     = "HLINEAGE"
	fileVersion   = 1
	fileHeaderLen = 14
	maxFileRecord = 64 << 20
	recEntry      = 1
	recCheckpoint = 2
	indexFileName = "lineage.idx"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptFile is wrapped by the errors of an index file that is not one,
// or not of a version this build reads.
var ErrCorruptFile = errors.New("lineage: corrupt index file")

func fileHeader() []byte {
	b := append([]byte(fileMagic), 0, fileVersion)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodeEntry(body []byte, e *Entry) []byte {
	body = append(body[:0], recEntry)
	for _, s := range []string{e.ID, e.Source, e.Type, e.Subject, e.Topic} {
		body = appendString(body, s)
	}
	body = binary.BigEndian.AppendUint32(body, uint32(e.Partition))
	body = binary.BigEndian.AppendUint64(body, uint64(e.Offset))
	body = binary.BigEndian.AppendUint64(body, uint64(e.Time.UnixNano()))
	body = appendString(body, e.CorrelationID)
	return appendString(body, e.CausationID)
}

func encodeCheckpoint(body []byte, next map[tp]int64) []byte {
	body = append(body[:0], recCheckpoint)
	body = binary.AppendUvarint(body, uint64(len(next)))
	for k, off := range next {
		body = appendString(body, k.topic)
		body = binary.BigEndian.AppendUint32(body, uint32(k.part))
		body = binary.BigEndian.AppendUint64(body, uint64(off))
	}
	return body
}

// dec reads a record body; the first failure sticks.
type dec struct {
	b   []byte
	bad bool
}

func (d *dec) str() string {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.bad = true
		return ""
	}
	s := string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return s
}

func (d *dec) u32() uint32 {
	if len(d.b) < 4 {
		d.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *dec) u64() uint64 {
	if len(d.b) < 8 {
		d.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// decodeBody decodes one record body: an entry or a checkpoint.
func decodeBody(b []byte) (e *Entry, next map[tp]int64, err error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: empty record", ErrCorruptFile)
	}
	d := &dec{b: b[1:]}
	switch b[0] {
	case recEntry:
		e = &Entry{ID: d.str(), Source: d.str(), Type: d.str(), Subject: d.str(), Topic: d.str()}
		e.Partition = int32(d.u32())
		e.Offset = int64(d.u64())
		e.Time = time.Unix(0, int64(d.u64())).UTC()
		e.CorrelationID, e.CausationID = d.str(), d.str()
	case recCheckpoint:
		n, k := binary.Uvarint(d.b)
		// Each partition takes at least 13 bytes: no count can claim more.
		if k <= 0 || n > uint64(len(d.b))/13 {
			return nil, nil, fmt.Errorf("%w: checkpoint count", ErrCorruptFile)
		}
		d.b = d.b[k:]
		next = make(map[tp]int64, n)
		for range n {
			topic := d.str()
			part := int32(d.u32())
			next[tp{topic, part}] = int64(d.u64())
		}
	default:
		return nil, nil, fmt.Errorf("%w: record kind %d", ErrCorruptFile, b[0])
	}
	if d.bad || len(d.b) != 0 {
		return nil, nil, fmt.Errorf("%w: record of kind %d does not parse", ErrCorruptFile, b[0])
	}
	return e, next, nil
}

// readIndexFile reads an index file: entry gets each entry, in order, and
// the returned offsets are the last checkpoint's (nil if none). valid is
// the length of the file's good prefix; a record past it did not check (a
// torn write). A bad header is an error wrapping ErrCorruptFile.
func readIndexFile(r io.Reader, entry func(*Entry)) (next map[tp]int64, valid int64, err error) {
	br := bufio.NewReaderSize(r, 256<<10)
	h := make([]byte, fileHeaderLen)
	if _, err := io.ReadFull(br, h); err != nil {
		if err == io.EOF {
			return nil, 0, nil // empty: a file created and never written
		}
		return nil, 0, fmt.Errorf("%w: header: %v", ErrCorruptFile, err)
	}
	if string(h[:8]) != fileMagic || binary.BigEndian.Uint32(h[10:]) != crc32.Checksum(h[:10], crcTable) {
		return nil, 0, fmt.Errorf("%w: not a lineage index file", ErrCorruptFile)
	}
	if v := binary.BigEndian.Uint16(h[8:]); v != fileVersion {
		return nil, 0, fmt.Errorf("%w: version %d, this build reads %d", ErrCorruptFile, v, fileVersion)
	}
	valid = fileHeaderLen
	var body []byte
	for {
		var rh [8]byte
		if _, err := io.ReadFull(br, rh[:]); err != nil {
			break
		}
		n := binary.BigEndian.Uint32(rh[:])
		if n == 0 || n > maxFileRecord {
			break
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(br, body); err != nil || crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(rh[4:]) {
			break
		}
		e, ckpt, err := decodeBody(body)
		if err != nil {
			break
		}
		valid += 8 + int64(n)
		if e != nil {
			entry(e)
		} else {
			next = ckpt
		}
	}
	return next, valid, nil
}

// indexFile appends to the index file.
type indexFile struct {
	path     string
	f        *os.File
	w        *bufio.Writer
	body     []byte
	dirty    bool // entries written since the last checkpoint
	lastSync time.Time
	lastCkpt time.Time
}

// createIndexFile writes a new file at path holding the index's entries
// and the checkpoint, through a temporary file, fsync, rename and a
// directory fsync, and opens it for appending.
func createIndexFile(path string, idx *Index, next map[tp]int64) (*indexFile, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	xf := &indexFile{path: path, f: f, w: bufio.NewWriterSize(f, 1<<20), lastSync: time.Now()}
	fail := func(err error) (*indexFile, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("write %s: %w", tmp, err)
	}
	if _, err := xf.w.Write(fileHeader()); err != nil {
		return fail(err)
	}
	var werr error
	idx.each(func(e *Entry) {
		if werr == nil {
			werr = xf.entry(e)
		}
	})
	if werr != nil {
		return fail(werr)
	}
	if err := xf.checkpoint(next, true); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("sync %s: %w", filepath.Dir(path), err)
		}
	}
	return xf, nil
}

// openIndexFile opens a file that checked whole for appending.
func openIndexFile(path string) (*indexFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	return &indexFile{path: path, f: f, w: bufio.NewWriterSize(f, 1<<20), lastSync: time.Now(), lastCkpt: time.Now()}, nil
}

func (xf *indexFile) entry(e *Entry) error {
	xf.body = encodeEntry(xf.body, e)
	xf.dirty = true
	return xf.write()
}

func (xf *indexFile) write() error {
	var rh [8]byte
	binary.BigEndian.PutUint32(rh[:], uint32(len(xf.body)))
	binary.BigEndian.PutUint32(rh[4:], crc32.Checksum(xf.body, crcTable))
	if _, err := xf.w.Write(rh[:]); err != nil {
		return err
	}
	_, err := xf.w.Write(xf.body)
	return err
}

// checkpoint records next after the entries written, and flushes them to
// the file; it fsyncs with sync, or when the last fsync is 10 s old.
func (xf *indexFile) checkpoint(next map[tp]int64, sync bool) error {
	xf.body = encodeCheckpoint(xf.body, next)
	if err := xf.write(); err != nil {
		return err
	}
	xf.dirty, xf.lastCkpt = false, time.Now()
	if err := xf.w.Flush(); err != nil {
		return err
	}
	if sync || time.Since(xf.lastSync) > 10*time.Second {
		xf.lastSync = time.Now()
		return xf.f.Sync()
	}
	return nil
}

func (xf *indexFile) close(next map[tp]int64) error {
	err := xf.checkpoint(next, true)
	return errors.Join(err, xf.f.Close())
}
