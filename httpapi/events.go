package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
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

func (a *API) publish(w http.ResponseWriter, r *http.Request) (err error) {
	name := r.PathValue("topic")
	ctx, span := startPublishSpan(r, name)
	defer func() { endSpan(span, err) }()
	r = r.WithContext(ctx)
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
			traceEvent(ctx, span, e)
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
