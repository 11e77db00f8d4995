package sql

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/stream"
)

// Query is a parsed continuous query:
//
//	CREATE TABLE name AS
//	SELECT column [, column ...] FROM topic
//	[WHERE condition]
//	WINDOW TUMBLING (SIZE n unit, GRACE n unit [, RETENTION n unit])
//	     | HOPPING (SIZE n unit, ADVANCE BY n unit, GRACE n unit [, RETENTION n unit])
//	     | SLIDING (SIZE n unit, GRACE n unit [, RETENTION n unit])
//	     | SESSION (GAP n unit, GRACE n unit [, RETENTION n unit])
//	[GROUP BY key [, key ...]]
//	[HAVING condition]
//	[EMIT FINAL | EMIT CHANGES] [;]
//
// A column is COUNT(*), SUM(f), AVG(f), MIN(f), MAX(f),
// COUNT_DISTINCT(f), TOP_K(f, k) or a GROUP BY field, each with an
// optional AS alias. A GROUP BY key is a field or the alias of a selected
// field. A field is a CloudEvent attribute (type, source,
// subject, ...) or a data path (data.total). Conditions combine
// comparisons (= != <> < <= > >=) of a field (WHERE) or a column (HAVING)
// with a literal ('text', numbers, TRUE, FALSE) by AND, OR, NOT and
// parentheses. WINDOW may also come before WHERE. GRACE is required.
// RETENTION bounds how long a table keeps a window's row for pull queries
// (see TableRetention).
type Query struct {
	Table   string
	Columns []Column
	From    string
	Where   Cond
	Window  stream.Window
	Grace   time.Duration
	// Retention is how long a table keeps a window's row for pull
	// queries, counted back from the newest window end it holds (stream
	// time); 0 means DefaultRetention.
	Retention time.Duration
	GroupBy   []string // fields
	Having    Cond
	Emit      stream.EmitMode
	Text      string
}

// Column is one selected column: an aggregate, or the group key (Agg nil).
type Column struct {
	Name  string
	Agg   *stream.Agg
	field string // the group key's field
}

// Field is the field a group-key column selects ("" for aggregates).
func (c Column) Field() string { return c.field }

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token { return p.toks[p.pos] }

// peekSym reports whether the token after the next one is the symbol
// sym (false at the end of the input).
func (p *parser) peekSym(sym string) bool {
	if p.pos+1 >= len(p.toks) {
		return false
	}
	t := p.toks[p.pos+1]
	return t.kind == tSym && t.text == sym
}
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

func (p *parser) errAt(t token, format string, a ...any) error {
	return &Error{t.line, t.col, fmt.Sprintf(format, a...)}
}

func (p *parser) expected(what string) error {
	t := p.peek()
	return p.errAt(t, "expected %s, found %s", what, t)
}

func (p *parser) isKw(kw string) bool {
	t := p.peek()
	return t.kind == tIdent && strings.EqualFold(t.text, kw)
}

func (p *parser) kw(kws ...string) error {
	for _, kw := range kws {
		if !p.isKw(kw) {
			return p.expected(kw)
		}
		p.next()
	}
	return nil
}

func (p *parser) sym(s string) error {
	t := p.peek()
	if t.kind != tSym || t.text != s {
		return p.expected(fmt.Sprintf("%q", s))
	}
	p.next()
	return nil
}

func (p *parser) isSym(s string) bool {
	t := p.peek()
	return t.kind == tSym && t.text == s
}

var reserved = map[string]bool{"SELECT": true, "FROM": true, "WHERE": true, "WINDOW": true, "GROUP": true, "BY": true,
	"HAVING": true, "EMIT": true, "AS": true, "AND": true, "OR": true, "NOT": true, "CREATE": true, "TABLE": true}

func (p *parser) ident(what string) (token, error) {
	t := p.peek()
	if t.kind != tIdent || reserved[strings.ToUpper(t.text)] {
		return t, p.expected(what)
	}
	return p.next(), nil
}

// field reads a dotted path (data.order.total).
func (p *parser) field() (string, token, error) {
	first, err := p.ident("a field (e.g. type or data.total)")
	if err != nil {
		return "", first, err
	}
	parts := []string{first.text}
	for p.isSym(".") {
		p.next()
		t, err := p.ident("a field name after \".\"")
		if err != nil {
			return "", first, err
		}
		parts = append(parts, t.text)
	}
	path := strings.Join(parts, ".")
	known := parts[0] == "data" || parts[0] == "ext" && len(parts) == 2 || len(parts) == 1 && attributes[path]
	if _, err := stream.ParseField(path); err != nil || !known {
		return "", first, p.errAt(first, "unknown field %q: a field is an event attribute (id, source, type, subject, time, ...), ext.<extension> or data.<path>", path)
	}
	return path, first, nil
}

var attributes = map[string]bool{"id": true, "source": true, "type": true, "subject": true, "time": true,
	"partitionkey": true, "correlationid": true, "causationid": true, "aggregateid": true}

// Parse parses one query.
func Parse(src string) (*Query, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	q := &Query{Text: strings.TrimSpace(src), Emit: stream.EmitChanges}
	if p.isKw("CREATE") {
		p.next()
		if err := p.kw("TABLE"); err != nil {
			return nil, err
		}
		t, err := p.ident("a table name")
		if err != nil {
			return nil, err
		}
		q.Table = t.text
		if err := p.kw("AS"); err != nil {
			return nil, err
		}
	}
	if err := p.kw("SELECT"); err != nil {
		return nil, err
	}
	type pendingKey struct {
		col int
		tok token
	}
	var keyCols []pendingKey
	for {
		c, tok, err := p.column()
		if err != nil {
			return nil, err
		}
		if c.Agg == nil {
			keyCols = append(keyCols, pendingKey{len(q.Columns), tok})
		}
		for _, o := range q.Columns {
			if o.Name == c.Name {
				return nil, p.errAt(tok, "column name %q is used twice (use AS to rename)", c.Name)
			}
		}
		q.Columns = append(q.Columns, c)
		if !p.isSym(",") {
			break
		}
		p.next()
	}
	if err := p.kw("FROM"); err != nil {
		return nil, err
	}
	from, err := p.ident("a topic name")
	if err != nil {
		return nil, err
	}
	q.From = from.text
	for p.isSym(".") || p.isSym("-") {
		return nil, p.errAt(p.peek(), "a topic name with dots or dashes must be quoted with backticks")
	}
	windowed := false
	for {
		switch {
		case p.isKw("WHERE") && q.Where == nil:
			p.next()
			if q.Where, err = p.cond(false); err != nil {
				return nil, err
			}
			continue
		case p.isKw("WINDOW") && !windowed:
			if err := p.window(q); err != nil {
				return nil, err
			}
			windowed = true
			continue
		}
		break
	}
	if !windowed {
		return nil, p.expected("WINDOW (a continuous aggregation needs a window, e.g. WINDOW TUMBLING (SIZE 1 HOUR, GRACE 5 MINUTES))")
	}
	if p.isKw("GROUP") {
		p.next()
		if err := p.kw("BY"); err != nil {
			return nil, err
		}
		for {
			f, tok, err := p.groupKey(q)
			if err != nil {
				return nil, err
			}
			if slices.Contains(q.GroupBy, f) {
				return nil, p.errAt(tok, "GROUP BY names %q twice", f)
			}
			q.GroupBy = append(q.GroupBy, f)
			if !p.isSym(",") {
				break
			}
			p.next()
		}
	}
	for _, k := range keyCols {
		c := q.Columns[k.col]
		if !slices.Contains(q.GroupBy, keyField(c)) {
			return nil, p.errAt(k.tok, "column %q is neither an aggregate nor a GROUP BY field", keyField(c))
		}
	}
	if p.isKw("HAVING") {
		p.next()
		if q.Having, err = p.cond(true); err != nil {
			return nil, err
		}
		if err := checkHaving(q, q.Having); err != nil {
			return nil, err
		}
	}
	if p.isKw("EMIT") {
		p.next()
		switch {
		case p.isKw("FINAL"):
			q.Emit = stream.EmitFinal
		case p.isKw("CHANGES"):
			q.Emit = stream.EmitChanges
		default:
			return nil, p.expected("FINAL or CHANGES")
		}
		p.next()
	}
	if p.isSym(";") {
		p.next()
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "expected end of query, found %s", t)
	}
	if len(q.aggs()) == 0 {
		return nil, &Error{1, 1, "the query selects no aggregate (COUNT(*), SUM(...), ...)"}
	}
	return q, nil
}

// groupKey reads a GROUP BY key: the alias of a selected field, or a
// field.
func (p *parser) groupKey(q *Query) (string, token, error) {
	t := p.peek()
	if t.kind == tIdent && !p.peekSym(".") {
		for _, c := range q.Columns {
			if c.Agg == nil && c.Name == t.text && c.field != t.text {
				p.next()
				return c.field, t, nil
			}
		}
	}
	f, tok, err := p.field()
	return f, tok, err
}

// keyField is the field a key column selects (kept in Agg-less columns'
// hidden field).
func keyField(c Column) string { return c.field }

var aggFuncs = map[string]stream.AggKind{"COUNT": stream.Count, "SUM": stream.Sum, "AVG": stream.Avg, "MIN": stream.Min,
	"MAX": stream.Max, "COUNT_DISTINCT": stream.CountDistinct, "TOP_K": stream.TopK}

func (p *parser) column() (Column, token, error) {
	t := p.peek()
	if t.kind == tIdent && p.peekSym("(") {
		kind, ok := aggFuncs[strings.ToUpper(t.text)]
		if !ok {
			return Column{}, t, p.errAt(t, "unknown function %s (want COUNT, SUM, AVG, MIN, MAX, COUNT_DISTINCT or TOP_K)", t.text)
		}
		p.next()
		p.next()
		a := &stream.Agg{Kind: kind}
		name := strings.ToLower(t.text)
		if kind == stream.Count && p.isSym("*") {
			p.next()
		} else {
			f, _, err := p.field()
			if err != nil {
				return Column{}, t, err
			}
			if kind == stream.Count {
				return Column{}, t, p.errAt(t, "COUNT takes * (use COUNT_DISTINCT(%s) for distinct values)", f)
			}
			a.Field = f
			name += "_" + strings.ReplaceAll(f, ".", "_")
			if kind == stream.TopK {
				if err := p.sym(","); err != nil {
					return Column{}, t, err
				}
				kt := p.next()
				k, err := strconv.Atoi(kt.text)
				if kt.kind != tNumber || err != nil || k < 1 || k > 1000 {
					return Column{}, t, p.errAt(kt, "expected k, a whole number 1..1000, found %s", kt)
				}
				a.K = k
			}
		}
		if err := p.sym(")"); err != nil {
			return Column{}, t, err
		}
		if p.isKw("AS") {
			p.next()
			at, err := p.ident("a column name after AS")
			if err != nil {
				return Column{}, t, err
			}
			name = at.text
		}
		a.Name = name
		return Column{Name: name, Agg: a}, t, nil
	}
	f, ft, err := p.field()
	if err != nil {
		return Column{}, t, err
	}
	name := strings.ReplaceAll(f, ".", "_")
	if p.isKw("AS") {
		p.next()
		at, err := p.ident("a column name after AS")
		if err != nil {
			return Column{}, t, err
		}
		name = at.text
	}
	return Column{Name: name, field: f}, ft, nil
}

var units = map[string]time.Duration{"MILLISECOND": time.Millisecond, "MILLISECONDS": time.Millisecond,
	"SECOND": time.Second, "SECONDS": time.Second, "MINUTE": time.Minute, "MINUTES": time.Minute,
	"HOUR": time.Hour, "HOURS": time.Hour, "DAY": 24 * time.Hour, "DAYS": 24 * time.Hour}

func (p *parser) duration() (time.Duration, error) {
	nt := p.peek()
	if nt.kind != tNumber {
		return 0, p.expected("a number of units (e.g. 5 MINUTES)")
	}
	p.next()
	n, err := strconv.ParseInt(nt.text, 10, 64)
	if err != nil || n < 0 {
		return 0, p.errAt(nt, "expected a whole number, found %s", nt)
	}
	ut := p.peek()
	u, ok := units[strings.ToUpper(ut.text)]
	if ut.kind != tIdent || !ok {
		return 0, p.expected("a unit (MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS)")
	}
	p.next()
	if n > int64(100*365*24*time.Hour/u) {
		return 0, p.errAt(nt, "%d %s is longer than 100 years", n, ut.text)
	}
	return time.Duration(n) * u, nil
}

func (p *parser) window(q *Query) error {
	wt := p.next() // WINDOW
	kt := p.peek()
	switch strings.ToUpper(kt.text) {
	case "TUMBLING":
		q.Window.Kind = stream.Tumbling
	case "HOPPING":
		q.Window.Kind = stream.Hopping
	case "SLIDING":
		q.Window.Kind = stream.Sliding
	case "SESSION":
		q.Window.Kind = stream.Session
	default:
		return p.expected("TUMBLING, HOPPING, SLIDING or SESSION")
	}
	p.next()
	if err := p.sym("("); err != nil {
		return err
	}
	grace := false
	var rt token // RETENTION's value, if given
	for {
		t := p.peek()
		var err error
		switch strings.ToUpper(t.text) {
		case "SIZE":
			p.next()
			q.Window.Size, err = p.duration()
		case "ADVANCE":
			p.next()
			if err := p.kw("BY"); err != nil {
				return err
			}
			q.Window.Advance, err = p.duration()
		case "GAP":
			p.next()
			q.Window.Gap, err = p.duration()
		case "GRACE":
			p.next()
			if p.isKw("PERIOD") {
				p.next()
			}
			q.Grace, err = p.duration()
			grace = true
		case "RETENTION":
			p.next()
			rt = p.peek()
			q.Retention, err = p.duration()
		default:
			return p.expected("SIZE, ADVANCE BY, GAP, GRACE or RETENTION")
		}
		if err != nil {
			return err
		}
		if !p.isSym(",") {
			break
		}
		p.next()
	}
	if err := p.sym(")"); err != nil {
		return err
	}
	if !grace {
		return p.errAt(wt, "the window has no GRACE: say how long late events are accepted, e.g. GRACE 5 MINUTES (there is no default)")
	}
	if err := q.Window.Validate(); err != nil {
		return p.errAt(kt, "%v", err)
	}
	if min := q.Window.Size + q.Window.Gap + q.Grace; rt.text != "" && q.Retention < min {
		return p.errAt(rt, "RETENTION %v is shorter than the window's size (or gap) plus GRACE, %v: a row would be dropped while its window can still change", q.Retention, min)
	}
	return nil
}

// DefaultRetention is a table's retention when its window names none.
const DefaultRetention = 7 * 24 * time.Hour

// TableRetention is how long the query's table keeps a window's row:
// RETENTION, or DefaultRetention, and never less than the window's size
// (or gap) plus GRACE.
func (q *Query) TableRetention() time.Duration {
	r := q.Retention
	if r == 0 {
		r = DefaultRetention
	}
	return max(r, q.Window.Size+q.Window.Gap+q.Grace)
}
