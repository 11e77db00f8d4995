package event

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file holds the CloudEvents JSON event format (structured content
// mode, application/cloudevents+json) and the attribute rules every content
// mode shares.

// ContentTypeJSON is the media type of one event in the JSON event format.
const ContentTypeJSON = "application/cloudevents+json"

// ContentTypeBatchJSON is the media type of a JSON array of events.
const ContentTypeBatchJSON = "application/cloudevents-batch+json"

// NewIDv7 returns a version 7 UUID (48 bits of Unix milliseconds, then
// random bits) in its canonical text form. IDs made later sort later, which
// keeps generated ids friendly to indexes and logs.
func NewIDv7() string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(time.Now().UnixMilli()))
	copy(b[0:6], ms[2:8])
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	return uuidString(b)
}

// ValidAttributeName reports whether name is a legal CloudEvents attribute
// name: 1 to 20 characters of [a-z0-9].
func ValidAttributeName(name string) bool { return validExtName(name) }

// SetAttribute sets the context attribute name (as on the wire, lower case,
// without any "ce-" or "ce_" prefix) from its string form: the form HTTP
// and Kafka headers carry. "specversion" must be "1.0"; "time" must be
// RFC 3339; "kind" event or command; "aggregateversion" a base-10 integer;
// "partitionkey" sets PartitionKey. Other names become Extensions. The
// error, if any, is a *FieldError naming the attribute.
func (e *Event) SetAttribute(name, v string) error {
	bad := func(format string, args ...any) error {
		return &FieldError{Field: name, Reason: fmt.Sprintf(format, args...)}
	}
	if !validExtName(name) {
		return bad("attribute name must be 1-20 characters of [a-z0-9]")
	}
	switch name {
	case "specversion":
		if v != SpecVersion {
			return bad("%q: Herald accepts CloudEvents %s", v, SpecVersion)
		}
	case "id":
		e.ID = v
	case "source":
		e.Source = v
	case "type":
		e.Type = v
	case "subject":
		e.Subject = v
	case "datacontenttype":
		e.DataContentType = v
	case "time":
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return bad("%q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", v)
		}
		e.Time = t.UTC()
	case "kind":
		k, err := ParseKind(v)
		if err != nil {
			return bad("%q: want event or command", v)
		}
		e.Kind = k
	case "partitionkey":
		e.PartitionKey = v
	case "correlationid":
		e.CorrelationID = v
	case "causationid":
		e.CausationID = v
	case "traceparent":
		e.TraceParent = v
	case "aggregateid":
		e.AggregateID = v
	case "aggregateversion":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return bad("%q: want a base-10 integer", v)
		}
		e.AggregateVersion = n
	case "data":
		return bad("reserved: data is not a context attribute")
	default:
		if e.Extensions == nil {
			e.Extensions = make(map[string]string)
		}
		e.Extensions[name] = v
	}
	return nil
}

// ParseJSON parses one event in the CloudEvents JSON event format. It
// checks the format (attribute names and JSON types, specversion, time,
// data versus data_base64) but not the required attributes, so a caller
// may fill a missing id before calling Validate. Every error is a
// *FieldError (wrapping ErrInvalid) naming the attribute, or several
// joined.
//
// Data: data_base64 is decoded; data that is a JSON string under a
// non-JSON datacontenttype is that string's text; any other data is its
// JSON text, and an absent datacontenttype then becomes application/json.
func ParseJSON(b []byte) (*Event, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, &FieldError{Field: "", Reason: "not a JSON object: " + jsonReason(err)}
	}
	return ParseJSONObject(obj)
}

// ParseJSONObject is ParseJSON of an object already split into its
// members (as a streaming decoder of a batch yields them). A nil map is
// JSON null and refused.
func ParseJSONObject(obj map[string]json.RawMessage) (*Event, error) {
	if obj == nil {
		return nil, &FieldError{Field: "", Reason: "want a JSON object, got null"}
	}
	return parseObject(obj)
}

func jsonReason(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return "got a JSON " + typ.Value
	}
	return err.Error()
}

func parseObject(obj map[string]json.RawMessage) (*Event, error) {
	e := &Event{}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if _, ok := obj["specversion"]; !ok {
		bad("specversion", "required")
	}
	data, hasData := obj["data"]
	if hasData && isNull(data) {
		hasData = false
	}
	data64, hasData64 := obj["data_base64"]
	if hasData64 && isNull(data64) {
		hasData64 = false
	}
	for _, name := range sortedKeys(obj) {
		raw := obj[name]
		if name == "data" || name == "data_base64" {
			continue
		}
		if !validExtName(name) {
			bad(name, "attribute name must be 1-20 characters of [a-z0-9]")
			continue
		}
		if isNull(raw) {
			continue // a null attribute is an absent one
		}
		if isStringAttr(name) && jsonKind(raw) != "string" {
			bad(name, "want a JSON string, got %s", jsonKind(raw))
			continue
		}
		v, err := scalarString(raw)
		if err != nil {
			bad(name, "%v", err)
			continue
		}
		if err := e.SetAttribute(name, v); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case hasData && hasData64:
		bad("data_base64", "data and data_base64 are both set; give one")
	case hasData64:
		var s string
		if err := json.Unmarshal(data64, &s); err != nil {
			bad("data_base64", "want a JSON string of base64, got %s", jsonKind(data64))
			break
		}
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			bad("data_base64", "not base64: %v", err)
			break
		}
		e.Data = d
	case hasData:
		if data[0] == '"' && !IsJSONContentType(e.DataContentType) {
			e.Data = jsonStringBytes(data)
			if e.Data == nil {
				var s string
				if err := json.Unmarshal(data, &s); err != nil {
					bad("data", "%s", jsonReason(err))
					break
				}
				e.Data = []byte(s)
			}
			break
		}
		e.Data = bytes.Clone(data)
		if e.DataContentType == "" {
			e.DataContentType = "application/json"
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return e, nil
}

// isStringAttr reports whether the spec types the attribute as String (or
// URI/Timestamp, carried as JSON strings): such an attribute may not be a
// JSON number or boolean. Extensions may be any scalar.
func isStringAttr(name string) bool {
	switch name {
	case "specversion", "id", "source", "type", "subject", "datacontenttype", "dataschema", "time":
		return true
	}
	return false
}

// jsonStringBytes returns the text of a valid JSON string literal without
// escapes, copied, or nil when it has escapes or is not valid UTF-8 (the
// caller then decodes it the slow way). Large text data is the common
// case and is otherwise scanned three times.
func jsonStringBytes(raw json.RawMessage) []byte {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil
	}
	in := raw[1 : len(raw)-1]
	if bytes.IndexByte(in, '\\') >= 0 || bytes.IndexByte(in, '"') >= 0 || !utf8.Valid(in) {
		return nil
	}
	for _, c := range in {
		if c < 0x20 {
			return nil
		}
	}
	return bytes.Clone(in)
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// scalarString returns a JSON string's text, or a number's or boolean's
// canonical text. Objects and arrays are refused: CloudEvents attributes
// are scalars.
func scalarString(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return "", errors.New("empty value")
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errors.New(jsonReason(err))
		}
		return s, nil
	case string(raw) == "true" || string(raw) == "false":
		return string(raw), nil
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return "", fmt.Errorf("number %s: want a whole number", raw)
		}
		return strconv.FormatInt(n, 10), nil
	}
	return "", fmt.Errorf("want a string, number or boolean, got %s", jsonKind(raw))
}

func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// IsJSONContentType reports whether a datacontenttype is JSON
// (application/json, text/json or any +json suffix); an empty one counts as
// JSON, as the JSON event format implies.
func IsJSONContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

func isTextContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/xml" || strings.HasSuffix(mt, "+xml")
}

// MarshalJSON returns e in the CloudEvents JSON event format. Data goes in
// data as JSON when the content type is JSON and the bytes are valid JSON,
// as a string when the content type is text and the bytes are UTF-8, and
// in data_base64 otherwise. Herald's extensions appear as attributes
// (partitionkey included); kind only when it is a command.
func MarshalJSON(e *Event) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"specversion":"1.0"`)
	str := func(k, v string) {
		if v == "" {
			return
		}
		buf.WriteString(`,"` + k + `":`)
		writeJSONString(&buf, v)
	}
	str("id", e.ID)
	str("source", e.Source)
	str("type", e.Type)
	str("subject", e.Subject)
	if !e.Time.IsZero() {
		str("time", e.Time.UTC().Format(time.RFC3339Nano))
	}
	str("datacontenttype", e.DataContentType)
	if e.Kind == KindCommand {
		str("kind", e.Kind.String())
	}
	str("partitionkey", e.PartitionKey)
	str("correlationid", e.CorrelationID)
	str("causationid", e.CausationID)
	str("traceparent", e.TraceParent)
	str("aggregateid", e.AggregateID)
	if e.AggregateVersion != 0 {
		str("aggregateversion", strconv.FormatInt(e.AggregateVersion, 10))
	}
	for _, k := range sortedKeys(e.Extensions) {
		if reserved[k] || !validExtName(k) {
			return nil, &FieldError{Field: k, Reason: "not a valid extension name"}
		}
		buf.WriteString(`,"` + k + `":`)
		writeJSONString(&buf, e.Extensions[k])
	}
	if e.Data != nil {
		switch {
		case IsJSONContentType(e.DataContentType) && json.Valid(e.Data):
			buf.WriteString(`,"data":`)
			if err := json.Compact(&buf, e.Data); err != nil {
				return nil, err
			}
		case isTextContentType(e.DataContentType) && utf8.Valid(e.Data):
			buf.WriteString(`,"data":`)
			writeJSONString(&buf, string(e.Data))
		default:
			buf.WriteString(`,"data_base64":"`)
			buf.WriteString(base64.StdEncoding.EncodeToString(e.Data))
			buf.WriteByte('"')
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // a string always encodes
	buf.Truncate(buf.Len() - 1) // Encode's newline
}
