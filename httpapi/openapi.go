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
	w.Write(a.Document())
	return nil
}

// Document returns the OpenAPI document the API serves: openapi.json with
// every fragment added by AddOpenAPI merged in.
func (a *API) Document() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mu.doc == nil {
		return OpenAPI
	}
	return a.mu.doc
}

// AddOpenAPI merges an OpenAPI fragment into the served document: a JSON
// object with "paths" and optionally "components" (schemas, responses,
// parameters, ...), as a service that mounts routes with Handle documents
// them without editing openapi.json. A path or component the document
// already has is an error, and nothing is merged.
func (a *API) AddOpenAPI(fragment []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.mu.doc
	if cur == nil {
		cur = OpenAPI
	}
	merged, err := MergeOpenAPI(cur, fragment)
	if err != nil {
		return err
	}
	a.mu.doc = merged
	return nil
}

// MergeOpenAPI returns the OpenAPI document doc with fragment's paths and
// components merged in, as AddOpenAPI merges them into the served
// document. A service's tests use it to check their responses against
// httpapi's document with the service's fragment:
//
//	doc, _ := httpapi.MergeOpenAPI(httpapi.OpenAPI, subscription.OpenAPI)
//	srv := httptest.NewServer(openapitest.Handler(t, doc, mux))
func MergeOpenAPI(doc, fragment []byte) ([]byte, error) {
	var frag struct {
		Paths      map[string]json.RawMessage            `json:"paths"`
		Components map[string]map[string]json.RawMessage `json:"components"`
	}
	dec := json.NewDecoder(strings.NewReader(string(fragment)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&frag); err != nil {
		return nil, fmt.Errorf("OpenAPI fragment: want {\"paths\": ..., \"components\": ...}: %w", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return nil, err
	}
	var paths map[string]json.RawMessage
	var comps map[string]map[string]json.RawMessage
	if err := json.Unmarshal(top["paths"], &paths); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(top["components"], &comps); err != nil {
		return nil, err
	}
	if paths == nil {
		paths = map[string]json.RawMessage{}
	}
	if comps == nil {
		comps = map[string]map[string]json.RawMessage{}
	}
	for p, v := range frag.Paths {
		if _, ok := paths[p]; ok {
			return nil, fmt.Errorf("OpenAPI fragment: path %s is already documented", p)
		}
		paths[p] = v
	}
	for sec, m := range frag.Components {
		if comps[sec] == nil {
			comps[sec] = map[string]json.RawMessage{}
		}
		for k, v := range m {
			if _, ok := comps[sec][k]; ok {
				return nil, fmt.Errorf("OpenAPI fragment: components.%s.%s is already defined", sec, k)
			}
			comps[sec][k] = v
		}
	}
	var err error
	if top["paths"], err = json.Marshal(paths); err != nil {
		return nil, err
	}
	if top["components"], err = json.Marshal(comps); err != nil {
		return nil, err
	}
	return json.MarshalIndent(top, "", " ")
}

// DocumentedOperation is one operation of the OpenAPI document.
type DocumentedOperation struct {
	Method, Path string
	// Service is the x-herald-service that serves it ("" for this
	// package).
	Service string
}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

// Operations lists the operations of an OpenAPI document (OpenAPI, or
// API.Document), sorted by path and method.
func Operations(document []byte) ([]DocumentedOperation, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(document, &doc); err != nil {
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

// OpenAPIMismatches checks the served document (Document) against the routes the API has
// (its own and every service mounted with Handle) and returns each
// mismatch, or nil when they agree: an operation documented but not routed
// (the request would get 404 or 405), or a route no documented operation
// reaches. Operations of the services named in skip are not required to be
// routed (a test of this package alone skips "subscriptions"); the lead's
// test of the assembled server calls it with no skip.
func (a *API) OpenAPIMismatches(skip ...string) []string {
	ops, err := Operations(a.Document())
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
