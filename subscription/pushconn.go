package subscription

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// pushConn is one keep-alive HTTP/1.1 connection to a plain-http push
// endpoint, owned by one push worker: the request is written with one
// write from a reused buffer and the response read on the same goroutine.
// net/http's client hands every request between three goroutines (the
// caller, the connection's writer and reader), which costs more than the
// rest of a push; pushes to https endpoints, or through a Config.HTTPClient,
// still go through it.
type pushConn struct {
	ctx    context.Context // the subscription's: its end unblocks I/O
	addr   string          // host:port to dial
	host   string          // Host header
	uri    string          // request target
	c      net.Conn
	br     *bufio.Reader
	buf    []byte
	reused bool
	stop   func() bool
}

// Limits of a push response: a longer body is not drained (the connection
// is closed instead), a longer header block is an error.
const (
	pushDrainLimit  = 64 << 10
	pushHeaderLimit = 64 << 10
)

// newPushConn returns a connection for endpoint, or nil when endpoint is
// not plain http.
func newPushConn(ctx context.Context, endpoint string) *pushConn {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil {
		return nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &pushConn{ctx: ctx, addr: addr, host: u.Host, uri: u.RequestURI()}
}

func (pc *pushConn) close() {
	if pc == nil || pc.c == nil {
		return
	}
	pc.stop()
	pc.c.Close()
	pc.c = nil
}

// errBadHeader is returned for a header name or value that cannot be
// sent (as net/http refuses them).
var errBadHeader = errors.New("invalid push request header")

// post sends body with headers h and returns the response status. A
// request on a reused connection that fails before any response byte
// arrives (the endpoint closed the idle connection) is sent once more on
// a new connection.
func (pc *pushConn) post(deadline time.Time, h http.Header, body []byte) (int, error) {
	if err := pc.build(h, body); err != nil {
		return 0, err
	}
	for try := 0; ; try++ {
		if pc.c == nil {
			d := net.Dialer{Deadline: deadline}
			c, err := d.DialContext(pc.ctx, "tcp", pc.addr)
			if err != nil {
				return 0, err
			}
			pc.c, pc.reused = c, false
			if pc.br == nil {
				pc.br = bufio.NewReaderSize(c, 4096)
			} else {
				pc.br.Reset(c)
			}
			pc.stop = context.AfterFunc(pc.ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		}
		pc.c.SetDeadline(deadline)
		if err := pc.ctx.Err(); err != nil {
			// The stop's AfterFunc may have run before the line above
			// undid its deadline.
			pc.close()
			return 0, err
		}
		status, keep, got, err := pc.roundTrip()
		if err != nil {
			reused := pc.reused
			pc.close()
			if reused && !got && try == 0 && pc.ctx.Err() == nil && time.Now().Before(deadline) {
				continue
			}
			return 0, err
		}
		pc.reused = true
		if !keep {
			pc.close()
		}
		return status, nil
	}
}

func (pc *pushConn) build(h http.Header, body []byte) error {
	b := append(pc.buf[:0], "POST "...)
	b = append(b, pc.uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, pc.host...)
	if _, ok := h["User-Agent"]; !ok {
		b = append(b, "\r\nUser-Agent: Herald"...)
	}
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	for k, vs := range h {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue // framing is ours, as net/http's Request.Write does
		}
		if !validHeaderName(k) {
			return fmt.Errorf("%w: name %q", errBadHeader, k)
		}
		for _, v := range vs {
			for i := 0; i < len(v); i++ {
				if c := v[i]; c == '\r' || c == '\n' || c == 0 {
					return fmt.Errorf("%w: value of %s", errBadHeader, k)
				}
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	pc.buf = append(b, body...)
	return nil
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

// roundTrip writes the built request and reads the response; got says
// whether any response byte arrived, keep whether the connection may be
// used again.
func (pc *pushConn) roundTrip() (status int, keep, got bool, err error) {
	if _, err := pc.c.Write(pc.buf); err != nil {
		return 0, false, false, err
	}
	if _, err := pc.br.Peek(1); err != nil {
		return 0, false, false, err
	}
	status, keep, err = readPushResponse(pc.br)
	return status, keep, true, err
}

// readPushResponse reads one HTTP/1.x response to a POST from br (skipping
// 1xx ones) and drains its body up to pushDrainLimit; keep is false when
// the connection cannot carry another request.
func readPushResponse(br *bufio.Reader) (status int, keep bool, err error) {
	for {
		status, keep, err = readPushResponseOnce(br)
		if err != nil || status >= 200 || status == 101 {
			if status == 101 { // switching protocols: not HTTP any more
				keep = false
			}
			return status, keep, err
		}
	}
}

func readPushResponseOnce(br *bufio.Reader) (status int, keep bool, err error) {
	headerBytes := 0
	line := func() ([]byte, error) {
		l, err := br.ReadSlice('\n')
		headerBytes += len(l)
		if errors.Is(err, bufio.ErrBufferFull) || headerBytes > pushHeaderLimit {
			return nil, errors.New("push response header too long")
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return bytes.TrimRight(l, "\r\n"), nil
	}
	l, err := line()
	if err != nil {
		return 0, false, err
	}
	// HTTP/1.x NNN reason
	if len(l) < 12 || !bytes.HasPrefix(l, []byte("HTTP/1.")) || l[8] != ' ' || (len(l) > 12 && l[12] != ' ') {
		return 0, false, fmt.Errorf("bad push response status line %q", l)
	}
	status, err = strconv.Atoi(string(l[9:12]))
	if err != nil || status < 100 {
		return 0, false, fmt.Errorf("bad push response status line %q", l)
	}
	keep = l[7] == '1'
	length, chunked := int64(-1), false
	for {
		h, err := line()
		if err != nil {
			return 0, false, err
		}
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("bad push response header %q", h)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 || (length >= 0 && n != length) {
				return 0, false, fmt.Errorf("bad push response Content-Length %q", v)
			}
			length = n
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			if !bytes.EqualFold(v, []byte("chunked")) {
				return 0, false, fmt.Errorf("unsupported push response Transfer-Encoding %q", v)
			}
			chunked = true
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				keep = false
			} else if bytes.EqualFold(v, []byte("keep-alive")) && l[7] == '0' {
				keep = true
			}
		}
	}
	switch {
	case status < 200 || status == 204 || status == 304:
		return status, keep, nil // no body
	case chunked:
		drained := int64(0)
		for {
			l, err := line()
			if err != nil {
				return 0, false, err
			}
			if i := bytes.IndexByte(l, ';'); i >= 0 {
				l = l[:i]
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(l)), 16, 64)
			if err != nil || n < 0 {
				return 0, false, fmt.Errorf("bad push response chunk size %q", l)
			}
			if n == 0 {
				for { // trailers
					t, err := line()
					if err != nil {
						return 0, false, err
					}
					if len(t) == 0 {
						return status, keep, nil
					}
				}
			}
			if drained += n; drained > pushDrainLimit {
				return status, false, nil
			}
			if _, err := br.Discard(int(n)); err != nil {
				return 0, false, err
			}
			if l, err := line(); err != nil || len(l) != 0 {
				return 0, false, fmt.Errorf("bad push response chunk end")
			}
		}
	case length >= 0:
		if length > pushDrainLimit {
			return status, false, nil
		}
		if _, err := br.Discard(int(length)); err != nil {
			return 0, false, err
		}
		return status, keep, nil
	default: // the body ends with the connection
		return status, false, nil
	}
}
