package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/internal/httpjson"
)

// ReadItem is one record read: a CloudEvent, or a record that is not one
// in its raw form.
type ReadItem struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp string `json:"timestamp"`
	// Event is the CloudEvent (JSON event format) when the record is one
	// in either Kafka binding mode.
	Event json.RawMessage `json:"event,omitempty"`
	// Record is the raw record otherwise.
	Record *RawRecord `json:"record,omitempty"`
}

// RawRecord is a record that is not a CloudEvent. Key and Value are
// given as text when they are UTF-8, else in base64.
type RawRecord struct {
	Key         *string     `json:"key,omitempty"`
	KeyBase64   *string     `json:"keyBase64,omitempty"`
	Value       *string     `json:"value,omitempty"`
	ValueBase64 *string     `json:"valueBase64,omitempty"`
	Headers     []RawHeader `json:"headers,omitempty"`
	// Error says why a record that claims to be a CloudEvent (ce_ headers
	// or a structured content type) could not be read as one.
	Error string `json:"error,omitempty"`
}

// RawHeader is one record header.
type RawHeader struct {
	Key         string  `json:"key"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"valueBase64,omitempty"`
}

// ReadResponse is the answer to a read.
type ReadResponse struct {
	Events []ReadItem `json:"events"`
	// NextOffset is the offset to read from next.
	NextOffset int64 `json:"nextOffset"`
	// HighWatermark is the partition's end offset when read.
	HighWatermark int64 `json:"highWatermark"`
}

func textOrBase64(b []byte) (text, b64 *string) {
	if b == nil {
		return nil, nil
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

// parseTime takes RFC 3339 or Unix milliseconds.
func parseTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return time.UnixMilli(n), true
	}
	return time.Time{}, false
}

func (a *API) read(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("topic")
	ti, err := a.b.Topic(name)
	if err != nil {
		return topicErr(name, err)
	}
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "partition", "offset", "time", "limit", "wait", "pageToken":
		default:
			return invalid(k, "unknown query parameter; want partition, offset, time, limit, wait or pageToken")
		}
	}
	var part int32
	all := false
	if s := q.Get("partition"); s != "" {
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil || p < 0 || int(p) >= ti.Partitions {
			return invalid("partition", "%q: want a partition from 0 to %d", s, ti.Partitions-1)
		}
		part = int32(p)
	} else {
		all = ti.Partitions > 1 || q.Get("pageToken") != ""
	}
	if !all && q.Get("pageToken") != "" {
		return invalid("pageToken", "a page token reads every partition; give it without partition")
	}
	limit := min(100, a.cfg.MaxReadEvents)
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > a.cfg.MaxReadEvents {
			return invalid("limit", "%q: want an integer from 1 to %d", s, a.cfg.MaxReadEvents)
		}
		limit = n
	}
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			n, nerr := strconv.ParseInt(s, 10, 64)
			d, err = time.Duration(n)*time.Millisecond, nerr
		}
		if err != nil || d < 0 || d > a.cfg.MaxReadWait {
			return invalid("wait", "%q: want a duration (e.g. 5s, or milliseconds) up to %v", s, a.cfg.MaxReadWait)
		}
		wait = d
	}
	if all {
		return a.readAll(w, r, ti, limit, wait)
	}
	start, hwm, _, err := a.b.StableOffsets(name, part)
	if err != nil {
		return topicErr(name, err)
	}
	offset := start
	os, ts := q.Get("offset"), q.Get("time")
	switch {
	case os != "" && ts != "":
		return invalid("time", "give offset or time, not both")
	case os == "earliest" || os == "":
		if ts != "" {
			t, ok := parseTime(ts)
			if !ok {
				return invalid("time", "%q: want an RFC 3339 time (e.g. 2026-01-02T15:04:05Z) or Unix milliseconds", ts)
			}
			off, _, err := a.b.ListOffset(r.Context(), name, part, t.UnixMilli())
			if err != nil {
				return err
			}
			offset = off
			if off < 0 {
				offset = hwm
			}
		}
	case os == "latest":
		offset = hwm
	default:
		n, err := strconv.ParseInt(os, 10, 64)
		if err != nil || n < 0 {
			return invalid("offset", "%q: want an offset (0 or more), earliest or latest", os)
		}
		if n < start || n > hwm {
			return invalid("offset", "%d is out of range: partition %d holds offsets %d to %d", n, part, start, hwm)
		}
		offset = n
	}

	items, next, hwm, err := a.readFrom(r, name, part, offset, limit, wait)
	if err != nil {
		return err
	}
	a.m.read.Add(float64(len(items)))
	if acceptsBatch(r.Header.Get("Accept")) {
		w.Header().Set("Herald-Next-Offset", strconv.FormatInt(next, 10))
		w.Header().Set("Herald-High-Watermark", strconv.FormatInt(hwm, 10))
		writeBatch(w, items)
		return nil
	}
	httpjson.WriteJSON(w, http.StatusOK, ReadResponse{Events: items, NextOffset: next, HighWatermark: hwm})
	return nil
}

// ReadAllResponse is the answer to a read of every partition.
type ReadAllResponse struct {
	Events []ReadItem `json:"events"`
	// NextPageToken continues the read in every partition.
	NextPageToken string `json:"nextPageToken"`
}

// encodePositions makes a page token: "p:offset,..." in base64url.
func encodePositions(pos []int64) string {
	var b strings.Builder
	for p, off := range pos {
		if p > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(p) + ":" + strconv.FormatInt(off, 10))
	}
	return base64.RawURLEncoding.EncodeToString([]byte(b.String()))
}

func decodePositions(tok string, n int) ([]int64, error) {
	bad := invalid("pageToken", "not a token this API returned")
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) == 0 {
		return nil, bad
	}
	pos := make([]int64, n)
	for i := range pos {
		pos[i] = -1 // a partition added since: from its start
	}
	for _, kv := range strings.Split(string(raw), ",") {
		ps, os, ok := strings.Cut(kv, ":")
		p, err1 := strconv.Atoi(ps)
		off, err2 := strconv.ParseInt(os, 10, 64)
		if !ok || err1 != nil || err2 != nil || p < 0 || off < 0 {
			return nil, bad
		}
		if p >= n {
			return nil, invalid("pageToken", "partition %d is not in the topic (%d partitions): was it recreated?", p, n)
		}
		pos[p] = off
	}
	return pos, nil
}

// readAll reads every partition of a topic: from earliest, latest, a
// time, or a page token's positions; up to limit events spread over the
// partitions; and a token to continue.
func (a *API) readAll(w http.ResponseWriter, r *http.Request, ti broker.TopicInfo, limit int, wait time.Duration) error {
	q := r.URL.Query()
	name, n := ti.Name, ti.Partitions
	os, ts, tok := q.Get("offset"), q.Get("time"), q.Get("pageToken")
	switch {
	case tok != "" && (os != "" || ts != ""):
		return invalid("pageToken", "give pageToken alone: it holds the offsets")
	case os != "" && ts != "":
		return invalid("time", "give offset or time, not both")
	case os != "" && os != "earliest" && os != "latest":
		return invalid("offset", "%q: without partition, offset is earliest or latest (a number needs partition)", os)
	}
	var at time.Time
	if ts != "" {
		var ok bool
		if at, ok = parseTime(ts); !ok {
			return invalid("time", "%q: want an RFC 3339 time (e.g. 2026-01-02T15:04:05Z) or Unix milliseconds", ts)
		}
	}
	pos := make([]int64, n)
	if tok != "" {
		var err error
		if pos, err = decodePositions(tok, n); err != nil {
			return err
		}
	}
	for p := range pos {
		start, hwm, _, err := a.b.StableOffsets(name, int32(p))
		if err != nil {
			return topicErr(name, err)
		}
		switch {
		case tok != "":
			if pos[p] < 0 || pos[p] < start {
				pos[p] = start // new partition, or retention removed what the token pointed at
			}
			pos[p] = min(pos[p], hwm)
		case os == "latest":
			pos[p] = hwm
		case ts != "":
			off, _, err := a.b.ListOffset(r.Context(), name, int32(p), at.UnixMilli())
			if err != nil {
				return err
			}
			pos[p] = off
			if off < 0 {
				pos[p] = hwm
			}
		default:
			pos[p] = start
		}
	}
	items := []ReadItem{}
	var deadline time.Time
	if wait > 0 {
		deadline = time.Now().Add(wait)
	}
	for {
		// Two passes: a fair share each, then what is left to any.
		share := (limit + n - 1) / n
		full := make([]bool, n)
		for pass := 0; pass < 2 && len(items) < limit; pass++ {
			for p := 0; p < n && len(items) < limit; p++ {
				if pass == 1 && !full[p] {
					continue
				}
				take := min(limit-len(items), share)
				if pass == 1 {
					take = limit - len(items)
				}
				got, next, _, err := a.readFrom(r, name, int32(p), pos[p], take, 0)
				if err != nil {
					return err
				}
				items = append(items, got...)
				pos[p] = next
				full[p] = len(got) == take
			}
		}
		if len(items) > 0 || wait <= 0 || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-time.After(25 * time.Millisecond):
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
	a.m.read.Add(float64(len(items)))
	next := encodePositions(pos)
	if acceptsBatch(r.Header.Get("Accept")) {
		w.Header().Set("Herald-Next-Page-Token", next)
		writeBatch(w, items)
		return nil
	}
	httpjson.WriteJSON(w, http.StatusOK, ReadAllResponse{Events: items, NextPageToken: next})
	return nil
}

// writeBatch sends the CloudEvents of items as a JSON array.
func writeBatch(w http.ResponseWriter, items []ReadItem) {
	w.Header().Set("Content-Type", event.ContentTypeBatchJSON)
	w.WriteHeader(http.StatusOK)
	w.Write([]byte{'['})
	first := true
	for _, it := range items {
		if it.Event == nil {
			continue
		}
		if !first {
			w.Write([]byte{','})
		}
		first = false
		w.Write(it.Event)
	}
	w.Write([]byte("]\n"))
}

func acceptsBatch(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == event.ContentTypeBatchJSON {
			return true
		}
	}
	return false
}

// readFrom reads up to limit records of committed data from offset,
// waiting up to wait for the first when there are none.
func (a *API) readFrom(r *http.Request, topic string, part int32, offset int64, limit int, wait time.Duration) (items []ReadItem, next, hwm int64, err error) {
	items = []ReadItem{}
	next, hwm, err = a.scan(r.Context(), topic, part, offset, limit, limit, wait, func(off, ts int64, rec *batch.Record) bool {
		items = append(items, readItem(part, off, ts, rec))
		return true
	})
	if err != nil {
		return nil, 0, 0, err
	}
	return items, next, hwm, nil
}

// scan visits committed records (read_committed: up to the last stable
// offset, aborted transactions and control batches skipped) from offset,
// until visit has accepted limit records or maxScan were visited or about
// MaxReadBytes were read. When there is nothing to visit it waits up to
// wait for a first record. next is the offset to continue from.
func (a *API) scan(ctx context.Context, topic string, part int32, offset int64, limit, maxScan int, wait time.Duration,
	visit func(off, ts int64, rec *batch.Record) bool) (next, hwm int64, err error) {
	next = offset
	accepted, scanned := 0, 0
	more := func() bool { return accepted < limit && scanned < maxScan }
	var deadline <-chan time.Time
	var it batch.Iter
	bytesRead := 0
	for {
		f, err := a.b.FetchCommitted(ctx, topic, part, next, min(1<<20, a.cfg.MaxReadBytes), nil)
		if err != nil {
			return 0, 0, err
		}
		hwm = f.HighWatermark
		progressed := false
		for pos := 0; pos < len(f.Records) && more(); {
			h, err := batch.ParseHeader(f.Records[pos:])
			if err != nil {
				return 0, 0, err
			}
			raw := f.Records[pos : pos+h.Size()]
			pos += h.Size()
			if h.LastOffset() < next {
				continue
			}
			skip := h.Control() || aborted(h, f.Aborted)
			if !skip {
				if err := it.Reset(raw); err != nil {
					return 0, 0, err
				}
				for more() && it.Next() {
					if it.Offset() < next {
						continue
					}
					scanned++
					if visit(it.Offset(), it.Timestamp(), it.Record()) {
						accepted++
					}
					next = it.Offset() + 1
					progressed = true
				}
				if err := it.Err(); err != nil {
					return 0, 0, err
				}
			}
			if more() || skip {
				next = max(next, h.LastOffset()+1)
				progressed = true
			}
			bytesRead += len(raw)
		}
		if !more() || bytesRead >= a.cfg.MaxReadBytes {
			return next, hwm, nil
		}
		if progressed && next < f.LastStableOffset {
			continue
		}
		if scanned > 0 || wait <= 0 {
			return next, hwm, nil
		}
		if deadline == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			deadline = t.C
		}
		if progressed {
			continue
		}
		if next < hwm {
			// Held back by an open transaction: the high-water mark is
			// already past next, so Watch would not block. Poll.
			select {
			case <-time.After(20 * time.Millisecond):
				continue
			case <-deadline:
				return next, hwm, nil
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			}
		}
		ch, stop, err := a.b.Watch(topic, part, next)
		if err != nil {
			return 0, 0, err
		}
		{
			select {
			case <-ch:
			case <-deadline:
				stop()
				return next, hwm, nil
			case <-ctx.Done():
				stop()
				return 0, 0, ctx.Err()
			}
		}
		stop()
	}
}

func aborted(h batch.Header, list []broker.AbortedTxn) bool {
	if !h.Transactional() {
		return false
	}
	for _, a := range list {
		if a.ProducerID == h.ProducerID && h.BaseOffset >= a.FirstOffset && h.BaseOffset <= a.LastOffset {
			return true
		}
	}
	return false
}

// readItem turns a record into a CloudEvent when it is one.
func readItem(part int32, off, ts int64, rec *batch.Record) ReadItem {
	item := ReadItem{Partition: part, Offset: off, Timestamp: time.UnixMilli(ts).UTC().Format(time.RFC3339Nano)}
	m := event.Message{Key: rec.Key, Value: rec.Value, Headers: make([]event.Header, 0, len(rec.Headers))}
	claims := false
	for _, h := range rec.Headers {
		k := string(h.Key)
		m.Headers = append(m.Headers, event.Header{Key: k, Value: h.Value})
		if k == event.HeaderSpecVersion || k == event.HeaderContentType && strings.HasPrefix(strings.ToLower(string(h.Value)), event.ContentTypeJSON) {
			claims = true
		}
	}
	var why string
	if claims {
		e, err := event.DecodeAny(m)
		var j []byte
		if err == nil {
			if j, err = event.MarshalJSON(e); err == nil {
				item.Event = j
				return item
			}
		}
		why = err.Error()
	}
	raw := &RawRecord{Error: why}
	raw.Key, raw.KeyBase64 = textOrBase64(rec.Key)
	raw.Value, raw.ValueBase64 = textOrBase64(rec.Value)
	for _, h := range rec.Headers {
		rh := RawHeader{Key: string(h.Key)}
		rh.Value, rh.ValueBase64 = textOrBase64(h.Value)
		raw.Headers = append(raw.Headers, rh)
	}
	item.Record = raw
	return item
}
