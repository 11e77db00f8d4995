// Package srload generates schema registry lookup load cheaply enough that
// what it measures is the server: raw TCP keep-alive connections, each
// writing Pipeline requests at once (HTTP/1.1 pipelining) from bytes built
// before the run, and reading the responses with a parser that allocates
// nothing, checks the status and Content-Length and compares every body
// with the one expected. A net/http mode (one request in flight per
// connection, the way ordinary clients talk) gives the figure such clients
// see.
//
// Used by herald bench schema-lookups and the registry's Go benchmarks.
package srload

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Request is one lookup and the body its 200 response must carry.
type Request struct {
	Target string // the request target: path and query, as sent
	Body   []byte
}

// Client modes.
const (
	Raw     = "raw"      // raw TCP, pipelined
	NetHTTP = "net/http" // net/http's client, one request in flight per connection
)

// Config is a load run.
type Config struct {
	// Addr is the server's HOST:PORT; Host the Host header (default Addr).
	Addr, Host string
	// Requests are sent round robin, each connection starting at its own
	// place.
	Requests []Request
	// Conns connections, each with Pipeline requests written at once
	// (Raw only; NetHTTP needs 1). Both default to 1.
	Conns, Pipeline int
	// The run stops after Duration, or once Lookups lookups are done
	// (for Go benchmarks' b.N); at least one must be set.
	Duration time.Duration
	Lookups  uint64
	// Client is Raw (default) or NetHTTP.
	Client string
	// Progress, if set, is called about once a second with the lookups
	// done so far.
	Progress func(lookups uint64, elapsed time.Duration)
}

// Result is what a run did.
type Result struct {
	Lookups uint64
	Elapsed time.Duration
}

// PerSecond is lookups per second of wall time.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Lookups) / r.Elapsed.Seconds()
}

// Run runs the load until Duration has passed, ctx ends or a response is
// wrong (a status other than 200, a body other than the one expected, a
// closed connection), which is the error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if len(cfg.Requests) == 0 {
		return Result{}, errors.New("srload: no requests")
	}
	cfg.Conns, cfg.Pipeline = max(cfg.Conns, 1), max(cfg.Pipeline, 1)
	if cfg.Host == "" {
		cfg.Host = cfg.Addr
	}
	if cfg.Client == "" {
		cfg.Client = Raw
	}
	if cfg.Client != Raw && cfg.Client != NetHTTP {
		return Result{}, fmt.Errorf("srload: client %q: want %s or %s", cfg.Client, Raw, NetHTTP)
	}
	if cfg.Duration <= 0 && cfg.Lookups == 0 {
		return Result{}, errors.New("srload: neither a duration nor a number of lookups")
	}
	if cfg.Client == NetHTTP && cfg.Pipeline != 1 {
		return Result{}, fmt.Errorf("srload: the %s client does not pipeline: want pipeline 1, not %d", NetHTTP, cfg.Pipeline)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stop atomic.Bool
	var sum atomic.Uint64 // for Lookups
	counts := make([]atomic.Uint64, cfg.Conns)
	errs := make([]error, cfg.Conns)

	// Dial first: the clock starts with every connection open.
	var conns []net.Conn
	var hc *http.Client
	if cfg.Client == Raw {
		for range cfg.Conns {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", cfg.Addr)
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return Result{}, fmt.Errorf("connect to %s: %w", cfg.Addr, err)
			}
			conns = append(conns, c)
		}
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
	} else {
		tr := &http.Transport{MaxIdleConnsPerHost: cfg.Conns, MaxConnsPerHost: cfg.Conns, DisableCompression: true}
		defer tr.CloseIdleConnections()
		hc = &http.Client{Transport: tr}
	}

	var wg sync.WaitGroup
	start := time.Now()
	for i := range cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.Client == Raw {
				errs[i] = runRaw(conns[i], &cfg, i, &stop, &counts[i], &sum)
			} else {
				errs[i] = runNetHTTP(ctx, hc, &cfg, i, &stop, &counts[i], &sum)
			}
			if errs[i] != nil {
				stop.Store(true)
			}
		}()
	}
	total := func() (n uint64) {
		for i := range counts {
			n += counts[i].Load()
		}
		return n
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(cfg.Duration)
	defer timer.Stop()
	if cfg.Duration <= 0 {
		timer.Stop()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-timer.C:
			stop.Store(true)
		case <-ctx.Done():
			stop.Store(true)
		case <-tick.C:
			if cfg.Progress != nil {
				cfg.Progress(total(), time.Since(start))
			}
		case <-done:
			break wait
		}
	}
	res := Result{Lookups: total(), Elapsed: time.Since(start)}
	for i, err := range errs {
		if err != nil {
			return res, fmt.Errorf("connection %d: %w", i+1, err)
		}
	}
	return res, ctx.Err()
}

// ring is a connection's requests, laid out once: batch b is
// bytes[off[b]:off[b+1]], and its responses must carry bodies[b*p:(b+1)*p].
type ring struct {
	bytes  []byte
	off    []int
	bodies [][]byte
}

// maxRing bounds the requests a connection lays out in advance.
const maxRing = 1 << 16

func newRing(cfg *Config, conn int) *ring {
	p := cfg.Pipeline
	n := len(cfg.Requests) * p
	if n > maxRing {
		n = max(maxRing/p, 1) * p
	}
	rg := &ring{}
	for k := range n {
		if k%p == 0 {
			rg.off = append(rg.off, len(rg.bytes))
		}
		r := cfg.Requests[(k+conn*7919)%len(cfg.Requests)]
		rg.bytes = fmt.Appendf(rg.bytes, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", r.Target, cfg.Host)
		rg.bodies = append(rg.bodies, r.Body)
	}
	rg.off = append(rg.off, len(rg.bytes))
	return rg
}

// tally counts n lookups and reports whether the run has done enough.
func tally(cfg *Config, n int, count, sum *atomic.Uint64) bool {
	count.Add(uint64(n))
	return cfg.Lookups > 0 && sum.Add(uint64(n)) >= cfg.Lookups
}

func runRaw(c net.Conn, cfg *Config, conn int, stop *atomic.Bool, count, sum *atomic.Uint64) error {
	rg := newRing(cfg, conn)
	p := cfg.Pipeline
	br := bufio.NewReaderSize(c, 64<<10)
	var scratch []byte
	batches := len(rg.off) - 1
	for b := 0; !stop.Load(); b = (b + 1) % batches {
		if _, err := c.Write(rg.bytes[rg.off[b]:rg.off[b+1]]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		for k := b * p; k < (b+1)*p; k++ {
			var err error
			if scratch, err = readResponse(br, rg.bodies[k], scratch); err != nil {
				return fmt.Errorf("%s: %w", targetOf(rg, k), err)
			}
		}
		if tally(cfg, p, count, sum) {
			stop.Store(true)
		}
	}
	return nil
}

// targetOf is the target of the ring's request k, for errors.
func targetOf(rg *ring, k int) string {
	i := 0
	for n := 0; n < k; n++ {
		i += bytes.Index(rg.bytes[i:], []byte("\r\n\r\n")) + 4
	}
	line, _, _ := bytes.Cut(rg.bytes[i:], []byte("\r\n"))
	return string(line)
}

// ErrBody is a response whose body is not the one expected.
var ErrBody = errors.New("body differs from the expected one")

// readResponse reads one response and checks it is a 200 with want as its
// body, allocating only when the body does not fit br's buffer (into
// scratch, returned for reuse).
func readResponse(br *bufio.Reader, want, scratch []byte) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return scratch, fmt.Errorf("read status line: %w", err)
	}
	ok := bytes.HasPrefix(line, []byte("HTTP/1.1 200 "))
	status := line
	if !ok {
		status = bytes.Clone(line)
	}
	n := -1
	closing := false
	for {
		if line, err = br.ReadSlice('\n'); err != nil {
			return scratch, fmt.Errorf("read header: %w", err)
		}
		if len(line) <= 2 {
			break
		}
		k, v, _ := bytes.Cut(line, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case len(k) == len("Content-Length") && bytes.EqualFold(k, []byte("Content-Length")):
			n = parseUint(v)
		case len(k) == len("Connection") && bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.EqualFold(v, []byte("close"))
		}
	}
	if n < 0 {
		return scratch, errors.New("response without a valid Content-Length")
	}
	var body []byte
	if n <= br.Size() {
		if body, err = br.Peek(n); err == nil {
			_, err = br.Discard(n)
		}
	} else {
		if cap(scratch) < n {
			scratch = make([]byte, n)
		}
		body = scratch[:n]
		_, err = io.ReadFull(br, body)
	}
	if err != nil {
		return scratch, fmt.Errorf("read body: %w", err)
	}
	switch {
	case !ok:
		return scratch, fmt.Errorf("status %s: %s", bytes.TrimSpace(status), body)
	case !bytes.Equal(body, want):
		return scratch, fmt.Errorf("%w: got %d bytes %.80q..., want %d bytes %.80q...", ErrBody, len(body), body, len(want), want)
	case closing:
		return scratch, errors.New("the server closed the keep-alive connection")
	}
	return scratch, nil
}

func parseUint(b []byte) int {
	if len(b) == 0 || len(b) > 12 {
		return -1
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func runNetHTTP(ctx context.Context, hc *http.Client, cfg *Config, conn int, stop *atomic.Bool, count, sum *atomic.Uint64) error {
	reqs := make([]*http.Request, len(cfg.Requests))
	for i, r := range cfg.Requests {
		q, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.Addr+r.Target, nil)
		if err != nil {
			return err
		}
		q.Host = cfg.Host
		reqs[i] = q
	}
	var buf bytes.Buffer
	for k := conn * 7919; !stop.Load(); k++ {
		i := k % len(reqs)
		resp, err := hc.Do(reqs[i])
		if err != nil {
			return err
		}
		buf.Reset()
		_, err = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return fmt.Errorf("%s: read body: %w", cfg.Requests[i].Target, err)
		case resp.StatusCode != 200:
			return fmt.Errorf("%s: status %s: %s", cfg.Requests[i].Target, resp.Status, buf.Bytes())
		case !bytes.Equal(buf.Bytes(), cfg.Requests[i].Body):
			return fmt.Errorf("%s: %w", cfg.Requests[i].Target, ErrBody)
		}
		if tally(cfg, 1, count, sum) {
			stop.Store(true)
		}
	}
	return nil
}

// Lookup kinds Discover knows.
const (
	KindID            = "ids"             // /schemas/ids/{id}
	KindIDSchema      = "ids-schema"      // /schemas/ids/{id}/schema
	KindVersion       = "versions"        // /subjects/{s}/versions/{v}
	KindVersionSchema = "versions-schema" // /subjects/{s}/versions/{v}/schema
)

// Kinds are the lookup kinds, in order.
var Kinds = []string{KindID, KindIDSchema, KindVersion, KindVersionSchema}

// Discover lists the registry at base (a URL, with the path prefix the API
// is under, if any) and returns up to limit lookups of each kind with the
// bodies it answers now, fetched with net/http.
func Discover(ctx context.Context, base string, kinds []string, limit int) ([]Request, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(u.Path, "/")
	get := func(target string) ([]byte, error) {
		q, err := http.NewRequestWithContext(ctx, http.MethodGet, u.Scheme+"://"+u.Host+target, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(q)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", target, err)
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET %s: %s: %s", target, resp.Status, bytes.TrimSpace(b))
		}
		return b, nil
	}
	list, err := get(prefix + "/schemas")
	if err != nil {
		return nil, err
	}
	var schemas []struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
		ID      int    `json:"id"`
	}
	if err := json.Unmarshal(list, &schemas); err != nil {
		return nil, fmt.Errorf("GET %s/schemas: %w", prefix, err)
	}
	var targets []string
	for _, kind := range kinds {
		seen := map[int]bool{}
		n := 0
		for _, s := range schemas {
			if n == limit {
				break
			}
			switch kind {
			case KindID, KindIDSchema:
				if seen[s.ID] {
					continue
				}
				seen[s.ID] = true
				t := prefix + "/schemas/ids/" + strconv.Itoa(s.ID)
				if kind == KindIDSchema {
					t += "/schema"
				}
				targets = append(targets, t)
			case KindVersion, KindVersionSchema:
				t := prefix + "/subjects/" + url.PathEscape(s.Subject) + "/versions/" + strconv.Itoa(s.Version)
				if kind == KindVersionSchema {
					t += "/schema"
				}
				targets = append(targets, t)
			default:
				return nil, fmt.Errorf("lookup kind %q: want one of %s", kind, strings.Join(Kinds, ", "))
			}
			n++
		}
	}
	out := make([]Request, 0, len(targets))
	for _, t := range targets {
		b, err := get(t)
		if err != nil {
			return nil, err
		}
		out = append(out, Request{Target: t, Body: b})
	}
	return out, nil
}

// ProcCPU is the CPU time (user + system) process pid has used, from
// /proc (Linux).
func ProcCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which may hold spaces, in parens.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 || i+2 > len(raw) {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(raw[i+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// SelfCPU is the CPU time (user + system) this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
