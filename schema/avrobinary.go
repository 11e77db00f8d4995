package schema

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
)

// ValidateBinary checks that b is exactly one datum of the schema in
// Avro's binary encoding, without decoding it into values: lengths and
// indexes in range, ints that fit, strings of UTF-8, nothing left over.
// The error names the field path.
func (s *AvroSchema) ValidateBinary(b []byte) error {
	s.once.Do(func() { s.prog = compileAvro(s.Schema, map[string]*avroNode{}) })
	rest, err := s.prog.skip(b, 0)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%d bytes after the datum", len(rest))
	}
	return nil
}

type avroKind uint8

const (
	kNull avroKind = iota
	kBoolean
	kInt
	kLong
	kFloat
	kDouble
	kString
	kBytes
	kRecord
	kUnion
	kEnum
	kFixed
	kArray
	kMap
)

// avroNode is a schema compiled for validation: no interface calls on the
// hot path. Named types are compiled once, so recursive types are cycles.
type avroNode struct {
	kind     avroKind
	name     string // named types
	fields   []*avroNode
	names    []string // field names
	items    *avroNode
	branches []*avroNode
	n        int // fixed size, enum symbol count
}

func compileAvro(s avro.Schema, named map[string]*avroNode) *avroNode {
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	if n, ok := s.(avro.NamedSchema); ok {
		if done, ok := named[n.FullName()]; ok {
			return done
		}
	}
	switch t := s.(type) {
	case *avro.RecordSchema:
		nd := &avroNode{kind: kRecord, name: t.FullName()}
		named[t.FullName()] = nd
		for _, f := range t.Fields() {
			nd.fields = append(nd.fields, compileAvro(f.Type(), named))
			nd.names = append(nd.names, f.Name())
		}
		return nd
	case *avro.EnumSchema:
		nd := &avroNode{kind: kEnum, name: t.FullName(), n: len(t.Symbols())}
		named[t.FullName()] = nd
		return nd
	case *avro.FixedSchema:
		nd := &avroNode{kind: kFixed, name: t.FullName(), n: t.Size()}
		named[t.FullName()] = nd
		return nd
	case *avro.UnionSchema:
		nd := &avroNode{kind: kUnion}
		for _, b := range t.Types() {
			nd.branches = append(nd.branches, compileAvro(b, named))
		}
		return nd
	case *avro.ArraySchema:
		return &avroNode{kind: kArray, items: compileAvro(t.Items(), named)}
	case *avro.MapSchema:
		return &avroNode{kind: kMap, items: compileAvro(t.Values(), named)}
	}
	switch s.Type() {
	case avro.Boolean:
		return &avroNode{kind: kBoolean}
	case avro.Int:
		return &avroNode{kind: kInt}
	case avro.Long:
		return &avroNode{kind: kLong}
	case avro.Float:
		return &avroNode{kind: kFloat}
	case avro.Double:
		return &avroNode{kind: kDouble}
	case avro.String:
		return &avroNode{kind: kString}
	case avro.Bytes:
		return &avroNode{kind: kBytes}
	}
	return &avroNode{kind: kNull}
}

// avroErr carries the field path, built as the error returns.
type avroErr struct {
	path []string
	msg  string
}

func (e *avroErr) Error() string {
	p := slices.Clone(e.path)
	slices.Reverse(p)
	return fmt.Sprintf("field /%s: %s", strings.Join(p, "/"), e.msg)
}

func avroFail(format string, args ...any) error { return &avroErr{msg: fmt.Sprintf(format, args...)} }

func within(err error, name string) error {
	if e, ok := err.(*avroErr); ok {
		e.path = append(e.path, name)
	}
	return err
}

const maxAvroDepth = 256

func (nd *avroNode) skip(b []byte, depth int) ([]byte, error) {
	if depth > maxAvroDepth {
		return nil, avroFail("nested deeper than %d", maxAvroDepth)
	}
	switch nd.kind {
	case kNull:
		return b, nil
	case kBoolean:
		if len(b) < 1 {
			return nil, avroFail("truncated boolean")
		}
		if b[0] > 1 {
			return nil, avroFail("boolean byte %d, want 0 or 1", b[0])
		}
		return b[1:], nil
	case kInt:
		v, rest, err := readLong(b)
		if err != nil {
			return nil, err
		}
		if v < math.MinInt32 || v > math.MaxInt32 {
			return nil, avroFail("int %d out of 32-bit range", v)
		}
		return rest, nil
	case kLong:
		_, rest, err := readLong(b)
		return rest, err
	case kFloat:
		if len(b) < 4 {
			return nil, avroFail("truncated float")
		}
		return b[4:], nil
	case kDouble:
		if len(b) < 8 {
			return nil, avroFail("truncated double")
		}
		return b[8:], nil
	case kString:
		return skipString(b, true)
	case kBytes:
		return skipString(b, false)
	case kRecord:
		var err error
		for i, f := range nd.fields {
			if b, err = f.skip(b, depth+1); err != nil {
				return nil, within(err, nd.names[i])
			}
		}
		return b, nil
	case kUnion:
		i, rest, err := readLong(b)
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(nd.branches)) {
			return nil, avroFail("union branch %d out of range [0, %d)", i, len(nd.branches))
		}
		return nd.branches[i].skip(rest, depth+1)
	case kEnum:
		i, rest, err := readLong(b)
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(nd.n) {
			return nil, avroFail("enum %s index %d out of range [0, %d)", nd.name, i, nd.n)
		}
		return rest, nil
	case kFixed:
		if len(b) < nd.n {
			return nil, avroFail("fixed %s needs %d bytes, %d left", nd.name, nd.n, len(b))
		}
		return b[nd.n:], nil
	case kArray, kMap:
		return nd.skipBlocks(b, depth)
	}
	return nil, avroFail("unsupported type")
}

func readLong(b []byte) (int64, []byte, error) {
	if len(b) > 0 && b[0] < 0x80 { // one byte: most lengths, indexes and small numbers
		return int64(b[0]>>1) ^ -int64(b[0]&1), b[1:], nil
	}
	v, n := binary.Varint(b)
	if n <= 0 {
		if n == 0 {
			return 0, nil, avroFail("truncated: a long needs more bytes")
		}
		return 0, nil, avroFail("long overflows 64 bits")
	}
	return v, b[n:], nil
}

func skipString(b []byte, utf bool) ([]byte, error) {
	n, rest, err := readLong(b)
	if err != nil {
		return nil, err
	}
	if n < 0 || n > int64(len(rest)) {
		return nil, avroFail("length %d, %d bytes left", n, len(rest))
	}
	if utf && !validUTF8(rest[:n]) {
		return nil, avroFail("string is not valid UTF-8")
	}
	return rest[n:], nil
}

// skipBlocks walks an array's or map's blocks: a count (negative: followed
// by the block's byte size), items, until a zero count.
func (nd *avroNode) skipBlocks(b []byte, depth int) ([]byte, error) {
	// Items of zero bytes (null, empty records) cost nothing to encode:
	// bound the total so a few bytes cannot claim 2^63 of them.
	limit := int64(len(b)) + 1<<16
	for i := 0; ; {
		n, rest, err := readLong(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if n == 0 {
			return b, nil
		}
		if n < 0 {
			if n == math.MinInt64 {
				return nil, avroFail("block count out of range")
			}
			n = -n
			if _, b, err = readLong(b); err != nil {
				return nil, err
			}
		}
		if n > limit-int64(i) {
			return nil, avroFail("block of %d items in %d bytes", n, len(b))
		}
		for ; n > 0; n-- {
			if nd.kind == kMap {
				if b, err = skipString(b, true); err != nil {
					return nil, within(err, strconv.Itoa(i))
				}
			}
			if b, err = nd.items.skip(b, depth+1); err != nil {
				return nil, within(err, strconv.Itoa(i))
			}
			i++
		}
	}
}

// validUTF8 is utf8.Valid with a faster path for ASCII, the common case:
// 32 bytes per step, one test.
func validUTF8(b []byte) bool {
	for len(b) >= 32 {
		x := binary.LittleEndian.Uint64(b[0:8]) | binary.LittleEndian.Uint64(b[8:16]) |
			binary.LittleEndian.Uint64(b[16:24]) | binary.LittleEndian.Uint64(b[24:32])
		if x&0x8080808080808080 != 0 {
			return utf8.Valid(b)
		}
		b = b[32:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return utf8.Valid(b)
		}
	}
	return true
}
