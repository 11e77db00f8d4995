package binrec

import (
	"encoding/binary"
	"errors"
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
