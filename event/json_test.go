package event

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseJSONErrorsNameTheAttribute(t *testing.T) {
	for _, tc := range []struct{ in, field, reason string }{
		{`[1]`, "", "not a JSON object"},
		{`null`, "", "null"},
		{`{"id":"1","source":"s","type":"t"}`, "specversion", "required"},
		{`{"specversion":1.0,"source":"s","type":"t"}`, "specversion", "want a JSON string"},
		{`{"specversion":"1.0","source":"s","type":"t","time":"2026-13-01T00:00:00Z"}`, "time", "RFC 3339"},
		{`{"specversion":"1.0","source":"s","type":"t","id":5}`, "id", "want a JSON string"},
		{`{"specversion":"1.0","source":"s","type":"t","UPPER":"x"}`, "UPPER", "[a-z0-9]"},
		{`{"specversion":"1.0","source":"s","type":"t","averyveryverylongname1":"x"}`, "averyveryverylongname1", "1-20"},
		{`{"specversion":"1.0","source":"s","type":"t","e":[1]}`, "e", "array"},
		{`{"specversion":"1.0","source":"s","type":"t","e":1.5}`, "e", "whole number"},
		{`{"specversion":"1.0","source":"s","type":"t","kind":"query"}`, "kind", "event or command"},
		{`{"specversion":"1.0","source":"s","type":"t","data":1,"data_base64":"AA=="}`, "data_base64", "both"},
		{`{"specversion":"1.0","source":"s","type":"t","data_base64":5}`, "data_base64", "base64"},
	} {
		_, err := ParseJSON([]byte(tc.in))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Reason, tc.reason) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want field %q reason with %q", tc.in, err, tc.field, tc.reason)
		}
	}
	// Required attributes are Validate's job, so a caller can fill an id.
	e, err := ParseJSON([]byte(`{"specversion":"1.0","type":"t"}`))
	if err != nil {
		t.Fatal(err)
	}
	err = e.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "id: required") || !strings.Contains(err.Error(), "source: required") {
		t.Errorf("Validate: %v", err)
	}
}

func TestJSONData(t *testing.T) {
	for _, tc := range []struct {
		in, ct, data, out string
	}{
		{`"data":{"a": 1}`, "application/json", `{"a": 1}`, `"data":{"a":1}`},
		{`"datacontenttype":"text/plain","data":"héllo"`, "text/plain", "héllo", `"data":"héllo"`},
		{`"datacontenttype":"application/vnd.x+json","data":"s"`, "application/vnd.x+json", `"s"`, `"data":"s"`},
		{`"data_base64":"AP8="`, "", "\x00\xff", `"data_base64":"AP8="`},
		{`"datacontenttype":"text/plain","data_base64":"/w=="`, "text/plain", "\xff", `"data_base64":"/w=="`},
	} {
		e, err := ParseJSON([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"t",` + tc.in + `}`))
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if e.DataContentType != tc.ct || string(e.Data) != tc.data {
			t.Errorf("%s: content type %q data %q", tc.in, e.DataContentType, e.Data)
		}
		out, err := MarshalJSON(e)
		if err != nil || !strings.Contains(string(out), tc.out) {
			t.Errorf("%s: marshal %s (%v), want %s", tc.in, out, err, tc.out)
		}
	}
}

func TestNewIDv7(t *testing.T) {
	before := time.Now().UnixMilli()
	a, b := NewIDv7(), NewIDv7()
	if len(a) != 36 || a[14] != '7' || !strings.ContainsAny(a[19:20], "89ab") || a == b {
		t.Fatalf("ids %s %s", a, b)
	}
	ms := strings.ReplaceAll(a[:13], "-", "")
	var n int64
	for _, c := range ms {
		n = n*16 + int64(strings.IndexRune("0123456789abcdef", c))
	}
	if n < before || n > time.Now().UnixMilli() {
		t.Errorf("id %s holds time %d, not now (%d)", a, n, before)
	}
}

func TestDecodeAnyStructured(t *testing.T) {
	m := Message{Key: []byte("k"), Value: []byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","data":[1]}`),
		Headers: []Header{{Key: "content-type", Value: []byte("application/cloudevents+json; charset=utf-8")}}}
	e, err := DecodeAny(m)
	if err != nil || e.ID != "1" || e.PartitionKey != "k" || string(e.Data) != "[1]" || e.DataContentType != "application/json" {
		t.Fatalf("%+v %v", e, err)
	}
	m.Value = []byte(`{"specversion":"1.0","id":"1","type":"t"}`)
	if _, err := DecodeAny(m); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "source") {
		t.Errorf("invalid structured record: %v", err)
	}
	// Binary mode still goes through Decode; a ce_partitionkey header
	// fills PartitionKey when the key is empty.
	e, err = DecodeAny(Message{Headers: []Header{{HeaderSpecVersion, []byte("1.0")}, {HeaderID, []byte("2")}, {HeaderSource, []byte("s")},
		{HeaderType, []byte("t")}, {"ce_partitionkey", []byte("pk")}}})
	if err != nil || e.PartitionKey != "pk" || len(e.Extensions) != 0 {
		t.Errorf("binary with ce_partitionkey: %+v %v", e, err)
	}
}

// FuzzParseJSON: never panics; errors are FieldErrors; what parses and
// validates renders and parses back to the same attributes.
func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1},"x":true,"n":-3}`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/xml","data":"<a/>","time":"2026-01-02T03:04:05.999999999-07:00"}`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AAAA","aggregateid":"a","aggregateversion":9}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseJSON(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if e.Validate() != nil {
			return
		}
		out, err := MarshalJSON(e)
		if err != nil {
			t.Fatalf("valid event does not marshal: %v", err)
		}
		again, err := ParseJSON(out)
		if err != nil {
			t.Fatalf("%s does not parse back: %v", out, err)
		}
		if again.ID != e.ID || again.Source != e.Source || again.Type != e.Type || !again.Time.Equal(e.Time) || again.Kind != e.Kind ||
			again.AggregateVersion != e.AggregateVersion || len(again.Extensions) != len(e.Extensions) {
			t.Fatalf("round trip:\n in %#v\nout %#v", e, again)
		}
	})
}
