package subscription

import (
	"fmt"
	"strings"
)

// MaxFilterLen bounds a filter expression, as Pub/Sub does.
const MaxFilterLen = 256

// Filter is a parsed subscription filter in Pub/Sub's syntax. The zero
// Filter (from an empty expression) matches every message. A Filter is
// immutable and safe for concurrent use.
//
// Grammar (Pub/Sub's; keywords are upper case):
//
//	expr    = term { "AND" term } | term { "OR" term }   (no mixing without parentheses)
//	term    = [ "NOT" | "-" ] factor
//	factor  = "(" expr ")"
//	        | "attributes" ":" key                       (the attribute is present)
//	        | "attributes" "." key ( "=" | "!=" ) string
//	        | "hasPrefix" "(" "attributes" "." key "," string ")"
//	key     = identifier of [A-Za-z0-9_-] | string
//	string  = a double-quoted literal with \" and \\ escapes
//
// `attributes.k != "v"` is `NOT attributes.k = "v"`: it matches a message
// without k.
type Filter struct {
	src  string
	root node
}

// FilterError is a syntax error at a byte position of the expression.
type FilterError struct {
	Pos    int // byte offset in the expression (0-based)
	Reason string
}

func (e *FilterError) Error() string {
	return fmt.Sprintf("filter: at position %d: %s", e.Pos, e.Reason)
}

// String returns the expression the filter was parsed from.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	return f.src
}

// Match reports whether attrs pass the filter.
func (f *Filter) Match(attrs func(key string) (string, bool)) bool {
	if f == nil || f.root == nil {
		return true
	}
	return f.root.eval(attrs)
}

// MatchMap is Match over a map.
func (f *Filter) MatchMap(m map[string]string) bool {
	return f.Match(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
}

type node interface {
	eval(attrs func(string) (string, bool)) bool
}

type (
	andNode []node
	orNode  []node
	notNode struct{ n node }
	hasNode struct{ key string }
	eqNode  struct {
		key, val string
		neg      bool
	}
	prefixNode struct{ key, prefix string }
)

func (n andNode) eval(a func(string) (string, bool)) bool {
	for _, c := range n {
		if !c.eval(a) {
			return false
		}
	}
	return true
}

func (n orNode) eval(a func(string) (string, bool)) bool {
	for _, c := range n {
		if c.eval(a) {
			return true
		}
	}
	return false
}

func (n notNode) eval(a func(string) (string, bool)) bool { return !n.n.eval(a) }
func (n hasNode) eval(a func(string) (string, bool)) bool {
	_, ok := a(n.key)
	return ok
}
func (n eqNode) eval(a func(string) (string, bool)) bool {
	v, ok := a(n.key)
	return (ok && v == n.val) != n.neg
}
func (n prefixNode) eval(a func(string) (string, bool)) bool {
	v, ok := a(n.key)
	return ok && strings.HasPrefix(v, n.prefix)
}

// ParseFilter parses a filter expression. An empty (or all-space)
// expression gives a Filter matching everything. Errors are *FilterError
// with the position of the offending token.
func ParseFilter(src string) (*Filter, error) {
	if len(src) > MaxFilterLen {
		return nil, &FilterError{Pos: MaxFilterLen, Reason: fmt.Sprintf("the filter is %d bytes, longer than the limit of %d", len(src), MaxFilterLen)}
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	f := &Filter{src: src}
	if len(toks) == 1 { // only EOF
		return f, nil
	}
	p := &parser{toks: toks}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "unexpected %s after the end of the expression", t.describe())
	}
	f.root = n
	return f, nil
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tString
	tLParen
	tRParen
	tDot
	tColon
	tComma
	tEq
	tNe
	tMinus
)

type token struct {
	kind tokKind
	pos  int
	text string // identifier text or the unquoted string
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of filter"
	case tIdent:
		return fmt.Sprintf("%q", t.text)
	case tString:
		return fmt.Sprintf("string %q", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

func identByte(c byte) bool {
	return c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func lex(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == '.' || c == ':' || c == ',' || c == '=':
			k := map[byte]tokKind{'(': tLParen, ')': tRParen, '.': tDot, ':': tColon, ',': tComma, '=': tEq}[c]
			toks = append(toks, token{kind: k, pos: i, text: string(c)})
			i++
		case c == '!':
			if i+1 >= len(src) || src[i+1] != '=' {
				return nil, &FilterError{Pos: i, Reason: `"!" must be followed by "=" (use NOT to negate)`}
			}
			toks = append(toks, token{kind: tNe, pos: i, text: "!="})
			i += 2
		case c == '"':
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(src) {
					return nil, &FilterError{Pos: start, Reason: "unterminated string"}
				}
				if src[i] == '\\' {
					if i+1 >= len(src) || (src[i+1] != '"' && src[i+1] != '\\') {
						return nil, &FilterError{Pos: i, Reason: `bad escape in string: only \" and \\ are allowed`}
					}
					b.WriteByte(src[i+1])
					i += 2
					continue
				}
				if src[i] == '"' {
					i++
					break
				}
				b.WriteByte(src[i])
				i++
			}
			toks = append(toks, token{kind: tString, pos: start, text: b.String()})
		case c == '-' && (i+1 >= len(src) || !identByte(src[i+1]) || len(toks) == 0 || toks[len(toks)-1].kind != tDot && toks[len(toks)-1].kind != tColon):
			// A minus that starts a term is NOT; inside a key it is part of the key.
			toks = append(toks, token{kind: tMinus, pos: i, text: "-"})
			i++
		case identByte(c):
			start := i
			for i < len(src) && identByte(src[i]) {
				i++
			}
			toks = append(toks, token{kind: tIdent, pos: start, text: src[start:i]})
		default:
			return nil, &FilterError{Pos: i, Reason: fmt.Sprintf("unexpected character %q", c)}
		}
	}
	return append(toks, token{kind: tEOF, pos: len(src)}), nil
}

// maxDepth bounds nesting so a hostile filter cannot exhaust the stack.
const maxDepth = 32

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errAt(t token, format string, args ...any) error {
	return &FilterError{Pos: t.pos, Reason: fmt.Sprintf(format, args...)}
}

func (p *parser) isKeyword(t token, kw string) bool { return t.kind == tIdent && t.text == kw }

func (p *parser) expr(depth int) (node, error) {
	if depth > maxDepth {
		return nil, p.errAt(p.peek(), "parentheses nested deeper than %d", maxDepth)
	}
	first, err := p.term(depth)
	if err != nil {
		return nil, err
	}
	var op string
	list := []node{first}
	for {
		t := p.peek()
		if !p.isKeyword(t, "AND") && !p.isKeyword(t, "OR") {
			if t.kind == tIdent && (strings.EqualFold(t.text, "and") || strings.EqualFold(t.text, "or") || strings.EqualFold(t.text, "not")) {
				return nil, p.errAt(t, "operator %q must be upper case", t.text)
			}
			break
		}
		if op != "" && t.text != op {
			return nil, p.errAt(t, "%s after %s: AND and OR cannot be mixed without parentheses", t.text, op)
		}
		op = t.text
		p.next()
		n, err := p.term(depth)
		if err != nil {
			return nil, err
		}
		list = append(list, n)
	}
	switch {
	case len(list) == 1:
		return first, nil
	case op == "AND":
		return andNode(list), nil
	}
	return orNode(list), nil
}

func (p *parser) term(depth int) (node, error) {
	t := p.peek()
	if p.isKeyword(t, "NOT") || t.kind == tMinus {
		p.next()
		n, err := p.factor(depth)
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	}
	return p.factor(depth)
}

func (p *parser) factor(depth int) (node, error) {
	t := p.next()
	switch {
	case t.kind == tLParen:
		n, err := p.expr(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, p.errAt(c, "want \")\" to close the \"(\" at position %d, got %s", t.pos, c.describe())
		}
		return n, nil
	case p.isKeyword(t, "attributes"):
		sep := p.next()
		switch sep.kind {
		case tColon:
			k, err := p.key()
			if err != nil {
				return nil, err
			}
			return hasNode{k}, nil
		case tDot:
			k, err := p.key()
			if err != nil {
				return nil, err
			}
			op := p.next()
			if op.kind != tEq && op.kind != tNe {
				return nil, p.errAt(op, "want \"=\" or \"!=\" after attributes.%s, got %s", k, op.describe())
			}
			v := p.next()
			if v.kind != tString {
				return nil, p.errAt(v, "want a double-quoted string, got %s", v.describe())
			}
			return eqNode{key: k, val: v.text, neg: op.kind == tNe}, nil
		}
		return nil, p.errAt(sep, "want \".\" or \":\" after attributes, got %s", sep.describe())
	case p.isKeyword(t, "hasPrefix"):
		if c := p.next(); c.kind != tLParen {
			return nil, p.errAt(c, "want \"(\" after hasPrefix, got %s", c.describe())
		}
		if a := p.next(); !p.isKeyword(a, "attributes") {
			return nil, p.errAt(a, "hasPrefix takes attributes.KEY first, got %s", a.describe())
		}
		if d := p.next(); d.kind != tDot {
			return nil, p.errAt(d, "want \".\" after attributes, got %s", d.describe())
		}
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tComma {
			return nil, p.errAt(c, "want \",\" in hasPrefix, got %s", c.describe())
		}
		v := p.next()
		if v.kind != tString {
			return nil, p.errAt(v, "want a double-quoted prefix, got %s", v.describe())
		}
		if c := p.next(); c.kind != tRParen {
			return nil, p.errAt(c, "want \")\" to close hasPrefix, got %s", c.describe())
		}
		return prefixNode{key: k, prefix: v.text}, nil
	case t.kind == tEOF:
		return nil, p.errAt(t, "unexpected end of filter: want a condition")
	}
	return nil, p.errAt(t, "unexpected %s: want attributes.KEY, attributes:KEY, hasPrefix(...), NOT or \"(\"", t.describe())
}

func (p *parser) key() (string, error) {
	t := p.next()
	if (t.kind == tIdent || t.kind == tString) && t.text != "" {
		return t.text, nil
	}
	if t.kind == tMinus { // a key that starts with '-'
		n := p.peek()
		if n.kind == tIdent && n.pos == t.pos+1 {
			p.next()
			return "-" + n.text, nil
		}
	}
	return "", p.errAt(t, "want an attribute key, got %s", t.describe())
}
