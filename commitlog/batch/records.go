package batch

import (
	"fmt"
	"strconv"
	"sync"
)

// Record is one decoded record. Key and Value are nil when null and non-nil
// (possibly empty) otherwise.
type Record struct {
	Attributes     int8
	TimestampDelta int64
	OffsetDelta    int32
	Key, Value     []byte
	Headers        []RecordHeader
}

// RecordHeader is one record header. Key is never null on the wire (a null
// key decodes as an error); Value is nil when null.
type RecordHeader struct {
	Key   []byte
	Value []byte
}

// minRecordSize is the smallest encoded record: one byte each for length,
// attributes, timestampDelta, offsetDelta, keyLength, valueLength,
// headerCount.
const minRecordSize = 7

// Iter iterates the records of one batch. The zero value is ready to use; an
// Iter is reusable across batches and, once warm, decodes without
// allocating. It is not safe for concurrent use.
//
// Iter checks every record as it goes: varints in range, lengths inside the
// record, offsetDeltas strictly increasing and at most LastOffsetDelta, no
// bytes after the last record, and exactly NumRecords records. It does not
// check the CRC; call Validate for that.
type Iter struct {
	// MaxDecompressed caps the decompressed size of a compressed records
	// section; 0 means DefaultMaxDecompressed.
	MaxDecompressed int

	h    Header
	data []byte // records section, decompressed
	pos  int
	n    int32 // records decoded so far
	prev int64 // previous offsetDelta, -1 before the first
	rec  Record
	buf  []byte // decompression buffer, reused
	err  error
}

// Reset points the iterator at the batch at the start of b, decompressing
// its records if needed. Bytes after the batch's Size() are ignored. The
// iterator aliases b (or its own decompression buffer) until the next Reset.
func (it *Iter) Reset(b []byte) error {
	it.data, it.pos, it.n, it.prev, it.err = nil, 0, 0, -1, nil
	h, err := ParseHeader(b)
	it.h = h
	if err == nil && len(b) < h.Size() {
		err = corrupt("batchLength", int64(h.Length),
			fmt.Sprintf("says the batch is %d bytes but only %d are present", h.Size(), len(b)))
	}
	if err != nil {
		it.err = err
		return err
	}
	recs := b[HeaderSize:h.Size()]
	// NB: Kafka writes the empty batch that compaction leaves behind with
	// the original codec bit set but zero bytes of records, so an empty
	// section is not decompressed.
	if c := h.Compression(); c != None && len(recs) > 0 {
		limit := it.MaxDecompressed
		if limit <= 0 {
			limit = DefaultMaxDecompressed
		}
		it.buf, err = decompress(it.buf, c, recs, limit)
		if err != nil {
			it.err = err
			return err
		}
		recs = it.buf
	}
	if int64(len(recs)) < int64(h.NumRecords)*minRecordSize {
		it.err = corrupt("recordCount", int64(h.NumRecords),
			fmt.Sprintf("cannot fit in %d bytes of records", len(recs)))
		return it.err
	}
	it.data = recs
	return nil
}

// Next decodes the next record and reports whether there is one. After it
// returns false, Err reports whether iteration stopped on an error.
func (it *Iter) Next() bool {
	if it.err != nil {
		return false
	}
	if it.n >= it.h.NumRecords {
		if it.pos != len(it.data) {
			it.err = corrupt("records", int64(len(it.data)-it.pos),
				"bytes left after the last of recordCount records")
		}
		return false
	}
	if it.pos == len(it.data) {
		it.err = corrupt("recordCount", int64(it.h.NumRecords),
			fmt.Sprintf("only %d records present", it.n))
		return false
	}
	if err := it.decode(); err != nil {
		it.err = err
		return false
	}
	it.n++
	return true
}

// Record returns the current record. It aliases the batch or the
// decompression buffer and is valid until the next Next or Reset.
func (it *Iter) Record() *Record { return &it.rec }

// Offset returns the absolute offset of the current record.
func (it *Iter) Offset() int64 { return it.h.BaseOffset + int64(it.rec.OffsetDelta) }

// Timestamp returns the current record's timestamp in ms: the batch's
// MaxTimestamp under LogAppendTime, else BaseTimestamp + TimestampDelta.
func (it *Iter) Timestamp() int64 {
	if it.h.LogAppendTime() {
		return it.h.MaxTimestamp
	}
	return it.h.BaseTimestamp + it.rec.TimestampDelta
}

// Header returns the header of the batch being iterated.
func (it *Iter) Header() Header { return it.h }

// Err returns the error that stopped iteration, or nil.
func (it *Iter) Err() error { return it.err }

func (it *Iter) fail(field string, value int64, reason string) error {
	return corrupt("record["+strconv.Itoa(int(it.n))+"]."+field, value, reason)
}

// decode decodes the record at it.pos into it.rec.
func (it *Iter) decode() error {
	d := it.data
	p := it.pos
	length, p, ok := varint(d, p)
	if !ok {
		return it.fail("length", int64(len(d)-it.pos), "bad varint")
	}
	if length < 0 || int64(length) > int64(len(d)-p) {
		return it.fail("length", int64(length), fmt.Sprintf("outside the %d bytes remaining", len(d)-p))
	}
	end := p + int(length)
	d = d[:end] // every field below must fit in this record
	r := &it.rec
	if p >= end {
		return it.fail("attributes", 0, "missing")
	}
	r.Attributes = int8(d[p])
	p++
	if r.TimestampDelta, p, ok = varlong(d, p); !ok {
		return it.fail("timestampDelta", 0, "bad varlong")
	}
	od, p, ok := varint(d, p)
	if !ok {
		return it.fail("offsetDelta", 0, "bad varint")
	}
	if int64(od) <= it.prev || od > it.h.LastOffsetDelta {
		return it.fail("offsetDelta", int64(od),
			fmt.Sprintf("not in (%d, lastOffsetDelta %d]", it.prev, it.h.LastOffsetDelta))
	}
	r.OffsetDelta = od
	if r.Key, p, ok = bytesField(d, p, true); !ok {
		return it.fail("key", int64(end-p), "bad length")
	}
	if r.Value, p, ok = bytesField(d, p, true); !ok {
		return it.fail("value", int64(end-p), "bad length")
	}
	nh, p, ok := varint(d, p)
	if !ok {
		return it.fail("headerCount", 0, "bad varint")
	}
	// Each header takes at least two bytes, which bounds the slice.
	if nh < 0 || int64(nh) > int64(end-p)/2 {
		return it.fail("headerCount", int64(nh), fmt.Sprintf("impossible in %d bytes", end-p))
	}
	hs := r.Headers[:0]
	for i := int32(0); i < nh; i++ {
		var h RecordHeader
		if h.Key, p, ok = bytesField(d, p, false); !ok {
			return it.fail("header["+strconv.Itoa(int(i))+"].key", 0, "bad or null length")
		}
		if h.Value, p, ok = bytesField(d, p, true); !ok {
			return it.fail("header["+strconv.Itoa(int(i))+"].value", 0, "bad length")
		}
		hs = append(hs, h)
	}
	r.Headers = hs
	if p != end {
		return it.fail("length", int64(length), fmt.Sprintf("%d bytes unused by the fields", end-p))
	}
	it.prev = int64(od)
	it.pos = end
	return nil
}

// bytesField reads a varint length and that many bytes at d[p:]. A length of
// -1 is null (nil) when nullable. The result is capped so appends by the
// caller cannot overwrite the next field.
func bytesField(d []byte, p int, nullable bool) ([]byte, int, bool) {
	n, p, ok := varint(d, p)
	if !ok {
		return nil, p, false
	}
	if n < 0 {
		return nil, p, n == -1 && nullable
	}
	if int64(n) > int64(len(d)-p) {
		return nil, p, false
	}
	e := p + int(n)
	return d[p:e:e], e, true
}

// varint reads a zigzag varint of at most 5 bytes that fits in 32 bits.
func varint(d []byte, p int) (int32, int, bool) {
	// Fast path: one byte.
	if p < len(d) && d[p] < 0x80 {
		u := uint32(d[p])
		return int32(u>>1) ^ -int32(u&1), p + 1, true
	}
	var u uint64
	for i := 0; i < 5; i++ {
		if p >= len(d) {
			return 0, p, false
		}
		c := d[p]
		p++
		u |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if u > 0xffffffff {
				return 0, p, false
			}
			x := uint32(u)
			return int32(x>>1) ^ -int32(x&1), p, true
		}
	}
	return 0, p, false
}

// varlong reads a zigzag varint of at most 10 bytes that fits in 64 bits.
func varlong(d []byte, p int) (int64, int, bool) {
	if p < len(d) && d[p] < 0x80 {
		u := uint64(d[p])
		return int64(u>>1) ^ -int64(u&1), p + 1, true
	}
	var u uint64
	for i := 0; i < 10; i++ {
		if p >= len(d) {
			return 0, p, false
		}
		c := d[p]
		p++
		if i == 9 && c > 1 {
			return 0, p, false
		}
		u |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), p, true
		}
	}
	return 0, p, false
}

var iterPool = sync.Pool{New: func() any { return new(Iter) }}

// ValidateRecords decodes every record of the batch b (decompressing with
// the DefaultMaxDecompressed cap) and checks it as Iter does: varints in
// range, lengths that fit, offsetDeltas strictly increasing and at most
// LastOffsetDelta, no trailing bytes, and exactly NumRecords records. It
// does not check the CRC (see Validate). It is safe for concurrent use.
func ValidateRecords(b []byte) error {
	it := iterPool.Get().(*Iter)
	defer func() {
		// Drop references to the caller's bytes; keep the buffers unless a
		// bomb-sized one would pin memory in the pool.
		it.data, it.rec = nil, Record{Headers: it.rec.Headers[:0]}
		if cap(it.buf) > 1<<20 {
			it.buf = nil
		}
		iterPool.Put(it)
	}()
	it.MaxDecompressed = 0
	if err := it.Reset(b); err != nil {
		return err
	}
	for it.Next() {
	}
	return it.Err()
}
