package registry

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
)

// The fast path answers the lookups every serializer and deserializer
// makes, GET /schemas/ids/{id}[/schema] and
// GET /subjects/{s}/versions/{v}[/schema], from responses rendered once
// when the state changes (apply) and never again per request. It serves
// hits only: a miss, an unknown query parameter or anything it does not
// parse goes to the general handler, so errors and every other endpoint
// have one implementation. TestFastPathMatchesGeneral holds the two paths
// to the same bytes.

// rendered is a complete HTTP/1.1 200 response, headers in net/http's
// order, with room for the Date header's value at dateOff. It is built
// once and never changed: a change to the state renders a new one.
type rendered struct {
	resp    []byte
	dateOff int      // the 29 bytes of the Date value
	bodyOff int      // where the body starts
	clen    []string // the Content-Length header, for the net/http path
}

func (r *rendered) body() []byte { return r.resp[r.bodyOff:] }

// dateLen is len(http.TimeFormat) in GMT: always 29 bytes.
const dateLen = 29

func render(body []byte) *rendered {
	n := strconv.Itoa(len(body))
	b := make([]byte, 0, 128+len(body))
	b = append(b, "HTTP/1.1 200 OK\r\nContent-Length: "...)
	b = append(b, n...)
	b = append(b, "\r\nContent-Type: "+ContentType+"\r\nDate: "...)
	off := len(b)
	b = append(b, "Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n"...)
	bodyOff := len(b)
	b = append(b, body...)
	return &rendered{resp: b, dateOff: off, bodyOff: bodyOff, clen: []string{n}}
}

// Fast routes.
const (
	routeID            = iota // /schemas/ids/{id}
	routeIDSchema             // /schemas/ids/{id}/schema
	routeVersion              // /subjects/{s}/versions/{v}
	routeVersionSchema        // /subjects/{s}/versions/{v}/schema
	numRoutes
)

var routeNames = [numRoutes]string{"schema_by_id", "schema_text_by_id", "subject_version", "subject_version_schema"}

// fastReq is a parsed fast-path request. subject aliases the request's
// bytes.
type fastReq struct {
	route   int
	id      int
	subject []byte
	version int // -1 for latest
	deleted bool
}

// targetByte reports whether c may appear, unescaped, in a request target
// the fast path takes: RFC 3986's pchar plus '/' and '?', without '%'
// (escapes go to the general path, which decodes them).
var targetByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~!$&'()*+,;=:@/?" {
		t[c] = true
	}
	return t
}()

// parseTarget parses a request target (path and query, unescaped: no
// '%'). ok is false for anything the fast path does not serve.
func parseTarget(t []byte) (q fastReq, ok bool) {
	for _, c := range t {
		if !targetByte[c] {
			return q, false
		}
	}
	path, query, _ := bytes.Cut(t, []byte("?"))
	switch {
	case bytes.HasPrefix(path, []byte("/schemas/ids/")):
		rest := path[len("/schemas/ids/"):]
		q.route = routeID
		if id, ok := bytes.CutSuffix(rest, []byte("/schema")); ok {
			q.route, rest = routeIDSchema, id
		}
		if q.id, ok = parseID(rest); !ok {
			return q, false
		}
	case bytes.HasPrefix(path, []byte("/subjects/")):
		rest := path[len("/subjects/"):]
		q.route = routeVersion
		if v, ok := bytes.CutSuffix(rest, []byte("/schema")); ok {
			q.route, rest = routeVersionSchema, v
		}
		i := bytes.Index(rest, []byte("/versions/"))
		if i < 0 {
			return q, false
		}
		q.subject = rest[:i]
		v := rest[i+len("/versions/"):]
		// A clean path (the general router redirects others): one
		// segment, neither "." nor "..".
		if len(q.subject) == 0 || bytes.IndexByte(q.subject, '/') >= 0 || string(q.subject) == "." || string(q.subject) == ".." {
			return q, false
		}
		switch string(v) {
		case "latest", "-1":
			q.version = -1
		default:
			if q.version, ok = parseID(v); !ok {
				return q, false
			}
		}
	default:
		return q, false
	}
	return q, parseQuery(&q, query)
}

// parseID parses 1 to 9 decimal digits (leading zeros allowed, as the
// general path's strconv.Atoi allows them) into a positive int.
func parseID(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n > 0
}

// parseQuery takes the parameters whose answers the fast path has rendered:
// for ids, fetchMaxId=false (Confluent's Java client always sends it) and
// subject (a context lookup: Herald has one context, so it changes
// nothing); for versions, deleted=true|false. Anything else, or a
// parameter twice, is for the general path.
func parseQuery(q *fastReq, query []byte) bool {
	var seenMax, seenSubject, seenDeleted bool
	for len(query) > 0 {
		var kv []byte
		kv, query, _ = bytes.Cut(query, []byte("&"))
		k, v, _ := bytes.Cut(kv, []byte("="))
		if bytes.IndexByte(kv, ';') >= 0 || bytes.IndexByte(kv, '+') >= 0 {
			return false // url.ParseQuery rejects ';'; '+' decodes to a space
		}
		switch {
		case q.route <= routeIDSchema && string(k) == "fetchMaxId" && string(v) == "false" && !seenMax:
			seenMax = true
		case q.route <= routeIDSchema && string(k) == "subject" && !seenSubject:
			seenSubject = true
		case q.route >= routeVersion && string(k) == "deleted" && !seenDeleted && (string(v) == "true" || string(v) == "false"):
			seenDeleted, q.deleted = true, string(v) == "true"
		default:
			return false
		}
	}
	return true
}

// fastResponse is the rendered answer to q, or nil when the general path
// must answer (a miss: it renders the error).
func (r *Registry) fastResponse(q *fastReq) *rendered {
	r.mu.RLock()
	defer r.mu.RUnlock()
	switch q.route {
	case routeID, routeIDSchema:
		s := r.st.ids[q.id]
		if s == nil {
			return nil
		}
		if q.route == routeID {
			return s.byID
		}
		return s.textResp
	default:
		v := findVersion(r.st.subjects[string(q.subject)], q.version, q.deleted)
		if v == nil {
			return nil
		}
		if q.route == routeVersion {
			return v.resp
		}
		return r.st.ids[v.id].textResp
	}
}

// findVersion finds version n (-1: the latest) in vs, live only unless
// deleted.
func findVersion(vs []*version, n int, deleted bool) *version {
	if n == -1 {
		for i := len(vs) - 1; i >= 0; i-- {
			if deleted || !vs[i].deleted {
				return vs[i]
			}
		}
		return nil
	}
	i, ok := slices.BinarySearchFunc(vs, n, func(x *version, n int) int { return x.version - n })
	if !ok || (vs[i].deleted && !deleted) {
		return nil
	}
	return vs[i]
}

// serveFast answers q on the net/http path if it is a fast-path hit.
func (r *Registry) serveFast(w http.ResponseWriter, q *http.Request) bool {
	if q.Method != http.MethodGet || q.URL.RawPath != "" || len(q.URL.Path)+len(q.URL.RawQuery) > 1024 {
		return false
	}
	// Path is decoded; RawPath is empty when the path had no escapes that
	// matter, and '%' or '?' in it means it had some.
	var arr [1040]byte
	t := append(arr[:0], q.URL.Path...)
	if bytes.IndexByte(t, '?') >= 0 || bytes.IndexByte(t, '%') >= 0 {
		return false
	}
	if q.URL.RawQuery != "" {
		t = append(append(t, '?'), q.URL.RawQuery...)
	}
	fq, ok := parseTarget(t)
	if !ok {
		return false
	}
	resp := r.fastResponse(&fq)
	if resp == nil {
		return false
	}
	h := w.Header()
	h["Content-Type"], h["Content-Length"] = contentTypeHeader, resp.clen
	w.WriteHeader(http.StatusOK)
	w.Write(resp.body())
	r.m.fast[fq.route].Add(1)
	return true
}

// renderVersion renders a subject's version as GET
// /subjects/{s}/versions/{v} answers it.
func (st *state) renderVersion(subject string, v *version) *rendered {
	b, _ := json.Marshal(st.subjectSchema(subject, v))
	return render(b)
}
