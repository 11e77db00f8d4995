package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"unsafe"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// JSONSchema is a parsed JSON Schema document.
type JSONSchema struct {
	canon    string
	compiled *jsonschema.Schema
	base     string         // the main document's URL
	docs     map[string]any // documents by URL (without fragment), main and references
}

// Type implements Schema.
func (*JSONSchema) Type() Type { return JSON }

// Canonical implements Schema.
func (s *JSONSchema) Canonical() string { return s.canon }

// Title is the document's "title", the record name of the record naming
// strategies (as Confluent's JSON Schema serializer uses it).
func (s *JSONSchema) Title() string {
	if m, ok := s.docs[s.base].(map[string]any); ok {
		if t, ok := m["title"].(string); ok {
			return t
		}
	}
	return ""
}

const jsonBase = "mem://herald/schema.json"

func parseJSONSchema(text string, deps []Dep) (*JSONSchema, error) {
	canon, _, err := normalJSON(text)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return nil, jsonSyntax(text, err)
	}
	base := jsonBase
	if m, ok := doc.(map[string]any); ok {
		if id, ok := m["$id"].(string); ok {
			if u, err := url.Parse(id); err == nil && u.IsAbs() {
				base = strings.TrimSuffix(u.String(), "#")
			}
		}
	}
	s := &JSONSchema{canon: canon, base: base, docs: map[string]any{base: doc}}
	c := jsonschema.NewCompiler()
	// Formats (date-time, email, uuid, ...) are checked, as Confluent's
	// JSON Schema serializers check them, not just annotations.
	c.AssertFormat()
	for _, d := range deps {
		ddoc, err := jsonschema.UnmarshalJSON(strings.NewReader(d.Text))
		if err != nil {
			return nil, fmt.Errorf("reference %q: %v", d.Name, jsonSyntax(d.Text, err))
		}
		u := resolveURL(base, d.Name)
		s.docs[u] = ddoc
		if err := c.AddResource(u, ddoc); err != nil {
			return nil, fmt.Errorf("reference %q: %v", d.Name, err)
		}
	}
	if err := c.AddResource(base, doc); err != nil {
		return nil, err
	}
	// Only the documents given: a $ref to anything else is an error, never
	// a network or file fetch.
	c.UseLoader(noLoader{})
	if s.compiled, err = c.Compile(base); err != nil {
		return nil, err
	}
	return s, nil
}

type noLoader struct{}

func (noLoader) Load(u string) (any, error) {
	return nil, fmt.Errorf("$ref %q is not among the schema's references", u)
}

func resolveURL(base, ref string) string {
	b, err := url.Parse(base)
	if err != nil {
		return ref
	}
	r, err := url.Parse(ref)
	if err != nil {
		return ref
	}
	u := b.ResolveReference(r)
	u.Fragment = ""
	return u.String()
}

var enPrinter = message.NewPrinter(language.English)

// ValidateJSON checks a JSON document against the schema. The error names
// the path of the first field that breaks the schema.
func (s *JSONSchema) ValidateJSON(data []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	err = s.compiled.Validate(v)
	if err == nil {
		return nil
	}
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return err
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	return fmt.Errorf("field /%s: %s", strings.Join(ve.InstanceLocation, "/"), ve.ErrorKind.LocalizedString(enPrinter))
}

// jnode is a subschema with the URL of the document it lives in (for
// resolving its $refs).
type jnode struct {
	v   any
	doc string
}

type jsonChecker struct {
	r, w   *JSONSchema
	msgs   []string
	seen   *seenSet
	budget *int // comparisons left, shared with trials: combinators could blow up
}

// seenSet holds the schema pairs under comparison. A trial (trying one
// alternative of a combinator) gets a child set, so what it marks is
// forgotten when the trial is over.
type seenSet struct {
	m      map[pairKey]bool
	parent *seenSet
}

// pairKey names a (writer, reader) pair of schema objects by identity.
type pairKey struct{ w, r unsafe.Pointer }

func (s *seenSet) has(k pairKey) bool {
	for ; s != nil; s = s.parent {
		if s.m[k] {
			return true
		}
	}
	return false
}

func (s *seenSet) child() *seenSet { return &seenSet{m: map[pairKey]bool{}, parent: s} }

// maxJSONComparisons bounds one compatibility check (nested anyOf/oneOf
// alternatives multiply).
const maxJSONComparisons = 50_000

// jsonCanRead reports why a document valid under writer may be invalid
// under reader (the reader's content model must contain the writer's).
func jsonCanRead(reader, writer *JSONSchema) []string {
	// Real schemas need steps in proportion to their size; the base covers
	// small ones with combinators.
	limit := maxJSONComparisons + (len(reader.canon)+len(writer.canon))/4
	budget := limit
	c := &jsonChecker{r: reader, w: writer, seen: &seenSet{m: map[pairKey]bool{}}, budget: &budget}
	c.sub("", jnode{writer.docs[writer.base], writer.base}, jnode{reader.docs[reader.base], reader.base})
	if budget < 0 {
		// Trials cut short may have passed: the result is unknown.
		return append(c.msgs, fmt.Sprintf("/: TOO_COMPLEX: comparing the schemas needs over %d steps; treated as incompatible", limit))
	}
	return c.msgs
}

func (c *jsonChecker) fail(path, format string, args ...any) {
	if path == "" {
		path = "/"
	}
	c.msgs = append(c.msgs, path+": "+fmt.Sprintf(format, args...))
}

// resolve follows $ref (JSON pointers within a document, or another
// document by URL) until a schema without $ref.
func (s *JSONSchema) resolve(n jnode) jnode {
	for range 32 {
		m, ok := n.v.(map[string]any)
		if !ok {
			return n
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return n
		}
		u, err := url.Parse(ref)
		if err != nil {
			return n
		}
		doc := n.doc
		if ref != "" && !strings.HasPrefix(ref, "#") {
			doc = resolveURL(n.doc, ref)
		}
		root, ok := s.docs[doc]
		if !ok {
			return n
		}
		v := root
		for _, tok := range strings.Split(strings.TrimPrefix(u.Fragment, "/"), "/") {
			if tok == "" {
				continue
			}
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch x := v.(type) {
			case map[string]any:
				v = x[tok]
			default:
				v = nil
			}
		}
		if v == nil {
			return n
		}
		n = jnode{v, doc}
	}
	return n
}

var allJSONTypes = []string{"array", "boolean", "integer", "null", "number", "object", "string"}

func jtypes(m map[string]any) ([]string, bool) {
	switch t := m["type"].(type) {
	case string:
		return []string{t}, true
	case []any:
		var out []string
		for _, x := range t {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out, true
	}
	return allJSONTypes, false
}

func hasType(ts []string, t string) bool {
	return slices.Contains(ts, t) || (t == "integer" && slices.Contains(ts, "number"))
}

func jnum(m map[string]any, k string) (*big.Rat, bool) {
	n, ok := m[k].(json.Number)
	if !ok {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(n.String())
	return r, ok
}

func asMap(v any) (map[string]any, bool) {
	switch x := v.(type) {
	case map[string]any:
		return x, true
	case bool:
		if x {
			return map[string]any{}, true
		}
	}
	return nil, false // false schema
}

func isAny(m map[string]any) bool {
	for k := range m {
		switch k {
		case "$id", "$schema", "title", "description", "$comment", "default", "examples", "$defs", "definitions":
		default:
			return false
		}
	}
	return true
}

func jkey(v any) string { b, _ := json.Marshal(v); return string(b) }

// sub checks that every instance valid under w is valid under r.
func (c *jsonChecker) sub(path string, w, r jnode) {
	if *c.budget--; *c.budget < 0 {
		return
	}
	w, r = c.w.resolve(w), c.r.resolve(r)
	// A pair already being (or been) compared is not compared again:
	// recursive schemas ($ref "#") terminate.
	if wmap, ok := w.v.(map[string]any); ok {
		key := pairKey{reflect.ValueOf(wmap).UnsafePointer(), nil}
		if rmap, ok := r.v.(map[string]any); ok {
			key.r = reflect.ValueOf(rmap).UnsafePointer()
		}
		if c.seen.has(key) {
			return
		}
		c.seen.m[key] = true
	}
	wm, wok := asMap(w.v)
	rm, rok := asMap(r.v)
	if !wok { // the writer accepts nothing
		return
	}
	if !rok {
		c.fail(path, "SCHEMA_NARROWED: the reader accepts nothing here (false schema)")
		return
	}
	if isAny(rm) {
		return
	}
	// Combinators of the writer: each alternative must be readable.
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts, ok := wm[k].([]any); ok {
			for i, a := range alts {
				c.sub(fmt.Sprintf("%s/%s/%d", path, k, i), jnode{a, w.doc}, r)
			}
			return
		}
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts, ok := rm[k].([]any); ok {
			for _, a := range alts {
				sc := &jsonChecker{r: c.r, w: c.w, seen: c.seen.child(), budget: c.budget}
				sc.sub(path, w, jnode{a, r.doc})
				if len(sc.msgs) == 0 {
					return
				}
			}
			c.fail(path, "COMBINED_TYPE_SUBSCHEMAS_CHANGED: no alternative of the reader's %s accepts the writer's schema", k)
			return
		}
	}
	if alts, ok := rm["allOf"].([]any); ok {
		for i, a := range alts {
			c.sub(fmt.Sprintf("%s/allOf/%d", path, i), w, jnode{a, r.doc})
		}
	}

	wt, _ := jtypes(wm)
	rt, rHasType := jtypes(rm)
	var live []string
	for _, t := range wt {
		if !hasType(rt, t) {
			if rHasType {
				c.fail(path, "TYPE_NARROWED: the writer allows type %s, the reader does not (reader types %v)", t, rt)
			}
			continue
		}
		live = append(live, t)
	}
	c.enum(path, wm, rm)
	if hasType(live, "number") || hasType(live, "integer") {
		c.numbers(path, wm, rm)
	}
	if slices.Contains(live, "string") {
		c.lengths(path, wm, rm, "minLength", "maxLength", "string length")
		for _, k := range []string{"pattern", "format"} {
			if rv, ok := rm[k]; ok && jkey(rv) != jkey(wm[k]) {
				c.fail(path, "%s_CHANGED: the reader requires %s %v, the writer %v", strings.ToUpper(k), k, rv, orNone(wm[k]))
			}
		}
	}
	if slices.Contains(live, "array") {
		c.lengths(path, wm, rm, "minItems", "maxItems", "item count")
		if rm["uniqueItems"] == true && wm["uniqueItems"] != true {
			c.fail(path, "UNIQUE_ITEMS_ADDED: the reader requires unique items, the writer does not")
		}
		wi, ok := wm["items"]
		if !ok {
			wi = true
		}
		ri, ok := rm["items"]
		if !ok {
			ri = true
		}
		c.sub(path+"/items", jnode{wi, w.doc}, jnode{ri, r.doc})
	}
	if slices.Contains(live, "object") {
		c.object(path, w, r, wm, rm)
	}
}

func orNone(v any) any {
	if v == nil {
		return "none"
	}
	return v
}

func (c *jsonChecker) enum(path string, wm, rm map[string]any) {
	vals := func(m map[string]any) ([]any, bool) {
		if e, ok := m["enum"].([]any); ok {
			return e, true
		}
		if v, ok := m["const"]; ok {
			return []any{v}, true
		}
		return nil, false
	}
	re, ok := vals(rm)
	if !ok {
		return
	}
	we, ok := vals(wm)
	if !ok {
		c.fail(path, "ENUM_ADDED: the reader allows only %s, the writer any value", jkey(re))
		return
	}
	allowed := map[string]bool{}
	for _, v := range re {
		allowed[jkey(v)] = true
	}
	for _, v := range we {
		if !allowed[jkey(v)] {
			c.fail(path, "ENUM_ARRAY_NARROWED: the writer's value %s is not in the reader's enum", jkey(v))
		}
	}
}

func (c *jsonChecker) numbers(path string, wm, rm map[string]any) {
	for _, k := range []string{"minimum", "exclusiveMinimum"} {
		rv, ok := jnum(rm, k)
		if !ok {
			continue
		}
		wv, ok := jnum(wm, k)
		if !ok {
			wv, ok = jnum(wm, map[string]string{"minimum": "exclusiveMinimum", "exclusiveMinimum": "minimum"}[k])
		}
		if !ok {
			c.fail(path, "%s_ADDED: the reader requires %s %s, the writer has none", strings.ToUpper(k), k, rv.RatString())
		} else if wv.Cmp(rv) < 0 {
			c.fail(path, "%s_INCREASED: the reader's %s %s is above the writer's %s", strings.ToUpper(k), k, rv.RatString(), wv.RatString())
		}
	}
	for _, k := range []string{"maximum", "exclusiveMaximum"} {
		rv, ok := jnum(rm, k)
		if !ok {
			continue
		}
		wv, ok := jnum(wm, k)
		if !ok {
			wv, ok = jnum(wm, map[string]string{"maximum": "exclusiveMaximum", "exclusiveMaximum": "maximum"}[k])
		}
		if !ok {
			c.fail(path, "%s_ADDED: the reader requires %s %s, the writer has none", strings.ToUpper(k), k, rv.RatString())
		} else if wv.Cmp(rv) > 0 {
			c.fail(path, "%s_DECREASED: the reader's %s %s is below the writer's %s", strings.ToUpper(k), k, rv.RatString(), wv.RatString())
		}
	}
	if rv, ok := jnum(rm, "multipleOf"); ok {
		wv, ok := jnum(wm, "multipleOf")
		if !ok || new(big.Rat).Quo(wv, rv).IsInt() == false {
			c.fail(path, "MULTIPLE_OF_CHANGED: the reader requires multiples of %s, the writer's values are not all such", rv.RatString())
		}
	}
}

// lengths compares a min/max pair (the reader's range must contain the
// writer's).
func (c *jsonChecker) lengths(path string, wm, rm map[string]any, minK, maxK, what string) {
	if rv, ok := jnum(rm, minK); ok {
		if wv, ok := jnum(wm, minK); !ok || wv.Cmp(rv) < 0 {
			c.fail(path, "%s_INCREASED: the reader's %s %s is above the writer's %v (%s)", strings.ToUpper(minK), minK, rv.RatString(), orNone(wm[minK]), what)
		}
	}
	if rv, ok := jnum(rm, maxK); ok {
		if wv, ok := jnum(wm, maxK); !ok || wv.Cmp(rv) > 0 {
			c.fail(path, "%s_DECREASED: the reader's %s %s is below the writer's %v (%s)", strings.ToUpper(maxK), maxK, rv.RatString(), orNone(wm[maxK]), what)
		}
	}
}

func (c *jsonChecker) object(path string, w, r jnode, wm, rm map[string]any) {
	c.lengths(path, wm, rm, "minProperties", "maxProperties", "property count")
	wreq := map[string]bool{}
	if req, ok := wm["required"].([]any); ok {
		for _, p := range req {
			if s, ok := p.(string); ok {
				wreq[s] = true
			}
		}
	}
	if req, ok := rm["required"].([]any); ok {
		for _, p := range req {
			if s, ok := p.(string); ok && !wreq[s] {
				c.fail(path+"/"+s, "REQUIRED_PROPERTY_ADDED: property %q is required by the reader but not by the writer", s)
			}
		}
	}
	wprops, _ := wm["properties"].(map[string]any)
	rprops, _ := rm["properties"].(map[string]any)
	wadd, ok := wm["additionalProperties"]
	if !ok {
		wadd = true
	}
	radd, ok := rm["additionalProperties"]
	if !ok {
		radd = true
	}
	names := make([]string, 0, len(wprops))
	for p := range wprops {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		ws := wprops[p]
		if rs, ok := rprops[p]; ok {
			c.sub(path+"/"+p, jnode{ws, w.doc}, jnode{rs, r.doc})
			continue
		}
		if radd == false {
			c.fail(path+"/"+p, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL: the writer may send property %q, the reader's closed model rejects it", p)
			continue
		}
		c.sub(path+"/"+p, jnode{ws, w.doc}, jnode{radd, r.doc})
	}
	names = names[:0]
	for p := range rprops {
		if _, ok := wprops[p]; !ok {
			names = append(names, p)
		}
	}
	sort.Strings(names)
	for _, p := range names {
		if wadd == false {
			continue // the writer never sends it
		}
		sc := &jsonChecker{r: c.r, w: c.w, seen: c.seen.child(), budget: c.budget}
		sc.sub(path+"/"+p, jnode{wadd, w.doc}, jnode{rprops[p], r.doc})
		if len(sc.msgs) > 0 {
			c.fail(path+"/"+p, "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL: the writer's open model may carry property %q with any value, the reader constrains it", p)
		}
	}
	if radd != true {
		if wadd == true {
			if ram, ok := asMap(radd); !ok || !isAny(ram) {
				c.fail(path, "ADDITIONAL_PROPERTIES_NARROWED: the writer allows any additional property, the reader does not")
			}
		} else {
			c.sub(path+"/additionalProperties", jnode{wadd, w.doc}, jnode{radd, r.doc})
		}
	}
}
