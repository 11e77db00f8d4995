package registry

import "bytes"

// parseRequest results.
const (
	parseOK   = iota // a fast-path request, n bytes long
	parseMore        // incomplete: read more
	parseNot         // not for the fast path (or not valid): net/http decides
)

// parseRequest parses the HTTP/1.1 request at the start of b, strictly:
// it says parseOK only for a request net/http would read the same way
// (same method, target and length, no body; FuzzParseRequest checks this
// against http.ReadRequest) and whose answer the fast path has. Whatever
// else it finds, including anything malformed, is parseNot: net/http then
// reads the same bytes and answers (often 400).
//
// Accepted: "GET <target> HTTP/1.1" CRLF, header lines "Name: value" CRLF
// with token names and values free of control characters, exactly one
// Host, and a blank line. Refused: bare LF line ends, folded lines, a body
// (Content-Length other than one "0", Transfer-Encoding), Expect, Upgrade,
// and Connection other than keep-alive.
func parseRequest(b []byte) (q fastReq, n int, res int) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return q, 0, parseMore
	}
	if i == 0 || b[i-1] != '\r' {
		return q, 0, parseNot
	}
	line := b[:i-1]
	target, ok := bytes.CutPrefix(line, []byte("GET "))
	if !ok {
		return q, 0, parseNot
	}
	if target, ok = bytes.CutSuffix(target, []byte(" HTTP/1.1")); !ok || len(target) == 0 || target[0] != '/' {
		return q, 0, parseNot
	}
	if q, ok = parseTarget(target); !ok {
		return q, 0, parseNot
	}
	hosts, lengths := 0, 0
	for pos := i + 1; ; {
		j := bytes.IndexByte(b[pos:], '\n')
		if j < 0 {
			return q, 0, parseMore
		}
		if j == 0 || b[pos+j-1] != '\r' {
			return q, 0, parseNot
		}
		line := b[pos : pos+j-1]
		pos += j + 1
		if len(line) == 0 {
			if hosts != 1 {
				return q, 0, parseNot // net/http answers 400
			}
			return q, pos, parseOK
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 {
			return q, 0, parseNot
		}
		for _, c := range name {
			if !tokenByte[c] {
				return q, 0, parseNot
			}
		}
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return q, 0, parseNot
			}
		}
		value = bytes.Trim(value, " \t")
		switch {
		case equalFold(name, "host"):
			hosts++
			for _, c := range value {
				if !hostByte[c] {
					return q, 0, parseNot
				}
			}
		case equalFold(name, "connection"):
			if !equalFold(value, "keep-alive") {
				return q, 0, parseNot
			}
		case equalFold(name, "content-length"):
			// Some clients say "no body" on a GET; any body goes to net/http.
			if lengths++; lengths > 1 || string(value) != "0" {
				return q, 0, parseNot
			}
		case equalFold(name, "transfer-encoding"), equalFold(name, "expect"), equalFold(name, "upgrade"):
			return q, 0, parseNot
		}
	}
}

// equalFold compares b with lower, which is lower-case ASCII.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// tokenByte: RFC 9110's tchar, the bytes of a header name.
var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// hostByte: the bytes of a Host value the fast path takes (a name or an
// address and a port; net/http refuses some others with 400).
var hostByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._:[]" {
		t[c] = true
	}
	return t
}()
