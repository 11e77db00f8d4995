package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/internal/httpjson"
)

// DeadLetter is what the SDK's dead-letter middleware recorded about a
// record it gave up on (the herald-dlq-* headers). Fields whose header is
// missing or unparseable are omitted.
type DeadLetter struct {
	SourceTopic     string `json:"sourceTopic,omitempty"`
	SourcePartition *int32 `json:"sourcePartition,omitempty"`
	SourceOffset    *int64 `json:"sourceOffset,omitempty"`
	Group           string `json:"group,omitempty"`
	Reason          string `json:"reason,omitempty"`
	Error           string `json:"error,omitempty"`
	Attempts        *int   `json:"attempts,omitempty"`
	FirstFailure    string `json:"firstFailure,omitempty"`
	LastFailure     string `json:"lastFailure,omitempty"`
	RedrivenFrom    string `json:"redrivenFrom,omitempty"`

	last time.Time
}

// DeadLetterItem is one dead letter: where it is, what the middleware
// recorded, and the original record (a CloudEvent in event, or the raw
// form in record) without the herald-dlq-* headers.
type DeadLetterItem struct {
	ReadItem
	DeadLetter DeadLetter `json:"deadLetter"`
}

// DeadLettersResponse is the answer to a dead-letter read.
type DeadLettersResponse struct {
	DeadLetters []DeadLetterItem `json:"deadLetters"`
	// NextOffset is where the scan stopped: read from there for more.
	NextOffset    int64 `json:"nextOffset"`
	HighWatermark int64 `json:"highWatermark"`
	// Scanned is the records examined, matching or not.
	Scanned int `json:"scanned"`
}

func parseDeadLetter(rec *batch.Record) (DeadLetter, []batch.RecordHeader) {
	var d DeadLetter
	kept := make([]batch.RecordHeader, 0, len(rec.Headers))
	for _, h := range rec.Headers {
		k, v := string(h.Key), string(h.Value)
		if !strings.HasPrefix(k, "herald-dlq-") {
			if k == client.HeaderRedrivenFrom {
				d.RedrivenFrom = v
			}
			kept = append(kept, h)
			continue
		}
		switch k {
		case client.HeaderDLQTopic:
			d.SourceTopic = v
		case client.HeaderDLQPartition:
			if n, err := strconv.ParseInt(v, 10, 32); err == nil && n >= 0 {
				p := int32(n)
				d.SourcePartition = &p
			}
		case client.HeaderDLQOffset:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				d.SourceOffset = &n
			}
		case client.HeaderDLQGroup:
			d.Group = v
		case client.HeaderDLQError:
			d.Error = v
		case client.HeaderDLQReason:
			d.Reason = v
		case client.HeaderDLQAttempts:
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				d.Attempts = &n
			}
		case client.HeaderDLQFirstFailure:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				d.FirstFailure = t.UTC().Format(time.RFC3339Nano)
			}
		case client.HeaderDLQLastFailure:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				d.LastFailure, d.last = t.UTC().Format(time.RFC3339Nano), t
			}
		}
	}
	return d, kept
}

// readDeadLetters serves GET /v1/topics/{topic}/deadletters: the dead
// letters of one partition of a dead-letter topic from offset, filtered as
// `herald dlq show` filters them.
func (a *API) readDeadLetters(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("topic")
	ti, err := a.b.Topic(name)
	if err != nil {
		return topicErr(name, err)
	}
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "partition", "offset", "limit", "reason", "sourceTopic", "group", "error", "since", "until":
		default:
			return invalid(k, "unknown query parameter; want partition, offset, limit, reason, sourceTopic, group, error, since or until")
		}
	}
	var part int32
	if s := q.Get("partition"); s != "" {
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil || p < 0 || int(p) >= ti.Partitions {
			return invalid("partition", "%q: want a partition from 0 to %d", s, ti.Partitions-1)
		}
		part = int32(p)
	} else if ti.Partitions > 1 {
		return invalid("partition", "required: topic %q has %d partitions", name, ti.Partitions)
	}
	limit := min(100, a.cfg.MaxReadEvents)
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > a.cfg.MaxReadEvents {
			return invalid("limit", "%q: want an integer from 1 to %d", s, a.cfg.MaxReadEvents)
		}
		limit = n
	}
	f, err := parseDLFilter(q.Get)
	if err != nil {
		return err
	}
	start, hwm, _, err := a.b.StableOffsets(name, part)
	if err != nil {
		return topicErr(name, err)
	}
	offset := start
	if s := q.Get("offset"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < start || n > hwm {
			return invalid("offset", "%q: want an offset from %d to %d", s, start, hwm)
		}
		offset = n
	}
	out := DeadLettersResponse{DeadLetters: []DeadLetterItem{}}
	// NB: a filtered scan examines at most 100 records per wanted one, so
	// a request's work is bounded however rare the matches; the answer's
	// nextOffset continues the scan.
	out.NextOffset, out.HighWatermark, err = a.scan(r.Context(), name, part, offset, limit, limit*100, 0, func(off, ts int64, rec *batch.Record) bool {
		out.Scanned++
		d, kept := parseDeadLetter(rec)
		if !f.matches(&d) {
			return false
		}
		orig := *rec
		orig.Headers = kept
		out.DeadLetters = append(out.DeadLetters, DeadLetterItem{ReadItem: readItem(part, off, ts, &orig), DeadLetter: d})
		return true
	})
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
	return nil
}

// dlFilter selects dead letters as `herald dlq` filters them.
type dlFilter struct {
	reason, sourceTopic, group, errSub string
	since, until                       time.Time
	// raw holds the filters as given, for the progress group's name.
	raw map[string]string
}

// parseDLFilter reads the filters by their API names (query parameters
// or JSON fields).
func parseDLFilter(get func(string) string) (*dlFilter, error) {
	f := &dlFilter{reason: get("reason"), sourceTopic: get("sourceTopic"), group: get("group"), errSub: get("error"), raw: map[string]string{}}
	if f.reason != "" && f.reason != client.DLQReasonFailed && f.reason != client.DLQReasonMalformed {
		return nil, invalid("reason", "%q: want %s or %s", f.reason, client.DLQReasonFailed, client.DLQReasonMalformed)
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.since}, {"until", &f.until}} {
		if s := get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, invalid(p.name, "%q: want an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", s)
			}
			*p.t = t
		}
	}
	// NB: the CLI's flag names, so `herald dlq redrive` and the API with
	// the same filters share one default progress group.
	for api, cli := range map[string]string{"error": "error", "reason": "reason", "sourceTopic": "source-topic", "group": "group", "since": "since", "until": "until"} {
		if v := get(api); v != "" {
			f.raw[cli] = v
		}
	}
	return f, nil
}

func (f *dlFilter) matches(d *DeadLetter) bool {
	switch {
	case f.reason != "" && d.Reason != f.reason,
		f.sourceTopic != "" && d.SourceTopic != f.sourceTopic,
		f.group != "" && d.Group != f.group,
		f.errSub != "" && !strings.Contains(d.Error, f.errSub):
		return false
	}
	// NB: a record without a last-failure time matches no time filter, as
	// in `herald dlq show`: its age is unknown.
	if !f.since.IsZero() && (d.last.IsZero() || d.last.Before(f.since)) {
		return false
	}
	if !f.until.IsZero() && (d.last.IsZero() || !d.last.Before(f.until)) {
		return false
	}
	return true
}
