package pattern

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/heraldhq/herald/event"
	"math"
	"strconv"
	"strings"
)

// MaxEventDepth bounds the nesting of arrays and objects in an event;
// deeper events are refused by both matchers.
const MaxEventDepth = 64

// tpos is one step of an array trail: which array (numbered in document
// order) and which element of it.
type tpos struct {
	arr int32
	idx int32
}

// consistent reports whether two fields may combine into a match: they
// must not come from different elements of one array.
func consistent(a, b []tpos) bool {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i].arr != b[i].arr {
			return true
		}
		if a[i].idx != b[i].idx {
			return false
		}
	}
	return true
}

type rfield struct {
	path  string // pathKey(segs)
	segs  []string
	k     vkind
	s     []byte
	num   float64
	trail []tpos
}

// rflatten decodes an event (a JSON object) into its leaf fields, the
// plain way.
func rflatten(doc []byte) ([]rfield, error) {
	v, err := decodeJSONOpt(doc, true, MaxEventDepth)
	if err != nil {
		return nil, fmt.Errorf("event is not valid JSON: %w", err)
	}
	if v.kind != jObject {
		return nil, fmt.Errorf("event must be a JSON object, got %s", v.kindName())
	}
	var out []rfield
	var arrays int32
	var walk func(v *jval, path []string, top bool, trail []tpos)
	walk = func(v *jval, path []string, top bool, trail []tpos) {
		switch v.kind {
		case jObject:
			for _, kv := range v.obj {
				key := kv.key
				p := append(path[:len(path):len(path)], key)
				if top {
					p = []string{topAlias(key)}
				}
				walk(kv.val, p, false, trail)
			}
		case jArray:
			id := arrays
			arrays++
			for i, e := range v.arr {
				t := trail
				if e.kind == jObject || e.kind == jArray {
					t = append(trail[:len(trail):len(trail)], tpos{id, int32(i)})
				}
				walk(e, path, false, t)
			}
		case jString:
			out = append(out, rfield{path: pathKey(path), segs: path, k: vString, s: []byte(v.str), trail: trail})
		case jNumber:
			f, err := strconv.ParseFloat(v.num, 64)
			if err != nil && !math.IsInf(f, 0) {
				f = 0
			}
			if f == 0 {
				f = 0
			}
			out = append(out, rfield{path: pathKey(path), segs: path, k: vNumber, num: f, trail: trail})
		case jBool:
			k := vFalse
			if v.b {
				k = vTrue
			}
			out = append(out, rfield{path: pathKey(path), segs: path, k: k, trail: trail})
		case jNull:
			out = append(out, rfield{path: pathKey(path), segs: path, k: vNull, trail: trail})
		}
	}
	walk(v, nil, true, nil)
	return out, nil
}

func topAlias(key string) string {
	switch key {
	case "detail":
		return "data"
	case "detail-type":
		return "type"
	}
	return key
}

// Match reports whether the event, a JSON object (a CloudEvent in its
// JSON form, or any object), matches the pattern. It is the plain
// reference evaluator; use a Machine to match many patterns fast. An
// error means the event is not a valid JSON object.
func (p *Pattern) Match(doc []byte) (bool, error) {
	fs, err := rflatten(doc)
	if err != nil {
		return false, err
	}
	for _, c := range p.Conjs {
		if matchConj(c, fs, nil) {
			return true, nil
		}
	}
	return false, nil
}

func matchConj(c []Cond, fs []rfield, chosen [][]tpos) bool {
	if len(c) == 0 {
		return true
	}
	cond := &c[0]
	path := pathKey(cond.Path)
	present := false
	for i := range fs {
		f := &fs[i]
		if f.path != path {
			continue
		}
		present = true
		ok := true
		for _, t := range chosen {
			if !consistent(t, f.trail) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		for j := range cond.Matchers {
			if matchValue(&cond.Matchers[j], f.k, f.s, f.num) {
				if matchConj(c[1:], fs, append(chosen, f.trail)) {
					return true
				}
				break
			}
		}
	}
	if !present {
		for j := range cond.Matchers {
			if cond.Matchers[j].Kind == KAbsent {
				return matchConj(c[1:], fs, chosen)
			}
		}
	}
	return false
}

// Explain matches like Match and says why: for a match, the alternative
// that matched; for a miss, the first condition of each alternative that
// no field satisfies.
func (p *Pattern) Explain(doc []byte) (bool, []string, error) {
	fs, err := rflatten(doc)
	if err != nil {
		return false, nil, err
	}
	var why []string
	for ci, c := range p.Conjs {
		if matchConj(c, fs, nil) {
			var parts []string
			for i := range c {
				parts = append(parts, describeCond(&c[i]))
			}
			alt := ""
			if len(p.Conjs) > 1 {
				alt = fmt.Sprintf(" (alternative %d of %d)", ci+1, len(p.Conjs))
			}
			return true, []string{"matched" + alt + ": " + strings.Join(parts, " and ")}, nil
		}
		// Find the first condition that fails on its own, else report
		// array consistency.
		reason := ""
		for i := range c {
			if !matchConj(c[i:i+1], fs, nil) {
				path := pathKey(c[i].Path)
				var vals []string
				for j := range fs {
					if fs[j].path == path {
						vals = append(vals, describeValue(&fs[j]))
					}
				}
				switch {
				case len(vals) == 0:
					reason = fmt.Sprintf("%s: field is missing, wanted %s", c[i].PathString(), describeCond(&c[i]))
				default:
					reason = fmt.Sprintf("%s: value %s does not match %s", c[i].PathString(), strings.Join(vals, ", "), describeCond(&c[i]))
				}
				break
			}
		}
		if reason == "" {
			reason = "each condition matches alone, but not within one element of an array (array consistency)"
		}
		if len(p.Conjs) > 1 {
			reason = fmt.Sprintf("alternative %d of %d: %s", ci+1, len(p.Conjs), reason)
		}
		why = append(why, reason)
	}
	return false, why, nil
}

func describeValue(f *rfield) string {
	switch f.k {
	case vString:
		return strconv.Quote(string(f.s))
	case vNumber:
		return strconv.FormatFloat(f.num, 'g', -1, 64)
	case vTrue:
		return "true"
	case vFalse:
		return "false"
	}
	return "null"
}

func describeCond(c *Cond) string {
	var alts []string
	for i := range c.Matchers {
		alts = append(alts, describeMatcher(&c.Matchers[i]))
	}
	s := strings.Join(alts, " or ")
	if len(alts) > 1 {
		s = "(" + s + ")"
	}
	return c.PathString() + " " + s
}

func describeMatcher(m *Matcher) string {
	switch m.Kind {
	case KString:
		return "= " + strconv.Quote(m.Str)
	case KNumber:
		return "= " + strconv.FormatFloat(m.Num, 'g', -1, 64)
	case KTrue:
		return "= true"
	case KFalse:
		return "= false"
	case KNull:
		return "= null"
	case KPrefix:
		return "prefix " + strconv.Quote(m.Str)
	case KSuffix:
		return "suffix " + strconv.Quote(m.Str)
	case KPrefixFold:
		return "prefix (ignoring case) " + strconv.Quote(m.Str)
	case KSuffixFold:
		return "suffix (ignoring case) " + strconv.Quote(m.Str)
	case KFold:
		return "equals (ignoring case) " + strconv.Quote(m.Str)
	case KWildcard:
		return "wildcard " + strconv.Quote(m.Str)
	case KNumeric:
		var b []string
		if !math.IsInf(m.Lo, -1) {
			op := ">"
			if m.LoInc {
				op = ">="
			}
			b = append(b, op+" "+strconv.FormatFloat(m.Lo, 'g', -1, 64))
		}
		if !math.IsInf(m.Hi, 1) {
			op := "<"
			if m.HiInc {
				op = "<="
			}
			b = append(b, op+" "+strconv.FormatFloat(m.Hi, 'g', -1, 64))
		}
		return "numeric " + strings.Join(b, " and ")
	case KCIDR:
		return "in " + m.Prefix.String()
	case KExists:
		return "exists"
	case KAbsent:
		return "does not exist"
	case KAnythingBut:
		var v []string
		for _, s := range m.Strs {
			v = append(v, strconv.Quote(s))
		}
		for _, n := range m.Nums {
			v = append(v, strconv.FormatFloat(n, 'g', -1, 64))
		}
		return "anything but " + strings.Join(v, ", ")
	case KAnythingButPrefix:
		return "anything but prefix " + strconv.Quote(m.Str)
	case KAnythingButSuffix:
		return "anything but suffix " + strconv.Quote(m.Str)
	case KAnythingButFold:
		return "anything but (ignoring case) " + strings.Join(m.Strs, ", ")
	case KAnythingButWildcard:
		return "anything but wildcard " + strings.Join(m.Strs, ", ")
	}
	return "?"
}

// EventJSON renders e as the JSON object patterns are matched against:
// its attributes as top-level strings and its data under "data" when it
// is JSON (other data is left out). Machine.MatchEvent matches the same
// object without building it.
func EventJSON(e *event.Event) []byte {
	m := map[string]any{"specversion": "1.0"}
	put := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	put("id", e.ID)
	put("source", e.Source)
	put("type", e.Type)
	put("subject", e.Subject)
	put("datacontenttype", e.DataContentType)
	if !e.Time.IsZero() {
		m["time"] = e.Time.UTC().Format(time.RFC3339Nano)
	}
	m["kind"] = e.Kind.String()
	put("correlationid", e.CorrelationID)
	put("causationid", e.CausationID)
	put("traceparent", e.TraceParent)
	put("aggregateid", e.AggregateID)
	if e.AggregateVersion != 0 {
		m["aggregateversion"] = strconv.FormatInt(e.AggregateVersion, 10)
	}
	for k, v := range e.Extensions {
		put(k, v)
	}
	if len(e.Data) > 0 && jsonContentType(e.DataContentType) && json.Valid(e.Data) {
		m["data"] = json.RawMessage(e.Data)
	}
	b, _ := json.Marshal(m)
	return b
}
