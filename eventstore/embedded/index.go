package embedded

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/internal/binrec"
)

// The stream index file, DIR/stream-index, saves the in-memory index as
// it was at a position P: every record before P applied, none after. It is
// written whole by the atomic helper, and only once the records before P
// are durable: as the log grows (Config.IndexCheckpointRecords), before
// compaction (which drops scavenge markers, so a scan from an older P could
// not learn what they hid), and at a clean Close (P is then the end). Open
// loads it and scans the log from P to its end, the same scan as from
// position 0 over an empty index; so a crash costs the scan of the records
// since the last save, not of the whole log. A file that covers more than
// the log holds, or that the log after P does not follow, is removed before
// anything is appended, and the whole log scanned. Layout (big-endian):
//
//	"HERALDSI" | version u16 = 2 | reserved u16 | position i64 | count u32 |
//	count x ( name u16-length | flags u8 (1 deleted, 2 tombstoned) |
//	          first i64 | truncateBefore i64 | maxCount i64 | maxAge ns i64 |
//	          meta truncateBefore i64 | versions u32 |
//	          versions x ( position i64 | id hash u64 ) ) |
//	CRC-32C u32 of everything before
//
// The id hash is idHash's (FNV-1a). Version 1 files held hashes seeded
// per process, useless to the next one: they are refused (the log is
// scanned instead). Frozen: the magic and the version 2 layout.

const (
	indexFile    = "stream-index"
	indexMagic   = "HERALDSI"
	indexVersion = 2
)

var (
	castagnoli    = crc32.MakeTable(crc32.Castagnoli)
	errIndexFile  = errors.New("stream index file")
	minStreamSize = 2 + 1 + 5*8 + 4
)

func encodeIndex(pos int64, streams map[string]*stream) []byte {
	n := 24
	for name, st := range streams {
		n += len(name) + minStreamSize + 16*len(st.pos)
	}
	b := make([]byte, 0, n+4)
	b = append(b, indexMagic...)
	b = binary.BigEndian.AppendUint16(b, indexVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(pos))
	b = binary.BigEndian.AppendUint32(b, uint32(len(streams)))
	for name, st := range streams {
		b = binrec.AppendStr16(b, name)
		var flags byte
		if st.deleted {
			flags |= 1
		}
		if st.tombstoned {
			flags |= 2
		}
		b = append(b, flags)
		for _, v := range []int64{st.first, st.truncateBefore, st.meta.MaxCount, int64(st.meta.MaxAge), st.meta.TruncateBefore} {
			b = binary.BigEndian.AppendUint64(b, uint64(v))
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(st.pos)))
		for i, p := range st.pos {
			b = binary.BigEndian.AppendUint64(b, uint64(p))
			b = binary.BigEndian.AppendUint64(b, st.idh[i])
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeIndex checks and decodes an index file. Any flaw is an error
// wrapping errIndexFile; it never panics.
func decodeIndex(b []byte) (int64, map[string]*stream, error) {
	if len(b) < 28 {
		return 0, nil, errIndexFile
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return 0, nil, errors.Join(errIndexFile, errors.New("checksum mismatch"))
	}
	r := binrec.NewReader(body, errIndexFile, indexVersion)
	if string(r.Take(8, "magic")) != indexMagic {
		r.Fail("bad magic")
	}
	r.Version("index")
	r.U16("reserved")
	pos := int64(r.U64("position"))
	count := r.Count("stream count", minStreamSize)
	streams := make(map[string]*stream, count)
	for i := uint32(0); i < count && r.Err() == nil; i++ {
		name := r.Str16("stream name")
		if err := eventstore.ValidateStreamName("stream", name); err != nil && r.Err() == nil {
			r.Fail("invalid stream name")
		}
		if _, dup := streams[name]; dup {
			r.Fail("duplicate stream")
		}
		flags := r.U8("flags")
		st := &stream{deleted: flags&1 != 0, tombstoned: flags&2 != 0}
		st.first = int64(r.U64("first"))
		st.truncateBefore = int64(r.U64("truncateBefore"))
		st.meta.MaxCount = int64(r.U64("maxCount"))
		st.meta.MaxAge = time.Duration(r.U64("maxAge"))
		st.meta.TruncateBefore = int64(r.U64("meta truncateBefore"))
		if flags&^3 != 0 || st.first < 0 || st.truncateBefore < 0 || st.meta.MaxCount < 0 || st.meta.MaxAge < 0 || st.meta.TruncateBefore < 0 {
			r.Fail("bad stream state")
		}
		nv := r.Count("versions", 16)
		if r.Err() != nil {
			break
		}
		st.pos = make([]int64, nv)
		st.idh = make([]uint64, nv)
		prev := int64(-1)
		for v := range st.pos {
			p := int64(r.U64("position"))
			st.idh[v] = r.U64("id hash")
			if p != -1 && (p <= prev || p >= pos) {
				r.Fail("positions out of order")
			}
			if p != -1 {
				prev = p
			}
			st.pos[v] = p
		}
		streams[name] = st
	}
	if err := r.End("index"); err != nil {
		return 0, nil, err
	}
	return pos, streams, nil
}
