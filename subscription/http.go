package subscription

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/httpjson"
)

// Request limits of the HTTP API.
const (
	maxBodyBytes    = 1 << 20
	maxAckBodyBytes = 4 << 20
	maxPullMessages = 1000
	maxAckIDs       = 10000
	defaultPageSize = 100
	maxPageSize     = 1000
	pullWait        = 5 * time.Second
	maxStreamMsgs   = 100000
)

// Routes registers the subscription API on h (Go 1.22 patterns):
//
//	PUT    /v1/subscriptions/{name}                 create
//	GET    /v1/subscriptions/{name}                 describe, with stats
//	DELETE /v1/subscriptions/{name}                 delete
//	GET    /v1/subscriptions                        list (pageSize, pageToken)
//	POST   /v1/subscriptions/{name}:pull            {"maxMessages"}
//	POST   /v1/subscriptions/{name}:acknowledge     {"ackIds"}
//	POST   /v1/subscriptions/{name}:modifyAckDeadline {"ackIds","ackDeadlineSeconds"}
//	POST   /v1/subscriptions/{name}:seek            {"time"} or {"snapshot"}
//	POST   /v1/subscriptions/{name}:streamingPull   server-sent events
//	PUT    /v1/snapshots/{name}                     {"subscription"}
//	GET    /v1/snapshots/{name}, GET /v1/snapshots, DELETE /v1/snapshots/{name}
func (m *Manager) Routes(h interface {
	Handle(pattern string, handler http.Handler)
}) {
	h.Handle("PUT /v1/subscriptions/{name}", http.HandlerFunc(m.handleCreate))
	h.Handle("GET /v1/subscriptions/{name}", http.HandlerFunc(m.handleGet))
	h.Handle("DELETE /v1/subscriptions/{name}", http.HandlerFunc(m.handleDelete))
	h.Handle("GET /v1/subscriptions", http.HandlerFunc(m.handleList))
	h.Handle("POST /v1/subscriptions/{nameAction}", http.HandlerFunc(m.handleAction))
	h.Handle("PUT /v1/snapshots/{name}", http.HandlerFunc(m.handleSnapCreate))
	h.Handle("GET /v1/snapshots/{name}", http.HandlerFunc(m.handleSnapGet))
	h.Handle("DELETE /v1/snapshots/{name}", http.HandlerFunc(m.handleSnapDelete))
	h.Handle("GET /v1/snapshots", http.HandlerFunc(m.handleSnapList))
}

func (m *Manager) handleCreate(w http.ResponseWriter, r *http.Request) {
	var def Subscription
	if err := httpjson.Decode(w, r, maxBodyBytes, &def); err != nil {
		httpjson.WriteError(w, err)
		return
	}
	out, err := m.Create(r.Context(), r.PathValue("name"), def)
	if err != nil {
		httpjson.WriteError(w, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
}

func (m *Manager) handleGet(w http.ResponseWriter, r *http.Request) {
	out, err := m.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		httpjson.WriteError(w, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
}

func (m *Manager) handleDelete(w http.ResponseWriter, r *http.Request) {
	if err := m.Delete(r.Context(), r.PathValue("name")); err != nil {
		httpjson.WriteError(w, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, struct{}{})
}

// pageParams reads pageSize and pageToken.
func pageParams(r *http.Request) (size int, token string, err error) {
	size = defaultPageSize
	if v := r.URL.Query().Get("pageSize"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > maxPageSize {
			return 0, "", httpjson.Invalid("pageSize", "%q: want 1 to %d", v, maxPageSize)
		}
		size = n
	}
	return size, r.URL.Query().Get("pageToken"), nil
}

func (m *Manager) handleList(w http.ResponseWriter, r *http.Request) {
	size, token, err := pageParams(r)
	if err != nil {
		httpjson.WriteError(w, err)
		return
	}
	subs, more := m.List(token, size)
	resp := struct {
		Subscriptions []Subscription `json:"subscriptions"`
		NextPageToken string         `json:"nextPageToken,omitempty"`
	}{Subscriptions: subs}
	if resp.Subscriptions == nil {
		resp.Subscriptions = []Subscription{}
	}
	if more {
		resp.NextPageToken = subs[len(subs)-1].Name
	}
	httpjson.WriteJSON(w, http.StatusOK, resp)
}

func (m *Manager) handleAction(w http.ResponseWriter, r *http.Request) {
	na := r.PathValue("nameAction")
	i := strings.LastIndexByte(na, ':')
	if i < 0 {
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeMethodNotAllowed, "", "POST needs an action: %s:pull, :acknowledge, :modifyAckDeadline, :seek or :streamingPull", na))
		return
	}
	name, action := na[:i], na[i+1:]
	var err error
	switch action {
	case "pull":
		err = m.httpPull(w, r, name)
	case "acknowledge":
		err = m.httpAck(w, r, name)
	case "modifyAckDeadline":
		err = m.httpModAck(w, r, name)
	case "seek":
		err = m.httpSeek(w, r, name)
	case "streamingPull":
		err = m.httpStream(w, r, name)
	default:
		err = httpjson.Errorf(httpjson.CodeNotFound, "", "unknown action %q: want pull, acknowledge, modifyAckDeadline, seek or streamingPull", action)
	}
	if err != nil {
		httpjson.WriteError(w, err)
	}
}

func (m *Manager) httpPull(w http.ResponseWriter, r *http.Request, name string) error {
	var req struct {
		MaxMessages       int  `json:"maxMessages"`
		ReturnImmediately bool `json:"returnImmediately"`
	}
	if err := httpjson.Decode(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	if req.MaxMessages < 1 || req.MaxMessages > maxPullMessages {
		return httpjson.Invalid("maxMessages", "%d is out of range: want 1 to %d", req.MaxMessages, maxPullMessages)
	}
	wait := pullWait
	if req.ReturnImmediately {
		wait = 0
	}
	msgs, err := m.Pull(r.Context(), name, req.MaxMessages, wait)
	if err != nil {
		return err
	}
	bp := bodyPool.Get().(*[]byte)
	b := appendPullResponse(slices.Grow((*bp)[:0], pullResponseSize(msgs)), msgs)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	if cap(b) <= 8<<20 {
		*bp = b[:0]
		bodyPool.Put(bp)
	}
	return nil
}

// ackResponse reports ack ids refused as unknown, stale or already
// acknowledged; it is {} when every id was accepted.
type ackResponse struct {
	InvalidAckIDs []string `json:"invalidAckIds,omitempty"`
}

func checkAckIDCount(n int) error {
	if n == 0 {
		return httpjson.Invalid("ackIds", "at least one ack id is required")
	}
	if n > maxAckIDs {
		return httpjson.Invalid("ackIds", "%d ack ids, more than the limit of %d", n, maxAckIDs)
	}
	return nil
}

func checkAckIDs(ids []string) error {
	if err := checkAckIDCount(len(ids)); err != nil {
		return err
	}
	for i, id := range ids {
		if _, _, _, _, ok := parseAckID(id); !ok {
			return httpjson.Invalid(fmt.Sprintf("ackIds[%d]", i), "%q is not an ack id", id)
		}
	}
	return nil
}

func (m *Manager) httpAck(w http.ResponseWriter, r *http.Request, name string) error {
	bp := bodyPool.Get().(*[]byte)
	defer bodyPool.Put(bp)
	body, err := readBody(w, r, maxAckBodyBytes, (*bp)[:0])
	*bp = body[:0]
	if err != nil {
		return err
	}
	var refs []ackRef
	var ids [][]byte
	if raw, ok := scanAckIDs(body, nil); ok {
		ids = raw
	} else {
		// Anything but the plain shape goes through encoding/json, for
		// its errors.
		var req struct {
			AckIDs []string `json:"ackIds"`
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := httpjson.Decode(w, r, maxAckBodyBytes, &req); err != nil {
			return err
		}
		ids = make([][]byte, len(req.AckIDs))
		for i, id := range req.AckIDs {
			ids[i] = []byte(id)
		}
	}
	if err := checkAckIDCount(len(ids)); err != nil {
		return err
	}
	refs = make([]ackRef, len(ids))
	for i, id := range ids {
		if refs[i] = parseAckRef(id); !refs[i].ok {
			return httpjson.Invalid(fmt.Sprintf("ackIds[%d]", i), "%q is not an ack id", id)
		}
	}
	s, err := m.get(name)
	if err != nil {
		return err
	}
	bad, err := s.ackRefs(r.Context(), refs)
	if err != nil {
		return err
	}
	if len(bad) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "3")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("{}\n"))
		return nil
	}
	invalid := make([]string, len(bad))
	for k, i := range bad {
		invalid[k] = string(ids[i])
	}
	httpjson.WriteJSON(w, http.StatusOK, ackResponse{invalid})
	return nil
}

// bodyPool holds request and response buffers of the pull and ack paths.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// readBody reads r's body into buf, up to limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, buf []byte) ([]byte, error) {
	if n := r.ContentLength; n > limit {
		return buf, httpjson.Errorf(httpjson.CodePayloadTooLarge, "", "request body is larger than the limit of %d bytes", limit)
	} else if n > 0 && int64(cap(buf)) < n {
		buf = make([]byte, 0, n)
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		k, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err == io.EOF {
			return buf, nil
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return buf, httpjson.Errorf(httpjson.CodePayloadTooLarge, "", "request body is larger than the limit of %d bytes", limit)
		}
		if err != nil {
			return buf, httpjson.Invalid("", "reading the request body: %v", err)
		}
	}
}

// scanAckIDs parses the common shape of an ack request,
// {"ackIds":["...",...]} with optional white space and ids of printable
// ASCII without escapes, appending the ids (slices of b) to ids. Any
// other input is reported as !ok, for encoding/json to decode or reject.
func scanAckIDs(b []byte, ids [][]byte) ([][]byte, bool) {
	i := 0
	ws := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
	}
	lit := func(s string) bool {
		ws()
		if len(b)-i < len(s) || string(b[i:i+len(s)]) != s {
			return false
		}
		i += len(s)
		return true
	}
	if !lit("{") || !lit(`"ackIds"`) || !lit(":") || !lit("[") {
		return ids, false
	}
	if lit("]") {
		return ids, lit("}") && func() bool { ws(); return i == len(b) }()
	}
	for {
		ws()
		if i >= len(b) || b[i] != '"' {
			return ids, false
		}
		i++
		start := i
		for i < len(b) && b[i] != '"' {
			if b[i] < 0x20 || b[i] >= 0x7f || b[i] == '\\' {
				return ids, false
			}
			i++
		}
		if i >= len(b) {
			return ids, false
		}
		ids = append(ids, b[start:i:i])
		i++
		if lit(",") {
			continue
		}
		if !lit("]") || !lit("}") {
			return ids, false
		}
		ws()
		return ids, i == len(b)
	}
}

func (m *Manager) httpModAck(w http.ResponseWriter, r *http.Request, name string) error {
	var req struct {
		AckIDs             []string `json:"ackIds"`
		AckDeadlineSeconds *int     `json:"ackDeadlineSeconds"`
	}
	if err := httpjson.Decode(w, r, maxAckBodyBytes, &req); err != nil {
		return err
	}
	if err := checkAckIDs(req.AckIDs); err != nil {
		return err
	}
	if req.AckDeadlineSeconds == nil {
		return httpjson.Invalid("ackDeadlineSeconds", "is required (0 nacks)")
	}
	if d := *req.AckDeadlineSeconds; d < 0 || d > int(MaxAckDeadline/time.Second) {
		return httpjson.Invalid("ackDeadlineSeconds", "%d is out of range: want 0 to %d seconds", d, int(MaxAckDeadline/time.Second))
	}
	invalid, err := m.ModifyAckDeadline(r.Context(), name, req.AckIDs, *req.AckDeadlineSeconds)
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, ackResponse{invalid})
	return nil
}

func (m *Manager) httpSeek(w http.ResponseWriter, r *http.Request, name string) error {
	var req struct {
		Time     *string `json:"time"`
		Snapshot *string `json:"snapshot"`
	}
	if err := httpjson.Decode(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	var err error
	switch {
	case req.Time != nil && req.Snapshot != nil:
		return httpjson.Invalid("time", "give time or snapshot, not both")
	case req.Time != nil:
		t, perr := time.Parse(time.RFC3339Nano, *req.Time)
		if perr != nil {
			return httpjson.Invalid("time", "%q is not an RFC 3339 time", *req.Time)
		}
		err = m.SeekTime(r.Context(), name, t)
	case req.Snapshot != nil:
		err = m.SeekSnapshot(r.Context(), name, *req.Snapshot)
	default:
		return httpjson.Invalid("time", "give time or snapshot")
	}
	if err != nil {
		return err
	}
	httpjson.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// httpStream is streaming pull over server-sent events: each event's data
// is {"receivedMessages":[...]}, sent while the stream's delivered but not
// yet acked, nacked or expired messages stay under maxOutstandingMessages
// and maxOutstandingBytes. Acks go through :acknowledge.
func (m *Manager) httpStream(w http.ResponseWriter, r *http.Request, name string) error {
	var req struct {
		MaxOutstandingMessages int `json:"maxOutstandingMessages"`
		MaxOutstandingBytes    int `json:"maxOutstandingBytes"`
	}
	if err := httpjson.Decode(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	if req.MaxOutstandingMessages == 0 {
		req.MaxOutstandingMessages = 1000
	}
	if req.MaxOutstandingMessages < 1 || req.MaxOutstandingMessages > maxStreamMsgs {
		return httpjson.Invalid("maxOutstandingMessages", "%d is out of range: want 1 to %d", req.MaxOutstandingMessages, maxStreamMsgs)
	}
	if req.MaxOutstandingBytes == 0 {
		req.MaxOutstandingBytes = 100 << 20
	}
	if req.MaxOutstandingBytes < 1 {
		return httpjson.Invalid("maxOutstandingBytes", "%d: want a positive byte count", req.MaxOutstandingBytes)
	}
	s, err := m.get(name)
	if err != nil {
		return err
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		return httpjson.Errorf(httpjson.CodeInternal, "", "streaming is not supported by this server")
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	ctx := r.Context()
	fc := &flowControl{maxMsgs: req.MaxOutstandingMessages, maxBytes: req.MaxOutstandingBytes}
	keepalive := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.streams, cancel)
	defer stop()
	for ctx.Err() == nil && s.ctx.Err() == nil {
		room, ch := fc.room(s)
		if room <= 0 {
			select {
			case <-ch:
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		msgs, err := s.pull(ctx, min(room, maxPullMessages), time.Second)
		if err != nil {
			return nil
		}
		if len(msgs) == 0 {
			if time.Since(keepalive) > 15*time.Second {
				fmt.Fprint(w, ": keepalive\n\n")
				fl.Flush()
				keepalive = time.Now()
			}
			continue
		}
		fc.add(msgs)
		b := append([]byte("data: "), appendPullResponse(nil, msgs)...)
		b = append(b[:len(b)-1], "\n\n"...) // the encoder's newline ends the data line
		if _, err := w.Write(b); err != nil {
			return nil
		}
		fl.Flush()
		keepalive = time.Now()
	}
	return nil
}

// flowControl tracks a stream's outstanding messages.
type flowControl struct {
	maxMsgs, maxBytes int
	out               []streamOut
}

type streamOut struct {
	p        int
	off      int64
	attempts uint16
	size     int
}

func (fc *flowControl) add(msgs []Received) {
	for _, r := range msgs {
		_, p, off, a, _ := parseAckID(r.AckID)
		fc.out = append(fc.out, streamOut{p, off, a, len(r.Message.Data)})
	}
}

// room drops the messages that are no longer outstanding and returns how
// many more may be sent now (0 when the byte limit is reached).
func (fc *flowControl) room(s *sub) (int, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep, bytes := fc.out[:0], 0
	for _, o := range fc.out {
		if e := s.entLocked(o.p, o.off); e != nil && e.state == stOut && e.attempts == o.attempts {
			keep = append(keep, o)
			bytes += o.size
		}
	}
	fc.out = keep
	if bytes >= fc.maxBytes {
		return 0, s.mu.notify
	}
	return fc.maxMsgs - len(keep), s.mu.notify
}

func (m *Manager) handleSnapCreate(w http.ResponseWriter, r *http.Request) {
	var req Snapshot
	if err := httpjson.Decode(w, r, maxBodyBytes, &req); err != nil {
		httpjson.WriteError(w, err)
		return
	}
	out, err := m.CreateSnapshot(r.Context(), r.PathValue("name"), req.Subscription)
	if err != nil {
		httpjson.WriteError(w, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
}

func (m *Manager) handleSnapGet(w http.ResponseWriter, r *http.Request) {
	out, err := m.GetSnapshot(r.PathValue("name"))
	if err != nil {
		httpjson.WriteError(w, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
}

func (m *Manager) handleSnapDelete(w http.ResponseWriter, r *http.Request) {
	if err := m.DeleteSnapshot(r.Context(), r.PathValue("name")); err != nil {
		httpjson.WriteError(w, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, struct{}{})
}

func (m *Manager) handleSnapList(w http.ResponseWriter, r *http.Request) {
	httpjson.WriteJSON(w, http.StatusOK, struct {
		Snapshots []Snapshot `json:"snapshots"`
	}{m.ListSnapshots()})
}
