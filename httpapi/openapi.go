package httpapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// OpenAPI is the API's OpenAPI 3 document (openapi.json), served at
// GET /v1/openapi.json. Operations with an x-herald-service extension are
// served by that service once it is mounted with Handle.
//
//go:embed openapi.json
var OpenAPI []byte

func (a *API) openAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(OpenAPI)
	return nil
}

// DocumentedOperation is one operation of the OpenAPI document.
type DocumentedOperation struct {
	Method, Path string
	// Service is the x-herald-service that serves it ("" for this
	// package).
	Service string
}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

// Operations lists the document's operations, sorted by path and method.
func Operations() ([]DocumentedOperation, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	var ops []DocumentedOperation
	for path, item := range doc.Paths {
		for m, raw := range item {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			var o struct {
				Service string `json:"x-herald-service"`
			}
			if err := json.Unmarshal(raw, &o); err != nil {
				return nil, fmt.Errorf("openapi.json: %s %s: %w", m, path, err)
			}
			ops = append(ops, DocumentedOperation{Method: strings.ToUpper(m), Path: path, Service: o.Service})
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
	return ops, nil
}

var pathParam = regexp.MustCompile(`\{[^}/]+\}`)

// OpenAPIMismatches checks the document against the routes the API has
// (its own and every service mounted with Handle) and returns each
// mismatch, or nil when they agree: an operation documented but not routed
// (the request would get 404 or 405), or a route no documented operation
// reaches. Operations of the services named in skip are not required to be
// routed (a test of this package alone skips "subscriptions"); the lead's
// test of the assembled server calls it with no skip.
func (a *API) OpenAPIMismatches(skip ...string) []string {
	ops, err := Operations()
	if err != nil {
		return []string{err.Error()}
	}
	var bad []string
	reached := map[string]bool{}
	for _, op := range ops {
		// A sample value for each path parameter; "{name}:pull" becomes
		// "sample:pull", as a client would send it.
		path := pathParam.ReplaceAllString(op.Path, "sample")
		req, err := http.NewRequest(op.Method, path, nil)
		if err != nil {
			bad = append(bad, fmt.Sprintf("documented path %s: %v", op.Path, err))
			continue
		}
		_, pat := a.mux.Handler(req)
		if pat == "" || pat == "/" {
			if !slices.Contains(skip, op.Service) {
				bad = append(bad, fmt.Sprintf("documented but not routed: %s %s", op.Method, op.Path))
			}
			continue
		}
		reached[pat] = true
	}
	for _, r := range a.Routes() {
		if !reached[r] {
			bad = append(bad, fmt.Sprintf("routed but not documented: %s", r))
		}
	}
	return bad
}
