package httpapi

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/internal/httpjson"
)

// maxSummaryRecords bounds the records one summary examines; past it the
// summary says complete: false.
const maxSummaryRecords = 1_000_000

type dlqBucket struct {
	Name         string `json:"name"`
	Records      int64  `json:"records"`
	FirstFailure string `json:"firstFailure,omitempty"`
	LastFailure  string `json:"lastFailure,omitempty"`
	first, last  time.Time
}

type dlqBreakdown struct {
	Entries []*dlqBucket `json:"entries"`
	Omitted int64        `json:"omitted"`
	m       map[string]*dlqBucket
}

func (b *dlqBreakdown) add(name string, first, last time.Time) {
	if b.m == nil {
		b.m = map[string]*dlqBucket{}
	}
	e := b.m[name]
	if e == nil {
		e = &dlqBucket{Name: name}
		b.m[name] = e
	}
	e.Records++
	e.first, e.last = earliest(e.first, first), latest(e.last, last)
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func timeField(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// finish sorts by records then name and keeps the top n.
func (b *dlqBreakdown) finish(n int) {
	b.Entries = []*dlqBucket{}
	for _, e := range b.m {
		e.FirstFailure, e.LastFailure = timeField(e.first), timeField(e.last)
		b.Entries = append(b.Entries, e)
	}
	slices.SortFunc(b.Entries, func(x, y *dlqBucket) int {
		return cmp.Or(cmp.Compare(y.Records, x.Records), strings.Compare(x.Name, y.Name))
	})
	if len(b.Entries) > n {
		for _, e := range b.Entries[n:] {
			b.Omitted += e.Records
		}
		b.Entries = b.Entries[:n]
	}
}

// errorPreview is an error's first line, cut to 80 characters, as
// `herald dlq list` groups errors.
func errorPreview(s string) string {
	line, _, cut := strings.Cut(s, "\n")
	line = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, line)
	if utf8.RuneCountInString(line) > 80 {
		line = string([]rune(line)[:80]) + "..."
	} else if cut {
		line += "..."
	}
	return line
}

type dlqSummary struct {
	Topic         string             `json:"topic"`
	Partitions    []partitionOffsets `json:"partitions"`
	Stored        int64              `json:"stored"`
	Scanned       int64              `json:"scanned"`
	Matched       int64              `json:"matched"`
	Complete      bool               `json:"complete"`
	FirstFailure  string             `json:"firstFailure,omitempty"`
	LastFailure   string             `json:"lastFailure,omitempty"`
	BySourceTopic dlqBreakdown       `json:"bySourceTopic"`
	ByGroup       dlqBreakdown       `json:"byGroup"`
	ByReason      dlqBreakdown       `json:"byReason"`
	ByError       dlqBreakdown       `json:"byError"`
}

// summarizeDeadLetters serves GET /v1/topics/{topic}/deadletters:summary:
// `herald dlq list` over HTTP. It reads every partition from the start, at
// most maxSummaryRecords records (complete says whether it read them all).
func (a *API) summarizeDeadLetters(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("topic")
	ti, err := a.b.Topic(name)
	if err != nil {
		return topicErr(name, err)
	}
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "top", "reason", "sourceTopic", "group", "error", "since", "until":
		default:
			return invalid(k, "unknown query parameter; want top, reason, sourceTopic, group, error, since or until")
		}
	}
	top := 10
	if s := q.Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return invalid("top", "%q: want an integer from 1 to 1000", s)
		}
		top = n
	}
	f, err := parseDLFilter(q.Get)
	if err != nil {
		return err
	}
	sum := dlqSummary{Topic: name, Partitions: []partitionOffsets{}, Complete: true}
	var first, last time.Time
	budget := int64(maxSummaryRecords)
	for p := int32(0); p < int32(ti.Partitions); p++ {
		start, hwm, lso, err := a.b.StableOffsets(name, p)
		if err != nil {
			return topicErr(name, err)
		}
		sum.Partitions = append(sum.Partitions, partitionOffsets{Partition: p, StartOffset: start, EndOffset: hwm})
		sum.Stored += hwm - start
		for off := start; off < lso; {
			if budget <= 0 {
				sum.Complete = false
				break
			}
			next, _, err := a.scan(r.Context(), name, p, off, int(min(budget, 1<<20)), int(min(budget, 1<<20)), 0, func(o, _ int64, rec *batch.Record) bool {
				if o >= lso {
					return false
				}
				sum.Scanned++
				budget--
				d, _ := parseDeadLetter(rec)
				if !f.matches(&d) {
					return false
				}
				dfirst, _ := time.Parse(time.RFC3339Nano, d.FirstFailure)
				sum.Matched++
				first, last = earliest(first, dfirst), latest(last, d.last)
				sum.BySourceTopic.add(d.SourceTopic, dfirst, d.last)
				sum.ByGroup.add(d.Group, dfirst, d.last)
				sum.ByReason.add(d.Reason, dfirst, d.last)
				sum.ByError.add(errorPreview(d.Error), dfirst, d.last)
				return false // count everything against maxScan only
			})
			if err != nil {
				return err
			}
			if next <= off {
				break
			}
			off = next
		}
	}
	sum.FirstFailure, sum.LastFailure = timeField(first), timeField(last)
	for _, b := range []*dlqBreakdown{&sum.BySourceTopic, &sum.ByGroup, &sum.ByReason, &sum.ByError} {
		b.finish(top)
	}
	httpjson.WriteJSON(w, http.StatusOK, sum)
	return nil
}
