// Package httpapi serves an eventstore.Store over HTTP, in the error shape
// of internal/httpjson. Package eventstore/httpstore is its Go client.
//
//	POST   /v1/streams                  atomic multi-stream append {"appends":[...]}
//	GET    /v1/streams?after=&max=      stream names
//	POST   /v1/streams/{stream}         append {"expectedVersion":"any"|"no-stream"|"exists"|N,"events":[...]}
//	GET    /v1/streams/{stream}         read ?from=&backwards=&max= or ?untilVersion=&untilTime= (time travel)
//	DELETE /v1/streams/{stream}         ?expectedVersion=&hard=true
//	GET    /v1/streams/{stream}/info    version, delete state, metadata
//	PUT    /v1/streams/{stream}/metadata {"maxCount","maxAgeMs","truncateBefore"}
//	GET    /v1/all                      ?from=&backwards=&max=&streamPrefix=&typePrefix=&typeRegex=&type=&excludeSystem=
//	GET    /v1/all/head                 ?after=&waitMs= long poll until the head passes after
//	POST   /v1/admin/scavenge           reclaim hidden events' space (stores that can)
//	/v1/persistent-subscriptions/{group}...        persistent subscriptions hosted by the server (persistent.go)
//
// Event data and metadata travel as JSON values when they are JSON, as
// base64 in dataBase64/metadataBase64 otherwise. A wrong expected version
// is 409 ABORTED with the actual version in the Herald-Actual-Version
// header; a hard-deleted stream is 410-like FAILED_PRECONDITION with
// Herald-Stream-Deleted: hard; a missing stream 404 NOT_FOUND.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/internal/httpjson"
)

// Headers carrying typed error details.
const (
	HeaderActualVersion = "Herald-Actual-Version"
	HeaderStreamDeleted = "Herald-Stream-Deleted"
)

// MaxBodyBytes bounds a request body (events of 1 MiB plus JSON overhead).
const MaxBodyBytes = 16 << 20

// MaxWait bounds a head long poll.
const MaxWait = 60 * time.Second

// Event is an event on the wire.
type Event struct {
	ID             string          `json:"id"`
	Type           string          `json:"type"`
	Data           json.RawMessage `json:"data,omitempty"`
	DataBase64     []byte          `json:"dataBase64,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	MetadataBase64 []byte          `json:"metadataBase64,omitempty"`
	// Set on read.
	Stream   string    `json:"stream,omitempty"`
	Version  int64     `json:"version"`
	Position int64     `json:"position"`
	Time     time.Time `json:"time,omitzero"`
}

// AppendRequest is the body of POST /v1/streams/{stream}.
type AppendRequest struct {
	ExpectedVersion json.RawMessage `json:"expectedVersion"`
	Events          []Event         `json:"events"`
}

// StreamAppend is one stream of a multi-stream append.
type StreamAppend struct {
	Stream          string          `json:"stream"`
	ExpectedVersion json.RawMessage `json:"expectedVersion"`
	Events          []Event         `json:"events"`
}

// MultiAppendRequest is the body of POST /v1/streams.
type MultiAppendRequest struct {
	Appends []StreamAppend `json:"appends"`
}

// AppendResult is one stream's result.
type AppendResult struct {
	Stream   string `json:"stream"`
	Version  int64  `json:"version"`
	Position int64  `json:"position"`
}

// Metadata is stream metadata on the wire.
type Metadata struct {
	MaxCount       int64 `json:"maxCount,omitempty"`
	MaxAgeMs       int64 `json:"maxAgeMs,omitempty"`
	TruncateBefore int64 `json:"truncateBefore,omitempty"`
}

// StreamInfo is GET /v1/streams/{stream}/info.
type StreamInfo struct {
	Stream         string   `json:"stream"`
	Version        int64    `json:"version"`
	Deleted        bool     `json:"deleted"`
	Tombstoned     bool     `json:"tombstoned"`
	TruncateBefore int64    `json:"truncateBefore"`
	Metadata       Metadata `json:"metadata"`
}

// AllPage is GET /v1/all.
type AllPage struct {
	Events []Event `json:"events"`
	Next   int64   `json:"next"`
	IsEnd  bool    `json:"isEnd"`
}

// API is a mounted event store API. Close stops the persistent
// subscription groups it hosts (their checkpoints are saved).
type API struct{ g *groups }

// Close stops the hosted subscription groups.
func (a *API) Close() error { return a.g.close() }

// Routes mounts the API on h (an *http.ServeMux, for example).
func Routes(h interface{ Handle(string, http.Handler) }, s eventstore.Store) *API {
	a := &api{s: s}
	g := &groups{s: s, m: map[string]*group{}}
	// Restore the saved groups now, so they run before any request; a
	// failure is retried by the first group request.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if _, err := g.open(ctx); err != nil {
		slog.Default().Error("event store API: restoring persistent subscription groups failed; retried on the next group request", "err", err)
	}
	cancel()
	h.Handle("PUT /v1/persistent-subscriptions/{group}", a.fn(g.put))
	h.Handle("GET /v1/persistent-subscriptions/{group}/next", a.fn(g.next))
	h.Handle("POST /v1/persistent-subscriptions/{group}/ack", a.fn(g.settle(true)))
	h.Handle("POST /v1/persistent-subscriptions/{group}/nack", a.fn(g.settle(false)))
	h.Handle("POST /v1/persistent-subscriptions/{group}/replay-parked", a.fn(g.replay))
	h.Handle("DELETE /v1/persistent-subscriptions/{group}", a.fn(g.delete))
	h.Handle("POST /v1/streams", a.fn(a.appendMulti))
	h.Handle("GET /v1/streams", a.fn(a.streams))
	h.Handle("POST /v1/streams/{stream}", a.fn(a.append))
	h.Handle("GET /v1/streams/{stream}", a.fn(a.read))
	h.Handle("DELETE /v1/streams/{stream}", a.fn(a.delete))
	h.Handle("GET /v1/streams/{stream}/info", a.fn(a.info))
	h.Handle("PUT /v1/streams/{stream}/metadata", a.fn(a.metadata))
	h.Handle("GET /v1/all", a.fn(a.readAll))
	h.Handle("GET /v1/all/head", a.fn(a.head))
	h.Handle("POST /v1/admin/scavenge", a.fn(a.scavenge))
	return &API{g: g}
}

type api struct{ s eventstore.Store }

func (a *api) fn(f func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			writeError(w, err)
		}
	})
}

// writeError maps the store's typed errors to the shared error shape.
func writeError(w http.ResponseWriter, err error) {
	var (
		we *eventstore.WrongExpectedVersionError
		de *eventstore.StreamDeletedError
		ie *eventstore.InvalidError
	)
	switch {
	case errors.As(err, &we):
		w.Header().Set(HeaderActualVersion, strconv.FormatInt(we.Actual, 10))
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeAborted, "expectedVersion", "%s", we.Error()))
	case errors.As(err, &de):
		w.Header().Set(HeaderStreamDeleted, "hard")
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeFailedPrecondition, "stream", "%s", de.Error()))
	case errors.Is(err, eventstore.ErrStreamNotFound):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeNotFound, "stream", "%s", err.Error()))
	case errors.As(err, &ie):
		httpjson.WriteError(w, httpjson.Invalid(ie.Field, "%s", ie.Reason))
	case errors.Is(err, eventstore.ErrClosed):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeUnavailable, "", "%s", err.Error()))
	case errors.Is(err, context.DeadlineExceeded):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeDeadlineExceeded, "", "%s", err.Error()))
	default:
		httpjson.WriteError(w, err)
	}
}

// ParseExpected reads an expected version: "any", "no-stream", "exists" or
// a number (as a JSON string or number). Missing means any.
func ParseExpected(field string, raw json.RawMessage) (eventstore.ExpectedVersion, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return eventstore.Any, nil
	}
	var str string
	if json.Unmarshal(raw, &str) != nil {
		str = string(raw)
	}
	e, err := eventstore.ParseExpectedVersion(str)
	if err != nil {
		return 0, httpjson.Invalid(field, "%q: want \"any\", \"no-stream\", \"exists\" or a version >= 0", str)
	}
	return e, nil
}

// ToEventData converts a wire event for appending.
func ToEventData(field string, e Event) (eventstore.EventData, error) {
	d := eventstore.EventData{ID: e.ID, Type: e.Type}
	switch {
	case len(e.Data) > 0 && len(e.DataBase64) > 0:
		return d, httpjson.Invalid(field+".data", "set data or dataBase64, not both")
	case len(e.Data) > 0:
		d.Data = e.Data
	default:
		d.Data = e.DataBase64
	}
	switch {
	case len(e.Metadata) > 0 && len(e.MetadataBase64) > 0:
		return d, httpjson.Invalid(field+".metadata", "set metadata or metadataBase64, not both")
	case len(e.Metadata) > 0:
		d.Metadata = e.Metadata
	default:
		d.Metadata = e.MetadataBase64
	}
	if d.ID == "" {
		d.ID = eventstore.NewID()
	}
	return d, nil
}

// FromRecorded converts a stored event for the wire.
func FromRecorded(e eventstore.RecordedEvent) Event {
	out := Event{ID: e.ID, Type: e.Type, Stream: e.Stream, Version: e.Version, Position: e.Position, Time: e.Time}
	if json.Valid(e.Data) {
		out.Data = e.Data
	} else {
		out.DataBase64 = e.Data
	}
	if len(e.Metadata) > 0 {
		if json.Valid(e.Metadata) {
			out.Metadata = e.Metadata
		} else {
			out.MetadataBase64 = e.Metadata
		}
	}
	return out
}

func fromRecordedAll(evs []eventstore.RecordedEvent) []Event {
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = FromRecorded(e)
	}
	return out
}

func (a *api) append(w http.ResponseWriter, r *http.Request) error {
	var req AppendRequest
	if err := httpjson.Decode(w, r, MaxBodyBytes, &req); err != nil {
		return err
	}
	exp, err := ParseExpected("expectedVersion", req.ExpectedVersion)
	if err != nil {
		return err
	}
	evs := make([]eventstore.EventData, len(req.Events))
	for i, e := range req.Events {
		if evs[i], err = ToEventData(fmt.Sprintf("events[%d]", i), e); err != nil {
			return err
		}
	}
	res, err := a.s.Append(r.Context(), r.PathValue("stream"), exp, evs...)
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, AppendResult(res))
	return nil
}

func (a *api) appendMulti(w http.ResponseWriter, r *http.Request) error {
	var req MultiAppendRequest
	if err := httpjson.Decode(w, r, MaxBodyBytes, &req); err != nil {
		return err
	}
	apps := make([]eventstore.StreamAppend, len(req.Appends))
	for i, sa := range req.Appends {
		p := fmt.Sprintf("appends[%d]", i)
		exp, err := ParseExpected(p+".expectedVersion", sa.ExpectedVersion)
		if err != nil {
			return err
		}
		apps[i] = eventstore.StreamAppend{Stream: sa.Stream, Expected: exp, Events: make([]eventstore.EventData, len(sa.Events))}
		for j, e := range sa.Events {
			if apps[i].Events[j], err = ToEventData(fmt.Sprintf("%s.events[%d]", p, j), e); err != nil {
				return err
			}
		}
	}
	res, err := a.s.AppendMulti(r.Context(), apps)
	if err != nil {
		return err
	}
	out := make([]AppendResult, len(res))
	for i, x := range res {
		out[i] = AppendResult(x)
	}
	httpjson.WriteJSON(w, http.StatusOK, struct {
		Results []AppendResult `json:"results"`
	}{out})
	return nil
}

func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, httpjson.Invalid(name, "%q is not an integer", v)
	}
	return n, nil
}

func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, httpjson.Invalid(name, "%q is not true or false", v)
	}
	return b, nil
}

func queryMax(r *http.Request) (int, error) {
	n, err := queryInt(r, "max", 0)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > 10000 {
		return 0, httpjson.Invalid("max", "%d is outside [0, 10000]", n)
	}
	return int(n), nil
}

func (a *api) read(w http.ResponseWriter, r *http.Request) error {
	stream := r.PathValue("stream")
	max, err := queryMax(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if q.Has("untilVersion") || q.Has("untilTime") {
		until, err := queryInt(r, "untilVersion", -1)
		if err != nil {
			return err
		}
		var at time.Time
		if v := q.Get("untilTime"); v != "" {
			if at, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return httpjson.Invalid("untilTime", "%q is not an RFC 3339 time", v)
			}
		}
		evs, err := eventstore.ReadStreamAsOf(r.Context(), a.s, stream, until, at, max)
		if err != nil {
			return err
		}
		httpjson.WriteJSON(w, http.StatusOK, struct {
			Events []Event `json:"events"`
		}{fromRecordedAll(evs)})
		return nil
	}
	from, back, err := queryDirection(r)
	if err != nil {
		return err
	}
	evs, err := a.s.ReadStream(r.Context(), stream, eventstore.ReadStreamOptions{From: from, Backwards: back, Max: max})
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, struct {
		Events []Event `json:"events"`
	}{fromRecordedAll(evs)})
	return nil
}

// queryDirection reads ?backwards and ?from: a read starts at from,
// by default the first position forwards and the end backwards.
func queryDirection(r *http.Request) (from int64, back bool, err error) {
	if back, err = queryBool(r, "backwards"); err != nil {
		return 0, false, err
	}
	def := int64(0)
	if back {
		def = eventstore.End
	}
	from, err = queryInt(r, "from", def)
	return from, back, err
}

func (a *api) readAll(w http.ResponseWriter, r *http.Request) error {
	max, err := queryMax(r)
	if err != nil {
		return err
	}
	from, back, err := queryDirection(r)
	if err != nil {
		return err
	}
	exclude, err := queryBool(r, "excludeSystem")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := eventstore.Filter{StreamPrefix: q.Get("streamPrefix"), TypePrefix: q.Get("typePrefix"), TypeRegex: q.Get("typeRegex"), Types: q["type"], ExcludeSystem: exclude}
	page, err := a.s.ReadAll(r.Context(), eventstore.ReadAllOptions{From: from, Backwards: back, Max: max, Filter: f})
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, AllPage{Events: fromRecordedAll(page.Events), Next: page.Next, IsEnd: page.IsEnd})
	return nil
}

func (a *api) head(w http.ResponseWriter, r *http.Request) error {
	after, err := queryInt(r, "after", -1)
	if err != nil {
		return err
	}
	waitMs, err := queryInt(r, "waitMs", 0)
	if err != nil {
		return err
	}
	if waitMs < 0 || time.Duration(waitMs)*time.Millisecond > MaxWait {
		return httpjson.Invalid("waitMs", "%d is outside [0, %d]", waitMs, MaxWait.Milliseconds())
	}
	if waitMs > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), time.Duration(waitMs)*time.Millisecond)
		err := a.s.WaitAll(ctx, after)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	h, err := a.s.Head(r.Context())
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, struct {
		Head int64 `json:"head"`
	}{h})
	return nil
}

func (a *api) info(w http.ResponseWriter, r *http.Request) error {
	info, err := a.s.StreamInfo(r.Context(), r.PathValue("stream"))
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, StreamInfo{
		Stream: info.Stream, Version: info.Version, Deleted: info.Deleted, Tombstoned: info.Tombstoned,
		TruncateBefore: info.TruncateBefore, Metadata: toWireMeta(info.Metadata),
	})
	return nil
}

func toWireMeta(m eventstore.StreamMetadata) Metadata {
	return Metadata{MaxCount: m.MaxCount, MaxAgeMs: m.MaxAge.Milliseconds(), TruncateBefore: m.TruncateBefore}
}

func (a *api) metadata(w http.ResponseWriter, r *http.Request) error {
	var m Metadata
	if err := httpjson.Decode(w, r, 1<<10, &m); err != nil {
		return err
	}
	if m.MaxAgeMs < 0 {
		return httpjson.Invalid("maxAgeMs", "%d is negative", m.MaxAgeMs)
	}
	md := eventstore.StreamMetadata{MaxCount: m.MaxCount, MaxAge: time.Duration(m.MaxAgeMs) * time.Millisecond, TruncateBefore: m.TruncateBefore}
	if err := a.s.SetMetadata(r.Context(), r.PathValue("stream"), md); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) delete(w http.ResponseWriter, r *http.Request) error {
	hard, err := queryBool(r, "hard")
	if err != nil {
		return err
	}
	exp := eventstore.Any
	if v := r.URL.Query().Get("expectedVersion"); v != "" {
		if exp, err = eventstore.ParseExpectedVersion(v); err != nil {
			return httpjson.Invalid("expectedVersion", "%q: want any, no-stream, exists or a version >= 0", v)
		}
	}
	if err := a.s.Delete(r.Context(), r.PathValue("stream"), exp, hard); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) streams(w http.ResponseWriter, r *http.Request) error {
	max, err := queryMax(r)
	if err != nil {
		return err
	}
	names, err := a.s.Streams(r.Context(), r.URL.Query().Get("after"), max)
	if err != nil {
		return err
	}
	if names == nil {
		names = []string{}
	}
	httpjson.WriteJSON(w, http.StatusOK, struct {
		Streams []string `json:"streams"`
	}{names})
	return nil
}

func (a *api) scavenge(w http.ResponseWriter, r *http.Request) error {
	sc, ok := a.s.(eventstore.Scavenger)
	if !ok {
		return httpjson.Errorf(httpjson.CodeFailedPrecondition, "", "this store cannot scavenge")
	}
	rep, err := sc.Scavenge(r.Context())
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, struct {
		Events         int64 `json:"events"`
		ReclaimedBytes int64 `json:"reclaimedBytes"`
		DurationMs     int64 `json:"durationMs"`
	}{rep.Events, rep.ReclaimedBytes, rep.Duration.Milliseconds()})
	return nil
}
