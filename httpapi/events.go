package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/internal/httpjson"
)

// pubRec is one record to publish.
type pubRec struct {
	key, value []byte
	headers    []batch.RecordHeader
	partition  int32 // -1: choose
	dedupKey   string
	id         string // the event's id, for the response
}

// PublishResult is where one published event or record is stored.
type PublishResult struct {
	ID        string `json:"id,omitempty"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// Duplicate is set when the event repeats one published within the
	// topic's deduplication window: Partition and Offset are the
	// original's and nothing was stored.
	Duplicate bool `json:"duplicate,omitempty"`
}

// PublishResponse is the answer to a publish: one result per event, in
// request order.
type PublishResponse struct {
	Results []PublishResult `json:"results"`
}

// recordsRequest is the application/json publish body: plain records.
type recordsRequest struct {
	Records []recordIn `json:"records"`
}

type recordIn struct {
	Key         *string           `json:"key"`
	Value       json.RawMessage   `json:"value"`
	ValueBase64 *string           `json:"valueBase64"`
	Partition   *int32            `json:"partition"`
	Headers     map[string]string `json:"headers"`
}

type roundRobin struct{ n atomic.Uint32 }

func (r *roundRobin) next(n int) int32 { return int32(r.n.Add(1) % uint32(n)) }

// readBody reads a body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, httpjson.Errorf(httpjson.CodePayloadTooLarge, "", "request body is larger than the limit of %d bytes", limit)
		}
		return nil, invalid("", "reading the request body: %v", err)
	}
	return b, nil
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("topic")
	ti, err := a.b.Topic(name)
	if err != nil {
		return topicErr(name, err)
	}
	if ti.Internal {
		return invalid("topic", "%q is an internal topic; only Herald writes to it", name)
	}
	mode, err := contentMode(r.Header)
	if err != nil {
		return err
	}
	part := int32(-1)
	if s := r.URL.Query().Get("partition"); s != "" {
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil || p < 0 || int(p) >= ti.Partitions {
			return invalid("partition", "%q: want a partition from 0 to %d", s, ti.Partitions-1)
		}
		part = int32(p)
	}
	idem := r.Header.Get("Idempotency-Key")
	if len(idem) > 256 || !utf8.ValidString(idem) {
		return invalid("Idempotency-Key", "want at most 256 bytes of UTF-8")
	}
	body, err := readBody(w, r, a.cfg.MaxPublishBytes)
	if err != nil {
		return err
	}
	var recs []pubRec
	switch mode {
	case modeRecords:
		if recs, err = decodeRecords(body, ti.Partitions); err != nil {
			return err
		}
	default:
		var evs []*event.Event
		switch mode {
		case modeBinary:
			var e *event.Event
			if e, err = decodeBinary(r.Header, body); err == nil {
				evs = []*event.Event{e}
			}
		case modeStructured:
			var e *event.Event
			if e, err = decodeStructured(body); err == nil {
				evs = []*event.Event{e}
			}
		case modeBatch:
			evs, err = decodeBatch(body)
		}
		if err != nil {
			return err
		}
		recs = make([]pubRec, len(evs))
		for i, e := range evs {
			m, err := event.Encode(e)
			if err != nil {
				return fieldErrors(err, "")
			}
			hs := make([]batch.RecordHeader, len(m.Headers), len(m.Headers)+1)
			for j, h := range m.Headers {
				hs[j] = batch.RecordHeader{Key: []byte(h.Key), Value: h.Value}
			}
			recs[i] = pubRec{key: m.Key, value: m.Value, headers: hs, partition: -1, id: e.ID,
				dedupKey: "ce:" + e.Source + "\x00" + e.ID}
		}
	}
	for i := range recs {
		if part >= 0 && recs[i].partition < 0 {
			recs[i].partition = part
		}
		if idem != "" {
			recs[i].dedupKey = "idem:" + idem
			if len(recs) > 1 {
				recs[i].dedupKey += "#" + strconv.Itoa(i)
			}
		}
	}
	res, err := a.produce(r, ti, recs)
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, PublishResponse{Results: res})
	return nil
}

func decodeRecords(body []byte, partitions int) ([]pubRec, error) {
	var req recordsRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, jsonErr(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalid("", "request body has data after the JSON value")
	}
	if len(req.Records) == 0 {
		return nil, invalid("records", "want at least one record")
	}
	recs := make([]pubRec, len(req.Records))
	for i, in := range req.Records {
		f := func(s string) string { return "records[" + strconv.Itoa(i) + "]." + s }
		rec := pubRec{partition: -1}
		if in.Key != nil {
			rec.key = []byte(*in.Key)
		}
		switch {
		case in.ValueBase64 != nil && in.Value != nil:
			return nil, invalid(f("valueBase64"), "value and valueBase64 are both set; give one")
		case in.ValueBase64 != nil:
			v, err := base64.StdEncoding.DecodeString(*in.ValueBase64)
			if err != nil {
				return nil, invalid(f("valueBase64"), "not base64: %v", err)
			}
			rec.value = v
		case in.Value != nil && string(in.Value) != "null":
			rec.value = []byte(in.Value)
		}
		if in.Partition != nil {
			if *in.Partition < 0 || int(*in.Partition) >= partitions {
				return nil, invalid(f("partition"), "%d: want a partition from 0 to %d", *in.Partition, partitions-1)
			}
			rec.partition = *in.Partition
		}
		for _, k := range sortedKeys(in.Headers) {
			if k == "" || k == DedupHeader {
				return nil, invalid(f("headers"), "header name %q is reserved or empty", k)
			}
			rec.headers = append(rec.headers, batch.RecordHeader{Key: []byte(k), Value: []byte(in.Headers[k])})
		}
		recs[i] = rec
	}
	return recs, nil
}

func jsonErr(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return invalid("", "request body is empty; want a JSON value")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "request body is truncated JSON")
	case errors.As(err, &syn):
		return invalid("", "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		return invalid(typ.Field, "want a JSON %s, got %s", typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return invalid(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
	}
	return invalid("", "bad JSON: %v", err)
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// recOverhead bounds a record's framing in a batch (length, attributes,
// timestamp and offset deltas, lengths, header count) beyond its bytes.
const recOverhead = 32

func (p *pubRec) size() int {
	n := len(p.key) + len(p.value) + recOverhead
	for _, h := range p.headers {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

// produce stores recs (deduplicating against the topic's window) and
// returns where each is.
func (a *API) produce(r *http.Request, ti broker.TopicInfo, recs []pubRec) ([]PublishResult, error) {
	ctx := r.Context()
	// NB: once appending starts it finishes even if the client goes away:
	// the outcome must be known to resolve the dedup keys, or a retry of
	// an event that was in fact stored would store it twice.
	appendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	out := make([]PublishResult, len(recs))
	for i := range recs {
		out[i].ID = recs[i].id
	}
	maxBatch := 1048588
	if v, ok := ti.Configs[broker.CfgMaxMessageBytes]; ok {
		if n, err := strconv.Atoi(v); err == nil {
			maxBatch = n
		}
	}
	const batchOverhead = 61
	for i := range recs {
		if s := recs[i].size() + batchOverhead; s > maxBatch {
			return nil, httpjson.Errorf(httpjson.CodePayloadTooLarge, eventField(i, len(recs)),
				"event of about %d bytes is larger than topic %q's max.message.bytes of %d", s, ti.Name, maxBatch)
		}
	}

	// Deduplication.
	window := dedupWindow(ti.Configs)
	var (
		td  *topicDedup
		res []reservation
	)
	write := make([]bool, len(recs))
	for i := range write {
		write[i] = true
	}
	if window > 0 {
		keys := make([]string, len(recs))
		for i := range recs {
			keys[i] = recs[i].dedupKey
		}
		td = a.dedup.topic(ti.Name, ti.ID)
		var err error
		if res, err = a.dedup.reserve(ctx, td, window, keys); err != nil {
			return nil, err
		}
		for i, rv := range res {
			switch {
			case rv.alias >= 0:
				write[i] = false
			case rv.entry != nil && !rv.own:
				write[i] = false
				out[i].Partition, out[i].Offset, out[i].Duplicate = rv.entry.partition, rv.entry.offset, true
			}
		}
	}
	for i := range recs {
		if recs[i].dedupKey != "" && write[i] {
			recs[i].headers = append(recs[i].headers, batch.RecordHeader{Key: []byte(DedupHeader), Value: []byte(recs[i].dedupKey)})
		}
	}

	// Partitions: explicit, else by key as Kafka's default partitioner,
	// else one partition for the whole request (sticky), round-robin
	// across requests.
	sticky := int32(-1)
	parts := make([]int32, len(recs))
	for i := range recs {
		switch {
		case recs[i].partition >= 0:
			parts[i] = recs[i].partition
		case recs[i].key != nil:
			parts[i] = eventlog.PartitionFor(recs[i].key, ti.Partitions)
		default:
			if sticky < 0 {
				sticky = a.rr.next(ti.Partitions)
			}
			parts[i] = sticky
		}
	}

	// One or more batches per partition, each under max.message.bytes.
	type chunk struct {
		part int32
		idx  []int
		size int
		prod broker.Produced
		err  error
	}
	var chunks []*chunk
	open := map[int32]*chunk{}
	size := map[int32]int{}
	for i := range recs {
		if !write[i] {
			continue
		}
		p := parts[i]
		c := open[p]
		if c == nil || size[p]+recs[i].size() > maxBatch-batchOverhead {
			c = &chunk{part: p}
			open[p], size[p] = c, 0
			chunks = append(chunks, c)
		}
		c.idx = append(c.idx, i)
		size[p] += recs[i].size()
		c.size += recs[i].size()
	}
	now := a.cfg.Now().UnixMilli()
	var buf []batch.Rec
	for _, c := range chunks {
		buf = buf[:0]
		for _, i := range c.idx {
			buf = append(buf, batch.Rec{Timestamp: now, Key: recs[i].key, Value: recs[i].value, Headers: recs[i].headers})
		}
		// NB: sized up front: batch.Encode grows its buffer by exactly
		// what each record needs, which is quadratic from empty.
		raw, err := batch.Encode(make([]byte, 0, batch.HeaderSize+c.size+64), batch.BuildOptions{}, buf)
		if err != nil {
			c.err = err
			continue
		}
		c.prod, c.err = a.b.ProduceAsync(appendCtx, ti.Name, c.part, raw)
	}
	stored := make([]bool, len(recs))
	offs := make([]int64, len(recs))
	var firstErr error
	for _, c := range chunks {
		if c.err == nil {
			c.err = c.prod.Wait(appendCtx)
		}
		if c.err != nil {
			if firstErr == nil {
				firstErr = c.err
			}
			continue
		}
		for j, i := range c.idx {
			stored[i], offs[i] = true, c.prod.BaseOffset+int64(j)
			out[i].Partition, out[i].Offset = c.part, offs[i]
		}
		a.m.published.Add(float64(len(c.idx)))
	}
	if td != nil {
		a.dedup.complete(td, res, stored, parts, offs)
		for i, rv := range res {
			if rv.alias >= 0 {
				out[i].Partition, out[i].Offset, out[i].Duplicate = out[rv.alias].Partition, out[rv.alias].Offset, true
			}
			if out[i].Duplicate {
				a.m.duplicates.Inc()
			}
		}
	}
	if firstErr != nil {
		if errors.Is(firstErr, broker.ErrMessageTooLarge) {
			return nil, httpjson.Errorf(httpjson.CodePayloadTooLarge, "", "%v (topic max.message.bytes is %d)", firstErr, maxBatch)
		}
		return nil, firstErr
	}
	return out, nil
}

func eventField(i, n int) string {
	if n == 1 {
		return "data"
	}
	return "[" + strconv.Itoa(i) + "]"
}

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
