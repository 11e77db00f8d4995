package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// conn serves one client connection. Its goroutine reads and handles
// requests one at a time, in order, as Kafka brokers do; a writer goroutine
// sends the responses in the same order. A handler may finish its response
// later (produce waiting for durability), so a slow fsync does not stop
// the next request from being read and appended.
type conn struct {
	s      *Server
	nc     net.Conn
	logger *slog.Logger
	host   string // the client's host, as group descriptions show it

	ctx    context.Context // canceled when the connection ends
	cancel context.CancelFunc

	out chan *reply // responses in request order, to the writer
	// queued counts replies handed to the writer and not yet written or
	// dropped by it (see writeInline).
	queued atomic.Int64
	wg     sync.WaitGroup // the writer and deferred handlers
	// scratch is the fetch read buffer, used by the serving goroutine
	// only (see fetchScratch).
	scratch []byte
	// sendfile: fetch responses may send records from segment files
	// (sendfile.go).
	sendfile bool
	// sasl is the authentication state (sasl.go), used by the serving
	// goroutine only.
	sasl saslState
}

// reply is one response slot in the write queue.
type reply struct {
	done chan struct{} // closed once buf is set
	buf  []byte        // the whole frame; nil: nothing to send
	held int64         // request bytes taken from the server's budget
	// pooled: buf came from respPool and goes back once written.
	pooled bool
	// pieces, when set, is the response instead of buf: bytes and spans
	// of segment files (sendfile.go), whose files spans holds open until
	// written or dropped.
	pieces []piece
	spans  []heldSpan
}

// request is one parsed request.
type request struct {
	key, version int16
	corrID       int32
	clientID     string
	msg          kmsg.Request

	// later, when a handler sets it and returns no response, runs in its
	// own goroutine and gives the response.
	later func() kmsg.Response
	// pooledResp: encodeResponse took the buffer from respPool.
	pooledResp bool
	// spans are the fetch response's records left in segment files; the
	// response holds their markers (sendfile.go).
	spans []heldSpan
}

var errMalformed = errors.New("malformed request")

func (s *Server) newConn(nc net.Conn, trusted bool) *conn {
	c := &conn{s: s, nc: nc, out: make(chan *reply, 64)}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	c.logger = s.logger.With("remote", nc.RemoteAddr().String())
	host, _, err := net.SplitHostPort(nc.RemoteAddr().String())
	if err != nil {
		host = nc.RemoteAddr().String()
	}
	c.host = "/" + host
	c.sendfile = !s.cfg.CopyFetches && sendfileSupported(nc)
	c.sasl.authed = s.cfg.Auth == nil || trusted
	if trusted && s.cfg.Auth != nil {
		c.sasl.user = TrustedUser
	}
	return c
}

func (c *conn) serve() {
	c.s.m.connections.Inc()
	c.s.m.accepted.Inc()
	defer c.s.m.connections.Dec()
	c.wg.Add(1)
	go c.writeLoop()
	defer func() {
		close(c.out)
		c.wg.Wait()
		c.cancel()
		c.nc.Close()
	}()
	for {
		body, held, err := c.readFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.ctx.Err() == nil {
				c.logger.Info("kafka: closing connection", "err", err)
			}
			return
		}
		r := &reply{done: make(chan struct{}), held: held}
		var ok bool
		if c.sasl.raw {
			ok = c.rawSASL(body, r)
		} else {
			ok = c.handleFrame(body, r)
		}
		if !ok {
			c.release(r)
			if !c.sasl.closing { // else counted as an authentication error
				c.s.m.errors.WithLabelValues("malformed").Inc()
			}
			// Stop the writer too: responses still queued are dropped
			// with the connection.
			c.cancel()
			return
		}
		if taken, err := c.writeInline(r); taken {
			if err != nil {
				if c.ctx.Err() == nil {
					c.logger.Info("kafka: write failed; closing connection", "err", err)
				}
				c.cancel()
				return
			}
			if c.sasl.closing {
				return
			}
			continue
		}
		c.queued.Add(1)
		select {
		case c.out <- r:
		case <-c.ctx.Done():
			c.drop(r)
			c.queued.Add(-1)
			return
		}
		if c.sasl.closing {
			// The writer sends what is queued, this reply last, before
			// the connection closes (see the deferred close above).
			return
		}
	}
}

// release gives r's request bytes back to the server's budget; the request
// is handled or abandoned.
func (c *conn) release(r *reply) {
	if c.s.inflight != nil {
		c.s.inflight.release(r.held)
		r.held = 0
	}
}

// readFrame reads one size-prefixed request, first taking its size from the
// server's budget of request bytes; held is what it took.
func (c *conn) readFrame() (body []byte, held int64, err error) {
	if c.s.cfg.IdleTimeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
	}
	var sz [4]byte
	if _, err := io.ReadFull(c.nc, sz[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, 0, fmt.Errorf("truncated frame size: %w", err)
		}
		return nil, 0, err
	}
	n := int32(binary.BigEndian.Uint32(sz[:]))
	if n < 0 || int(n) > c.s.cfg.MaxRequestBytes {
		c.s.m.errors.WithLabelValues("frame_size").Inc()
		return nil, 0, fmt.Errorf("request frame of %d bytes: want 0 to %d (max request bytes)", n, c.s.cfg.MaxRequestBytes)
	}
	if c.s.inflight != nil {
		if held, err = c.s.inflight.acquire(c.ctx, int64(n)); err != nil {
			return nil, 0, err
		}
		defer func() {
			if err != nil {
				c.s.inflight.release(held)
				held = 0
			}
		}()
	}
	// Trust the size up to frameTrustBytes and grow with the data beyond
	// it: a client claiming a large frame and sending nothing costs
	// little, and a frame of ordinary size is read into one allocation
	// (growing a bytes.Buffer from empty copied each produce request
	// about twice and doubled its garbage).
	buf := make([]byte, 0, min(int(n), frameTrustBytes))
	for len(buf) < int(n) {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(int(n)-len(buf), cap(buf)))
		}
		m, err := c.nc.Read(buf[len(buf):min(int(n), cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < int(n) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, held, fmt.Errorf("truncated frame of %d bytes: %w", n, err)
		}
	}
	c.s.m.bytesIn.Add(float64(4 + n))
	return buf, held, nil
}

// frameTrustBytes is how much of a request frame's claimed size is
// allocated before its bytes arrive.
const frameTrustBytes = 8 << 20

// writeLoop writes the replies in order.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	for r := range c.out {
		select {
		case <-r.done:
		case <-c.ctx.Done():
			// Drain so serve's close(out) and deferred handlers finish.
			c.drop(r)
			c.queued.Add(-1)
			for r := range c.out {
				c.drop(r)
				c.queued.Add(-1)
			}
			return
		}
		// The request is handled: its bytes are no longer needed.
		c.release(r)
		err := c.writeReply(r)
		c.queued.Add(-1)
		if err != nil {
			c.writeFailed(err)
			return
		}
	}
}

// writeReply writes a finished reply, if it has a response.
func (c *conn) writeReply(r *reply) error {
	if r.pieces != nil {
		if hook := testHookSendSpans.Load(); hook != nil {
			(*hook)()
		}
		n, err := writePieces(c.nc, r.pieces)
		for i := range r.spans {
			c.s.m.sendfile.Add(float64(r.spans[i].span.Len))
		}
		releaseSpans(r.spans)
		r.pieces, r.spans = nil, nil
		c.s.m.bytesOut.Add(float64(n))
		return err
	}
	if r.buf == nil {
		return nil
	}
	if _, err := c.nc.Write(r.buf); err != nil {
		return err
	}
	c.s.m.bytesOut.Add(float64(len(r.buf)))
	if r.pooled {
		b := r.buf[:0]
		respPool.Put(&b)
	}
	r.buf = nil
	return nil
}

// writeInline writes r from the serving goroutine when it is ready and
// nothing is queued before it, sparing the hand-off to the writer (a
// goroutine wake-up, which on a busy machine can wait for a CPU). It
// reports whether it took r; false leaves r to the writer.
func (c *conn) writeInline(r *reply) (taken bool, err error) {
	// NB: queued is zero only when the writer has finished every reply
	// handed to it, and only this goroutine hands it more, so writing here
	// keeps the order and never overlaps the writer's writes.
	if c.queued.Load() != 0 {
		return false, nil
	}
	select {
	case <-r.done:
	default:
		return false, nil // a deferred response: the writer waits for it
	}
	c.release(r)
	return true, c.writeReply(r)
}

// testHookSendSpans, when set by a test, runs before a response with
// spans is written.
var testHookSendSpans atomic.Pointer[func()]

// writeFailed closes the connection after a failed write and drops the
// replies still queued.
func (c *conn) writeFailed(err error) {
	if c.ctx.Err() == nil {
		c.logger.Info("kafka: write failed; closing connection", "err", err)
	}
	c.cancel()
	c.nc.Close()
	for r := range c.out {
		c.drop(r)
		c.queued.Add(-1)
	}
}

// drop abandons a reply that will not be written: its request bytes go
// back to the budget and its segment files are let go.
func (c *conn) drop(r *reply) {
	c.release(r)
	// NB: a deferred handler may still be filling r; its spans are
	// released by whoever sees them last (see finishSpans).
	select {
	case <-r.done:
		releaseSpans(r.spans)
		r.spans, r.pieces = nil, nil
	default:
	}
}

// handleFrame parses and handles one request frame and fills r (now or,
// for deferred responses, later). It returns false if the connection must
// close: the request is malformed, or its handler panicked.
func (c *conn) handleFrame(body []byte, r *reply) (ok bool) {
	start := time.Now()
	req, err := parseRequest(body)
	if err != nil {
		c.logger.Info("kafka: malformed request; closing connection", "err", err)
		return false
	}
	if !c.sasl.authed && !allowedUnauthenticated(req.key) {
		c.sasl.closing = true
		c.s.m.errors.WithLabelValues("unauthenticated").Inc()
		c.logger.Info("kafka: request before SASL authentication; closing connection", "api", kmsg.NameForKey(req.key), "client", req.clientID)
		return false
	}
	if req.msg == nil || (saslKey(req.key) && c.s.cfg.Auth == nil) {
		// Unknown key or a version kmsg cannot encode: an error in the
		// shape every response starts with.
		r.buf = unsupportedResponse(req)
		close(r.done)
		return true
	}
	api := kmsg.NameForKey(req.key)
	defer func() {
		if p := recover(); p != nil {
			releaseSpans(req.spans)
			req.spans = nil
			c.logger.Error("kafka: request handler panicked; closing connection", "api", api, "version", req.version,
				"client", req.clientID, "panic", p, "stack", string(debug.Stack()))
			c.s.m.errors.WithLabelValues("panic").Inc()
			ok = false
		}
	}()
	c.s.m.requests.WithLabelValues(api).Inc()
	resp, err := c.dispatch(req)
	if err != nil {
		c.logger.Info("kafka: bad request; closing connection", "api", api, "version", req.version, "client", req.clientID, "err", err)
		return false
	}
	if resp == nil && req.later != nil {
		later := req.later
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer func() {
				if p := recover(); p != nil {
					c.logger.Error("kafka: deferred handler panicked; closing connection", "api", api, "panic", p, "stack", string(debug.Stack()))
					c.cancel()
					c.nc.Close()
				}
			}()
			resp := later()
			c.s.m.latency.WithLabelValues(api).Observe(time.Since(start).Seconds())
			r.buf = encodeResponse(req, resp)
			r.pooled = req.pooledResp
			c.finishSpans(req, resp, r)
			close(r.done)
		}()
		return true
	}
	c.s.m.latency.WithLabelValues(api).Observe(time.Since(start).Seconds())
	if resp != nil {
		r.buf = encodeResponse(req, resp)
		r.pooled = req.pooledResp
		c.finishSpans(req, resp, r)
	}
	close(r.done)
	return true
}

// finishSpans turns an encoded response whose records are left in segment
// files into the pieces the writer sends (sendfile.go). Should the markers
// not be found, the records are read into memory and the response encoded
// again instead.
func (c *conn) finishSpans(req *request, resp kmsg.Response, r *reply) {
	spans := req.spans
	req.spans = nil
	if len(spans) == 0 {
		return
	}
	if pieces, ok := splitFrame(r.buf, spans, resp.IsFlexible()); ok {
		if r.pooled {
			b := r.buf[:0]
			respPool.Put(&b)
		}
		r.buf, r.pooled, r.pieces, r.spans = nil, false, pieces, spans
		return
	}
	c.logger.Error("kafka: fetch response markers not found; sending a copy", "version", req.version)
	for i := range spans {
		hs := &spans[i]
		b, err := hs.span.AppendTo(nil)
		hs.span.Release()
		if err != nil {
			b = []byte{}
			hs.rp.ErrorCode = kerr.KafkaStorageError.Code
		}
		hs.rp.RecordBatches = b
	}
	r.buf = encodeResponse(req, resp)
	r.pooled = req.pooledResp
}

// dispatch runs the handler of a parsed request. A nil response without
// req.later means none is sent (acks=0 produce).
func (c *conn) dispatch(req *request) (kmsg.Response, error) {
	a := apis[req.key]
	if req.key == kmsg.ApiVersions.Int16() && (req.version < a.min || req.version > a.max) {
		return c.apiVersionsUnsupported(req), nil
	}
	if a.handle == nil || req.version < a.min || req.version > a.max {
		resp := req.msg.ResponseKind()
		resp.SetVersion(req.version)
		setErrorCodes(resp, kerr.UnsupportedVersion.Code)
		return resp, nil
	}
	return a.handle(c, req)
}

// parseRequest parses the header and, for known keys and versions, the
// body. req.msg is nil for an unknown key or a version kmsg cannot parse.
func parseRequest(body []byte) (*request, error) {
	if len(body) < 10 {
		return nil, fmt.Errorf("%w: %d bytes is too short for a request header", errMalformed, len(body))
	}
	req := &request{
		key:     int16(binary.BigEndian.Uint16(body)),
		version: int16(binary.BigEndian.Uint16(body[2:])),
		corrID:  int32(binary.BigEndian.Uint32(body[4:])),
	}
	n := int16(binary.BigEndian.Uint16(body[8:]))
	rest := body[10:]
	if n > 0 {
		if int(n) > len(rest) {
			return nil, fmt.Errorf("%w: client id of %d bytes overruns the frame", errMalformed, n)
		}
		req.clientID, rest = string(rest[:n]), rest[n:]
	} else if n < -1 {
		return nil, fmt.Errorf("%w: client id length %d", errMalformed, n)
	}
	if _, known := apis[req.key]; !known {
		return req, nil
	}
	msg := kmsg.RequestForKey(req.key)
	if req.key == kmsg.ApiVersions.Int16() && (req.version < 0 || req.version > apis[req.key].max) {
		// Answered with the supported range whatever the body says, even
		// for versions kmsg does not know.
		req.msg = msg
		return req, nil
	}
	if msg == nil || req.version < 0 || req.version > msg.MaxVersion() {
		return req, nil
	}
	msg.SetVersion(req.version)
	if msg.IsFlexible() {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return nil, err
		}
	}
	if err := msg.ReadFrom(rest); err != nil {
		return nil, fmt.Errorf("%w: %s v%d: %v", errMalformed, kmsg.NameForKey(req.key), req.version, err)
	}
	req.msg = msg
	return req, nil
}

// skipTags skips a header's tagged fields.
func skipTags(b []byte) ([]byte, error) {
	n, l := binary.Uvarint(b)
	if l <= 0 || n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: bad header tag count", errMalformed)
	}
	b = b[l:]
	for range n {
		_, l := binary.Uvarint(b)
		if l <= 0 {
			return nil, fmt.Errorf("%w: bad header tag", errMalformed)
		}
		b = b[l:]
		sz, l := binary.Uvarint(b)
		if l <= 0 || sz > uint64(len(b)-l) {
			return nil, fmt.Errorf("%w: bad header tag size", errMalformed)
		}
		b = b[l+int(sz):]
	}
	return b, nil
}

// encodeResponse frames a response: size, correlation id, tagged fields
// for flexible versions (never for ApiVersions, whose response header is
// always v0 so that a client can read it before it knows the versions).
func encodeResponse(req *request, resp kmsg.Response) []byte {
	resp.SetVersion(req.version)
	// NB: a fetch response is nearly all record bytes. Sizing the buffer
	// for them up front spares append growing it by doubling, which copied
	// and cleared every record several times: 38% of the CPU of a
	// 1 KiB-record consumer before this line.
	size := 64
	var buf []byte
	if fr, ok := resp.(*kmsg.FetchResponse); ok {
		size += fetchResponseBytes(fr)
		if size >= minPooledResponse {
			// A large response reuses a written one's buffer: no
			// zeroed allocation, and less garbage to collect.
			if p, _ := respPool.Get().(*[]byte); p != nil && cap(*p) >= size {
				buf = (*p)[:8]
			}
			if buf == nil {
				buf = make([]byte, 8, size)
			}
			req.pooledResp = true
		}
	}
	if buf == nil {
		buf = make([]byte, 8, size)
	}
	binary.BigEndian.PutUint32(buf[4:], uint32(req.corrID))
	if resp.IsFlexible() && req.key != kmsg.ApiVersions.Int16() {
		buf = append(buf, 0)
	}
	buf = resp.AppendTo(buf)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	return buf
}

// respPool holds written fetch response buffers of at least
// minPooledResponse bytes for reuse.
var respPool sync.Pool

const minPooledResponse = 64 << 10

// fetchResponseBytes is a generous estimate of a fetch response's encoded
// size: its record bytes plus a bound on the framing around them.
func fetchResponseBytes(r *kmsg.FetchResponse) int {
	n := 0
	for i := range r.Topics {
		t := &r.Topics[i]
		n += len(t.Topic) + 64
		for j := range t.Partitions {
			p := &t.Partitions[j]
			n += len(p.RecordBatches) + 96 + 24*len(p.AbortedTransactions)
		}
	}
	return n
}

// unsupportedResponse answers an unknown API key or a version kmsg cannot
// encode: the correlation id and UNSUPPORTED_VERSION, which is how a v0
// ApiVersions response starts and what a client that sent it can read.
func unsupportedResponse(req *request) []byte {
	buf := make([]byte, 10)
	binary.BigEndian.PutUint32(buf, 6)
	binary.BigEndian.PutUint32(buf[4:], uint32(req.corrID))
	binary.BigEndian.PutUint16(buf[8:], uint16(kerr.UnsupportedVersion.Code))
	return buf
}

// setErrorCodes sets the top-level ErrorCode of a response struct, if it
// has one, for requests refused before their handler runs.
func setErrorCodes(resp kmsg.Response, code int16) {
	v := reflect.ValueOf(resp)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return
	}
	if f := v.Elem().FieldByName("ErrorCode"); f.IsValid() && f.CanSet() && f.Kind() == reflect.Int16 {
		f.SetInt(int64(code))
	}
}

// advertised returns the host and port clients should connect to.
func (c *conn) advertised() (string, int32) {
	host, port := c.s.cfg.AdvertisedHost, c.s.cfg.AdvertisedPort
	if host == "" || port == 0 {
		h, p, err := net.SplitHostPort(c.nc.LocalAddr().String())
		if err == nil {
			if host == "" {
				host = h
			}
			if port == 0 {
				n, _ := strconv.Atoi(p)
				port = int32(n)
			}
		}
	}
	return host, port
}
