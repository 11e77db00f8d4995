// Package binrec encodes and decodes the small versioned binary records that
// Herald's coordinators keep in internal topics: big-endian integers,
// strings with a 16-bit length, byte strings with a 32-bit length, and the
// varints (encoding/binary's Uvarint and Varint) of the more compact
// formats. Decoding checks every length and count against the bytes
// present; the first failure sticks, so a decoder reads on and checks Err
// once.
package binrec

import (
	"encoding/binary"
	"fmt"
)

// AppendStr16 appends s with a 16-bit length (callers bound len(s)).
func AppendStr16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// AppendBytes32 appends v with a 32-bit length.
func AppendBytes32(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// Reader decodes b. Every failure wraps base and names what was being read.
type Reader struct {
	b       []byte
	err     error
	base    error
	version uint16
}

// NewReader reads b; failures wrap base; Version checks against version.
func NewReader(b []byte, base error, version uint16) *Reader {
	return &Reader{b: b, base: base, version: version}
}

// Err is the first failure, or nil.
func (r *Reader) Err() error { return r.err }

// Fail records a failure unless one is recorded already.
func (r *Reader) Fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", r.base, what)
	}
}

// Len is the number of bytes not yet read.
func (r *Reader) Len() int { return len(r.b) }

// Take returns the next n bytes (aliasing b), or nil after a failure.
func (r *Reader) Take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.Fail(what + " runs past the end")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// U8 reads a byte.
func (r *Reader) U8(what string) byte {
	if v := r.Take(1, what); v != nil {
		return v[0]
	}
	return 0
}

// U16 reads a big-endian uint16.
func (r *Reader) U16(what string) uint16 {
	if v := r.Take(2, what); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

// U32 reads a big-endian uint32.
func (r *Reader) U32(what string) uint32 {
	if v := r.Take(4, what); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// U64 reads a big-endian uint64.
func (r *Reader) U64(what string) uint64 {
	if v := r.Take(8, what); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Count reads a uint32 count of items of at least minEach bytes each, and
// fails if the bytes left cannot hold that many: a bound for allocations
// driven by the count.
func (r *Reader) Count(what string, minEach int) uint32 {
	n := r.U32(what)
	if r.err == nil && uint64(n) > uint64(len(r.b)/max(minEach, 1)) {
		r.Fail(fmt.Sprintf("%s %d exceeds the value", what, n))
		return 0
	}
	return n
}

// Uvarint reads an unsigned varint as binary.Uvarint does: it fails if the
// bytes end inside it or it overflows 64 bits.
func (r *Reader) Uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	return r.varint(v, n, what)
}

// Varint reads a zig-zag signed varint as binary.Varint does: it fails if
// the bytes end inside it or it overflows 64 bits.
func (r *Reader) Varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	return int64(r.varint(uint64(v), n, what))
}

// varint consumes the n bytes of a varint v decoded from r.b, or fails.
func (r *Reader) varint(v uint64, n int, what string) uint64 {
	switch {
	case n == 0:
		r.Fail(what + " runs past the end")
		return 0
	case n < 0:
		r.Fail(what + " overflows 64 bits")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// UvarintCount reads a uvarint count of items of at least minEach bytes
// each, and fails if the bytes left cannot hold that many: a bound for
// allocations driven by the count.
func (r *Reader) UvarintCount(what string, minEach int) int {
	n := r.Uvarint(what)
	if r.err == nil && n > uint64(len(r.b)/max(minEach, 1)) {
		r.Fail(fmt.Sprintf("%s %d exceeds what the %d bytes left can hold", what, n, len(r.b)))
		return 0
	}
	return int(n)
}

// uvarintLen reads a uvarint length and fails unless that many bytes are left.
func (r *Reader) uvarintLen(what string) int {
	n := r.Uvarint(what + " length")
	if r.err == nil && n > uint64(len(r.b)) {
		r.Fail(fmt.Sprintf("%s length %d exceeds the %d bytes left", what, n, len(r.b)))
		return 0
	}
	return int(n)
}

// UvarintBytes reads a byte string with a uvarint length into a copy; like
// Bytes32 it returns nil for a zero length.
func (r *Reader) UvarintBytes(what string) []byte {
	v := r.Take(r.uvarintLen(what), what)
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

// UvarintStr reads a string with a uvarint length.
func (r *Reader) UvarintStr(what string) string {
	return string(r.Take(r.uvarintLen(what), what))
}

// Str16 reads a string with a 16-bit length.
func (r *Reader) Str16(what string) string { return string(r.Take(int(r.U16(what)), what)) }

// Bytes32 reads a byte string with a 32-bit length into a copy; it returns
// nil for a zero length, so decoded values compare equal to what callers
// usually encode.
func (r *Reader) Bytes32(what string) []byte {
	n := r.U32(what)
	if uint64(n) > uint64(len(r.b)) {
		r.Fail(what + " length runs past the end")
		return nil
	}
	v := r.Take(int(n), what)
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

// Str32 reads a string with a 32-bit length.
func (r *Reader) Str32(what string) string { return string(r.Bytes32(what)) }

// Version reads a uint16 version and fails unless it is the reader's.
func (r *Reader) Version(what string) {
	if v := r.U16(what + " version"); r.err == nil && v != r.version {
		r.Fail(fmt.Sprintf("%s version %d (this build reads %d)", what, v, r.version))
	}
}

// End fails if bytes remain after what was read, and returns Err.
func (r *Reader) End(what string) error {
	if r.err == nil && len(r.b) != 0 {
		r.Fail(fmt.Sprintf("%d bytes after the %s", len(r.b), what))
	}
	return r.err
}
