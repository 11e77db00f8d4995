package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/internal/httpjson"
)

// This file holds the CloudEvents HTTP protocol binding: the three content
// modes a publish request may use, decoded into events. The decoders take
// untrusted bytes: they never panic (FuzzDecodeHTTP) and every error is an
// *httpjson.Error naming the attribute.

// Content modes of a publish request.
const (
	modeBinary     = "binary"
	modeStructured = "structured"
	modeBatch      = "batch"
	modeRecords    = "records"
)

// contentMode tells a publish request's content mode: binary when a
// ce-specversion header is present, else by Content-Type.
func contentMode(h http.Header) (string, error) {
	if len(h.Values("Ce-Specversion")) > 0 {
		return modeBinary, nil
	}
	ct := h.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		return "", httpjson.Errorf(httpjson.CodeUnsupportedMedia, "Content-Type",
			"%q: want %s, %s, application/json (records), or binary mode (ce-* headers)", ct, event.ContentTypeJSON, event.ContentTypeBatchJSON)
	}
	switch mt {
	case event.ContentTypeJSON:
		return modeStructured, nil
	case event.ContentTypeBatchJSON:
		return modeBatch, nil
	case "application/json":
		return modeRecords, nil
	}
	return "", httpjson.Errorf(httpjson.CodeUnsupportedMedia, "Content-Type",
		"%q without ce-specversion: want %s, %s, application/json (records), or binary mode (ce-* headers)", mt, event.ContentTypeJSON, event.ContentTypeBatchJSON)
}

// decodeBinary reads an event in binary content mode: every context
// attribute in a ce-<name> header (percent-encoded), datacontenttype in
// Content-Type, the body as data.
func decodeBinary(h http.Header, body []byte) (*event.Event, error) {
	e := &event.Event{}
	// NB: sorted header order makes the first error reported deterministic.
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vs := h[k]
		if len(k) < 3 || !strings.EqualFold(k[:3], "ce-") {
			continue
		}
		name := strings.ToLower(k[3:])
		if len(vs) != 1 {
			return nil, invalid(name, "header %s is repeated; an attribute has one value", k)
		}
		if !event.ValidAttributeName(name) {
			return nil, invalid(name, "header %s: attribute name must be 1-20 characters of [a-z0-9]", k)
		}
		v, err := percentDecode(vs[0])
		if err != nil {
			return nil, invalid(name, "header %s: %v", k, err)
		}
		if err := e.SetAttribute(name, v); err != nil {
			return nil, fieldErrors(err, "")
		}
	}
	if ct := h.Get("Content-Type"); ct != "" {
		e.DataContentType = ct
	}
	if len(body) > 0 {
		e.Data = body
	}
	return finishEvent(e, "")
}

// percentDecode undoes the HTTP binding's percent-encoding (UTF-8 bytes
// as %XX; no '+' for space).
func percentDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	v, err := url.PathUnescape(s)
	if err != nil {
		return "", fmt.Errorf("bad percent-encoding in %q", s)
	}
	return v, nil
}

// decodeStructured reads one event in the JSON event format.
func decodeStructured(body []byte) (*event.Event, error) {
	e, err := event.ParseJSON(body)
	if err != nil {
		return nil, fieldErrors(err, "")
	}
	return finishEvent(e, "")
}

// decodeBatch reads a JSON array of events in the JSON event format. NB:
// it streams the array, so each event's bytes are scanned once for
// validity and once to split its members, not twice more as
// json.Unmarshal of the array and then of each element would.
func decodeBatch(body []byte) ([]*event.Event, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	syntax := func(err error) error {
		var syn *json.SyntaxError
		switch {
		case errors.As(err, &syn):
			return invalid("", "malformed JSON at byte %d: %v", syn.Offset, syn)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return invalid("", "request body is truncated JSON")
		}
		return invalid("", "want a JSON array of CloudEvents: %v", err)
	}
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, invalid("", "request body is empty; want a JSON array of CloudEvents")
		}
		return nil, syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, invalid("", "want a JSON array of CloudEvents, got %v", tok)
	}
	var evs []*event.Event
	for i := 0; dec.More(); i++ {
		prefix := fmt.Sprintf("[%d].", i)
		var obj map[string]json.RawMessage
		if err := dec.Decode(&obj); err != nil {
			var typ *json.UnmarshalTypeError
			if errors.As(err, &typ) {
				return nil, invalid(strings.TrimSuffix(prefix, "."), "want a JSON object, got a JSON %s", typ.Value)
			}
			return nil, syntax(err)
		}
		e, err := event.ParseJSONObject(obj)
		if err != nil {
			return nil, fieldErrors(err, prefix)
		}
		if e, err = finishEvent(e, prefix); err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, syntax(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalid("", "request body has data after the JSON array")
	}
	if len(evs) == 0 {
		return nil, invalid("", "empty batch: want at least one event")
	}
	return evs, nil
}

// finishEvent gives an event without an id a UUIDv7 and validates it.
func finishEvent(e *event.Event, prefix string) (*event.Event, error) {
	if e.ID == "" {
		e.ID = event.NewIDv7()
	}
	if err := e.Validate(); err != nil {
		return nil, fieldErrors(err, prefix)
	}
	// NB: Validate accepts any bytes as a partition key (a Kafka record's
	// key may be binary); over HTTP it is a CloudEvents string, so Unicode.
	if !utf8.ValidString(e.PartitionKey) {
		return nil, invalid(prefix+"partitionkey", "is not valid UTF-8")
	}
	return e, nil
}

// fieldErrors turns event validation errors into one INVALID_ARGUMENT
// naming the first attribute at fault (prefixed, in a batch) and listing
// every reason.
func fieldErrors(err error, prefix string) error {
	var fes []*event.FieldError
	var walk func(error)
	walk = func(err error) {
		var fe *event.FieldError
		if errors.As(err, &fe) && fe == err {
			fes = append(fes, fe)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if errors.As(err, &fe) {
			fes = append(fes, fe)
		}
	}
	walk(err)
	if len(fes) == 0 {
		return invalid(strings.TrimSuffix(prefix, "."), "%v", err)
	}
	var msg bytes.Buffer
	for i, fe := range fes {
		if i > 0 {
			msg.WriteString("; ")
		}
		f := prefix + fe.Field
		if fe.Field == "" {
			f = strings.TrimSuffix(prefix, ".")
		}
		if f != "" {
			msg.WriteString(f + ": ")
		}
		msg.WriteString(fe.Reason)
	}
	field := prefix + fes[0].Field
	if fes[0].Field == "" {
		field = strings.TrimSuffix(prefix, ".")
	}
	return &httpjson.Error{Code: httpjson.CodeInvalidArgument, Field: field, Message: "invalid CloudEvent: " + msg.String()}
}
