package sql

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/stream"
)

// Cond is a WHERE or HAVING condition.
type Cond interface{ cond() }

// And, Or and Not combine conditions; Cmp compares an operand with a
// literal.
type (
	And struct{ L, R Cond }
	Or  struct{ L, R Cond }
	Not struct{ X Cond }
	Cmp struct {
		Operand string // a field (WHERE) or a column name (HAVING)
		Op      string
		Lit     Literal
		tok     token
		field   stream.Field
	}
)

// Literal is a string, number or boolean constant.
type Literal struct {
	Str    string
	Num    float64
	IsNum  bool
	IsBool bool
	Bool   bool
}

func (And) cond()  {}
func (Or) cond()   {}
func (Not) cond()  {}
func (*Cmp) cond() {}

func (p *parser) cond(having bool) (Cond, error) {
	l, err := p.conj(having)
	if err != nil {
		return nil, err
	}
	for p.isKw("OR") {
		p.next()
		r, err := p.conj(having)
		if err != nil {
			return nil, err
		}
		l = Or{l, r}
	}
	return l, nil
}

func (p *parser) conj(having bool) (Cond, error) {
	l, err := p.unary(having)
	if err != nil {
		return nil, err
	}
	for p.isKw("AND") {
		p.next()
		r, err := p.unary(having)
		if err != nil {
			return nil, err
		}
		l = And{l, r}
	}
	return l, nil
}

func (p *parser) unary(having bool) (Cond, error) {
	if p.isKw("NOT") {
		p.next()
		x, err := p.unary(having)
		if err != nil {
			return nil, err
		}
		return Not{x}, nil
	}
	if p.isSym("(") {
		p.next()
		c, err := p.cond(having)
		if err != nil {
			return nil, err
		}
		return c, p.sym(")")
	}
	c := &Cmp{tok: p.peek()}
	if having {
		// A column name, or an aggregate call written as in SELECT.
		if p.peekSym("(") {
			col, _, err := p.column()
			if err != nil {
				return nil, err
			}
			c.Operand = col.Name
		} else {
			t, err := p.ident("a column name")
			if err != nil {
				return nil, err
			}
			c.Operand = t.text
		}
	} else {
		f, _, err := p.field()
		if err != nil {
			return nil, err
		}
		c.Operand = f
		c.field = stream.MustField(f)
	}
	ot := p.peek()
	switch {
	case ot.kind == tSym && (ot.text == "=" || ot.text == "!=" || ot.text == "<>" || ot.text == "<" || ot.text == "<=" || ot.text == ">" || ot.text == ">="):
		c.Op = ot.text
		if c.Op == "<>" {
			c.Op = "!="
		}
		p.next()
	default:
		return nil, p.expected("a comparison (= != <> < <= > >=)")
	}
	lt := p.next()
	switch {
	case lt.kind == tString:
		c.Lit = Literal{Str: lt.text}
	case lt.kind == tNumber:
		x, err := strconv.ParseFloat(lt.text, 64)
		if err != nil || math.IsInf(x, 0) {
			return nil, p.errAt(lt, "%s is not a number", lt)
		}
		c.Lit = Literal{Num: x, IsNum: true, Str: lt.text}
	case lt.kind == tIdent && (strings.EqualFold(lt.text, "TRUE") || strings.EqualFold(lt.text, "FALSE")):
		c.Lit = Literal{IsBool: true, Bool: strings.EqualFold(lt.text, "TRUE"), Str: strings.ToLower(lt.text)}
	case lt.kind == tSym && lt.text == "-":
		return nil, p.errAt(lt, "negative literals are written without a space: -5")
	default:
		p.pos--
		return nil, p.expected("a literal ('text', a number, TRUE or FALSE)")
	}
	return c, nil
}

func checkHaving(q *Query, c Cond) error {
	switch c := c.(type) {
	case And:
		if err := checkHaving(q, c.L); err != nil {
			return err
		}
		return checkHaving(q, c.R)
	case Or:
		if err := checkHaving(q, c.L); err != nil {
			return err
		}
		return checkHaving(q, c.R)
	case Not:
		return checkHaving(q, c.X)
	case *Cmp:
		for _, col := range q.Columns {
			if col.Name == c.Operand {
				return nil
			}
		}
		return &Error{c.tok.line, c.tok.col, "HAVING refers to " + strconv.Quote(c.Operand) + ", which is not a selected column"}
	}
	return nil
}

func (q *Query) aggs() []stream.Agg {
	var out []stream.Agg
	for _, c := range q.Columns {
		if c.Agg != nil {
			out = append(out, *c.Agg)
		}
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// MatchEvent evaluates a WHERE condition on an event. A missing field
// makes its comparison false (as SQL's NULL).
func MatchEvent(c Cond, e *event.Event) bool {
	switch c := c.(type) {
	case And:
		return MatchEvent(c.L, e) && MatchEvent(c.R, e)
	case Or:
		return MatchEvent(c.L, e) || MatchEvent(c.R, e)
	case Not:
		return !MatchEvent(c.X, e)
	case *Cmp:
		v, quoted, ok := c.field.Raw(e)
		if !ok {
			return false
		}
		switch {
		case c.Lit.IsNum:
			x, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return false
			}
			return stream.OpHolds(c.Op, cmpFloat(x, c.Lit.Num))
		case c.Lit.IsBool:
			if quoted {
				return false
			}
			return stream.OpHolds(c.Op, bytes.Compare(v, []byte(c.Lit.Str))) && (c.Op == "=" || c.Op == "!=")
		default:
			if !quoted {
				return false
			}
			return stream.OpHolds(c.Op, bytes.Compare(v, []byte(c.Lit.Str)))
		}
	}
	return true
}

// MatchResult evaluates a HAVING condition on a result row.
func MatchResult(c Cond, q *Query, r *stream.Result) bool {
	switch c := c.(type) {
	case And:
		return MatchResult(c.L, q, r) && MatchResult(c.R, q, r)
	case Or:
		return MatchResult(c.L, q, r) || MatchResult(c.R, q, r)
	case Not:
		return !MatchResult(c.X, q, r)
	case *Cmp:
		for _, v := range r.Values {
			if v.Name == c.Operand {
				if !c.Lit.IsNum || math.IsNaN(v.Number) {
					return false
				}
				return stream.OpHolds(c.Op, cmpFloat(v.Number, c.Lit.Num))
			}
		}
		// A group key column.
		v, quoted, ok := q.keyValue(r.Key, c.Operand)
		if !ok {
			return false
		}
		if c.Lit.IsNum {
			x, err := strconv.ParseFloat(v, 64)
			return err == nil && stream.OpHolds(c.Op, cmpFloat(x, c.Lit.Num))
		}
		if c.Lit.IsBool {
			return !quoted && stream.OpHolds(c.Op, strings.Compare(v, c.Lit.Str)) && (c.Op == "=" || c.Op == "!=")
		}
		return stream.OpHolds(c.Op, strings.Compare(v, c.Lit.Str))
	}
	return true
}

// keyValue returns the value of the group key column named col in a
// result's key: its text and whether it was a JSON string (for several
// GROUP BY fields the key is the JSON array of their values).
func (q *Query) keyValue(key, col string) (v string, quoted, ok bool) {
	i := slices.IndexFunc(q.Columns, func(c Column) bool { return c.Agg == nil && c.Name == col })
	if i < 0 {
		return "", false, false
	}
	if len(q.GroupBy) == 1 {
		return key, true, true
	}
	raw, ok := q.keyParts(key, q.Columns[i].field)
	if !ok {
		return "", false, false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true, true
	}
	return string(raw), false, true
}

// keyParts returns the JSON value of GROUP BY field f in a result's key
// (several GROUP BY fields).
func (q *Query) keyParts(key, f string) (json.RawMessage, bool) {
	var parts []json.RawMessage
	i := slices.Index(q.GroupBy, f)
	if i < 0 || json.Unmarshal([]byte(key), &parts) != nil || len(parts) != len(q.GroupBy) {
		return nil, false
	}
	return parts[i], true
}

// Encode writes a result as the query's JSON record: window_start,
// window_end, the group key column, then the selected aggregates, in
// SELECT order.
func (q *Query) Encode(r *stream.Result) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"window_start":"`...)
	b = r.Start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","window_end":"`...)
	b = r.End.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	for _, c := range q.Columns {
		b = append(b, ',')
		b = strconv.AppendQuote(b, c.Name)
		b = append(b, ':')
		if c.Agg == nil {
			if len(q.GroupBy) == 1 {
				b = strconv.AppendQuote(b, r.Key)
			} else if v, ok := q.keyParts(r.Key, c.field); ok {
				b = append(b, v...)
			} else {
				b = append(b, "null"...)
			}
			continue
		}
		for _, v := range r.Values {
			if v.Name != c.Agg.Name {
				continue
			}
			switch {
			case v.Top != nil:
				b = append(b, '[')
				for i, it := range v.Top {
					if i > 0 {
						b = append(b, ',')
					}
					b = append(b, `{"value":`...)
					b = strconv.AppendQuote(b, it.Value)
					b = append(b, `,"count":`...)
					b = strconv.AppendInt(b, it.Count, 10)
					b = append(b, '}')
				}
				b = append(b, ']')
			case math.IsNaN(v.Number):
				b = append(b, "null"...)
			default:
				b = strconv.AppendFloat(b, v.Number, 'g', -1, 64)
			}
		}
	}
	return append(b, '}')
}

// processorConfig is the query's aggregation.
func (q *Query) processorConfig() stream.Config {
	cfg := stream.Config{Window: q.Window, Aggs: q.aggs(), Grace: stream.Grace(q.Grace), Emit: q.Emit}
	if len(q.GroupBy) == 1 {
		cfg.Key = q.GroupBy[0]
	} else {
		cfg.Keys = q.GroupBy
	}
	return cfg
}

// JobConfig turns a CREATE TABLE query into a stream job: input the FROM
// topic, output the topic named like the table.
func (q *Query) JobConfig(brokers []string) (stream.JobConfig, error) {
	if q.Table == "" {
		return stream.JobConfig{}, &Error{1, 1, "only CREATE TABLE name AS SELECT ... runs as a job"}
	}
	cfg := stream.JobConfig{
		Name: q.Table, Brokers: brokers, Input: q.From, Output: q.Table,
		Processor: q.processorConfig(),
		Encode:    q.Encode,
	}
	if w := q.Where; w != nil {
		cfg.Filter = func(e *event.Event) bool { return MatchEvent(w, e) }
	}
	if h := q.Having; h != nil {
		cfg.Having = func(r *stream.Result) bool { return MatchResult(h, q, r) }
	}
	return cfg, nil
}
