// Package openapitest checks an HTTP API's responses against its OpenAPI 3
// document in tests: every response a test provokes must have a status the
// document lists for the operation (or the shared Error response, for
// unrouted requests) and a body that matches the schema. It is for tests
// only: it brings kin-openapi, which the server does not need.
//
//	api, _ := httpapi.New(cfg)
//	srv := httptest.NewServer(openapitest.Handler(t, api.Document(), api))
package openapitest

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// Load parses and validates an OpenAPI 3 document.
func Load(doc []byte) (*openapi3.T, error) {
	d, err := openapi3.NewLoader().LoadFromData(doc)
	if err != nil {
		return nil, err
	}
	if err := d.Validate(context.Background()); err != nil {
		return nil, err
	}
	return d, nil
}

// Handler wraps h (an http.ServeMux, or a handler built on one, that sets
// Request.Pattern) so that each response is checked against doc; a
// mismatch fails t. An invalid doc fails t at once.
func Handler(t testing.TB, doc []byte, h http.Handler) http.Handler {
	d, err := Load(doc)
	if err != nil {
		t.Fatalf("OpenAPI document: %v", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		if err := CheckResponse(d, r.Method, documentedPattern(d, r.Pattern, r.URL.Path), rec.Code, rec.Header().Get("Content-Type"), rec.Body.Bytes()); err != nil {
			t.Errorf("response to %s %s does not match the OpenAPI document: %v", r.Method, r.URL, err)
		}
	})
}

// documentedPattern maps a route pattern whose path the document lacks,
// such as "POST /v1/subscriptions/{nameAction}" (one Go pattern serving
// the documented /v1/subscriptions/{name}:pull, :acknowledge, ...), to the
// document's path that the request's path matches, or to "" (unrouted)
// when none does.
func documentedPattern(d *openapi3.T, pattern, urlPath string) string {
	m, path, ok := strings.Cut(pattern, " ")
	if !ok || d.Paths.Value(path) != nil {
		return pattern
	}
	for _, p := range d.Paths.InMatchingOrder() {
		if templateRE(p).MatchString(urlPath) && d.Paths.Value(p).GetOperation(m) != nil {
			return m + " " + p
		}
	}
	// No documented path: a request such a route refuses (an unknown
	// action, say), which must get the shared Error response like an
	// unrouted one.
	return ""
}

var paramRE = regexp.MustCompile(`\{[^}/]+\}`)

// templateRE matches the paths of an OpenAPI path template.
func templateRE(tmpl string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	last := 0
	for _, loc := range paramRE.FindAllStringIndex(tmpl, -1) {
		b.WriteString(regexp.QuoteMeta(tmpl[last:loc[0]]))
		b.WriteString("[^/]+")
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(tmpl[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// CheckResponse checks one response: pattern is the Go 1.22 route pattern
// that served it ("METHOD /path/{x}", whose path is the document's), or ""
// or "/" for a request no route matched, which must get the document's
// components.responses.Error.
func CheckResponse(d *openapi3.T, method, pattern string, status int, ct string, body []byte) error {
	var resp *openapi3.Response
	if pattern == "" || pattern == "/" {
		ref := d.Components.Responses["Error"]
		if ref == nil || ref.Value == nil {
			return fmt.Errorf("unrouted request, and the document has no components.responses.Error")
		}
		resp = ref.Value
	} else {
		m, path, ok := strings.Cut(pattern, " ")
		if !ok {
			return fmt.Errorf("route %q has no method: document one per method", pattern)
		}
		if m != method && !(m == "GET" && method == "HEAD") {
			return fmt.Errorf("%s routed to %q", method, pattern)
		}
		item := d.Paths.Value(path)
		if item == nil {
			return fmt.Errorf("path %s not documented", path)
		}
		op := item.GetOperation(m)
		if op == nil {
			return fmt.Errorf("%s %s not documented", m, path)
		}
		ref := op.Responses.Status(status)
		if ref == nil {
			ref = op.Responses.Default()
		}
		if ref == nil || ref.Value == nil {
			return fmt.Errorf("status %d not documented", status)
		}
		resp = ref.Value
	}
	if len(body) == 0 || method == "HEAD" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %v", ct, err)
	}
	media := resp.Content.Get(mt)
	if media == nil || media.Schema == nil {
		return fmt.Errorf("status %d with %s is not documented", status, mt)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("body is not JSON: %v", err)
	}
	if err := media.Schema.Value.VisitJSON(v); err != nil {
		return fmt.Errorf("status %d body %.300s: %v", status, body, err)
	}
	return nil
}
