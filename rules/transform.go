package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/internal/httpjson"
)

// Reserved template variables.
const (
	VarEvent    = "herald.event"
	VarRuleName = "herald.rule-name"
)

var varRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// jsonPath is a compiled JSONPath of the subset an input path may use:
// $ followed by .name, ['name'] and [index] steps.
type jsonPath []any // string (field) or int (index)

func parseJSONPath(s string) (jsonPath, error) {
	if !strings.HasPrefix(s, "$") {
		return nil, fmt.Errorf("must start with $")
	}
	var p jsonPath
	i := 1
	for i < len(s) {
		switch s[i] {
		case '.':
			j := i + 1
			for j < len(s) && s[j] != '.' && s[j] != '[' {
				j++
			}
			if j == i+1 {
				return nil, fmt.Errorf("empty field name at byte %d", i)
			}
			p = append(p, s[i+1:j])
			i = j
		case '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ at byte %d", i)
			}
			in := s[i+1 : i+end]
			switch {
			case len(in) >= 2 && (in[0] == '\'' || in[0] == '"') && in[len(in)-1] == in[0]:
				p = append(p, in[1:len(in)-1])
			default:
				n, err := strconv.Atoi(in)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("[%s] is neither an index nor a quoted name (filters and wildcards are not supported)", in)
				}
				p = append(p, n)
			}
			i += end + 1
		default:
			return nil, fmt.Errorf("unexpected %q at byte %d", s[i], i)
		}
	}
	return p, nil
}

func (p jsonPath) eval(v any) (any, bool) {
	for _, step := range p {
		switch s := step.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[s]; !ok {
				return nil, false
			}
		case int:
			a, ok := v.([]any)
			if !ok || s >= len(a) {
				return nil, false
			}
			v = a[s]
		}
	}
	return v, true
}

// transformer is a compiled InputTransformer.
type transformer struct {
	paths map[string]jsonPath
	// parts alternate literal text and placeholders.
	parts []tpart
	// text: the template is not JSON, so strings go in unquoted.
	text bool
}

type tpart struct {
	lit      string
	name     string // placeholder when non-empty
	inString bool   // the placeholder sits inside a JSON string literal
}

func compileTransformer(it *InputTransformer, field string) (*transformer, error) {
	if len(it.InputPaths) > MaxInputPaths {
		return nil, httpjson.Invalid(field+".input_paths", "at most %d input paths, got %d", MaxInputPaths, len(it.InputPaths))
	}
	if it.InputTemplate == "" {
		return nil, httpjson.Invalid(field+".input_template", "input_template is required")
	}
	if len(it.InputTemplate) > MaxTemplate {
		return nil, httpjson.Invalid(field+".input_template", "input_template is %d bytes, more than %d", len(it.InputTemplate), MaxTemplate)
	}
	t := &transformer{paths: map[string]jsonPath{}}
	names := make([]string, 0, len(it.InputPaths))
	for k := range it.InputPaths {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		f := field + ".input_paths[" + strconv.Quote(k) + "]"
		if !varRE.MatchString(k) {
			return nil, httpjson.Invalid(f, "variable name %q must be 1-64 characters of [A-Za-z0-9_.-]", k)
		}
		if strings.HasPrefix(k, "herald.") || strings.HasPrefix(k, "aws.") {
			return nil, httpjson.Invalid(f, "variable name %q is reserved", k)
		}
		p, err := parseJSONPath(it.InputPaths[k])
		if err != nil {
			return nil, httpjson.Invalid(f, "input path %q: %v", it.InputPaths[k], err)
		}
		t.paths[k] = p
	}
	// Split the template into literals and placeholders, tracking
	// whether each placeholder sits inside a JSON string.
	s := it.InputTemplate
	inStr := false
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inStr && i+1 < len(s):
			lit.WriteByte(c)
			lit.WriteByte(s[i+1])
			i++
			continue
		case c == '"':
			inStr = !inStr
		case c == '<':
			end := strings.IndexByte(s[i:], '>')
			if end > 0 {
				name := s[i+1 : i+end]
				if varRE.MatchString(name) {
					_, known := t.paths[name]
					if !known && name != VarEvent && name != VarRuleName {
						return nil, httpjson.Invalid(field+".input_template", "placeholder <%s> has no input path (and is not <%s> or <%s>)", name, VarEvent, VarRuleName)
					}
					t.parts = append(t.parts, tpart{lit: lit.String()}, tpart{name: name, inString: inStr})
					lit.Reset()
					i += end
					continue
				}
			}
		}
		lit.WriteByte(c)
	}
	t.parts = append(t.parts, tpart{lit: lit.String()})
	var probe strings.Builder
	for _, p := range t.parts {
		switch {
		case p.name == "":
			probe.WriteString(p.lit)
		case !p.inString:
			probe.WriteString("null")
		}
	}
	t.text = !json.Valid([]byte(probe.String()))
	return t, nil
}

// apply renders the template for one event (doc is the event as JSON).
// A variable whose path is missing from the event is left out: nothing
// inside a JSON string, null elsewhere.
func (t *transformer) apply(doc []byte, ruleName string) []byte {
	var ev any
	if len(t.paths) > 0 {
		d := json.NewDecoder(bytes.NewReader(doc))
		d.UseNumber()
		_ = d.Decode(&ev)
	}
	var out bytes.Buffer
	for _, p := range t.parts {
		if p.name == "" {
			out.WriteString(p.lit)
			continue
		}
		var v any
		found := true
		switch p.name {
		case VarEvent:
			if p.inString && !t.text {
				writeInString(&out, string(doc))
			} else {
				out.Write(doc)
			}
			continue
		case VarRuleName:
			v = ruleName
		default:
			v, found = t.paths[p.name].eval(ev)
		}
		switch {
		case !found && (p.inString || t.text):
		case !found:
			out.WriteString("null")
		case p.inString || t.text:
			if s, ok := v.(string); ok && t.text {
				out.WriteString(s)
			} else if ok {
				writeInString(&out, s)
			} else if b, _ := json.Marshal(v); t.text {
				out.Write(b)
			} else {
				writeInString(&out, string(b))
			}
		default:
			b, _ := json.Marshal(v)
			out.Write(b)
		}
	}
	return out.Bytes()
}

// writeInString writes s escaped for the inside of a JSON string.
func writeInString(out *bytes.Buffer, s string) {
	b, _ := json.Marshal(s)
	out.Write(b[1 : len(b)-1])
}
