package schema

import (
	"bytes"
	"encoding/json"
	"net/mail"
	"net/url"
	"regexp"
	"sort"
	"time"
)

// Inferrer infers a JSON Schema from sample JSON documents (schema
// discovery: adopting schemas for a topic after the fact). It records, per
// position in the documents, the types seen, the properties present in
// every object (required) or only some, the string formats every sample
// matches (date-time, date, email, uuid, uri), and array item shapes. The
// zero value is ready; not safe for concurrent use.
type Inferrer struct {
	root     inferNode
	Samples  int // documents added
	NotJSON  int // samples that were not JSON (skipped)
	maxDepth int
}

type inferNode struct {
	seen    int // times a value was here
	types   map[string]int
	objects int
	props   map[string]*inferNode
	items   *inferNode
	strings int
	formats map[string]int
}

// Add adds one sample; it returns false (and counts it) when data is not
// one JSON document.
func (in *Inferrer) Add(data []byte) bool {
	var v any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&v); err != nil || d.More() {
		in.NotJSON++
		return false
	}
	in.Samples++
	in.root.add(v, 0)
	return true
}

const maxInferDepth = 32

func (n *inferNode) add(v any, depth int) {
	n.seen++
	if n.types == nil {
		n.types = map[string]int{}
	}
	switch x := v.(type) {
	case nil:
		n.types["null"]++
	case bool:
		n.types["boolean"]++
	case json.Number:
		if _, err := x.Int64(); err == nil {
			n.types["integer"]++
		} else {
			n.types["number"]++
		}
	case string:
		n.types["string"]++
		n.strings++
		if n.formats == nil {
			n.formats = map[string]int{}
		}
		for _, f := range stringFormats(x) {
			n.formats[f]++
		}
	case []any:
		n.types["array"]++
		if depth >= maxInferDepth {
			return
		}
		if n.items == nil {
			n.items = &inferNode{}
		}
		for _, e := range x {
			n.items.add(e, depth+1)
		}
	case map[string]any:
		n.types["object"]++
		n.objects++
		if depth >= maxInferDepth {
			return
		}
		if n.props == nil {
			n.props = map[string]*inferNode{}
		}
		for k, e := range x {
			p := n.props[k]
			if p == nil {
				p = &inferNode{}
				n.props[k] = p
			}
			p.add(e, depth+1)
		}
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// stringFormats lists the JSON Schema formats s satisfies.
func stringFormats(s string) []string {
	var out []string
	if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		out = append(out, "date-time")
	}
	if _, err := time.Parse(time.DateOnly, s); err == nil {
		out = append(out, "date")
	}
	if uuidRE.MatchString(s) {
		out = append(out, "uuid")
	}
	if a, err := mail.ParseAddress(s); err == nil && a.Address == s {
		out = append(out, "email")
	}
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && (u.Host != "" || u.Opaque != "") && len(s) > len(u.Scheme)+1 {
		out = append(out, "uri")
	}
	return out
}

// Schema returns the inferred JSON Schema (draft 2020-12) as a document
// with sorted keys, titled title when not empty.
func (in *Inferrer) Schema(title string) map[string]any {
	s := in.root.schema()
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	if title != "" {
		s["title"] = title
	}
	return s
}

func (n *inferNode) schema() map[string]any {
	s := map[string]any{}
	var types []string
	for t := range n.types {
		types = append(types, t)
	}
	// integer and number together are number.
	if n.types["integer"] > 0 && n.types["number"] > 0 {
		types = deleteString(types, "integer")
	}
	sort.Strings(types)
	switch len(types) {
	case 0:
		return s // never seen a value: anything
	case 1:
		s["type"] = types[0]
	default:
		s["type"] = types
	}
	if n.strings > 0 {
		// The most specific format every string matched.
		for _, f := range []string{"uuid", "date-time", "date", "email", "uri"} {
			if n.formats[f] == n.strings {
				s["format"] = f
				break
			}
		}
	}
	if n.items != nil && n.items.seen > 0 {
		s["items"] = n.items.schema()
	}
	if n.objects > 0 {
		props := map[string]any{}
		var req []string
		for k, p := range n.props {
			props[k] = p.schema()
			if p.seen == n.objects {
				req = append(req, k)
			}
		}
		s["properties"] = props
		if len(req) > 0 {
			sort.Strings(req)
			s["required"] = req
		}
	}
	return s
}

func deleteString(ss []string, s string) []string {
	out := ss[:0]
	for _, x := range ss {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
