package registry

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary keys and values to the _schemas record
// decoder: never a panic; what decodes is applied without a panic and
// re-encodes to a key that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"keytype":"SCHEMA_ID","id":1,"magic":1}`), []byte(`{"id":1,"schemaType":"AVRO","schema":"\"string\""}`), false)
	f.Add([]byte(`{"keytype":"SUBJECT_VERSION","subject":"s","version":1,"magic":1}`), []byte(`{"id":1,"deleted":true}`), false)
	f.Add([]byte(`{"keytype":"SUBJECT_VERSION","subject":"s","version":1,"magic":1}`), []byte(nil), true)
	f.Add([]byte(`{"keytype":"CONFIG","subject":"","magic":1}`), []byte(`{"compatibilityLevel":"FULL"}`), false)
	f.Add([]byte(`{"keytype":"MODE","subject":"x","magic":1}`), []byte(`{"mode":"IMPORT"}`), false)
	f.Add([]byte(`{"keytype":"NOOP","magic":1}`), []byte(`{}`), false)
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		}
		d, err := decodeRecord(key, value)
		if err != nil {
			return
		}
		st := newState()
		_ = st.apply(d)
		if d.skip {
			return
		}
		k := encodeKey(d.key)
		d2, err := decodeRecord(k, value)
		if err != nil {
			t.Fatalf("re-encoded key %s does not decode: %v", k, err)
		}
		if !bytes.Equal(encodeKey(d2.key), k) {
			t.Fatalf("key %s decodes differently", k)
		}
	})
}

// FuzzParseRequest holds the Server's hand-written request parser to
// net/http's: never a panic; a request it takes (parseOK) is one
// http.ReadRequest reads from the same bytes, exactly as long, as a GET of
// the same path and query with no body, one Host and no Connection: close,
// and whose route and parameters are what the general handler would
// derive; and every shorter prefix of it asks for more bytes rather than
// being decided differently (reads split requests anywhere).
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET /schemas/ids/1 HTTP/1.1\r\nHost: r\r\n\r\n",
		"GET /schemas/ids/17/schema?fetchMaxId=false&subject=t-value HTTP/1.1\r\nHost: localhost:8081\r\nUser-Agent: Java/17\r\nConnection: keep-alive\r\n\r\n",
		"GET /subjects/orders-value/versions/latest?deleted=false HTTP/1.1\r\nHost: [::1]:8081\r\nAccept: application/vnd.schemaregistry.v1+json\r\n\r\n",
		"GET /subjects/:.ctx:a/versions/-1/schema HTTP/1.1\r\nhost: r\r\n\r\nGET /schemas/ids/2 HTTP/1.1\r\nHost: r\r\n\r\n",
		"GET /schemas/ids/1 HTTP/1.1\r\nHost: r\r\nContent-Length: 3\r\n\r\nabc",
		"GET /schemas/ids/1 HTTP/1.1\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: 0\r\nHost: r\r\n\r\n",
		"GET /schemas/ids/1 HTTP/1.1\nHost: r\n\n",
		"GET /schemas/ids/1 HTTP/1.1\r\nHost: r\r\n folded\r\n\r\n",
		"GET /schemas/ids/1 HTTP/1.0\r\n\r\n",
		"POST /subjects/s/versions HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\n\r\n{}",
		"GET /schemas/ids/1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /schemas/ids/1 HTTP/1.1\r\nX: \x01\r\nHost: r\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, n, res := parseRequest(b)
		if res != parseOK {
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("parseOK with length %d of %d bytes", n, len(b))
		}
		for k := range n {
			if _, _, r := parseRequest(b[:k]); r != parseMore {
				t.Fatalf("the prefix of %d bytes of a request of %d is decided (%d), not incomplete", k, n, r)
			}
		}
		br := bufio.NewReader(bytes.NewReader(b[:n]))
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("parseOK for %q, which net/http refuses: %v", b[:n], err)
		}
		if br.Buffered() != 0 {
			t.Fatalf("net/http leaves %d bytes of %q unread", br.Buffered(), b[:n])
		}
		if req.Method != http.MethodGet || req.ContentLength != 0 || len(req.TransferEncoding) != 0 || req.Close ||
			req.ProtoMajor != 1 || req.ProtoMinor != 1 {
			t.Fatalf("parseOK for %q, which net/http reads as %s %s %s, length %d, close %v", b[:n], req.Method, req.RequestURI, req.Proto, req.ContentLength, req.Close)
		}
		if req.URL.RawPath != "" {
			t.Fatalf("parseOK for an escaped path %q", req.URL.RawPath)
		}
		// The route and parameters, as the general handler derives them.
		path, query := req.URL.Path, req.URL.Query()
		if schemaRoute := q.route == routeIDSchema || q.route == routeVersionSchema; schemaRoute != strings.HasSuffix(path, "/schema") {
			t.Fatalf("route %d for path %q", q.route, path)
		}
		rest := strings.TrimSuffix(path, "/schema")
		switch q.route {
		case routeID, routeIDSchema:
			id, err := strconv.Atoi(strings.TrimPrefix(rest, "/schemas/ids/"))
			if !strings.HasPrefix(rest, "/schemas/ids/") || err != nil || id != q.id {
				t.Fatalf("id %d for path %q", q.id, path)
			}
			if query.Get("fetchMaxId") == "true" || query.Has("format") || query.Has("deleted") {
				t.Fatalf("parseOK for query %q", req.URL.RawQuery)
			}
		default:
			ver := rest[strings.LastIndex(rest, "/versions/")+len("/versions/"):]
			vn, err := strconv.Atoi(ver)
			if ver == "latest" {
				vn, err = -1, nil
			}
			if rest != "/subjects/"+string(q.subject)+"/versions/"+ver || err != nil || vn != q.version {
				t.Fatalf("subject %q version %d for path %q", q.subject, q.version, path)
			}
			if q.deleted != (query.Get("deleted") == "true") || query.Has("fetchMaxId") {
				t.Fatalf("deleted %v for query %q", q.deleted, req.URL.RawQuery)
			}
		}
	})
}
