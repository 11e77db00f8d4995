package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

var (
	docOnce sync.Once
	doc     *openapi3.T
	docErr  error
)

func loadDoc() (*openapi3.T, error) {
	docOnce.Do(func() {
		l := openapi3.NewLoader()
		doc, docErr = l.LoadFromData(OpenAPI)
		if docErr == nil {
			docErr = doc.Validate(context.Background())
		}
	})
	return doc, docErr
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	if _, err := loadDoc(); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
}

// conformance wraps the API in tests: every response any test provokes is
// checked against the document (its status is documented for the
// operation, and its body matches the schema), so the document cannot
// drift from what the handlers send.
type conformance struct {
	t testing.TB
	h http.Handler
}

func (c conformance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
	if err := checkResponse(r.Method, r.Pattern, rec.Code, rec.Header().Get("Content-Type"), rec.Body.Bytes()); err != nil {
		c.t.Errorf("response to %s %s does not match openapi.json: %v", r.Method, r.URL, err)
	}
}

func checkResponse(method, pattern string, status int, ct string, body []byte) error {
	d, err := loadDoc()
	if err != nil {
		return err
	}
	var resp *openapi3.Response
	if pattern == "" || pattern == "/" {
		resp = d.Components.Responses["Error"].Value
	} else {
		m, path, _ := strings.Cut(pattern, " ")
		if m != method && !(m == "GET" && method == "HEAD") {
			return fmt.Errorf("routed to %q", pattern)
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

func TestConformanceCatchesDrift(t *testing.T) {
	// The checker itself must fail on bodies the document does not allow.
	for _, tc := range []struct {
		pattern string
		status  int
		body    string
	}{
		{"GET /v1/topics", 200, `{"topics":[],"extra":1}`},
		{"GET /v1/topics", 200, `{"topics":[{"name":"a","partitions":"1","internal":false}]}`},
		{"GET /v1/topics", 418, `{}`},
		{"", 404, `{"message":"x"}`},
	} {
		if err := checkResponse(strings.Fields(tc.pattern + " GET")[0], tc.pattern, tc.status, "application/json", []byte(tc.body)); err == nil {
			t.Errorf("%s %d %s passed", tc.pattern, tc.status, tc.body)
		}
	}
	if err := checkResponse("GET", "GET /v1/topics", 200, "application/json", []byte(`{"topics":[{"name":"a","partitions":1,"internal":false}],"nextPageToken":"x"}`)); err != nil {
		t.Errorf("a good body failed: %v", err)
	}
}
