package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
)

// BuildOptions are the batch-level settings for Encode. The zero value is a
// plain uncompressed batch from a producer that is not idempotent.
type BuildOptions struct {
	Compression Compression
	// Producer says the producer fields below are meaningful (idempotent or
	// transactional producer). When false they must be left zero and are
	// written as NoProducerID, NoProducerEpoch and NoSequence, so the zero
	// value never claims producer ID 0.
	Producer      bool
	ProducerID    int64
	ProducerEpoch int16
	BaseSequence  int32
	Transactional bool // requires Producer
	Control       bool
	// LogAppendTime sets the timestamp-type bit. Record timestamps are still
	// written; maxTimestamp is their maximum. A broker stamping append time
	// uses SetLogAppendTime instead.
	LogAppendTime bool
}

// Rec is a record to encode. Key and Value are written as null when nil.
// A nil header key is written as empty: the protocol has no null header key.
type Rec struct {
	Timestamp  int64 // ms since the epoch
	Key, Value []byte
	Headers    []RecordHeader
}

// scratch holds uncompressed records before they are compressed.
var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

// Encode appends to dst one batch holding recs, as a producer writes it:
// baseOffset 0, partitionLeaderEpoch -1, offsetDeltas 0..n-1, baseTimestamp
// the first record's, maxTimestamp the largest, CRC set. It fails on zero
// records (Kafka rejects empty batches on produce) and on invalid options;
// on error dst is returned unchanged in length. Safe for concurrent use.
func Encode(dst []byte, opts BuildOptions, recs []Rec) ([]byte, error) {
	if len(recs) == 0 {
		return dst, errors.New("encode record batch: no records")
	}
	if len(recs) > math.MaxInt32 {
		return dst, fmt.Errorf("encode record batch: %d records is too many", len(recs))
	}
	h := Header{
		PartitionLeaderEpoch: -1,
		Magic:                Magic,
		LastOffsetDelta:      int32(len(recs) - 1),
		ProducerID:           NoProducerID,
		ProducerEpoch:        NoProducerEpoch,
		BaseSequence:         NoSequence,
		NumRecords:           int32(len(recs)),
	}
	if !opts.Compression.valid() {
		return dst, fmt.Errorf("encode record batch: unknown compression %d", opts.Compression)
	}
	h.Attributes = int16(opts.Compression)
	if opts.Producer {
		h.ProducerID, h.ProducerEpoch, h.BaseSequence = opts.ProducerID, opts.ProducerEpoch, opts.BaseSequence
	} else if opts.ProducerID != 0 || opts.ProducerEpoch != 0 || opts.BaseSequence != 0 {
		return dst, errors.New("encode record batch: producer fields set without BuildOptions.Producer")
	}
	if opts.Transactional {
		if !opts.Producer {
			return dst, errors.New("encode record batch: Transactional requires BuildOptions.Producer")
		}
		h.Attributes |= attrTransactional
	}
	if opts.Control {
		h.Attributes |= attrControl
	}
	if opts.LogAppendTime {
		h.Attributes |= attrLogAppendTime
	}
	h.BaseTimestamp = recs[0].Timestamp
	h.MaxTimestamp = recs[0].Timestamp
	for i := range recs {
		h.MaxTimestamp = max(h.MaxTimestamp, recs[i].Timestamp)
	}

	start := len(dst)
	dst, out, scratch := beginRecords(dst, opts.Compression)
	var err error
	for i := range recs {
		r := &recs[i]
		if out, err = appendRecord(out, 0, r.Timestamp-h.BaseTimestamp, int32(i), r.Key, r.Value, r.Headers); err != nil {
			break
		}
	}
	return endRecords(dst, start, out, scratch, &h, err)
}

// EncodeRecords appends to dst a batch holding recs under header h, as log
// compaction rewrites a batch: it keeps h's base offset, partition leader
// epoch, attributes (re-compressing with the same codec), timestamps,
// producer fields and LastOffsetDelta, and sets Magic, NumRecords, Length
// and CRC. recs' offsetDeltas must be strictly increasing in
// [0, h.LastOffsetDelta]. With no records it writes Kafka's empty batch, with
// zero bytes of records whatever the codec. Safe for concurrent use.
func EncodeRecords(dst []byte, h Header, recs []Record) ([]byte, error) {
	c := h.Compression()
	if !c.valid() {
		return dst, fmt.Errorf("encode record batch: unknown compression %d", c)
	}
	if h.LastOffsetDelta < 0 {
		return dst, fmt.Errorf("encode record batch: negative lastOffsetDelta %d", h.LastOffsetDelta)
	}
	prev := int64(-1)
	for i := range recs {
		od := recs[i].OffsetDelta
		if int64(od) <= prev || od > h.LastOffsetDelta {
			return dst, fmt.Errorf("encode record batch: record %d has offsetDelta %d, not in (%d, %d]",
				i, od, prev, h.LastOffsetDelta)
		}
		prev = int64(od)
	}
	h.Magic = Magic
	h.NumRecords = int32(len(recs)) // fits: each is a distinct int32 delta

	start := len(dst)
	if len(recs) == 0 {
		c = None // NB: Kafka's empty batch keeps the codec bit but has no bytes to decompress.
	}
	dst, out, scratch := beginRecords(dst, c)
	var err error
	for i := range recs {
		r := &recs[i]
		if out, err = appendRecord(out, r.Attributes, r.TimestampDelta, r.OffsetDelta, r.Key, r.Value, r.Headers); err != nil {
			break
		}
	}
	return endRecords(dst, start, out, scratch, &h, err)
}

// beginRecords reserves the header in dst and returns where records are to
// be appended: dst itself when uncompressed, else a pooled scratch buffer.
func beginRecords(dst []byte, c Compression) (_, out []byte, scratch *[]byte) {
	dst = append(dst, make([]byte, HeaderSize)...)
	if c == None {
		return dst, dst, nil
	}
	scratch = scratchPool.Get().(*[]byte)
	return dst, (*scratch)[:0], scratch
}

// endRecords compresses out into dst if needed and fills in the header at
// dst[start:] from h, with Length and CRC computed.
func endRecords(dst []byte, start int, out []byte, scratch *[]byte, h *Header, err error) ([]byte, error) {
	if scratch != nil {
		if err == nil {
			dst, err = compress(dst, h.Compression(), out)
		}
		if cap(out) <= 4<<20 { // don't pin huge buffers in the pool
			*scratch = out[:0]
			scratchPool.Put(scratch)
		}
	} else {
		dst = out
	}
	if err == nil && len(dst)-start-12 > math.MaxInt32 {
		err = fmt.Errorf("%d bytes of records do not fit in batchLength", len(dst)-start-HeaderSize)
	}
	if err != nil {
		return dst[:start], fmt.Errorf("encode record batch: %w", err)
	}
	h.Length = int32(len(dst) - start - 12)
	b := dst[start:]
	be := binary.BigEndian
	be.PutUint64(b[0:], uint64(h.BaseOffset))
	be.PutUint32(b[8:], uint32(h.Length))
	be.PutUint32(b[12:], uint32(h.PartitionLeaderEpoch))
	b[16] = byte(h.Magic)
	be.PutUint16(b[21:], uint16(h.Attributes))
	be.PutUint32(b[23:], uint32(h.LastOffsetDelta))
	be.PutUint64(b[27:], uint64(h.BaseTimestamp))
	be.PutUint64(b[35:], uint64(h.MaxTimestamp))
	be.PutUint64(b[43:], uint64(h.ProducerID))
	be.PutUint16(b[51:], uint16(h.ProducerEpoch))
	be.PutUint32(b[53:], uint32(h.BaseSequence))
	be.PutUint32(b[57:], uint32(h.NumRecords))
	h.CRC = ComputeCRC(b)
	be.PutUint32(b[crcOffset:], h.CRC)
	return dst, nil
}

// appendRecord appends one record, length prefix first.
func appendRecord(dst []byte, attrs int8, tsDelta int64, offDelta int32, key, value []byte, hdrs []RecordHeader) ([]byte, error) {
	if len(key) > math.MaxInt32 || len(value) > math.MaxInt32 || len(hdrs) > math.MaxInt32 {
		return dst, errors.New("record field longer than an int32 length")
	}
	n := 1 + sizeVarlong(tsDelta) + sizeVarint(offDelta) +
		sizeBytes(key) + sizeBytes(value) + sizeVarint(int32(len(hdrs)))
	for i := range hdrs {
		h := &hdrs[i]
		if len(h.Key) > math.MaxInt32 || len(h.Value) > math.MaxInt32 {
			return dst, errors.New("record header longer than an int32 length")
		}
		n += sizeVarint(int32(len(h.Key))) + len(h.Key) + sizeBytes(h.Value)
	}
	if n > math.MaxInt32 {
		return dst, fmt.Errorf("record of %d bytes does not fit in its int32 length", n)
	}
	// NB: at least double when growing: records are appended one at a
	// time, and growing by exactly one record copies the batch once per
	// record (quadratic in the batch).
	if need := sizeVarint(int32(n)) + n; cap(dst)-len(dst) < need {
		dst = grow(dst, max(need, cap(dst)))
	}
	dst = appendVarint(dst, int64(n))
	dst = append(dst, byte(attrs))
	dst = appendVarint(dst, tsDelta)
	dst = appendVarint(dst, int64(offDelta))
	dst = appendBytes(dst, key)
	dst = appendBytes(dst, value)
	dst = appendVarint(dst, int64(len(hdrs)))
	for i := range hdrs {
		h := &hdrs[i]
		dst = appendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	return dst, nil
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 1) // zigzag(-1)
	}
	dst = appendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

func sizeBytes(b []byte) int {
	if b == nil {
		return 1
	}
	return sizeVarint(int32(len(b))) + len(b)
}

// appendVarint appends v zigzag-encoded; for values that fit in int32 this
// is the same bytes as a 32-bit varint.
func appendVarint(dst []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		dst = append(dst, byte(u)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}

func sizeVarint(v int32) int { return sizeVarlong(int64(v)) }

func sizeVarlong(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}
