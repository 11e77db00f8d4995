package sql

import (
	"fmt"
	"strings"
	"unicode"
)

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tSym // punctuation and operators
)

type token struct {
	kind      tokKind
	text      string // identifiers keep their case; keywords compare upper-cased
	line, col int
}

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of input"
	case tString:
		return fmt.Sprintf("'%s'", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

// Error is a parse or validation error at a position of the query.
type Error struct {
	Line, Col int
	Msg       string
}

func (e *Error) Error() string { return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Col, e.Msg) }

// MaxQueryBytes bounds a query's text.
const MaxQueryBytes = 64 << 10

func lex(src string) ([]token, error) {
	if len(src) > MaxQueryBytes {
		return nil, &Error{1, 1, fmt.Sprintf("query is %d bytes, above the limit %d", len(src), MaxQueryBytes)}
	}
	var toks []token
	line, col := 1, 1
	i := 0
	adv := func(n int) {
		for k := 0; k < n; k++ {
			if src[i] == '\n' {
				line++
				col = 1
			} else {
				col++
			}
			i++
		}
	}
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			adv(1)
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			for i < len(src) && src[i] != '\n' {
				adv(1)
			}
		case c == '\'':
			l, cl := line, col
			var b strings.Builder
			adv(1)
			closed := false
			for i < len(src) {
				if src[i] == '\'' {
					if i+1 < len(src) && src[i+1] == '\'' {
						b.WriteByte('\'')
						adv(2)
						continue
					}
					adv(1)
					closed = true
					break
				}
				b.WriteByte(src[i])
				adv(1)
			}
			if !closed {
				return nil, &Error{l, cl, "string literal is not closed (expected ')"}
			}
			toks = append(toks, token{tString, b.String(), l, cl})
		case c >= '0' && c <= '9' || (c == '.' || c == '-') && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			l, cl, st := line, col, i
			if c == '-' {
				adv(1)
			}
			for i < len(src) && (src[i] >= '0' && src[i] <= '9' || src[i] == '.' || src[i] == 'e' || src[i] == 'E' ||
				(src[i] == '-' || src[i] == '+') && (src[i-1] == 'e' || src[i-1] == 'E')) {
				adv(1)
			}
			toks = append(toks, token{tNumber, src[st:i], l, cl})
		case c == '_' || unicode.IsLetter(rune(c)) || c == '`':
			l, cl, st := line, col, i
			if c == '`' {
				adv(1)
				for i < len(src) && src[i] != '`' {
					adv(1)
				}
				if i >= len(src) {
					return nil, &Error{l, cl, "quoted identifier is not closed (expected `)"}
				}
				adv(1)
				toks = append(toks, token{tIdent, src[st+1 : i-1], l, cl})
				continue
			}
			for i < len(src) && (src[i] == '_' || src[i] >= '0' && src[i] <= '9' || unicode.IsLetter(rune(src[i]))) {
				adv(1)
			}
			toks = append(toks, token{tIdent, src[st:i], l, cl})
		default:
			l, cl := line, col
			for _, op := range []string{"<=", ">=", "!=", "<>", "=", "<", ">", "(", ")", ",", ".", "*", ";"} {
				if strings.HasPrefix(src[i:], op) {
					toks = append(toks, token{tSym, op, l, cl})
					adv(len(op))
					goto next
				}
			}
			return nil, &Error{l, cl, fmt.Sprintf("unexpected character %q", c)}
		next:
		}
	}
	toks = append(toks, token{tEOF, "", line, col})
	return toks, nil
}
