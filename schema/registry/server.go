package registry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// ReadHeaderTimeout bounds the time a request's header may take to
	// arrive once it has begun (default 10s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long (0: never,
	// as net/http does with no IdleTimeout and no ReadTimeout).
	IdleTimeout time.Duration
	// Wrap, when set, wraps the registry's handler (authentication, for
	// one). Every connection then goes to net/http from its first byte:
	// the fast path would answer without the wrapper.
	Wrap func(http.Handler) http.Handler
}

// Server serves the registry's API on listeners of its own, answering
// the lookups serializers and deserializers make (see fastpath.go) with
// a loop of its own per connection: it parses the requests a read brings
// (HTTP/1.1 keep-alive, pipelined or not), appends each pre-rendered
// response to one buffer and writes that buffer once, before it would
// block on the next read. The first request on a connection that is
// anything else (another method or path, a body, an escape, a miss, an
// Expect or Connection: close header, a header it does not fit in 4 KiB)
// hands the connection, with the bytes read and not yet answered, to a
// net/http server running Registry.Handler, which keeps it for the rest
// of its life. So every request gets net/http's full behaviour except the
// fast-path hits, which get the same bytes (TestServerMatchesNetHTTP).
//
// Serve, Shutdown and Close are safe for concurrent use.
type Server struct {
	reg *Registry
	cfg ServerConfig
	hs  *http.Server
	ho  *handoffListener

	hsOnce sync.Once     // starts hs on the first Serve
	hsDone chan struct{} // closed once hs.Serve has returned (or will never run)
	wg     sync.WaitGroup

	closing atomic.Bool
	mu      struct {
		sync.Mutex
		lns   map[net.Listener]struct{}
		conns map[net.Conn]struct{} // on the fast loop
	}
}

// NewServer returns a Server for r. Call Serve with a listener, and
// Shutdown or Close to stop it.
func (r *Registry) NewServer(cfg ServerConfig) *Server {
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	s := &Server{reg: r, cfg: cfg, hsDone: make(chan struct{})}
	s.ho = &handoffListener{ch: make(chan net.Conn), done: make(chan struct{})}
	h := r.Handler()
	if cfg.Wrap != nil {
		h = cfg.Wrap(h)
	}
	s.hs = &http.Server{
		Handler: h, ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout,
		ErrorLog: slog.NewLogLogger(r.logger.Handler(), slog.LevelWarn),
	}
	s.mu.lns = map[net.Listener]struct{}{}
	s.mu.conns = map[net.Conn]struct{}{}
	return s
}

// Serve accepts connections on ln until Shutdown or Close, which make it
// return http.ErrServerClosed; any other error is the listener's.
func (s *Server) Serve(ln net.Listener) error {
	s.hsOnce.Do(func() {
		s.ho.addr = ln.Addr()
		// It returns once Shutdown or Close has closed ho and hs.
		go func() {
			defer close(s.hsDone)
			s.hs.Serve(s.ho)
		}()
	})
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.mu.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.lns, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: as net/http does,
				// wait and try again.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.reg.logger.Warn("schema registry: accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			return http.ErrServerClosed
		}
		s.mu.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, closes idle connections, waits for the others
// to finish the requests they have begun, and then returns; or returns
// ctx's error when ctx ends first, closing what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	hsErr := make(chan error, 1)
	go func() { hsErr <- s.hs.Shutdown(ctx) }()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	// A connection's loop checks closing before each read; waking its
	// reads until it has gone covers the one that checked just before.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.wakeConns()
		select {
		case <-done:
			err := <-hsErr
			<-s.hsDone
			return err
		case <-ctx.Done():
			s.closeConns()
			<-done
			s.hs.Close()
			<-s.hsDone
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.stopAccepting()
	s.closeConns()
	err := s.hs.Close()
	s.wg.Wait()
	<-s.hsDone
	return err
}

func (s *Server) stopAccepting() {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.mu.lns {
		ln.Close()
	}
	s.mu.Unlock()
	s.ho.Close()
	s.hsOnce.Do(func() { close(s.hsDone) }) // no hs.Serve after this
}

func (s *Server) wakeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.mu.conns {
		c.SetReadDeadline(aLongTimeAgo)
	}
}

func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.mu.conns {
		c.Close()
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// Buffer sizes of a fast connection: a request's header must fit in
// readBuf (else net/http gets it); responses go out once flushAt bytes are
// waiting, and a write buffer grown past keepOut is dropped after use.
const (
	readBuf = 4 << 10
	flushAt = 32 << 10
	keepOut = 256 << 10
)

// serveConn is the loop of one connection.
func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	handed := false
	defer func() {
		s.mu.Lock()
		delete(s.mu.conns, c)
		s.mu.Unlock()
		if !handed {
			c.Close()
		}
	}()
	if s.cfg.Wrap != nil {
		handed = s.handoff(c, nil)
		return
	}
	buf := make([]byte, readBuf)
	out := make([]byte, 0, 8<<10)
	var r, w int // buf[r:w] is read and not yet answered
	var date [dateLen]byte
	var dateSec int64 = -1
	const (
		noDeadline = iota
		headerDeadline
		idleDeadline
		staleDeadline // a header deadline for a request answered since
	)
	deadline := noDeadline
	m := &s.reg.m.fast
	for {
		if r < w {
			now := time.Now()
			if sec := now.Unix(); sec != dateSec {
				dateSec = sec
				now.UTC().AppendFormat(date[:0], http.TimeFormat)
			}
		}
		for r < w {
			q, n, res := parseRequest(buf[r:w])
			if res == parseMore {
				break
			}
			var resp *rendered
			if res == parseOK {
				resp = s.reg.fastResponse(&q)
			}
			if resp == nil {
				// Answered by net/http from here on: what is pending goes
				// out first, so responses keep their order.
				if len(out) > 0 {
					if _, err := c.Write(out); err != nil {
						return
					}
				}
				handed = s.handoff(c, buf[r:w])
				return
			}
			m[q.route].Add(1)
			at := len(out)
			out = append(out, resp.resp...)
			copy(out[at+resp.dateOff:], date[:])
			r += n
			if deadline == headerDeadline {
				deadline = staleDeadline
			}
			if len(out) >= flushAt {
				if _, err := c.Write(out); err != nil {
					return
				}
				out = out[:0]
			}
		}
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
			if cap(out) > keepOut {
				out = make([]byte, 0, 8<<10)
			}
		}
		if r == w {
			r, w = 0, 0
		} else if r > 0 {
			w = copy(buf, buf[r:w])
			r = 0
		}
		if w == len(buf) {
			// A header too big for the fast path: net/http decides.
			handed = s.handoff(c, buf[:w])
			return
		}
		if s.closing.Load() {
			return
		}
		switch {
		case w > 0:
			// Part of a request: the rest has ReadHeaderTimeout to come,
			// counted from the read that found it incomplete. A request
			// that arrives whole costs no deadline at all.
			if deadline != headerDeadline {
				c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
				deadline = headerDeadline
			}
		case s.cfg.IdleTimeout > 0:
			c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
			deadline = idleDeadline
		case deadline != noDeadline:
			c.SetReadDeadline(time.Time{})
			deadline = noDeadline
		}
		n, err := c.Read(buf[w:])
		w += n
		if err != nil && n == 0 {
			return
		}
	}
}

// handoff passes c to the net/http server with pending, the bytes read
// and not answered, to be read first. It reports whether the server took
// the connection (false when it is shutting down).
func (s *Server) handoff(c net.Conn, pending []byte) bool {
	c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, pre: bytes.Clone(pending)}
	select {
	case s.ho.ch <- pc:
		s.reg.m.handoffs.Add(1)
		return true
	case <-s.ho.done:
		return false
	}
}

// handoffListener is the net/http server's listener: it accepts the
// connections a fast loop hands over.
type handoffListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// prefixConn reads pre before the connection.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close a TCP connection after an error
// response, as it does on its own connections.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
