package event

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names of the Kafka binding (binary mode). Frozen: see the package doc.
const (
	HeaderPrefix           = "ce_"
	HeaderSpecVersion      = "ce_specversion"
	HeaderID               = "ce_id"
	HeaderSource           = "ce_source"
	HeaderType             = "ce_type"
	HeaderTime             = "ce_time"
	HeaderSubject          = "ce_subject"
	HeaderContentType      = "content-type"
	HeaderKind             = "ce_kind"
	HeaderCorrelationID    = "ce_correlationid"
	HeaderCausationID      = "ce_causationid"
	HeaderTraceParent      = "ce_traceparent"
	HeaderAggregateID      = "ce_aggregateid"
	HeaderAggregateVersion = "ce_aggregateversion"
)

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Message is the Kafka form of an event: record key, value and headers.
type Message struct {
	Key     []byte
	Value   []byte
	Headers []Header
}

// ErrMalformed is wrapped by every Decode error: the record is not a valid
// Herald/CloudEvents event and retrying will not change that.
var ErrMalformed = errors.New("malformed event record")

// Encode returns the Kafka form of e after validating it. Data is not copied.
func Encode(e *Event) (Message, error) {
	if err := e.Validate(); err != nil {
		return Message{}, fmt.Errorf("encode event %q: %w", e.ID, err)
	}
	h := make([]Header, 0, 8+len(e.Extensions))
	add := func(k, v string) {
		if v != "" {
			h = append(h, Header{Key: k, Value: []byte(v)})
		}
	}
	add(HeaderSpecVersion, SpecVersion)
	add(HeaderID, e.ID)
	add(HeaderSource, e.Source)
	add(HeaderType, e.Type)
	if !e.Time.IsZero() {
		add(HeaderTime, e.Time.UTC().Format(time.RFC3339Nano))
	}
	add(HeaderSubject, e.Subject)
	add(HeaderContentType, e.DataContentType)
	add(HeaderKind, e.Kind.String())
	add(HeaderCorrelationID, e.CorrelationID)
	add(HeaderCausationID, e.CausationID)
	add(HeaderTraceParent, e.TraceParent)
	add(HeaderAggregateID, e.AggregateID)
	if e.AggregateVersion != 0 {
		add(HeaderAggregateVersion, strconv.FormatInt(e.AggregateVersion, 10))
	}
	for _, k := range sortedKeys(e.Extensions) {
		// NB: an empty extension value is still written: its presence is data.
		h = append(h, Header{Key: HeaderPrefix + k, Value: []byte(e.Extensions[k])})
	}
	var key []byte
	if e.PartitionKey != "" {
		key = []byte(e.PartitionKey)
	}
	return Message{Key: key, Value: e.Data, Headers: h}, nil
}

// Decode parses the Kafka form of an event. Every error wraps ErrMalformed
// and names the offending header; a decoded event always passes Validate.
// Value is not copied: the event's Data aliases it.
func Decode(m Message) (*Event, error) {
	e := &Event{Data: m.Value, PartitionKey: string(m.Key)}
	seen := make(map[string]bool, len(m.Headers))
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("header %s: "+format, append([]any{k}, args...)...))
	}
	var spec bool
	for _, hd := range m.Headers {
		k, v := hd.Key, string(hd.Value)
		if k != HeaderContentType && !strings.HasPrefix(k, HeaderPrefix) {
			continue // a transport header, not an attribute
		}
		if seen[k] {
			bad(k, "repeated")
			continue
		}
		seen[k] = true
		switch k {
		case HeaderSpecVersion:
			if v != SpecVersion {
				bad(k, "%q: Herald reads CloudEvents %s", v, SpecVersion)
			}
			spec = true
		case HeaderID:
			e.ID = v
		case HeaderSource:
			e.Source = v
		case HeaderType:
			e.Type = v
		case HeaderTime:
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				bad(k, "%q: want RFC 3339", v)
			}
			e.Time = t.UTC()
		case HeaderSubject:
			e.Subject = v
		case HeaderContentType:
			e.DataContentType = v
		case HeaderKind:
			kd, err := ParseKind(v)
			if err != nil {
				bad(k, "%v", err)
			}
			e.Kind = kd
		case HeaderCorrelationID:
			e.CorrelationID = v
		case HeaderCausationID:
			e.CausationID = v
		case HeaderTraceParent:
			e.TraceParent = v
		case HeaderAggregateID:
			e.AggregateID = v
		case HeaderAggregateVersion:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				bad(k, "%q: want a base-10 integer", v)
			}
			e.AggregateVersion = n
		case HeaderPrefix + "partitionkey":
			// Some Kafka bindings copy the partitionkey extension into a
			// header as well as the key; the key wins.
			if len(m.Key) == 0 {
				e.PartitionKey = v
			}
		default:
			name := k[len(HeaderPrefix):]
			if e.Extensions == nil {
				e.Extensions = make(map[string]string)
			}
			e.Extensions[name] = v
		}
	}
	if !spec {
		errs = append(errs, fmt.Errorf("header %s: missing (not a CloudEvents record)", HeaderSpecVersion))
	}
	if err := e.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, errors.Join(errs...))
	}
	return e, nil
}

// sortedKeys is m's keys in order (nil for an empty map).
func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	// Small maps: insertion sort keeps this allocation-light and deterministic.
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}

// DecodeAny parses a Kafka record in either CloudEvents Kafka binding mode:
// structured (a content-type header of application/cloudevents+json and
// the event in the JSON event format as the value) or binary (see Decode).
// The record key becomes PartitionKey when the event has none. Every error
// wraps ErrMalformed.
func DecodeAny(m Message) (*Event, error) {
	var ct string
	for _, h := range m.Headers {
		if h.Key == HeaderContentType {
			ct = string(h.Value)
			break
		}
	}
	if !strings.HasPrefix(strings.ToLower(ct), ContentTypeJSON) {
		return Decode(m)
	}
	for _, h := range m.Headers {
		if h.Key == HeaderSpecVersion {
			return Decode(m) // binary mode with a CloudEvents-typed payload
		}
	}
	e, err := ParseJSON(m.Value)
	if err == nil {
		err = e.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: structured mode: %w", ErrMalformed, err)
	}
	if e.PartitionKey == "" && len(m.Key) > 0 {
		e.PartitionKey = string(m.Key)
	}
	return e, nil
}
