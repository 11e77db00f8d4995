package pattern

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// pathNode is one field name of the paths some condition refers to: the
// flattener descends only into used names and emits only used leaves.
type pathNode struct {
	children map[string]*pathNode
	// small mirrors children when there are few: a linear scan of a few
	// keys beats hashing.
	small []pathKid
	// id of the leaf path ending here, or -1 when no condition tests it.
	id int32
}

type pathKid struct {
	key  string
	node *pathNode
}

const smallKids = 8

// child returns the child named key, or nil.
func (n *pathNode) child(key []byte) *pathNode {
	if n.children == nil {
		return nil
	}
	if len(n.children) <= smallKids {
		for i := range n.small {
			if len(n.small[i].key) == len(key) && n.small[i].key == string(key) {
				return n.small[i].node
			}
		}
		return nil
	}
	return n.children[string(key)]
}

func newPathNode() *pathNode { return &pathNode{id: -1} }

// field is one leaf value of an event. s aliases the event or the
// flattener's buffer; trail is trails[t0:t1].
type field struct {
	path   int32
	k      vkind
	s      []byte
	num    float64
	t0, t1 int32
}

var errSyntax = errors.New("event is not valid JSON")
var errDepth = errors.New("event is nested too deeply")

// flattener turns JSON into fields without allocating once warm. It
// validates what it reads; values no pattern refers to are skipped with a
// lighter scan (their strings' escapes are not checked).
type flattener struct {
	fields []field
	trails []tpos
	cur    []tpos
	buf    []byte
	src    []byte
	pos    int
	arrays int32
}

func (f *flattener) reset() {
	f.fields = f.fields[:0]
	f.trails = f.trails[:0]
	f.cur = f.cur[:0]
	f.buf = f.buf[:0]
	f.arrays = 0
}

// flattenDoc flattens a JSON document (must be an object) under node.
func (f *flattener) flattenDoc(doc []byte, node *pathNode) error {
	f.prepare(doc)
	f.ws()
	if f.pos >= len(f.src) || f.src[f.pos] != '{' {
		return errSyntax
	}
	if err := f.object(node, 0, true); err != nil {
		return err
	}
	f.ws()
	if f.pos != len(f.src) {
		return errSyntax
	}
	return nil
}

// flattenValue flattens any JSON value at depth under node (a
// CloudEvent's data is at depth 1).
func (f *flattener) flattenValue(doc []byte, node *pathNode, depth int) error {
	f.prepare(doc)
	if err := f.value(node, depth); err != nil {
		return err
	}
	f.ws()
	if f.pos != len(f.src) {
		return errSyntax
	}
	return nil
}

func (f *flattener) prepare(doc []byte) {
	f.src, f.pos = doc, 0
	if cap(f.buf)-len(f.buf) < len(doc) {
		// Unescaped strings are never longer than their source, so the
		// buffer never moves while fields point into it.
		nb := make([]byte, len(f.buf), len(f.buf)+len(doc)+64)
		copy(nb, f.buf)
		// Re-point fields that alias the old buffer.
		if len(f.buf) > 0 {
			for i := range f.fields {
				fl := &f.fields[i]
				if len(fl.s) > 0 && sameArray(fl.s, f.buf) {
					off := cap(f.buf) - cap(fl.s)
					fl.s = nb[off : off+len(fl.s)]
				}
			}
		}
		f.buf = nb
	}
}

func sameArray(a, b []byte) bool {
	if cap(b) == 0 || cap(a) == 0 {
		return false
	}
	// a is a sub-slice of b's backing array when their ends coincide.
	return &a[:cap(a)][cap(a)-1] == &b[:cap(b)][cap(b)-1]
}

func (f *flattener) ws() {
	for f.pos < len(f.src) {
		switch f.src[f.pos] {
		case ' ', '\t', '\n', '\r':
			f.pos++
		default:
			return
		}
	}
}

func (f *flattener) emit(node *pathNode, k vkind, s []byte, num float64) {
	t0 := int32(len(f.trails))
	f.trails = append(f.trails, f.cur...)
	f.fields = append(f.fields, field{path: node.id, k: k, s: s, num: num, t0: t0, t1: int32(len(f.trails))})
}

// value parses one value at depth; node is its path (nil: skip it).
func (f *flattener) value(node *pathNode, depth int) error {
	if depth > MaxEventDepth {
		return errDepth
	}
	if node == nil {
		return f.skip(depth)
	}
	f.ws()
	if f.pos >= len(f.src) {
		return errSyntax
	}
	switch c := f.src[f.pos]; {
	case c == '{':
		return f.object(node, depth, false)
	case c == '[':
		return f.array(node, depth)
	case c == '"':
		s, err := f.str()
		if err != nil {
			return err
		}
		if node.id >= 0 {
			f.emit(node, vString, s, 0)
		}
	case c == '-' || (c >= '0' && c <= '9'):
		s, err := f.number()
		if err != nil {
			return err
		}
		if node.id >= 0 {
			n, err := strconv.ParseFloat(bytesToString(s), 64)
			if err != nil && !math.IsInf(n, 0) {
				return errSyntax
			}
			if n == 0 {
				n = 0
			}
			f.emit(node, vNumber, nil, n)
		}
	default:
		k, err := f.literal()
		if err != nil {
			return err
		}
		if node.id >= 0 {
			f.emit(node, k, nil, 0)
		}
	}
	return nil
}

func (f *flattener) literal() (vkind, error) {
	rest := f.src[f.pos:]
	switch {
	case bytes.HasPrefix(rest, []byte("true")):
		f.pos += 4
		return vTrue, nil
	case bytes.HasPrefix(rest, []byte("false")):
		f.pos += 5
		return vFalse, nil
	case bytes.HasPrefix(rest, []byte("null")):
		f.pos += 4
		return vNull, nil
	}
	return 0, errSyntax
}

func (f *flattener) object(node *pathNode, depth int, top bool) error {
	f.pos++ // '{'
	f.ws()
	if f.pos < len(f.src) && f.src[f.pos] == '}' {
		f.pos++
		return nil
	}
	for {
		f.ws()
		if f.pos >= len(f.src) || f.src[f.pos] != '"' {
			return errSyntax
		}
		key, err := f.str()
		if err != nil {
			return err
		}
		f.ws()
		if f.pos >= len(f.src) || f.src[f.pos] != ':' {
			return errSyntax
		}
		f.pos++
		var child *pathNode
		if node != nil && node.children != nil {
			child = node.child(key)
			if child == nil && top {
				switch string(key) {
				case "detail":
					child = node.children["data"]
				case "detail-type":
					child = node.children["type"]
				}
			}
		}
		if err := f.value(child, depth+1); err != nil {
			return err
		}
		if done, err := f.next('}'); done || err != nil {
			return err
		}
	}
}

// next reads what follows a member or an element: a comma (more follow)
// or close, the object's or array's end (done).
func (f *flattener) next(close byte) (done bool, err error) {
	f.ws()
	if f.pos >= len(f.src) {
		return false, errSyntax
	}
	switch f.src[f.pos] {
	case ',':
		f.pos++
		return false, nil
	case close:
		f.pos++
		return true, nil
	}
	return false, errSyntax
}

func (f *flattener) array(node *pathNode, depth int) error {
	f.pos++ // '['
	id := f.arrays
	f.arrays++
	f.ws()
	if f.pos < len(f.src) && f.src[f.pos] == ']' {
		f.pos++
		return nil
	}
	for i := int32(0); ; i++ {
		f.ws()
		if f.pos >= len(f.src) {
			return errSyntax
		}
		nested := f.src[f.pos] == '{' || f.src[f.pos] == '['
		if nested {
			f.cur = append(f.cur, tpos{id, i})
		}
		if err := f.value(node, depth+1); err != nil {
			return err
		}
		if nested {
			f.cur = f.cur[:len(f.cur)-1]
		}
		if done, err := f.next(']'); done || err != nil {
			return err
		}
	}
}

// strStop marks the bytes that end a run of plain string bytes: the
// quote, the backslash and control characters.
var strStop = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// structural marks the bytes skipContainer stops at.
var structural = func() (t [256]bool) {
	for _, c := range []byte(`{}[]"`) {
		t[c] = true
	}
	return t
}()

// str parses a string at pos (on its quote) and returns its unescaped
// bytes, aliasing src when it has no escapes.
func (f *flattener) str() ([]byte, error) {
	start := f.pos + 1
	i := start
	for i < len(f.src) {
		// NB: one table lookup per plain byte rather than three compares.
		for i < len(f.src) && !strStop[f.src[i]] {
			i++
		}
		if i >= len(f.src) {
			break
		}
		c := f.src[i]
		if c == '"' {
			f.pos = i + 1
			return f.src[start:i], nil
		}
		if c == '\\' {
			return f.strEscaped(start, i)
		}
		if c < 0x20 {
			return nil, errSyntax
		}
		i++
	}
	return nil, errSyntax
}

func hexVal(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

func (f *flattener) strEscaped(start, i int) ([]byte, error) {
	b0 := len(f.buf)
	f.buf = append(f.buf, f.src[start:i]...)
	for i < len(f.src) {
		c := f.src[i]
		switch {
		case c == '"':
			f.pos = i + 1
			return f.buf[b0:len(f.buf):len(f.buf)], nil
		case c < 0x20:
			return nil, errSyntax
		case c != '\\':
			f.buf = append(f.buf, c)
			i++
			continue
		}
		if i+1 >= len(f.src) {
			return nil, errSyntax
		}
		e := f.src[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			f.buf = append(f.buf, e)
		case 'b':
			f.buf = append(f.buf, '\b')
		case 'f':
			f.buf = append(f.buf, '\f')
		case 'n':
			f.buf = append(f.buf, '\n')
		case 'r':
			f.buf = append(f.buf, '\r')
		case 't':
			f.buf = append(f.buf, '\t')
		case 'u':
			r, ok := hexVal(f.src[i:])
			if !ok {
				return nil, errSyntax
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(-1), false
				if i+1 < len(f.src) && f.src[i] == '\\' && f.src[i+1] == 'u' {
					r2, ok2 = hexVal(f.src[i+2:])
				}
				if ok2 {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						i += 6
						f.buf = utf8.AppendRune(f.buf, d)
						continue
					}
				}
				r = utf8.RuneError
			}
			f.buf = utf8.AppendRune(f.buf, r)
		default:
			return nil, errSyntax
		}
	}
	return nil, errSyntax
}

// number scans a JSON number and returns its text.
func (f *flattener) number() ([]byte, error) {
	s, i := f.src, f.pos
	start := i
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return nil, errSyntax
	}
	if i < len(s) && s[i] == '.' {
		i++
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return nil, errSyntax
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return nil, errSyntax
		}
	}
	f.pos = i
	return s[start:i], nil
}

// skip passes over a value no pattern refers to.
func (f *flattener) skip(depth int) error {
	f.ws()
	if f.pos >= len(f.src) {
		return errSyntax
	}
	switch c := f.src[f.pos]; {
	case c == '"':
		return f.skipStr()
	case c == '{' || c == '[':
		return f.skipContainer(depth)
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := f.number()
		return err
	default:
		_, err := f.literal()
		return err
	}
}

// skipStr passes a string with a vectorised search for its closing quote.
func (f *flattener) skipStr() error {
	i := f.pos + 1
	for {
		j := bytes.IndexByte(f.src[i:], '"')
		if j < 0 {
			return errSyntax
		}
		i += j
		// The quote is escaped if an odd number of backslashes precede it.
		n := 0
		for k := i - 1; k > f.pos && f.src[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			f.pos = i + 1
			return nil
		}
		i++
	}
}

// skipContainer passes an object or array, checking its brackets and
// depth but not its grammar in detail.
func (f *flattener) skipContainer(depth int) error {
	var stack [MaxEventDepth + 2]byte
	n := 0
	for f.pos < len(f.src) {
		for f.pos < len(f.src) && !structural[f.src[f.pos]] {
			f.pos++
		}
		if f.pos >= len(f.src) {
			break
		}
		c := f.src[f.pos]
		switch c {
		case '{', '[':
			if depth+n+1 > MaxEventDepth+1 {
				return errDepth
			}
			stack[n] = c
			n++
			f.pos++
		case '}', ']':
			if n == 0 || (c == '}') != (stack[n-1] == '{') {
				return errSyntax
			}
			n--
			f.pos++
			if n == 0 {
				return nil
			}
		case '"':
			if err := f.skipStr(); err != nil {
				return err
			}
		default:
			f.pos++
		}
	}
	return errSyntax
}
