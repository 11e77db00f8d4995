// Package eventstore is Herald's event store: streams of events appended
// with optimistic concurrency, a global order over all streams ($all),
// stream metadata, soft and hard deletes, and catch-up subscriptions.
//
// Two backends implement Store and pass one conformance suite
// (eventstore/storetest): eventstore/embedded, on Herald's commit log, and
// eventstore/pgstore, on PostgreSQL. docs/eventstore.md records the design.
//
// # Versions and positions
//
// A stream's events are numbered by version from 0; a stream with no events
// has version -1 (NoStream). Every event also has a position in $all,
// increasing in the order appends became visible; positions may have gaps
// (records that are not events take positions in the embedded backend) and
// are comparable only within one store.
//
// # Expected versions
//
// Every append and delete names what it expects of the stream: Any, NoStream
// (the stream has no events, or was soft-deleted), StreamExists, or an exact
// version (Exact(n)). A mismatch is a *WrongExpectedVersionError carrying
// both versions, and nothing is written. Retrying an append whose events
// (by ID) are already in the stream at the expected place succeeds and
// returns the original result without writing them again (idempotent
// append).
package eventstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// ExpectedVersion is what an append or delete expects of its stream: Any,
// NoStream, StreamExists, or an exact version >= 0 (see Exact).
type ExpectedVersion int64

const (
	// Any accepts the stream in any state (except hard-deleted).
	Any ExpectedVersion = -2
	// NoStream accepts a stream with no events, or a soft-deleted one.
	NoStream ExpectedVersion = -1
	// StreamExists accepts a stream with at least one visible event.
	StreamExists ExpectedVersion = -4
)

// Exact expects the stream's last event to have version v (v >= 0).
func Exact(v int64) ExpectedVersion { return ExpectedVersion(v) }

func (e ExpectedVersion) String() string {
	switch {
	case e == Any:
		return "any"
	case e == NoStream:
		return "no-stream"
	case e == StreamExists:
		return "exists"
	case e >= 0:
		return fmt.Sprint(int64(e))
	}
	return fmt.Sprintf("invalid(%d)", int64(e))
}

// ParseExpectedVersion parses "any", "no-stream", "exists" or a version.
func ParseExpectedVersion(s string) (ExpectedVersion, error) {
	switch s {
	case "any":
		return Any, nil
	case "no-stream":
		return NoStream, nil
	case "exists":
		return StreamExists, nil
	}
	var v int64
	if _, err := fmt.Sscan(s, &v); err != nil || v < 0 || fmt.Sprint(v) != s {
		return 0, fmt.Errorf("expected version %q: want any, no-stream, exists or a version >= 0", s)
	}
	return Exact(v), nil
}

func (e ExpectedVersion) valid() bool {
	return e == Any || e == NoStream || e == StreamExists || e >= 0
}

// EventData is an event to append. ID identifies the event for idempotent
// retries; NewID makes one.
type EventData struct {
	ID       string
	Type     string
	Data     []byte
	Metadata []byte
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	Stream   string
	Version  int64 // in its stream, from 0
	Position int64 // in $all
	ID       string
	Type     string
	Data     []byte
	Metadata []byte
	Time     time.Time // when it was appended
}

// StreamAppend is one stream's part of an atomic multi-stream append.
type StreamAppend struct {
	Stream   string
	Expected ExpectedVersion
	Events   []EventData
}

// AppendResult is where an append's last event landed.
type AppendResult struct {
	Stream   string
	Version  int64 // of the stream's last event after the append
	Position int64 // in $all of the append's last event for this stream
}

// StreamMetadata limits what reads of a stream return. Zero fields are
// unset. Events hidden by it stay in $all until scavenged.
type StreamMetadata struct {
	// MaxCount keeps only the newest MaxCount events visible.
	MaxCount int64
	// MaxAge hides events older than this.
	MaxAge time.Duration
	// TruncateBefore hides events with a lower version.
	TruncateBefore int64
}

// StreamInfo is a stream's state.
type StreamInfo struct {
	Stream string
	// Version is the last event's version; -1 if the stream never had one.
	// A soft-deleted stream keeps its version: appends continue after it.
	Version int64
	// Deleted: soft-deleted (reads find nothing; it may be written again).
	Deleted bool
	// Tombstoned: hard-deleted; it can never be written or read again.
	Tombstoned bool
	Metadata   StreamMetadata
	// TruncateBefore is the first version a read can return (set by a soft
	// delete; the metadata's TruncateBefore applies too).
	TruncateBefore int64
}

// ReadStreamOptions select a range of a stream.
type ReadStreamOptions struct {
	// From is the first version read. Forwards, 0 is the start; backwards,
	// End (-1) is the last event.
	From int64
	// Backwards reads from From towards version 0.
	Backwards bool
	// Max bounds the events returned; 0 means DefaultMax.
	Max int
}

// End is From for reading backwards from the end of a stream or of $all.
const End int64 = -1

// DefaultMax is the page size when Max is 0.
const DefaultMax = 1000

// ReadAllOptions select a range of $all.
type ReadAllOptions struct {
	// From is the first position read (inclusive). Forwards, 0 is the
	// start; backwards, End (-1) is the end.
	From      int64
	Backwards bool
	Max       int
	Filter    Filter
}

// AllPage is a page of $all. Next is where the following page starts (in
// the read's direction): it moves past filtered-out events too, so a
// filtered reader never rescans them. IsEnd says the read reached the end
// in its direction (forwards, Next is then the head, where a later read
// continues).
type AllPage struct {
	Events []RecordedEvent
	Next   int64
	IsEnd  bool
}

// Filter selects events of $all on the server. Zero fields match all; set
// fields must all match.
type Filter struct {
	// StreamPrefix: the stream name starts with it. A category view is
	// StreamPrefix "order-" (see Category).
	StreamPrefix string
	// TypePrefix: the event type starts with it.
	TypePrefix string
	// TypeRegex: the event type matches this RE2 expression.
	TypeRegex string
	// Types: the event type is one of these (an event-type view).
	Types []string
	// ExcludeSystem leaves out the store's own records (IsSystem):
	// persistent groups' checkpoints, parked events, definitions and
	// hosting lease.
	ExcludeSystem bool
}

// IsSystem reports whether an event of stream and type is one the store
// keeps for itself: its type starts with '$' ($checkpoint, $parked), or it
// is in the persistent groups' definition or lease stream.
func IsSystem(stream, typ string) bool {
	return strings.HasPrefix(typ, "$") || stream == GroupsStream || stream == GroupsLeaseStream
}

// Category is the filter of a category view: streams named "cat-...".
func Category(cat string) Filter { return Filter{StreamPrefix: cat + "-"} }

// EventType is the filter of an event-type view.
func EventType(typ string) Filter { return Filter{Types: []string{typ}} }

// Matcher is a compiled Filter.
type Matcher struct {
	f  Filter
	re *regexp.Regexp
}

// Compile checks and compiles f.
func (f Filter) Compile() (*Matcher, error) {
	m := &Matcher{f: f}
	if f.TypeRegex != "" {
		if len(f.TypeRegex) > 1024 {
			return nil, Invalid("filter.typeRegex", "is %d bytes, the limit is 1024", len(f.TypeRegex))
		}
		re, err := regexp.Compile(f.TypeRegex)
		if err != nil {
			return nil, Invalid("filter.typeRegex", "does not compile: %v", err)
		}
		m.re = re
	}
	return m, nil
}

// Match reports whether an event of stream and type passes the filter.
func (m *Matcher) Match(stream, typ string) bool {
	if m == nil {
		return true
	}
	if m.f.ExcludeSystem && IsSystem(stream, typ) {
		return false
	}
	if !strings.HasPrefix(stream, m.f.StreamPrefix) || !strings.HasPrefix(typ, m.f.TypePrefix) {
		return false
	}
	if len(m.f.Types) > 0 {
		ok := false
		for _, t := range m.f.Types {
			if t == typ {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return m.re == nil || m.re.MatchString(typ)
}

// Store is an event store. Implementations are safe for concurrent use.
// Every method fails with ErrClosed after Close.
type Store interface {
	// Append appends events to one stream atomically.
	Append(ctx context.Context, stream string, expected ExpectedVersion, events ...EventData) (AppendResult, error)
	// AppendMulti appends to several streams atomically: all events
	// become visible together, or none (on any conflict or invalid event).
	// A stream may appear once.
	AppendMulti(ctx context.Context, appends []StreamAppend) ([]AppendResult, error)
	// ReadStream reads a stream. A stream that never had events, or is
	// soft-deleted, is ErrStreamNotFound; a hard-deleted one
	// ErrStreamDeleted.
	ReadStream(ctx context.Context, stream string, opts ReadStreamOptions) ([]RecordedEvent, error)
	// ReadAll reads $all.
	ReadAll(ctx context.Context, opts ReadAllOptions) (AllPage, error)
	// Head is the position after the last visible event of $all.
	Head(ctx context.Context) (int64, error)
	// StreamInfo reports a stream's state (Version -1 if unknown).
	StreamInfo(ctx context.Context, stream string) (StreamInfo, error)
	// SetMetadata replaces a stream's metadata.
	SetMetadata(ctx context.Context, stream string, md StreamMetadata) error
	// Delete soft-deletes (hard false) or tombstones (hard true) a stream
	// whose state matches expected.
	Delete(ctx context.Context, stream string, expected ExpectedVersion, hard bool) error
	// WaitAll blocks until Head > pos, ctx ends or the store closes. It
	// may return early (callers re-check).
	WaitAll(ctx context.Context, pos int64) error
	// Streams lists the names of streams with events that are not
	// deleted, sorted, after `after`, at most max (0: DefaultMax).
	Streams(ctx context.Context, after string, max int) ([]string, error)
	// Close releases the store.
	Close() error
}

// Limits on what a client may send.
const (
	MaxStreamNameBytes = 256
	MaxTypeBytes       = 256
	MaxIDBytes         = 128
	// DefaultMaxEventBytes bounds one event's data plus metadata.
	DefaultMaxEventBytes = 1 << 20
	// MaxAppendEvents bounds the events of one (multi-stream) append.
	MaxAppendEvents = 10000
	// MaxAppendStreams bounds the streams of one multi-stream append.
	MaxAppendStreams = 100
)

// NewID returns a random event ID (UUID v4 text form).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ValidateStreamName checks a stream name from a client.
func ValidateStreamName(field, s string) error {
	switch {
	case s == "":
		return Invalid(field, "is empty")
	case len(s) > MaxStreamNameBytes:
		return Invalid(field, "is %d bytes, the limit is %d", len(s), MaxStreamNameBytes)
	case s[0] == '$':
		return Invalid(field, "%q starts with '$', which is reserved for system streams", s)
	case strings.ContainsAny(s, "\x00\n\r"):
		return Invalid(field, "contains a NUL or newline")
	}
	return nil
}

// ValidateAppends checks a multi-stream append before anything is written:
// names, expected versions, event IDs, types and sizes, with the path of the
// first offending field (appends[1].events[3].data).
func ValidateAppends(appends []StreamAppend, maxEventBytes int) error {
	if maxEventBytes <= 0 {
		maxEventBytes = DefaultMaxEventBytes
	}
	if len(appends) == 0 {
		return Invalid("appends", "is empty")
	}
	if len(appends) > MaxAppendStreams {
		return Invalid("appends", "has %d streams, the limit is %d", len(appends), MaxAppendStreams)
	}
	seen := make(map[string]bool, len(appends))
	total := 0
	for i, a := range appends {
		p := fmt.Sprintf("appends[%d]", i)
		if err := ValidateStreamName(p+".stream", a.Stream); err != nil {
			return err
		}
		if seen[a.Stream] {
			return Invalid(p+".stream", "%q appears twice in one append", a.Stream)
		}
		seen[a.Stream] = true
		if !a.Expected.valid() {
			return Invalid(p+".expectedVersion", "%d is not any (-2), no-stream (-1), exists (-4) or a version >= 0", int64(a.Expected))
		}
		if len(a.Events) == 0 {
			return Invalid(p+".events", "is empty")
		}
		total += len(a.Events)
		if total > MaxAppendEvents {
			return Invalid(p+".events", "brings the append to %d events, the limit is %d", total, MaxAppendEvents)
		}
		ids := make(map[string]bool, len(a.Events))
		for j, e := range a.Events {
			q := fmt.Sprintf("%s.events[%d]", p, j)
			switch {
			case e.ID == "":
				return Invalid(q+".id", "is empty")
			case len(e.ID) > MaxIDBytes:
				return Invalid(q+".id", "is %d bytes, the limit is %d", len(e.ID), MaxIDBytes)
			case ids[e.ID]:
				return Invalid(q+".id", "%q appears twice in one append", e.ID)
			case e.Type == "":
				return Invalid(q+".type", "is empty")
			case len(e.Type) > MaxTypeBytes:
				return Invalid(q+".type", "is %d bytes, the limit is %d", len(e.Type), MaxTypeBytes)
			case len(e.Data)+len(e.Metadata) > maxEventBytes:
				return Invalid(q+".data", "data and metadata are %d bytes, the limit is %d", len(e.Data)+len(e.Metadata), maxEventBytes)
			}
			ids[e.ID] = true
		}
	}
	return nil
}

// ValidateMetadata checks stream metadata from a client.
func ValidateMetadata(md StreamMetadata) error {
	switch {
	case md.MaxCount < 0:
		return Invalid("metadata.maxCount", "%d is negative", md.MaxCount)
	case md.MaxAge < 0:
		return Invalid("metadata.maxAge", "%v is negative", md.MaxAge)
	case md.TruncateBefore < 0:
		return Invalid("metadata.truncateBefore", "%d is negative", md.TruncateBefore)
	}
	return nil
}

// CheckExpected checks expected against a stream whose last version is
// actual (-1 for none) and soft-deleted state. A soft-deleted stream counts
// as NoStream.
func CheckExpected(stream string, expected ExpectedVersion, actual int64, deleted bool) error {
	cur := actual
	if deleted {
		cur = -1
	}
	ok := false
	switch {
	case expected == Any:
		ok = true
	case expected == NoStream:
		ok = cur == -1
	case expected == StreamExists:
		ok = cur >= 0
	default:
		ok = int64(expected) == cur
	}
	if ok {
		return nil
	}
	return &WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: cur}
}

// FirstVisible is the first version a read of a stream returns under its
// soft-delete point, metadata and last version.
func FirstVisible(info StreamInfo) int64 {
	first := max(info.TruncateBefore, info.Metadata.TruncateBefore)
	if info.Metadata.MaxCount > 0 {
		first = max(first, info.Version+1-info.Metadata.MaxCount)
	}
	return max(first, 0)
}

// StreamRange turns read options into the versions to read, ascending
// [lo, hi], and whether the result must be reversed. ok is false when
// nothing is in range.
func StreamRange(info StreamInfo, opts ReadStreamOptions) (lo, hi int64, ok bool) {
	first, last := FirstVisible(info), info.Version
	n := int64(opts.Max)
	if n <= 0 {
		n = DefaultMax
	}
	if opts.Backwards {
		hi = last
		if opts.From != End && opts.From < hi {
			hi = opts.From
		}
		lo = max(first, hi-n+1)
	} else {
		lo = max(first, opts.From)
		hi = min(last, lo+n-1)
	}
	return lo, hi, lo <= hi && hi >= 0
}

// MaxAgeCutoff is the oldest time a stream's metadata lets a read return;
// zero when unlimited.
func MaxAgeCutoff(md StreamMetadata, now time.Time) time.Time {
	if md.MaxAge <= 0 {
		return time.Time{}
	}
	return now.Add(-md.MaxAge)
}

// CheckReadStream checks read options from a client.
func CheckReadStream(stream string, opts ReadStreamOptions) error {
	if err := ValidateStreamName("stream", stream); err != nil {
		return err
	}
	if opts.From < End || (!opts.Backwards && opts.From < 0) {
		return Invalid("from", "%d is not a version (or -1, the end, when reading backwards)", opts.From)
	}
	if opts.Max < 0 {
		return Invalid("max", "%d is negative", opts.Max)
	}
	return nil
}

// CheckReadAll checks $all read options and compiles the filter.
func CheckReadAll(opts ReadAllOptions) (*Matcher, error) {
	if opts.From < End || (!opts.Backwards && opts.From < 0) {
		return nil, Invalid("from", "%d is not a position (or -1, the end, when reading backwards)", opts.From)
	}
	if opts.Max < 0 {
		return nil, Invalid("max", "%d is negative", opts.Max)
	}
	return opts.Filter.Compile()
}

// Errors callers test with errors.Is.
var (
	ErrClosed                = errors.New("eventstore: closed")
	ErrWrongExpectedVersion  = errors.New("wrong expected version")
	ErrStreamNotFound        = errors.New("stream not found")
	ErrStreamDeleted         = errors.New("stream is hard-deleted")
	ErrInvalid               = errors.New("invalid argument")
	ErrSubscriptionDropped   = errors.New("subscription dropped")
	errInternalInconsistency = errors.New("internal inconsistency")
)

// WrongExpectedVersionError is a failed expected-version check.
type WrongExpectedVersionError struct {
	Stream   string
	Expected ExpectedVersion
	// Actual is the stream's version: -1 if it has no events or is
	// soft-deleted.
	Actual int64
}

func (e *WrongExpectedVersionError) Error() string {
	return fmt.Sprintf("stream %q: wrong expected version: expected %v, actual %d", e.Stream, e.Expected, e.Actual)
}

// Is matches ErrWrongExpectedVersion.
func (e *WrongExpectedVersionError) Is(target error) bool { return target == ErrWrongExpectedVersion }

// StreamDeletedError refuses any use of a hard-deleted stream.
type StreamDeletedError struct{ Stream string }

func (e *StreamDeletedError) Error() string {
	return fmt.Sprintf("stream %q is hard-deleted (tombstoned): it can never be written or read again", e.Stream)
}

// Is matches ErrStreamDeleted.
func (e *StreamDeletedError) Is(target error) bool { return target == ErrStreamDeleted }

// NotFound is ErrStreamNotFound for stream.
func NotFound(stream string) error { return fmt.Errorf("stream %q: %w", stream, ErrStreamNotFound) }

// InvalidError is bad input, naming the field and the rule broken.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// Is matches ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Invalid makes an *InvalidError.
func Invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Inconsistent reports a backend's broken invariant.
func Inconsistent(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInternalInconsistency, fmt.Sprintf(format, args...))
}

// ReadStreamAsOf reads a stream forwards as it was at a version (inclusive;
// untilVersion < 0 means no bound) and at a time (zero: no bound): the
// seed's time-travel debugging. At most max events (0: DefaultMax).
func ReadStreamAsOf(ctx context.Context, s Store, stream string, untilVersion int64, until time.Time, max int) ([]RecordedEvent, error) {
	if max <= 0 {
		max = DefaultMax
	}
	var out []RecordedEvent
	from := int64(0)
	for len(out) < max {
		n := max - len(out)
		if untilVersion >= 0 {
			if from > untilVersion {
				break
			}
			n = int(min(int64(n), untilVersion-from+1))
		}
		evs, err := s.ReadStream(ctx, stream, ReadStreamOptions{From: from, Max: n})
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if !until.IsZero() && e.Time.After(until) {
				return out, nil
			}
			out = append(out, e)
		}
		if len(evs) < n {
			break
		}
		from = evs[len(evs)-1].Version + 1
	}
	if out == nil {
		out = []RecordedEvent{}
	}
	return out, nil
}

// ScavengeReport says what a scavenge reclaimed.
type ScavengeReport struct {
	// Events removed, or marked for removal (see the backend).
	Events int64 `json:"events"`
	// ReclaimedBytes on disk, or -1 when the backend cannot tell.
	ReclaimedBytes int64         `json:"reclaimedBytes"`
	Duration       time.Duration `json:"duration"`
}

// Scavenger is a store that can reclaim the space of events no read can
// return any more (deleted, truncated, beyond max count or age), without
// blocking reads and writes. Both backends implement it.
type Scavenger interface {
	Scavenge(ctx context.Context) (ScavengeReport, error)
}
