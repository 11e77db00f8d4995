package stream

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/event"
)

// Field is a compiled path into a CloudEvent: an attribute ("id", "source",
// "type", "subject", "time", "partitionkey", "correlationid", "causationid",
// "aggregateid"), an extension ("ext.name" or any other bare name), or a
// JSON path into the data ("data.user", "data.order.total"). A Field is
// immutable and safe for concurrent use.
type Field struct {
	path string
	attr attrKind
	ext  string
	data []string // data path segments (attr == attrData)
}

type attrKind uint8

const (
	attrData attrKind = iota
	attrID
	attrSource
	attrType
	attrSubject
	attrTime
	attrPartitionKey
	attrCorrelationID
	attrCausationID
	attrAggregateID
	attrExt
)

var attrNames = map[string]attrKind{
	"id": attrID, "source": attrSource, "type": attrType, "subject": attrSubject,
	"time": attrTime, "partitionkey": attrPartitionKey, "correlationid": attrCorrelationID,
	"causationid": attrCausationID, "aggregateid": attrAggregateID,
}

// ParseField compiles a field path. The data path's segments are object
// member names separated by dots; an empty segment is refused.
func ParseField(path string) (Field, error) {
	if path == "" {
		return Field{}, fmt.Errorf("field path is empty")
	}
	if path == "data" {
		return Field{path: path, attr: attrData}, nil
	}
	if rest, ok := strings.CutPrefix(path, "data."); ok {
		segs := strings.Split(rest, ".")
		for i, s := range segs {
			if s == "" {
				return Field{}, fmt.Errorf("field path %q: segment %d is empty", path, i+2)
			}
		}
		return Field{path: path, attr: attrData, data: segs}, nil
	}
	if k, ok := attrNames[path]; ok {
		return Field{path: path, attr: k}, nil
	}
	name := strings.TrimPrefix(path, "ext.")
	if !event.ValidAttributeName(name) {
		return Field{}, fmt.Errorf("field path %q: not an attribute, extension (1-20 of [a-z0-9]) or data.<path>", path)
	}
	return Field{path: path, attr: attrExt, ext: name}, nil
}

// MustField is ParseField that panics on error, for constant paths.
func MustField(path string) Field {
	f, err := ParseField(path)
	if err != nil {
		panic(err)
	}
	return f
}

// String returns the path the Field was compiled from.
func (f Field) String() string { return f.path }

// IsZero reports whether f is the zero Field (no path).
func (f Field) IsZero() bool { return f.path == "" }

// Raw returns the field's value: for attributes their string form (quoted
// false), for data the raw JSON value (quoted true when it is a JSON string,
// in which case the returned bytes are the string's contents without
// unescaping). ok is false when the field is absent.
func (f Field) Raw(e *event.Event) (v []byte, quoted, ok bool) {
	var s string
	switch f.attr {
	case attrData:
		raw, ok := jsonLookup(e.Data, f.data)
		if !ok {
			return nil, false, false
		}
		if len(raw) >= 2 && raw[0] == '"' {
			return raw[1 : len(raw)-1], true, true
		}
		return raw, false, true
	case attrID:
		s = e.ID
	case attrSource:
		s = e.Source
	case attrType:
		s = e.Type
	case attrSubject:
		s = e.Subject
	case attrTime:
		if e.Time.IsZero() {
			return nil, false, false
		}
		return []byte(e.Time.Format(time.RFC3339Nano)), true, true
	case attrPartitionKey:
		s = e.PartitionKey
	case attrCorrelationID:
		s = e.CorrelationID
	case attrCausationID:
		s = e.CausationID
	case attrAggregateID:
		s = e.AggregateID
	case attrExt:
		var ok bool
		s, ok = e.Extensions[f.ext]
		if !ok {
			return nil, false, false
		}
		return []byte(s), true, true
	}
	if s == "" {
		return nil, false, false
	}
	return stringBytes(s), true, true
}

// AppendJSON appends the field's value as JSON: a data value as it is in
// the event's JSON, an attribute as a JSON string. ok is false when the
// field is absent.
func (f Field) AppendJSON(b []byte, e *event.Event) (_ []byte, ok bool) {
	v, quoted, ok := f.Raw(e)
	switch {
	case !ok:
		return b, false
	case f.attr == attrData && quoted: // the contents of a JSON string, still escaped
		b = append(b, '"')
		b = append(b, v...)
		return append(b, '"'), true
	case f.attr == attrData:
		return append(b, v...), true
	}
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, c := range v {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"'), true
}

// Number returns the field as a float64: a JSON number, or a string holding
// one. ok is false when the field is absent or not a finite number.
func (f Field) Number(e *event.Event) (float64, bool) {
	v, _, ok := f.Raw(e)
	if !ok {
		return 0, false
	}
	return parseNumber(v)
}

func parseNumber(v []byte) (float64, bool) {
	// Fast path for small integers, the common case of counts and amounts.
	if n := len(v); n > 0 && n < 16 {
		neg := v[0] == '-'
		i := 0
		if neg {
			i = 1
		}
		if i < n {
			var x int64
			j := i
			for ; j < n && v[j] >= '0' && v[j] <= '9'; j++ {
				x = x*10 + int64(v[j]-'0')
			}
			if j == n {
				if neg {
					x = -x
				}
				return float64(x), true
			}
		}
	}
	x, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		return 0, false
	}
	return x, true
}

// Time returns the field as an instant: the CloudEvent time attribute, or
// an RFC 3339 string, or a number of milliseconds since the Unix epoch.
func (f Field) Time(e *event.Event) (time.Time, error) {
	if f.attr == attrTime {
		if e.Time.IsZero() {
			return time.Time{}, fmt.Errorf("event time: attribute %q is missing", f.path)
		}
		return e.Time, nil
	}
	v, quoted, ok := f.Raw(e)
	if !ok {
		return time.Time{}, fmt.Errorf("event time: field %q is missing", f.path)
	}
	if quoted {
		t, err := time.Parse(time.RFC3339Nano, string(v))
		if err != nil {
			return time.Time{}, fmt.Errorf("event time: field %q: %q is not an RFC 3339 time", f.path, v)
		}
		return t, nil
	}
	ms, ok := parseNumber(v)
	if !ok || ms != math.Trunc(ms) {
		return time.Time{}, fmt.Errorf("event time: field %q: %.40s is neither RFC 3339 nor whole epoch milliseconds", f.path, v)
	}
	return time.UnixMilli(int64(ms)), nil
}

// OpHolds reports whether a comparison whose three-way result is c (as
// from strings.Compare) satisfies op: "=" or "==", "!=", "<", "<=", ">",
// ">=" (any other op is taken as ">=").
func OpHolds(op string, c int) bool {
	switch op {
	case "=", "==":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	default:
		return c >= 0
	}
}
