package batch

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
)

// Frozen by the Kafka protocol; see the package doc.
const (
	// HeaderSize is the size of the batch header; records start here.
	HeaderSize = 61
	// Magic is the format version this package reads and writes.
	Magic = 2

	// lengthOffset is where batchLength sits; Size() = lengthOffset+4+Length.
	lengthOffset = 8
	// crcOffset is where the CRC sits, crcStart is where the bytes it covers
	// start. Fields before crcStart (baseOffset, batchLength,
	// partitionLeaderEpoch, magic) are deliberately outside it so the broker
	// can patch offsets and epochs without recomputing it.
	crcOffset = 17
	crcStart  = 21
	// minLength is the smallest valid batchLength: a header with no records.
	minLength = HeaderSize - 12

	attrCompressionMask = 0x07
	attrLogAppendTime   = 0x08
	attrTransactional   = 0x10
	attrControl         = 0x20
)

// NoProducerID, NoProducerEpoch and NoSequence are the producer fields of a
// batch written by a producer that is neither idempotent nor transactional.
const (
	NoProducerID    int64 = -1
	NoProducerEpoch int16 = -1
	NoSequence      int32 = -1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Compression is the codec in attribute bits 0-2.
type Compression int8

// Codec values, frozen by the protocol.
const (
	None   Compression = 0
	Gzip   Compression = 1
	Snappy Compression = 2
	LZ4    Compression = 3
	Zstd   Compression = 4
)

func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case Gzip:
		return "gzip"
	case Snappy:
		return "snappy"
	case LZ4:
		return "lz4"
	case Zstd:
		return "zstd"
	}
	return "compression(" + strconv.Itoa(int(c)) + ")"
}

func (c Compression) valid() bool { return c >= None && c <= Zstd }

// Header is the decoded 61-byte batch header.
type Header struct {
	BaseOffset           int64
	Length               int32 // bytes after the Length field
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	NumRecords           int32
}

// Size is the total size of the batch in bytes.
func (h Header) Size() int { return 12 + int(h.Length) }

// LastOffset is the offset of the last record the batch was written with,
// which compaction preserves even if that record is gone.
func (h Header) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// Compression is the codec of the records section.
func (h Header) Compression() Compression { return Compression(h.Attributes & attrCompressionMask) }

// LogAppendTime reports whether record timestamps are the broker's append
// time (MaxTimestamp) rather than the producer's.
func (h Header) LogAppendTime() bool { return h.Attributes&attrLogAppendTime != 0 }

// Transactional reports whether the batch belongs to a transaction.
func (h Header) Transactional() bool { return h.Attributes&attrTransactional != 0 }

// Control reports whether the batch holds a control record (transaction
// marker) rather than user data.
func (h Header) Control() bool { return h.Attributes&attrControl != 0 }

// ParseHeader decodes the header at the start of b. It checks structure only
// (magic, lengths, counts, codec); it does not check the CRC or that b holds
// the whole batch. Errors are *FormatError.
//
// The count rules are those of a stored log, looser than Kafka's produce
// rules: compaction may remove records, so NumRecords may be less than
// LastOffsetDelta+1 and may be 0, but it can never be more.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, corrupt("batch", int64(len(b)), "shorter than the 61-byte header")
	}
	be := binary.BigEndian
	h := Header{
		BaseOffset:           int64(be.Uint64(b[0:])),
		Length:               int32(be.Uint32(b[8:])),
		PartitionLeaderEpoch: int32(be.Uint32(b[12:])),
		Magic:                int8(b[16]),
		CRC:                  be.Uint32(b[17:]),
		Attributes:           int16(be.Uint16(b[21:])),
		LastOffsetDelta:      int32(be.Uint32(b[23:])),
		BaseTimestamp:        int64(be.Uint64(b[27:])),
		MaxTimestamp:         int64(be.Uint64(b[35:])),
		ProducerID:           int64(be.Uint64(b[43:])),
		ProducerEpoch:        int16(be.Uint16(b[51:])),
		BaseSequence:         int32(be.Uint32(b[53:])),
		NumRecords:           int32(be.Uint32(b[57:])),
	}
	switch {
	case h.Magic != Magic:
		return h, corrupt("magic", int64(h.Magic), "only magic 2 is supported")
	case h.Length < minLength:
		return h, corrupt("batchLength", int64(h.Length), "less than the 49-byte minimum")
	case !h.Compression().valid():
		return h, corrupt("attributes.compression", int64(h.Compression()), "unknown codec")
	case h.LastOffsetDelta < 0:
		return h, corrupt("lastOffsetDelta", int64(h.LastOffsetDelta), "negative")
	case h.NumRecords < 0:
		return h, corrupt("recordCount", int64(h.NumRecords), "negative")
	case int64(h.NumRecords) > int64(h.LastOffsetDelta)+1:
		return h, corrupt("recordCount", int64(h.NumRecords),
			fmt.Sprintf("more records than the %d offsets lastOffsetDelta spans", int64(h.LastOffsetDelta)+1))
	}
	return h, nil
}

// Validate checks that b is exactly one whole batch with a correct CRC. If
// maxSize > 0, a batch larger than maxSize fails with *TooLargeError before
// its CRC is computed. It does not decode records; see ValidateRecords.
func Validate(b []byte, maxSize int) (Header, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, err
	}
	if len(b) != h.Size() {
		return h, corrupt("batchLength", int64(h.Length),
			fmt.Sprintf("says the batch is %d bytes but it is %d", h.Size(), len(b)))
	}
	if maxSize > 0 && h.Size() > maxSize {
		return h, &TooLargeError{Size: h.Size(), Limit: maxSize}
	}
	if got := ComputeCRC(b); got != h.CRC {
		return h, corrupt("crc", int64(h.CRC), fmt.Sprintf("computed %#08x", got))
	}
	return h, nil
}

// ComputeCRC returns the CRC-32C (Castagnoli) of b[21:], the bytes the batch
// CRC covers. b must be exactly one batch; if it is shorter than 21 bytes the
// CRC of no bytes is returned.
func ComputeCRC(b []byte) uint32 {
	if len(b) < crcStart {
		return 0
	}
	return crc32.Checksum(b[crcStart:], castagnoli)
}

// SetBaseOffset patches the base offset in place. The CRC does not cover it.
// It panics if len(b) < HeaderSize.
func SetBaseOffset(b []byte, off int64) {
	binary.BigEndian.PutUint64(b[0:HeaderSize], uint64(off))
}

// SetPartitionLeaderEpoch patches the partition leader epoch in place. The
// CRC does not cover it. It panics if len(b) < HeaderSize.
func SetPartitionLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[12:HeaderSize], uint32(epoch))
}

// SetLogAppendTime marks the batch as using LogAppendTime with append time
// ts (stored as maxTimestamp) and recomputes the CRC, as a broker does for
// topics with message.timestamp.type=LogAppendTime. b must be exactly one
// batch; it panics if len(b) < HeaderSize.
func SetLogAppendTime(b []byte, ts int64) {
	be := binary.BigEndian
	attrs := be.Uint16(b[21:HeaderSize])
	be.PutUint16(b[21:], attrs|attrLogAppendTime)
	be.PutUint64(b[35:], uint64(ts))
	be.PutUint32(b[crcOffset:], ComputeCRC(b))
}
