package pattern

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Limits a pattern must respect.
const (
	// MaxPatternBytes bounds the JSON text of one pattern.
	MaxPatternBytes = 64 << 10
	// MaxDepth bounds the nesting of objects in a pattern.
	MaxDepth = 32
	// MaxCombinations bounds the conjunctions a pattern's $or expand into.
	MaxCombinations = 1000
)

// ErrInvalid is wrapped by every *Error.
var ErrInvalid = errors.New("invalid event pattern")

// Error is a pattern refused by Compile: the JSON path of the offending
// part ("$" is the pattern, "$.detail.total[0].numeric" a part of it) and
// the reason.
type Error struct {
	Path   string
	Reason string
}

func (e *Error) Error() string { return "pattern " + e.Path + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

func perr(path, format string, args ...any) *Error {
	return &Error{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// Kind is the kind of one alternative of a leaf.
type Kind uint8

// Kinds of Matcher.
const (
	KString Kind = iota + 1
	KNumber
	KTrue
	KFalse
	KNull
	KPrefix
	KSuffix
	KPrefixFold
	KSuffixFold
	KFold
	KWildcard
	KNumeric
	KCIDR
	KExists
	KAbsent
	KAnythingBut
	KAnythingButPrefix
	KAnythingButSuffix
	KAnythingButFold
	KAnythingButWildcard
)

// Matcher is one alternative of a leaf, compiled.
type Matcher struct {
	Kind Kind
	// Str is the string of KString, KPrefix, KSuffix and KWildcard, and
	// the lower-cased string of the *Fold kinds.
	Str string
	// Num is the number of KNumber.
	Num float64
	// Numeric range: Lo/Hi with their inclusiveness; -Inf/+Inf when open.
	Lo, Hi       float64
	LoInc, HiInc bool
	// Prefix is the network of KCIDR.
	Prefix netip.Prefix
	// Strs and Nums are the excluded values of KAnythingBut, and Strs the
	// patterns of KAnythingButFold (lower-cased) and KAnythingButWildcard.
	Strs []string
	Nums []float64
	// Str of KAnythingButPrefix/Suffix is the excluded prefix or suffix.
}

// Cond is one condition of a conjunction: the field at Path must have a
// leaf value matching one of Matchers (or, for KAbsent, none at all).
type Cond struct {
	Path     []string
	Matchers []Matcher
}

// PathString is the dotted form of the condition's path.
func (c *Cond) PathString() string { return strings.Join(c.Path, ".") }

// Pattern is a compiled, validated event pattern. It is immutable and safe
// for concurrent use.
type Pattern struct {
	src []byte
	// Conjs is the pattern expanded into alternatives: the pattern
	// matches when any conjunction does, and a conjunction when all its
	// conditions hold together (array consistency).
	Conjs [][]Cond
}

// Source returns the JSON text the pattern was compiled from.
func (p *Pattern) Source() []byte { return p.src }

// Compile parses and validates an event pattern.
func Compile(src []byte) (*Pattern, error) {
	if len(src) > MaxPatternBytes {
		return nil, perr("$", "pattern is %d bytes, more than the limit of %d", len(src), MaxPatternBytes)
	}
	v, err := decodeJSON(src)
	if err != nil {
		return nil, perr("$", "not valid JSON: %v", err)
	}
	if v.kind != jObject {
		return nil, perr("$", "must be a JSON object, got %s", v.kindName())
	}
	if err := checkTree(v, "$", 0, true); err != nil {
		return nil, err
	}
	n, err := countCombos(v)
	if err != nil {
		return nil, err
	}
	if n > MaxCombinations {
		return nil, perr("$", "$or expands into more than %d combinations", MaxCombinations)
	}
	conjs, err := expand(v, nil, "$", true)
	if err != nil {
		return nil, err
	}
	for i := range conjs {
		conjs[i] = normalizeConj(conjs[i])
	}
	return &Pattern{src: slices.Clone(src), Conjs: conjs}, nil
}

// MustCompile is Compile that panics on error, for tests and constants.
func MustCompile(src string) *Pattern {
	p, err := Compile([]byte(src))
	if err != nil {
		panic(err)
	}
	return p
}

// ---- a small ordered JSON tree (duplicate keys are refused) ----

type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNumber
	jString
	jArray
	jObject
)

type jkv struct {
	key string
	val *jval
}

type jval struct {
	kind jkind
	b    bool
	num  string
	str  string
	arr  []*jval
	obj  []jkv
}

func (v *jval) kindName() string {
	switch v.kind {
	case jNull:
		return "null"
	case jBool:
		return "a boolean"
	case jNumber:
		return "a number"
	case jString:
		return "a string"
	case jArray:
		return "an array"
	}
	return "an object"
}

func decodeJSON(src []byte) (*jval, error) { return decodeJSONOpt(src, false, MaxDepth*2+4) }

func decodeJSONOpt(src []byte, allowDup bool, maxDepth int) (*jval, error) {
	d := json.NewDecoder(bytes.NewReader(src))
	d.UseNumber()
	v, err := decodeValue(d, 0, allowDup, maxDepth)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the pattern")
	}
	return v, nil
}

func decodeValue(d *json.Decoder, depth int, allowDup bool, maxDepth int) (*jval, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested more than %d levels", maxDepth)
	}
	t, err := d.Token()
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return decodeFrom(d, t, depth, allowDup, maxDepth)
}

func decodeFrom(d *json.Decoder, t json.Token, depth int, allowDup bool, maxDepth int) (*jval, error) {
	switch t := t.(type) {
	case nil:
		return &jval{kind: jNull}, nil
	case bool:
		return &jval{kind: jBool, b: t}, nil
	case json.Number:
		return &jval{kind: jNumber, num: string(t)}, nil
	case string:
		return &jval{kind: jString, str: t}, nil
	case json.Delim:
		switch t {
		case '[':
			v := &jval{kind: jArray}
			for d.More() {
				e, err := decodeValue(d, depth+1, allowDup, maxDepth)
				if err != nil {
					return nil, err
				}
				v.arr = append(v.arr, e)
			}
			if _, err := d.Token(); err != nil {
				return nil, err
			}
			return v, nil
		case '{':
			v := &jval{kind: jObject}
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				for _, kv := range v.obj {
					if !allowDup && kv.key == k {
						return nil, fmt.Errorf("duplicate key %q", k)
					}
				}
				e, err := decodeValue(d, depth+1, allowDup, maxDepth)
				if err != nil {
					return nil, err
				}
				v.obj = append(v.obj, jkv{k, e})
			}
			if _, err := d.Token(); err != nil {
				return nil, err
			}
			return v, nil
		}
	}
	return nil, fmt.Errorf("unexpected token %v", t)
}

// ---- validation and expansion ----

func childPath(path, key string) string {
	if isIdent(key) {
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '$') {
			return false
		}
	}
	return true
}

func idxPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// checkTree validates the structure of an object of a pattern (not the
// leaves, which expand compiles).
func checkTree(v *jval, path string, depth int, top bool) error {
	if depth >= MaxDepth {
		return perr(path, "nested more than %d levels", MaxDepth)
	}
	if len(v.obj) == 0 {
		return perr(path, "empty object: a pattern object needs at least one field")
	}
	for _, kv := range v.obj {
		p := childPath(path, kv.key)
		if kv.key == "$or" {
			if kv.val.kind != jArray {
				return perr(p, "$or must be an array of pattern objects, got %s", kv.val.kindName())
			}
			if len(kv.val.arr) == 0 {
				return perr(p, "$or must not be empty")
			}
			for i, e := range kv.val.arr {
				if e.kind != jObject {
					return perr(idxPath(p, i), "$or alternative must be an object, got %s", e.kindName())
				}
				if err := checkTree(e, idxPath(p, i), depth+1, false); err != nil {
					return err
				}
			}
			continue
		}
		switch kv.val.kind {
		case jObject:
			if err := checkTree(kv.val, p, depth+1, false); err != nil {
				return err
			}
		case jArray:
			if len(kv.val.arr) == 0 {
				return perr(p, "empty array: a leaf needs at least one value or operator")
			}
		default:
			return perr(p, "must be an array of values and operators, or an object; got %s", kv.val.kindName())
		}
	}
	return nil
}

func countCombos(v *jval) (int, error) {
	n := 1
	for _, kv := range v.obj {
		var m int
		switch {
		case kv.key == "$or":
			for _, e := range kv.val.arr {
				c, _ := countCombos(e)
				m += c
				if m > MaxCombinations {
					return MaxCombinations + 1, nil
				}
			}
		case kv.val.kind == jObject:
			m, _ = countCombos(kv.val)
		default:
			m = 1
		}
		n *= m
		if n > MaxCombinations {
			return MaxCombinations + 1, nil
		}
	}
	return n, nil
}

// expand turns an object (at field prefix) into its conjunctions.
func expand(v *jval, prefix []string, path string, top bool) ([][]Cond, error) {
	conjs := [][]Cond{nil}
	for _, kv := range v.obj {
		p := childPath(path, kv.key)
		var alts [][]Cond
		switch {
		case kv.key == "$or":
			for i, e := range kv.val.arr {
				sub, err := expand(e, prefix, idxPath(p, i), top)
				if err != nil {
					return nil, err
				}
				alts = append(alts, sub...)
			}
		default:
			key := kv.key
			if top {
				// EventBridge's names for the CloudEvents type and data.
				switch key {
				case "detail-type":
					key = "type"
				case "detail":
					key = "data"
				}
			}
			fp := append(slices.Clone(prefix), key)
			if kv.val.kind == jObject {
				sub, err := expand(kv.val, fp, p, false)
				if err != nil {
					return nil, err
				}
				alts = sub
			} else {
				ms, err := compileLeaf(kv.val.arr, p)
				if err != nil {
					return nil, err
				}
				alts = [][]Cond{{{Path: fp, Matchers: ms}}}
			}
		}
		next := make([][]Cond, 0, len(conjs)*len(alts))
		for _, c := range conjs {
			for _, a := range alts {
				nc := make([]Cond, 0, len(c)+len(a))
				nc = append(nc, c...)
				nc = append(nc, a...)
				next = append(next, nc)
			}
		}
		conjs = next
	}
	return conjs, nil
}

func parseNumber(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	if f == 0 {
		f = 0 // -0 == 0
	}
	return f, true
}

func compileLeaf(arr []*jval, path string) ([]Matcher, error) {
	var out []Matcher
	for i, e := range arr {
		p := idxPath(path, i)
		switch e.kind {
		case jString:
			out = append(out, Matcher{Kind: KString, Str: e.str})
		case jNumber:
			f, ok := parseNumber(e.num)
			if !ok {
				return nil, perr(p, "number %s is out of range", e.num)
			}
			out = append(out, Matcher{Kind: KNumber, Num: f})
		case jBool:
			if e.b {
				out = append(out, Matcher{Kind: KTrue})
			} else {
				out = append(out, Matcher{Kind: KFalse})
			}
		case jNull:
			out = append(out, Matcher{Kind: KNull})
		case jArray:
			return nil, perr(p, "a leaf value must be a string, number, boolean, null or operator object, not an array")
		case jObject:
			m, err := compileOperator(e, p)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}

func compileOperator(e *jval, path string) (Matcher, error) {
	if len(e.obj) != 1 {
		return Matcher{}, perr(path, "an operator object must have exactly one operator, got %d fields", len(e.obj))
	}
	op, v := e.obj[0].key, e.obj[0].val
	p := childPath(path, op)
	switch op {
	case "prefix", "suffix":
		fold := false
		s, err := stringOrFold(v, p, op)
		if err != nil {
			return Matcher{}, err
		}
		if v.kind == jObject {
			fold = true
		}
		switch {
		case op == "prefix" && !fold:
			return Matcher{Kind: KPrefix, Str: s}, nil
		case op == "prefix":
			return Matcher{Kind: KPrefixFold, Str: foldString(s)}, nil
		case !fold:
			return Matcher{Kind: KSuffix, Str: s}, nil
		default:
			return Matcher{Kind: KSuffixFold, Str: foldString(s)}, nil
		}
	case "equals-ignore-case":
		if v.kind != jString {
			return Matcher{}, perr(p, "equals-ignore-case must be a string, got %s", v.kindName())
		}
		return Matcher{Kind: KFold, Str: foldString(v.str)}, nil
	case "wildcard":
		if v.kind != jString {
			return Matcher{}, perr(p, "wildcard must be a string, got %s", v.kindName())
		}
		if err := checkWildcard(v.str); err != nil {
			return Matcher{}, perr(p, "%s", err)
		}
		return Matcher{Kind: KWildcard, Str: v.str}, nil
	case "exists":
		if v.kind != jBool {
			return Matcher{}, perr(p, "exists must be true or false, got %s", v.kindName())
		}
		if v.b {
			return Matcher{Kind: KExists}, nil
		}
		return Matcher{Kind: KAbsent}, nil
	case "cidr":
		if v.kind != jString {
			return Matcher{}, perr(p, "cidr must be a string such as \"10.0.0.0/24\", got %s", v.kindName())
		}
		pf, err := netip.ParsePrefix(v.str)
		if err != nil {
			return Matcher{}, perr(p, "cidr %q is not a valid IPv4 or IPv6 CIDR block", v.str)
		}
		return Matcher{Kind: KCIDR, Prefix: pf.Masked()}, nil
	case "numeric":
		return compileNumeric(v, p)
	case "anything-but":
		return compileAnythingBut(v, p)
	}
	return Matcher{}, perr(p, "unknown operator %q (want prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, cidr or exists)", op)
}

func stringOrFold(v *jval, p, op string) (string, error) {
	switch v.kind {
	case jString:
		return v.str, nil
	case jObject:
		if len(v.obj) == 1 && v.obj[0].key == "equals-ignore-case" {
			if v.obj[0].val.kind != jString {
				return "", perr(childPath(p, "equals-ignore-case"), "must be a string, got %s", v.obj[0].val.kindName())
			}
			return v.obj[0].val.str, nil
		}
	}
	return "", perr(p, "%s must be a string or {\"equals-ignore-case\": string}, got %s", op, v.kindName())
}

func numOp(v *jval) string {
	if v.kind == jString {
		return v.str
	}
	return ""
}

func compileNumeric(v *jval, p string) (Matcher, error) {
	if v.kind != jArray || (len(v.arr) != 2 && len(v.arr) != 4) {
		return Matcher{}, perr(p, "numeric must be an array [op, number] or [lower-op, number, upper-op, number]")
	}
	m := Matcher{Kind: KNumeric, Lo: math.Inf(-1), Hi: math.Inf(1), LoInc: false, HiInc: false}
	for i := 0; i < len(v.arr); i += 2 {
		opv, nv := v.arr[i], v.arr[i+1]
		op := numOp(opv)
		if nv.kind != jNumber {
			return Matcher{}, perr(idxPath(p, i+1), "numeric bound must be a number, got %s", nv.kindName())
		}
		f, ok := parseNumber(nv.num)
		if !ok {
			return Matcher{}, perr(idxPath(p, i+1), "number %s is out of range", nv.num)
		}
		switch op {
		case "=":
			if len(v.arr) != 2 {
				return Matcher{}, perr(idxPath(p, i), "\"=\" cannot be combined with another bound")
			}
			m.Lo, m.Hi, m.LoInc, m.HiInc = f, f, true, true
		case ">", ">=":
			if i != 0 {
				return Matcher{}, perr(idxPath(p, i), "the second operator must be an upper bound (< or <=), got %q", op)
			}
			m.Lo, m.LoInc = f, op == ">="
		case "<", "<=":
			if i != 0 || len(v.arr) == 2 {
				m.Hi, m.HiInc = f, op == "<="
			} else {
				return Matcher{}, perr(idxPath(p, i), "with two bounds the first operator must be a lower bound (> or >=), got %q", op)
			}
		default:
			return Matcher{}, perr(idxPath(p, i), "unknown numeric operator %s (want =, <, <=, >, >=)", quoteVal(opv))
		}
	}
	if len(v.arr) == 4 && !(m.Lo < m.Hi) {
		return Matcher{}, perr(p, "lower bound %v must be less than upper bound %v", m.Lo, m.Hi)
	}
	return m, nil
}

func quoteVal(v *jval) string {
	if v.kind == jString {
		return strconv.Quote(v.str)
	}
	return v.kindName()
}

func compileAnythingBut(v *jval, p string) (Matcher, error) {
	switch v.kind {
	case jString:
		return Matcher{Kind: KAnythingBut, Strs: []string{v.str}}, nil
	case jNumber:
		f, ok := parseNumber(v.num)
		if !ok {
			return Matcher{}, perr(p, "number %s is out of range", v.num)
		}
		return Matcher{Kind: KAnythingBut, Nums: []float64{f}}, nil
	case jArray:
		if len(v.arr) == 0 {
			return Matcher{}, perr(p, "anything-but list must not be empty")
		}
		m := Matcher{Kind: KAnythingBut}
		for i, e := range v.arr {
			switch e.kind {
			case jString:
				m.Strs = append(m.Strs, e.str)
			case jNumber:
				f, ok := parseNumber(e.num)
				if !ok {
					return Matcher{}, perr(idxPath(p, i), "number %s is out of range", e.num)
				}
				m.Nums = append(m.Nums, f)
			default:
				return Matcher{}, perr(idxPath(p, i), "anything-but list may hold strings or numbers only, got %s", e.kindName())
			}
			if len(m.Strs) > 0 && len(m.Nums) > 0 {
				return Matcher{}, perr(idxPath(p, i), "anything-but list mixes strings and numbers; use one type")
			}
		}
		return m, nil
	case jObject:
		if len(v.obj) != 1 {
			return Matcher{}, perr(p, "anything-but object must have exactly one operator (prefix, suffix, equals-ignore-case or wildcard), got %d fields", len(v.obj))
		}
		op, ov := v.obj[0].key, v.obj[0].val
		op2 := childPath(p, op)
		switch op {
		case "prefix", "suffix":
			if ov.kind != jString {
				return Matcher{}, perr(op2, "anything-but %s must be a string, got %s", op, ov.kindName())
			}
			if ov.str == "" {
				return Matcher{}, perr(op2, "anything-but %s must not be empty", op)
			}
			if op == "prefix" {
				return Matcher{Kind: KAnythingButPrefix, Str: ov.str}, nil
			}
			return Matcher{Kind: KAnythingButSuffix, Str: ov.str}, nil
		case "equals-ignore-case", "wildcard":
			var strs []string
			switch ov.kind {
			case jString:
				strs = []string{ov.str}
			case jArray:
				if len(ov.arr) == 0 {
					return Matcher{}, perr(op2, "anything-but %s list must not be empty", op)
				}
				for i, e := range ov.arr {
					if e.kind != jString {
						return Matcher{}, perr(idxPath(op2, i), "anything-but %s list may hold strings only, got %s", op, e.kindName())
					}
					strs = append(strs, e.str)
				}
			default:
				return Matcher{}, perr(op2, "anything-but %s must be a string or a list of strings, got %s", op, ov.kindName())
			}
			if op == "wildcard" {
				for i, s := range strs {
					if err := checkWildcard(s); err != nil {
						q := op2
						if ov.kind == jArray {
							q = idxPath(op2, i)
						}
						return Matcher{}, perr(q, "%s", err)
					}
				}
				return Matcher{Kind: KAnythingButWildcard, Strs: strs}, nil
			}
			for i := range strs {
				strs[i] = foldString(strs[i])
			}
			return Matcher{Kind: KAnythingButFold, Strs: strs}, nil
		}
		return Matcher{}, perr(op2, "unknown anything-but operator %q (want prefix, suffix, equals-ignore-case or wildcard)", op)
	}
	return Matcher{}, perr(p, "anything-but must be a string, a number, a list of strings or numbers, or an operator object; got %s", v.kindName())
}

// checkWildcard refuses consecutive unescaped '*' and escapes other than
// \* and \\.
func checkWildcard(s string) error {
	prevStar := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 >= len(s) || (s[i+1] != '*' && s[i+1] != '\\') {
				return fmt.Errorf("wildcard %q: invalid escape at byte %d (only \\* and \\\\ are escapes)", s, i)
			}
			i++
			prevStar = false
		case '*':
			if prevStar {
				return fmt.Errorf("wildcard %q: consecutive '*' at byte %d", s, i)
			}
			prevStar = true
		default:
			prevStar = false
		}
	}
	return nil
}

// ---- normalisation ----

// condRank orders the conditions of a conjunction, most selective first.
func condRank(c *Cond) int {
	r := 0
	for _, m := range c.Matchers {
		var k int
		switch m.Kind {
		case KString, KNumber, KTrue, KFalse, KNull:
			k = 0
		case KFold:
			k = 1
		case KPrefix, KSuffix, KPrefixFold, KSuffixFold, KWildcard:
			k = 2
		case KNumeric, KCIDR:
			k = 3
		case KAnythingBut, KAnythingButPrefix, KAnythingButSuffix, KAnythingButFold, KAnythingButWildcard:
			k = 4
		case KExists:
			k = 5
		case KAbsent:
			k = 6
		}
		r = max(r, k)
	}
	return r
}

func normalizeConj(c []Cond) []Cond {
	for i := range c {
		ms := c[i].Matchers
		slices.SortStableFunc(ms, func(a, b Matcher) int { return strings.Compare(matcherKey(&a), matcherKey(&b)) })
		c[i].Matchers = slices.CompactFunc(ms, func(a, b Matcher) bool { return matcherKey(&a) == matcherKey(&b) })
	}
	slices.SortStableFunc(c, func(a, b Cond) int {
		if d := condRank(&a) - condRank(&b); d != 0 {
			return d
		}
		return slices.Compare(a.Path, b.Path)
	})
	return c
}

// matcherKey is a canonical text for a matcher.
func matcherKey(m *Matcher) string {
	switch m.Kind {
	case KString, KPrefix, KSuffix, KPrefixFold, KSuffixFold, KFold, KWildcard, KAnythingButPrefix, KAnythingButSuffix:
		return strconv.Itoa(int(m.Kind)) + ":" + strconv.Quote(m.Str)
	case KNumber:
		return strconv.Itoa(int(m.Kind)) + ":" + strconv.FormatFloat(m.Num, 'g', -1, 64)
	case KNumeric:
		return fmt.Sprintf("%d:%v:%v:%v:%v", m.Kind, m.Lo, m.LoInc, m.Hi, m.HiInc)
	case KCIDR:
		return strconv.Itoa(int(m.Kind)) + ":" + m.Prefix.String()
	case KAnythingBut, KAnythingButFold, KAnythingButWildcard:
		s := slices.Clone(m.Strs)
		slices.Sort(s)
		n := slices.Clone(m.Nums)
		slices.Sort(n)
		return fmt.Sprintf("%d:%q:%v", m.Kind, s, n)
	}
	return strconv.Itoa(int(m.Kind))
}

// condKey is a canonical text for a condition's matchers (its path is
// keyed separately).
func condKey(c *Cond) string {
	var b strings.Builder
	for i := range c.Matchers {
		b.WriteString(matcherKey(&c.Matchers[i]))
		b.WriteByte('|')
	}
	return b.String()
}
