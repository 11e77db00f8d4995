package event

import (
	"encoding/hex"
	"errors"
	"unicode/utf8"
)

// TraceParent is a parsed W3C traceparent header (version 00).
type TraceParent struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
}

// Sampled reports the sampled flag.
func (t TraceParent) Sampled() bool { return t.Flags&1 == 1 }

// String returns the header form "00-<trace-id>-<span-id>-<flags>".
func (t TraceParent) String() string {
	b := make([]byte, 0, 55)
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, t.TraceID[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, t.SpanID[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, []byte{t.Flags})
	return string(b)
}

// ParseTraceParent parses a W3C traceparent. It accepts version 00 exactly
// and, as the W3C spec asks, a higher version whose first four fields parse.
// All-zero trace or span ids are invalid.
func ParseTraceParent(s string) (TraceParent, error) {
	var t TraceParent
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return t, errors.New("traceparent: want 00-<32 hex>-<16 hex>-<2 hex>")
	}
	var ver [1]byte
	if !lowerHex(s[0:2]) || !lowerHex(s[3:35]) || !lowerHex(s[36:52]) || !lowerHex(s[53:55]) {
		return t, errors.New("traceparent: fields must be lower-case hex")
	}
	hex.Decode(ver[:], []byte(s[0:2]))
	switch {
	case ver[0] == 0xff:
		return t, errors.New("traceparent: version ff is invalid")
	case ver[0] == 0 && len(s) != 55:
		return t, errors.New("traceparent: version 00 must be 55 characters")
	case ver[0] != 0 && len(s) > 55 && s[55] != '-':
		return t, errors.New("traceparent: malformed trailing fields")
	}
	hex.Decode(t.TraceID[:], []byte(s[3:35]))
	hex.Decode(t.SpanID[:], []byte(s[36:52]))
	var fl [1]byte
	hex.Decode(fl[:], []byte(s[53:55]))
	t.Flags = fl[0]
	if t.TraceID == [16]byte{} {
		return t, errors.New("traceparent: all-zero trace id")
	}
	if t.SpanID == [8]byte{} {
		return t, errors.New("traceparent: all-zero span id")
	}
	return t, nil
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func utf8Valid(s string) bool { return utf8.ValidString(s) }
