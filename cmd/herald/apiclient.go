package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/httpjson"
)

// httpAPI is a server's HTTP API as the CLI commands reach it: the URL a
// flag gave, that flag's name and what to check when nothing answers.
type httpAPI struct {
	base    string          // the flag's value, e.g. http://127.0.0.1:8080
	flag    string          // "--http": named in messages about the URL
	hint    string          // what to check when the server cannot be reached
	timeout time.Duration   // bound on one request and its answer; 0: none
	sec     *clientSecurity // credentials and TLS; nil: none
}

// heraldAPI is herald serve's HTTP API at --http, reached with sec.
func heraldAPI(sec *clientSecurity, base string, timeout time.Duration) httpAPI {
	return httpAPI{base: base, flag: "--http", hint: "is herald serve's HTTP there? --http, env HERALD_HTTP", timeout: timeout, sec: sec}
}

// maxAPIAnswer bounds the answer the CLI reads.
const maxAPIAnswer = 256 << 20

// check refuses a URL that is not http:// or https:// with a host.
func (a httpAPI) check() error {
	u, err := url.Parse(a.base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErrorf("%s %q: want an http:// or https:// URL such as http://127.0.0.1:8080", a.flag, a.base)
	}
	return nil
}

// apiAnswer is a server's answer, whatever its status.
type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (r *apiAnswer) ok() bool { return r.status/100 == 2 }

// send makes one request (a body is sent as application/json unless header
// says otherwise) and reads the whole answer. It fails only when no answer
// came, saying why in words for people.
func (a httpAPI) send(ctx context.Context, method, path string, header http.Header, body []byte) (*apiAnswer, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.base, "/")+path, rd)
	if err != nil {
		return nil, usageErrorf("%s %q: %v", a.flag, a.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	hc := http.DefaultClient
	if a.sec != nil {
		if hc, err = a.sec.httpClient(a.base); err != nil {
			return nil, err
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ne *net.OpError
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("no answer from %s within %s (--timeout): is the server running?", a.base, a.timeout)
		case errors.As(err, &ne):
			return nil, fmt.Errorf("cannot reach %s: %v (%s)", a.base, ne.Err, a.hint)
		}
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", a.base, err)
	}
	return &apiAnswer{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// apiError decodes an error answer in Herald's shape
// {"error":{"code","message","field"}}; nil when the body is not that.
func (r *apiAnswer) apiError() *httpjson.Error {
	var e struct {
		Error *httpjson.Error `json:"error"`
	}
	if json.Unmarshal(r.body, &e) != nil || e.Error == nil || e.Error.Message == "" {
		return nil
	}
	return e.Error
}

// apiExitCode is the exit code an error status of Herald's HTTP API means:
// the request was wrong (2), names nothing that exists (3), or conflicts
// with the state (4); anything else is a failure (1).
func apiExitCode(status int) int {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return exitUsage
	case http.StatusNotFound:
		return exitNotFound
	case http.StatusConflict, http.StatusPreconditionFailed:
		return exitConflict
	}
	return exitFailure
}

// jsonBody encodes v as a request body; nil stays nil (no body).
func jsonBody(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	return json.Marshal(v)
}
