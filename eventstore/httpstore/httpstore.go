// Package httpstore is the Go SDK's event store client: an
// eventstore.Store that talks to a Herald server's event store HTTP API
// (eventstore/httpapi). It passes the same conformance suite as the
// backends, so code written against eventstore.Store runs in-process or
// remote unchanged. Typed errors survive the trip: a wrong expected
// version is a *eventstore.WrongExpectedVersionError with both versions.
package httpstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/httpapi"
)

// Client is a remote event store. Safe for concurrent use.
type Client struct {
	base   string
	hc     *http.Client
	closed atomic.Bool
}

// New returns a client of the server at baseURL ("http://host:port").
// hc nil means a client with no overall timeout (long polls set their own).
func New(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: hc}
}

// apiError is an error response.
type apiError struct {
	Status int
	Code   string `json:"code"`
	Msg    string `json:"message"`
	Field  string `json:"field"`
}

func (e *apiError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	return e.Msg
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any, expectedFor string, exp eventstore.ExpectedVersion) error {
	if c.closed.Load() {
		return eventstore.ErrClosed
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("event store %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return c.decodeError(resp, expectedFor, exp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("event store %s %s: decode response: %w", method, path, err)
	}
	return nil
}

func (c *Client) decodeError(resp *http.Response, stream string, exp eventstore.ExpectedVersion) error {
	var body struct {
		Error apiError `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(b, &body); err != nil || body.Error.Code == "" {
		return fmt.Errorf("event store: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	e := body.Error
	e.Status = resp.StatusCode
	switch {
	case resp.Header.Get(httpapi.HeaderActualVersion) != "":
		actual, _ := strconv.ParseInt(resp.Header.Get(httpapi.HeaderActualVersion), 10, 64)
		// The failing stream of a multi-stream append is named in the
		// message; its expected version is echoed there too.
		we := &eventstore.WrongExpectedVersionError{Stream: stream, Expected: exp, Actual: actual}
		if s, x, ok := parseWrong(e.Msg); ok {
			we.Stream, we.Expected = s, x
		}
		return we
	case resp.Header.Get(httpapi.HeaderStreamDeleted) == "hard":
		s := stream
		if name, ok := quoted(e.Msg); ok {
			s = name
		}
		return &eventstore.StreamDeletedError{Stream: s}
	case e.Code == "NOT_FOUND" && e.Field == "group":
		return fmt.Errorf("event store server: %s: %w", e.Msg, eventstore.ErrGroupNotFound)
	case e.Code == "ALREADY_EXISTS" && e.Field == "group":
		return fmt.Errorf("event store server: %s: %w", e.Msg, eventstore.ErrGroupExists)
	case e.Code == "NOT_FOUND":
		return notFound(e.Msg)
	case e.Code == "INVALID_ARGUMENT":
		return &eventstore.InvalidError{Field: e.Field, Reason: e.Msg}
	case e.Code == "UNAVAILABLE":
		return fmt.Errorf("event store server: %s", e.Msg)
	}
	return &e
}

// parseWrong reads `stream "x": wrong expected version: expected E, actual A`.
func parseWrong(msg string) (string, eventstore.ExpectedVersion, bool) {
	name, ok := quoted(msg)
	if !ok {
		return "", 0, false
	}
	i := strings.Index(msg, "expected ")
	j := strings.LastIndex(msg, ", actual")
	if i < 0 || j < i {
		return "", 0, false
	}
	x, err := eventstore.ParseExpectedVersion(msg[i+len("expected ") : j])
	return name, x, err == nil
}

func quoted(msg string) (string, bool) {
	i := strings.IndexByte(msg, '"')
	if i < 0 {
		return "", false
	}
	s, err := strconv.QuotedPrefix(msg[i:])
	if err != nil {
		return "", false
	}
	u, err := strconv.Unquote(s)
	return u, err == nil
}

func wireExpected(e eventstore.ExpectedVersion) json.RawMessage {
	b, _ := json.Marshal(e.String())
	return b
}

func wireEvents(evs []eventstore.EventData) []httpapi.Event {
	out := make([]httpapi.Event, len(evs))
	for i, e := range evs {
		w := httpapi.Event{ID: e.ID, Type: e.Type}
		if json.Valid(e.Data) {
			w.Data = e.Data
		} else {
			w.DataBase64 = nonNil(e.Data)
		}
		if len(e.Metadata) > 0 {
			if json.Valid(e.Metadata) {
				w.Metadata = e.Metadata
			} else {
				w.MetadataBase64 = e.Metadata
			}
		}
		out[i] = w
	}
	return out
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func recorded(evs []httpapi.Event) []eventstore.RecordedEvent {
	out := make([]eventstore.RecordedEvent, len(evs))
	for i, e := range evs {
		r := eventstore.RecordedEvent{Stream: e.Stream, Version: e.Version, Position: e.Position, ID: e.ID, Type: e.Type, Time: e.Time}
		if len(e.Data) > 0 {
			r.Data = []byte(e.Data)
		} else {
			r.Data = nonNil(e.DataBase64)
		}
		if len(e.Metadata) > 0 {
			r.Metadata = []byte(e.Metadata)
		} else if len(e.MetadataBase64) > 0 {
			r.Metadata = e.MetadataBase64
		}
		out[i] = r
	}
	return out
}

func streamPath(stream string) string { return "/v1/streams/" + url.PathEscape(stream) }

// Append implements eventstore.Store.
func (c *Client) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	// Checked here too: the server makes up missing IDs for curl users,
	// but the SDK keeps the store's contract.
	if err := eventstore.ValidateAppends([]eventstore.StreamAppend{{Stream: stream, Expected: expected, Events: events}}, 0); err != nil {
		var ie *eventstore.InvalidError
		if errors.As(err, &ie) && strings.HasPrefix(ie.Field, "appends[0].") {
			return eventstore.AppendResult{}, &eventstore.InvalidError{Field: strings.TrimPrefix(ie.Field, "appends[0]."), Reason: ie.Reason}
		}
		return eventstore.AppendResult{}, err
	}
	var res httpapi.AppendResult
	err := c.do(ctx, http.MethodPost, streamPath(stream), nil,
		httpapi.AppendRequest{ExpectedVersion: wireExpected(expected), Events: wireEvents(events)}, &res, stream, expected)
	return eventstore.AppendResult(res), err
}

// AppendMulti implements eventstore.Store.
func (c *Client) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppends(appends, 0); err != nil {
		return nil, err
	}
	req := httpapi.MultiAppendRequest{Appends: make([]httpapi.StreamAppend, len(appends))}
	for i, a := range appends {
		req.Appends[i] = httpapi.StreamAppend{Stream: a.Stream, ExpectedVersion: wireExpected(a.Expected), Events: wireEvents(a.Events)}
	}
	var out struct {
		Results []httpapi.AppendResult `json:"results"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/streams", nil, req, &out, "", 0); err != nil {
		return nil, err
	}
	res := make([]eventstore.AppendResult, len(out.Results))
	for i, r := range out.Results {
		res[i] = eventstore.AppendResult(r)
	}
	return res, nil
}

// ReadStream implements eventstore.Store.
func (c *Client) ReadStream(ctx context.Context, stream string, opts eventstore.ReadStreamOptions) ([]eventstore.RecordedEvent, error) {
	if err := eventstore.CheckReadStream(stream, opts); err != nil {
		return nil, err
	}
	q := url.Values{"from": {strconv.FormatInt(opts.From, 10)}, "max": {strconv.Itoa(min(opts.Max, 10000))}}
	if opts.Backwards {
		q.Set("backwards", "true")
	}
	var out struct {
		Events []httpapi.Event `json:"events"`
	}
	if err := c.do(ctx, http.MethodGet, streamPath(stream), q, nil, &out, stream, 0); err != nil {
		return nil, err
	}
	return recorded(out.Events), nil
}

// ReadStreamAsOf reads a stream as it was at a version (< 0: unbounded)
// and a time (zero: unbounded), on the server.
func (c *Client) ReadStreamAsOf(ctx context.Context, stream string, untilVersion int64, until time.Time, max int) ([]eventstore.RecordedEvent, error) {
	q := url.Values{"untilVersion": {strconv.FormatInt(untilVersion, 10)}, "max": {strconv.Itoa(max)}}
	if !until.IsZero() {
		q.Set("untilTime", until.Format(time.RFC3339Nano))
	}
	var out struct {
		Events []httpapi.Event `json:"events"`
	}
	if err := c.do(ctx, http.MethodGet, streamPath(stream), q, nil, &out, stream, 0); err != nil {
		return nil, err
	}
	return recorded(out.Events), nil
}

// ReadAll implements eventstore.Store.
func (c *Client) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.AllPage, error) {
	if _, err := eventstore.CheckReadAll(opts); err != nil {
		return eventstore.AllPage{}, err
	}
	q := url.Values{"from": {strconv.FormatInt(opts.From, 10)}, "max": {strconv.Itoa(min(opts.Max, 10000))}}
	if opts.Backwards {
		q.Set("backwards", "true")
	}
	f := opts.Filter
	for k, v := range map[string]string{"streamPrefix": f.StreamPrefix, "typePrefix": f.TypePrefix, "typeRegex": f.TypeRegex} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q["type"] = f.Types
	if f.ExcludeSystem {
		q.Set("excludeSystem", "true")
	}
	var page httpapi.AllPage
	if err := c.do(ctx, http.MethodGet, "/v1/all", q, nil, &page, "", 0); err != nil {
		return eventstore.AllPage{}, err
	}
	return eventstore.AllPage{Events: recorded(page.Events), Next: page.Next, IsEnd: page.IsEnd}, nil
}

// Head implements eventstore.Store.
func (c *Client) Head(ctx context.Context) (int64, error) {
	var out struct {
		Head int64 `json:"head"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/all/head", nil, nil, &out, "", 0)
	return out.Head, err
}

// WaitAll implements eventstore.Store with long polls of at most 25s.
func (c *Client) WaitAll(ctx context.Context, pos int64) error {
	for {
		wait := 25 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			return context.DeadlineExceeded
		}
		var out struct {
			Head int64 `json:"head"`
		}
		q := url.Values{"after": {strconv.FormatInt(pos, 10)}, "waitMs": {strconv.FormatInt(max(wait.Milliseconds(), 1), 10)}}
		if err := c.do(ctx, http.MethodGet, "/v1/all/head", q, nil, &out, "", 0); err != nil {
			return err
		}
		if out.Head > pos {
			return nil
		}
	}
}

// StreamInfo implements eventstore.Store.
func (c *Client) StreamInfo(ctx context.Context, stream string) (eventstore.StreamInfo, error) {
	if err := eventstore.ValidateStreamName("stream", stream); err != nil {
		return eventstore.StreamInfo{}, err
	}
	var w httpapi.StreamInfo
	if err := c.do(ctx, http.MethodGet, streamPath(stream)+"/info", nil, nil, &w, stream, 0); err != nil {
		return eventstore.StreamInfo{}, err
	}
	return eventstore.StreamInfo{
		Stream: w.Stream, Version: w.Version, Deleted: w.Deleted, Tombstoned: w.Tombstoned, TruncateBefore: w.TruncateBefore,
		Metadata: eventstore.StreamMetadata{MaxCount: w.Metadata.MaxCount, MaxAge: time.Duration(w.Metadata.MaxAgeMs) * time.Millisecond, TruncateBefore: w.Metadata.TruncateBefore},
	}, nil
}

// SetMetadata implements eventstore.Store. MaxAge travels in milliseconds.
func (c *Client) SetMetadata(ctx context.Context, stream string, md eventstore.StreamMetadata) error {
	if err := eventstore.ValidateStreamName("stream", stream); err != nil {
		return err
	}
	if err := eventstore.ValidateMetadata(md); err != nil {
		return err
	}
	w := httpapi.Metadata{MaxCount: md.MaxCount, MaxAgeMs: md.MaxAge.Milliseconds(), TruncateBefore: md.TruncateBefore}
	return c.do(ctx, http.MethodPut, streamPath(stream)+"/metadata", nil, w, nil, stream, 0)
}

// Delete implements eventstore.Store.
func (c *Client) Delete(ctx context.Context, stream string, expected eventstore.ExpectedVersion, hard bool) error {
	if err := eventstore.ValidateStreamName("stream", stream); err != nil {
		return err
	}
	q := url.Values{"expectedVersion": {expected.String()}}
	if hard {
		q.Set("hard", "true")
	}
	return c.do(ctx, http.MethodDelete, streamPath(stream), q, nil, nil, stream, expected)
}

// Streams implements eventstore.Store.
func (c *Client) Streams(ctx context.Context, after string, max int) ([]string, error) {
	q := url.Values{"after": {after}, "max": {strconv.Itoa(max)}}
	var out struct {
		Streams []string `json:"streams"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/streams", q, nil, &out, "", 0)
	return out.Streams, err
}

// Close makes further calls fail with ErrClosed; the server is untouched.
func (c *Client) Close() error {
	c.closed.Store(true)
	return nil
}

var _ eventstore.Store = (*Client)(nil)

// IsAPIError reports whether err came from the server's error shape, and
// its code.
func IsAPIError(err error) (code string, ok bool) {
	var e *apiError
	if errors.As(err, &e) {
		return e.Code, true
	}
	return "", false
}

// notFound is the server's not-found message, matching ErrStreamNotFound.
type notFound string

func (e notFound) Error() string        { return string(e) }
func (e notFound) Is(target error) bool { return target == eventstore.ErrStreamNotFound }

// Group is a persistent subscription group hosted by the server: every
// Group value (in any process) joined to the same name competes for its
// events.
type Group struct {
	c    *Client
	name string
}

// JoinGroup creates the group on the server if it is not running yet (the
// same configuration is required of every member) and returns a handle.
func (c *Client) JoinGroup(ctx context.Context, name string, cfg httpapi.GroupConfig) (*Group, error) {
	if err := c.do(ctx, http.MethodPut, "/v1/persistent-subscriptions/"+url.PathEscape(name), nil, cfg, nil, "", 0); err != nil {
		return nil, err
	}
	return &Group{c: c, name: name}, nil
}

// Group returns a handle to a group the server hosts already: one defined
// by an earlier JoinGroup, on this run of the server or a previous one
// (groups survive restarts). Its calls fail with ErrGroupNotFound if the
// group is not defined.
func (c *Client) Group(name string) *Group { return &Group{c: c, name: name} }

// DeleteGroup removes a group from the server: it stops, and does not run
// again after a restart. Its checkpoint and parked events stay, so joining
// it again resumes where it was.
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/persistent-subscriptions/"+url.PathEscape(name), nil, nil, nil, "", 0)
}

// Delivery is one delivery of an event to this consumer.
type Delivery struct {
	Event   eventstore.RecordedEvent
	Attempt int
	id      string
	g       *Group
}

func (g *Group) path(suffix string) string {
	return "/v1/persistent-subscriptions/" + url.PathEscape(g.name) + suffix
}

// Receive waits for the next delivery (long polls of at most 25s).
func (g *Group) Receive(ctx context.Context) (Delivery, error) {
	for {
		wait := 25 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			return Delivery{}, context.DeadlineExceeded
		}
		var d httpapi.WireDelivery
		q := url.Values{"waitMs": {strconv.FormatInt(max(wait.Milliseconds(), 1), 10)}}
		if err := g.c.do(ctx, http.MethodGet, g.path("/next"), q, nil, &d, "", 0); err != nil {
			return Delivery{}, err
		}
		if d.DeliveryID != "" {
			return Delivery{Event: recorded([]httpapi.Event{d.Event})[0], Attempt: d.Attempt, id: d.DeliveryID, g: g}, nil
		}
	}
}

// Ack marks the event handled.
func (d Delivery) Ack(ctx context.Context) error {
	return d.g.c.do(ctx, http.MethodPost, d.g.path("/ack"), nil, httpapi.DeliveryIDs{DeliveryIDs: []string{d.id}}, nil, "", 0)
}

// Nack rejects the event: retried, or parked after the group's retries.
func (d Delivery) Nack(ctx context.Context, reason string) error {
	return d.g.c.do(ctx, http.MethodPost, d.g.path("/nack"), nil, httpapi.DeliveryIDs{DeliveryIDs: []string{d.id}, Reason: reason}, nil, "", 0)
}

// ReplayParked delivers the group's parked events again.
func (g *Group) ReplayParked(ctx context.Context) (int, error) {
	var out struct {
		Replayed int `json:"replayed"`
	}
	err := g.c.do(ctx, http.MethodPost, g.path("/replay-parked"), nil, struct{}{}, &out, "", 0)
	return out.Replayed, err
}

// Scavenge asks the server to reclaim the space of hidden events.
func (c *Client) Scavenge(ctx context.Context) (eventstore.ScavengeReport, error) {
	var out struct {
		Events         int64 `json:"events"`
		ReclaimedBytes int64 `json:"reclaimedBytes"`
		DurationMs     int64 `json:"durationMs"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/admin/scavenge", nil, struct{}{}, &out, "", 0)
	return eventstore.ScavengeReport{Events: out.Events, ReclaimedBytes: out.ReclaimedBytes, Duration: time.Duration(out.DurationMs) * time.Millisecond}, err
}
