package stream

import "unsafe"

// stringBytes views s as bytes without copying; callers never write to it.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// jsonLookup finds the value at path (object member names) in the JSON
// document doc without decoding or allocating. It returns the raw value
// (a string value keeps its quotes). Malformed JSON is "not found". Member
// names are compared unescaped only when they contain no escapes.
func jsonLookup(doc []byte, path []string) ([]byte, bool) {
	i := skipWS(doc, 0)
	for _, seg := range path {
		if i >= len(doc) || doc[i] != '{' {
			return nil, false
		}
		i = skipWS(doc, i+1)
		found := false
		for i < len(doc) && doc[i] != '}' {
			if doc[i] != '"' {
				return nil, false
			}
			ks := i + 1
			ke := scanString(doc, i)
			if ke < 0 {
				return nil, false
			}
			key := doc[ks : ke-1]
			i = skipWS(doc, ke)
			if i >= len(doc) || doc[i] != ':' {
				return nil, false
			}
			i = skipWS(doc, i+1)
			if string(key) == seg {
				found = true
				break
			}
			j := skipValue(doc, i)
			if j < 0 {
				return nil, false
			}
			i = skipWS(doc, j)
			if i < len(doc) && doc[i] == ',' {
				i = skipWS(doc, i+1)
			}
		}
		if !found {
			return nil, false
		}
	}
	j := skipValue(doc, i)
	if j < 0 {
		return nil, false
	}
	return doc[i:j], true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index just past the string starting at b[i] == '"',
// or -1.
func scanString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index just past the JSON value at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '{' || c == '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				j := scanString(b, i)
				if j < 0 {
					return -1
				}
				i = j - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\t' || c == '\r' {
				break
			}
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}
