package binrec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

var errTest = errors.New("bad test record")

func TestRoundTripAndBounds(t *testing.T) {
	b := binary.BigEndian.AppendUint16(nil, 3) // version
	b = AppendStr16(b, "group")
	b = AppendBytes32(b, []byte{1, 2})
	b = AppendBytes32(b, nil)
	b = binary.BigEndian.AppendUint32(b, 2) // a count of two 8-byte items
	b = binary.BigEndian.AppendUint64(b, 7)
	b = binary.BigEndian.AppendUint64(b, 9)

	r := NewReader(b, errTest, 3)
	r.Version("value")
	if s := r.Str16("name"); s != "group" {
		t.Fatalf("Str16 = %q", s)
	}
	if v := r.Bytes32("data"); len(v) != 2 || v[1] != 2 {
		t.Fatalf("Bytes32 = %v", v)
	}
	if v := r.Bytes32("empty"); v != nil {
		t.Fatalf("empty Bytes32 = %v, want nil", v)
	}
	if n := r.Count("item count", 8); n != 2 || r.U64("a") != 7 || r.U64("b") != 9 {
		t.Fatalf("count %d", n)
	}
	if err := r.End("value"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		b    []byte
		read func(r *Reader)
		want string
	}{
		{"wrong version", binary.BigEndian.AppendUint16(nil, 4), func(r *Reader) { r.Version("key") }, "key version 4 (this build reads 3)"},
		{"short", []byte{0}, func(r *Reader) { r.U32("offset") }, "offset runs past the end"},
		{"huge count", binary.BigEndian.AppendUint32(nil, 1<<30), func(r *Reader) { r.Count("member count", 16) }, "member count 1073741824 exceeds the value"},
		{"huge length", binary.BigEndian.AppendUint32(nil, 1<<31), func(r *Reader) { r.Bytes32("metadata") }, "metadata length runs past the end"},
		{"trailing", []byte{0, 1, 2}, func(r *Reader) { r.U8("kind"); r.End("key") }, "2 bytes after the key"},
	} {
		r := NewReader(tc.b, errTest, 3)
		tc.read(r)
		r.U64("after a failure") // later reads keep the first failure
		if err := r.Err(); !errors.Is(err, errTest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestVarintRoundTrip(t *testing.T) {
	us := []uint64{0, 1, 127, 128, 300, 1<<32 - 1, 1 << 32, math.MaxInt64, math.MaxUint64}
	is := []int64{0, -1, 1, -64, 64, math.MinInt32, math.MaxInt32, math.MinInt64, math.MaxInt64}
	var b []byte
	for _, u := range us {
		b = binary.AppendUvarint(b, u)
	}
	for _, i := range is {
		b = binary.AppendVarint(b, i)
	}
	b = binary.AppendUvarint(b, 3) // a count of three items of at least 2 bytes
	for _, s := range []string{"ab", "", "é"} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, 0) // empty bytes
	b = binary.AppendUvarint(b, 3)
	b = append(b, 7, 8, 9)

	r := NewReader(b, errTest, 1)
	for _, u := range us {
		if v := r.Uvarint("u"); v != u {
			t.Fatalf("Uvarint = %d, want %d", v, u)
		}
	}
	for _, i := range is {
		if v := r.Varint("i"); v != i {
			t.Fatalf("Varint = %d, want %d", v, i)
		}
	}
	if n := r.UvarintCount("name count", 2); n != 3 {
		t.Fatalf("UvarintCount = %d", n)
	}
	for _, want := range []string{"ab", "", "é"} {
		if s := r.UvarintStr("name"); s != want {
			t.Fatalf("UvarintStr = %q, want %q", s, want)
		}
	}
	if v := r.UvarintBytes("empty"); v != nil {
		t.Fatalf("empty UvarintBytes = %v, want nil", v)
	}
	v := r.UvarintBytes("data")
	if string(v) != "\x07\x08\x09" {
		t.Fatalf("UvarintBytes = %v", v)
	}
	v[0] = 0 // a copy, not an alias of b
	if b[len(b)-3] != 7 {
		t.Fatal("UvarintBytes aliases the input")
	}
	if r.Len() != 0 {
		t.Fatalf("Len = %d after reading everything", r.Len())
	}
	if err := r.End("value"); err != nil {
		t.Fatal(err)
	}

	// Every proper prefix of the record fails cleanly.
	for n := range len(b) {
		r := NewReader(b[:n], errTest, 1)
		for range us {
			r.Uvarint("u")
		}
		for range is {
			r.Varint("i")
		}
		for range r.UvarintCount("name count", 2) {
			r.UvarintStr("name")
		}
		r.UvarintBytes("empty")
		r.UvarintBytes("data")
		if err := r.End("value"); !errors.Is(err, errTest) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
}

func TestVarintBounds(t *testing.T) {
	maxU := binary.AppendUvarint(nil, math.MaxUint64)
	overlong := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01} // 12 bytes
	tenth := append(bytes.Repeat([]byte{0xff}, 9), 0x02)                                       // bit 64 set
	count := func(n uint64, rest int) []byte {
		return append(binary.AppendUvarint(nil, n), make([]byte, rest)...)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		read func(r *Reader)
		want string
	}{
		{"empty uvarint", nil, func(r *Reader) { r.Uvarint("offset") }, "offset runs past the end"},
		{"truncated uvarint", maxU[:9], func(r *Reader) { r.Uvarint("offset") }, "offset runs past the end"},
		{"truncated varint", []byte{0xff}, func(r *Reader) { r.Varint("delta") }, "delta runs past the end"},
		{"overlong uvarint", overlong, func(r *Reader) { r.Uvarint("offset") }, "offset overflows 64 bits"},
		{"overflowing uvarint", tenth, func(r *Reader) { r.Uvarint("offset") }, "offset overflows 64 bits"},
		{"overlong varint", overlong, func(r *Reader) { r.Varint("delta") }, "delta overflows 64 bits"},
		{"overflowing varint", tenth, func(r *Reader) { r.Varint("delta") }, "delta overflows 64 bits"},
		{"count past the bytes", count(3, 23), func(r *Reader) { r.UvarintCount("float count", 8) }, "float count 3 exceeds what the 23 bytes left can hold"},
		{"huge count", maxU, func(r *Reader) { r.UvarintCount("run count", 1) }, "run count 18446744073709551615 exceeds what the 0 bytes left can hold"},
		{"bad count", overlong, func(r *Reader) { r.UvarintCount("run count", 1) }, "run count overflows 64 bits"},
		{"length past the bytes", count(4, 3), func(r *Reader) { r.UvarintBytes("key") }, "key length 4 exceeds the 3 bytes left"},
		{"huge length", maxU, func(r *Reader) { r.UvarintStr("name") }, "name length 18446744073709551615 exceeds the 0 bytes left"},
		{"truncated length", []byte{0x80}, func(r *Reader) { r.UvarintStr("name") }, "name length runs past the end"},
	} {
		r := NewReader(tc.b, errTest, 1)
		tc.read(r)
		// Later reads return zero values and keep the first failure.
		if r.Uvarint("u") != 0 || r.Varint("i") != 0 || r.UvarintCount("c", 1) != 0 || r.UvarintBytes("b") != nil || r.UvarintStr("s") != "" {
			t.Errorf("%s: a read after the failure returned a value", tc.name)
		}
		if err := r.Err(); !errors.Is(err, errTest) || !strings.HasSuffix(err.Error(), ": "+tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}

	// A count exactly at the bound is accepted.
	r := NewReader(count(3, 24), errTest, 1)
	if n := r.UvarintCount("float count", 8); n != 3 || r.Err() != nil || r.Len() != 24 {
		t.Fatalf("count at the bound: %d %v", n, r.Err())
	}
}
