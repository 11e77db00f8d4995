package schema

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
)

// ValidateBinary checks that b is exactly one datum of the schema in
// Avro's binary encoding, without decoding it into values: lengths and
// indexes in range, ints that fit, strings of UTF-8, nothing left over.
// The error names the field path.
func (s *AvroSchema) ValidateBinary(b []byte) error {
	rest, err := skipAvro(s.Schema, b, 0)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%d bytes after the datum", len(rest))
	}
	return nil
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

func readLong(b []byte) (int64, []byte, error) {
	v, n := binary.Varint(b)
	if n <= 0 {
		if n == 0 {
			return 0, nil, avroFail("truncated: a long needs more bytes")
		}
		return 0, nil, avroFail("long overflows 64 bits")
	}
	return v, b[n:], nil
}

const maxAvroDepth = 256

func skipAvro(s avro.Schema, b []byte, depth int) ([]byte, error) {
	if depth > maxAvroDepth {
		return nil, avroFail("nested deeper than %d", maxAvroDepth)
	}
	switch t := s.(type) {
	case *avro.RefSchema:
		return skipAvro(t.Schema(), b, depth)
	case *avro.RecordSchema:
		var err error
		for _, f := range t.Fields() {
			if b, err = skipAvro(f.Type(), b, depth+1); err != nil {
				return nil, within(err, f.Name())
			}
		}
		return b, nil
	case *avro.UnionSchema:
		i, rest, err := readLong(b)
		if err != nil {
			return nil, err
		}
		types := t.Types()
		if i < 0 || i >= int64(len(types)) {
			return nil, avroFail("union branch %d out of range [0, %d)", i, len(types))
		}
		return skipAvro(types[i], rest, depth+1)
	case *avro.EnumSchema:
		i, rest, err := readLong(b)
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(t.Symbols())) {
			return nil, avroFail("enum %s index %d out of range [0, %d)", t.FullName(), i, len(t.Symbols()))
		}
		return rest, nil
	case *avro.FixedSchema:
		if len(b) < t.Size() {
			return nil, avroFail("fixed %s needs %d bytes, %d left", t.FullName(), t.Size(), len(b))
		}
		return b[t.Size():], nil
	case *avro.ArraySchema:
		return skipBlocks(b, depth, func(b []byte) ([]byte, error) { return skipAvro(t.Items(), b, depth+1) })
	case *avro.MapSchema:
		return skipBlocks(b, depth, func(b []byte) ([]byte, error) {
			b, err := skipString(b, true)
			if err != nil {
				return nil, err
			}
			return skipAvro(t.Values(), b, depth+1)
		})
	}
	switch s.Type() {
	case avro.Null:
		return b, nil
	case avro.Boolean:
		if len(b) < 1 {
			return nil, avroFail("truncated boolean")
		}
		if b[0] > 1 {
			return nil, avroFail("boolean byte %d, want 0 or 1", b[0])
		}
		return b[1:], nil
	case avro.Int:
		v, rest, err := readLong(b)
		if err != nil {
			return nil, err
		}
		if v < math.MinInt32 || v > math.MaxInt32 {
			return nil, avroFail("int %d out of 32-bit range", v)
		}
		return rest, nil
	case avro.Long:
		_, rest, err := readLong(b)
		return rest, err
	case avro.Float:
		if len(b) < 4 {
			return nil, avroFail("truncated float")
		}
		return b[4:], nil
	case avro.Double:
		if len(b) < 8 {
			return nil, avroFail("truncated double")
		}
		return b[8:], nil
	case avro.String:
		return skipString(b, true)
	case avro.Bytes:
		return skipString(b, false)
	}
	return nil, avroFail("unsupported type %s", s.Type())
}

func skipString(b []byte, utf bool) ([]byte, error) {
	n, rest, err := readLong(b)
	if err != nil {
		return nil, err
	}
	if n < 0 || n > int64(len(rest)) {
		return nil, avroFail("length %d, %d bytes left", n, len(rest))
	}
	if utf && !utf8.Valid(rest[:n]) {
		return nil, avroFail("string is not valid UTF-8")
	}
	return rest[n:], nil
}

// skipBlocks walks an array's or map's blocks: a count (negative: followed
// by the block's byte size), items, until a zero count.
func skipBlocks(b []byte, depth int, item func([]byte) ([]byte, error)) ([]byte, error) {
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
			if b, err = item(b); err != nil {
				return nil, within(err, fmt.Sprint(i))
			}
			i++
		}
	}
}
