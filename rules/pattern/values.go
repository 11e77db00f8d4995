package pattern

import (
	"bytes"
	"net/netip"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// vkind is the JSON type of an event leaf value.
type vkind uint8

const (
	vString vkind = iota + 1
	vNumber
	vTrue
	vFalse
	vNull
)

// foldString is the case folding of equals-ignore-case.
func foldString(s string) string { return strings.ToLower(s) }

// foldBytes lower-cases b into buf (ASCII fast path) and returns it.
func foldBytes(buf, b []byte) []byte {
	buf = buf[:0]
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= utf8.RuneSelf {
			return append(buf[:0], strings.ToLower(string(b))...)
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	return buf
}

// wildcard is a compiled wildcard: literal segments between '*'.
type wildcard struct {
	segs []string
	// star reports whether there is at least one '*'; then segs[0] is
	// the prefix and segs[len-1] the suffix.
	star bool
}

func compileWildcard(p string) wildcard {
	var w wildcard
	var cur []byte
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\':
			if i+1 < len(p) {
				i++
				cur = append(cur, p[i])
			}
		case '*':
			w.star = true
			w.segs = append(w.segs, string(cur))
			cur = cur[:0]
		default:
			cur = append(cur, c)
		}
	}
	w.segs = append(w.segs, string(cur))
	return w
}

// literalPrefix is the text before the first '*'.
func (w *wildcard) literalPrefix() string { return w.segs[0] }

func (w *wildcard) match(s []byte) bool {
	if !w.star {
		return string(s) == w.segs[0]
	}
	first, last := w.segs[0], w.segs[len(w.segs)-1]
	if len(s) < len(first)+len(last) || string(s[:len(first)]) != first || string(s[len(s)-len(last):]) != last {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	for _, seg := range w.segs[1 : len(w.segs)-1] {
		i := bytes.Index(s, unsafe.Slice(unsafe.StringData(seg), len(seg)))
		if i < 0 {
			return false
		}
		s = s[i+len(seg):]
	}
	return true
}

func bytesToString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// parseIP parses an IP address from a string value ("" if not one).
func parseIP(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 64 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(bytesToString(b))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func cidrContains(p netip.Prefix, a netip.Addr) bool {
	return p.Contains(a) || (p.Addr().Is4In6() && netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Contains(a))
}

// matchValue reports whether one leaf value satisfies m. It is the
// definition of every operator's semantics; the Machine must agree.
// KAbsent is not a value matcher (it never matches a value).
func matchValue(m *Matcher, k vkind, s []byte, num float64) bool {
	switch m.Kind {
	case KString:
		return k == vString && string(s) == m.Str
	case KNumber:
		return k == vNumber && num == m.Num
	case KTrue:
		return k == vTrue
	case KFalse:
		return k == vFalse
	case KNull:
		return k == vNull
	case KPrefix:
		return k == vString && bytes.HasPrefix(s, []byte(m.Str))
	case KSuffix:
		return k == vString && bytes.HasSuffix(s, []byte(m.Str))
	case KPrefixFold:
		return k == vString && strings.HasPrefix(foldString(string(s)), m.Str)
	case KSuffixFold:
		return k == vString && strings.HasSuffix(foldString(string(s)), m.Str)
	case KFold:
		return k == vString && foldString(string(s)) == m.Str
	case KWildcard:
		w := compileWildcard(m.Str)
		return k == vString && w.match(s)
	case KNumeric:
		return k == vNumber && inRange(m, num)
	case KCIDR:
		if k != vString {
			return false
		}
		a, ok := parseIP(s)
		return ok && cidrContains(m.Prefix, a)
	case KExists:
		return true
	case KAbsent:
		return false
	case KAnythingBut:
		switch k {
		case vString:
			for _, x := range m.Strs {
				if string(s) == x {
					return false
				}
			}
		case vNumber:
			for _, x := range m.Nums {
				if num == x {
					return false
				}
			}
		}
		return true
	case KAnythingButPrefix:
		return !(k == vString && bytes.HasPrefix(s, []byte(m.Str)))
	case KAnythingButSuffix:
		return !(k == vString && bytes.HasSuffix(s, []byte(m.Str)))
	case KAnythingButFold:
		if k != vString {
			return true
		}
		f := foldString(string(s))
		for _, x := range m.Strs {
			if f == x {
				return false
			}
		}
		return true
	case KAnythingButWildcard:
		if k != vString {
			return true
		}
		for _, x := range m.Strs {
			w := compileWildcard(x)
			if w.match(s) {
				return false
			}
		}
		return true
	}
	return false
}

func inRange(m *Matcher, v float64) bool {
	if v < m.Lo || (v == m.Lo && !m.LoInc) {
		return false
	}
	if v > m.Hi || (v == m.Hi && !m.HiInc) {
		return false
	}
	return true
}
