package event

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// SpecVersion is the CloudEvents version Herald writes and accepts.
const SpecVersion = "1.0"

// Kind tells an event (a fact that happened) from a command (a request that
// something happen). The zero value is KindEvent.
type Kind uint8

const (
	// KindEvent is a fact: it has happened and may have many consumers.
	KindEvent Kind = iota
	// KindCommand is a request addressed to one handler that may reject it.
	KindCommand
)

// String returns the wire form: "event" or "command".
func (k Kind) String() string {
	switch k {
	case KindEvent:
		return "event"
	case KindCommand:
		return "command"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ParseKind parses the wire form of a Kind.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "event":
		return KindEvent, nil
	case "command":
		return KindCommand, nil
	}
	return 0, fmt.Errorf("kind %q: want event or command", s)
}

// Event is one CloudEvents 1.0 event with Herald's extensions. An Event is a
// plain value: it is not safe to mutate one while another goroutine reads it.
type Event struct {
	// ID identifies the event within Source; (Source, ID) is unique.
	// Consumers deduplicate by it.
	ID string
	// Source is a URI-reference naming the context that produced the event.
	Source string
	// Type names what happened, e.g. "com.example.order.placed".
	Type string
	// Subject is what the event is about within Source (optional).
	Subject string
	// Time is when the occurrence happened (optional).
	Time time.Time
	// DataContentType is the media type of Data, e.g. "application/json".
	DataContentType string
	// Data is the payload; it is the Kafka record value, untouched.
	Data []byte

	// Kind is event (default) or command.
	Kind Kind
	// PartitionKey orders events: events with one key land in one partition
	// and are handled in order. It is the Kafka record key.
	PartitionKey string
	// CorrelationID names the whole flow of work the event belongs to.
	CorrelationID string
	// CausationID is the ID of the event or command that caused this one.
	CausationID string
	// TraceParent is a W3C traceparent ("00-<trace>-<span>-<flags>").
	TraceParent string
	// AggregateID and AggregateVersion place an event-sourced event in its
	// aggregate's stream.
	AggregateID      string
	AggregateVersion int64

	// Extensions holds further CloudEvents extension attributes by name
	// (1-20 characters of [a-z0-9]); names of attributes above are reserved.
	Extensions map[string]string
}

// New returns an event with a fresh ID, the given source and type, and Time
// set to now (UTC).
func New(source, typ string) *Event {
	return &Event{ID: NewID(), Source: source, Type: typ, Time: time.Now().UTC()}
}

// NewFrom returns a new event caused by parent: a fresh ID, Time now, and
// CorrelationID, CausationID and TraceParent set as by CausedBy.
func NewFrom(parent *Event, source, typ string) *Event {
	e := New(source, typ)
	e.CausedBy(parent)
	return e
}

// CausedBy records that e was caused by parent: CorrelationID becomes the
// parent's (or the parent's ID when the parent starts a flow), CausationID
// the parent's ID, and TraceParent the parent's unless e already has one
// (a caller with a live span sets its own). A nil parent changes nothing.
func (e *Event) CausedBy(parent *Event) {
	if parent == nil {
		return
	}
	e.CorrelationID = parent.CorrelationID
	if e.CorrelationID == "" {
		e.CorrelationID = parent.ID
	}
	e.CausationID = parent.ID
	if e.TraceParent == "" {
		e.TraceParent = parent.TraceParent
	}
}

// Clone returns a deep copy of e.
func (e *Event) Clone() *Event {
	c := *e
	if e.Data != nil {
		c.Data = append([]byte(nil), e.Data...)
	}
	if e.Extensions != nil {
		c.Extensions = make(map[string]string, len(e.Extensions))
		for k, v := range e.Extensions {
			c.Extensions[k] = v
		}
	}
	return &c
}

// NewID returns a random (version 4) UUID in its canonical text form.
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return uuidString(b)
}

// uuidString is b in the canonical text form of a UUID:
// 8-4-4-4-12 lower-case hex digits.
func uuidString(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// ErrInvalid is wrapped by every validation error; test with errors.Is.
var ErrInvalid = errors.New("invalid event")

// FieldError is one reason an event is invalid.
type FieldError struct {
	Field  string // attribute name as on the wire, e.g. "id" or "traceparent"
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// reserved are the attribute names that have a field of their own.
var reserved = map[string]bool{
	"id": true, "source": true, "type": true, "specversion": true, "time": true, "subject": true,
	"datacontenttype": true, "data": true, "kind": true, "partitionkey": true,
	"correlationid": true, "causationid": true, "traceparent": true, "aggregateid": true,
	"aggregateversion": true,
}

// Validate reports every problem with e at once, joined; each is a
// *FieldError wrapping ErrInvalid. A nil error means e can be encoded and
// decoded back unchanged.
func (e *Event) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if e.ID == "" {
		bad("id", "required")
	}
	if e.Source == "" {
		bad("source", "required")
	} else if _, err := url.Parse(e.Source); err != nil {
		bad("source", "not a URI-reference: %v", err)
	}
	if e.Type == "" {
		bad("type", "required")
	}
	if e.Kind != KindEvent && e.Kind != KindCommand {
		bad("kind", "%v: want event or command", e.Kind)
	}
	if e.TraceParent != "" {
		if _, err := ParseTraceParent(e.TraceParent); err != nil {
			bad("traceparent", "%v", err)
		}
	}
	if e.AggregateVersion < 0 {
		bad("aggregateversion", "%d is negative", e.AggregateVersion)
	}
	if e.AggregateVersion != 0 && e.AggregateID == "" {
		bad("aggregateversion", "set without aggregateid")
	}
	if !e.Time.IsZero() && (e.Time.Year() < 0 || e.Time.Year() > 9999) {
		bad("time", "year %d outside RFC 3339", e.Time.Year())
	}
	for _, f := range []struct{ name, v string }{
		{"id", e.ID}, {"source", e.Source}, {"type", e.Type}, {"subject", e.Subject},
		{"datacontenttype", e.DataContentType}, {"correlationid", e.CorrelationID},
		{"causationid", e.CausationID}, {"aggregateid", e.AggregateID},
	} {
		if !printable(f.v) {
			bad(f.name, "contains control characters or invalid UTF-8")
		}
	}
	for name, v := range e.Extensions {
		switch {
		case !validExtName(name):
			bad(name, "extension name must be 1-20 characters of [a-z0-9]")
		case reserved[name]:
			bad(name, "reserved attribute name: use the Event field")
		case !printable(v):
			bad(name, "contains control characters or invalid UTF-8")
		}
	}
	return errors.Join(errs...)
}

func validExtName(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	if !utf8Valid(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
