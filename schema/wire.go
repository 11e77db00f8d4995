package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Confluent wire format of a serialized record key or value:
//
//	+------+-----------------+---------------------------+---------+
//	| 0x00 | schema id (4 B, | Protobuf only: message    | payload |
//	| magic| big-endian)     | indexes (see below)       |         |
//	+------+-----------------+---------------------------+---------+
//
// Protobuf message indexes: a zigzag varint count n, then n zigzag varints;
// the single byte 0x00 (n = 0) means [0], the first message of the file.
// The layout is Confluent's and frozen.
const (
	WireMagic     byte = 0
	WireHeaderLen      = 5
	// maxIndexes bounds the message-index path a record may carry.
	maxIndexes = 64
)

// ErrWireFormat: bytes that are not in the Confluent wire format.
var ErrWireFormat = errors.New("not in the schema registry wire format")

// ParseHeader reads the magic byte and schema id; payload is what follows.
func ParseHeader(b []byte) (id int, payload []byte, err error) {
	if len(b) < WireHeaderLen {
		return 0, nil, fmt.Errorf("%w: %d bytes, need at least %d (magic byte 0 and a 4-byte schema id)", ErrWireFormat, len(b), WireHeaderLen)
	}
	if b[0] != WireMagic {
		return 0, nil, fmt.Errorf("%w: magic byte %d, want 0", ErrWireFormat, b[0])
	}
	return int(int32(binary.BigEndian.Uint32(b[1:5]))), b[5:], nil
}

// ParseIndexes reads Protobuf message indexes from the start of b.
func ParseIndexes(b []byte) (indexes []int, rest []byte, err error) {
	n, k := binary.Varint(b)
	if k <= 0 {
		return nil, nil, fmt.Errorf("%w: bad message-index count", ErrWireFormat)
	}
	b = b[k:]
	if n == 0 {
		return []int{0}, b, nil
	}
	if n < 0 || n > maxIndexes {
		return nil, nil, fmt.Errorf("%w: %d message indexes, want 0 to %d", ErrWireFormat, n, maxIndexes)
	}
	indexes = make([]int, 0, n)
	for range n {
		x, k := binary.Varint(b)
		if k <= 0 || x < 0 || x > 1<<20 {
			return nil, nil, fmt.Errorf("%w: bad message index", ErrWireFormat)
		}
		indexes = append(indexes, int(x))
		b = b[k:]
	}
	return indexes, b, nil
}

// AppendHeader appends the magic byte and id (and, for Protobuf, indexes
// when non-nil) to dst.
func AppendHeader(dst []byte, id int, indexes []int) []byte {
	dst = append(dst, WireMagic)
	dst = binary.BigEndian.AppendUint32(dst, uint32(id))
	if indexes == nil {
		return dst
	}
	if len(indexes) == 1 && indexes[0] == 0 {
		return append(dst, 0)
	}
	dst = binary.AppendVarint(dst, int64(len(indexes)))
	for _, x := range indexes {
		dst = binary.AppendVarint(dst, int64(x))
	}
	return dst
}
