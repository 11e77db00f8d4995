package schema

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

// FuzzWireHeader feeds arbitrary bytes to the wire-format parsers a
// producer's record reaches first: never a panic, and what parses
// re-encodes to the same header.
func FuzzWireHeader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Add([]byte{0, 0, 0, 0, 1, 0})
	f.Add([]byte{0, 0, 0, 0, 7, 4, 2, 6, 'x'})
	f.Add([]byte{1, 0, 0, 0, 1})
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, payload, err := ParseHeader(b)
		if err != nil {
			return
		}
		if got := AppendHeader(nil, id, nil); !bytes.Equal(got, b[:WireHeaderLen]) {
			t.Fatalf("header %x re-encodes as %x", b[:WireHeaderLen], got)
		}
		idx, rest, err := ParseIndexes(payload)
		if err != nil {
			return
		}
		if len(idx) == 0 || len(idx) > maxIndexes || len(rest) > len(payload) {
			t.Fatalf("indexes %v, rest %d of %d", idx, len(rest), len(payload))
		}
	})
}

// FuzzAvroBinary checks arbitrary payloads against a schema with every
// Avro type: never a panic or a hang, only nil or an error.
func FuzzAvroBinary(f *testing.F) {
	s, err := Parse(Avro, `{"type":"record","name":"R","fields":[
		{"name":"b","type":"boolean"},{"name":"i","type":"int"},{"name":"l","type":"long"},
		{"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"s","type":"string"},
		{"name":"by","type":"bytes"},{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
		{"name":"fx","type":{"type":"fixed","name":"F","size":2}},
		{"name":"a","type":{"type":"array","items":["null","int"]}},
		{"name":"m","type":{"type":"map","values":"R2"}},
		{"name":"n","type":["null","R"]}]}`, []Dep{{Name: "R2", Text: `{"type":"record","name":"R2","fields":[]}`}})
	if err != nil {
		f.Fatal(err)
	}
	as := s.(*AvroSchema)
	f.Add([]byte{1, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 'x', 0, 0, 'a', 'b', 0, 0, 0})
	f.Add([]byte{1, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 1, 0xfe, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = as.ValidateBinary(b)
	})
}

// FuzzValidUTF8 holds the ASCII fast path to utf8.Valid.
func FuzzValidUTF8(f *testing.F) {
	f.Add([]byte("plain ascii text that is longer than thirty-two bytes"))
	f.Add([]byte("héllo wörld, longer than thirty-two bytes of text"))
	f.Add([]byte{0xff, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validUTF8(b), utf8.Valid(b); got != want {
			t.Fatalf("validUTF8(%q) = %v, utf8.Valid %v", b, got, want)
		}
	})
}

// FuzzProtobufMessage checks arbitrary payloads against a message with
// every kind of field: never a panic, only nil or an error.
func FuzzProtobufMessage(f *testing.F) {
	s, err := Parse(Protobuf, `syntax = "proto2";
package f;
message Inner { optional string s = 1; repeated int32 packed = 2 [packed = true]; }
message M {
  optional int32 i = 1; optional sint64 z = 2; optional fixed32 f32 = 3; optional double d = 4;
  optional string s = 5; optional bytes b = 6; optional Inner in = 7; repeated Inner many = 8;
  map<string, Inner> m = 9; required bool r = 10; optional group G = 11 { optional int32 x = 12; }
}`, nil)
	if err != nil {
		f.Fatal(err)
	}
	md, err := s.(*ProtobufSchema).Message([]int{1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{0x08, 0x01, 0x50, 0x01})
	f.Add([]byte{0x3a, 0x04, 0x0a, 0x02, 'h', 'i', 0x50, 0x00})
	f.Add([]byte{0x5b, 0x60, 0x01, 0x5c, 0x50, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = ValidateMessage(md, b)
	})
}
