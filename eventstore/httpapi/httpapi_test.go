package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldhq/herald/eventstore/embedded"
	"github.com/heraldhq/herald/eventstore/httpapi"
)

// Raw requests, as curl sends them: the error shape, codes and headers.
func TestRawRequests(t *testing.T) {
	s, err := embedded.Open(embedded.Config{Dir: t.TempDir(), SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mux := http.NewServeMux()
	httpapi.Routes(mux, s)
	srv := httptest.NewServer(checkedAgainstOpenAPI(t, mux))
	defer srv.Close()

	do := func(method, path, body string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		return resp, m
	}
	errOf := func(m map[string]any) (code, field, msg string) {
		e, _ := m["error"].(map[string]any)
		c, _ := e["code"].(string)
		f, _ := e["field"].(string)
		ms, _ := e["message"].(string)
		return c, f, ms
	}
	for _, c := range []struct {
		method, path, body string
		status             int
		code, field        string
	}{
		{"POST", "/v1/streams/order-1", `{"expectedVersion":"no-stream","events":[{"type":"Placed","data":{"total":5}}]}`, 200, "", ""},
		{"POST", "/v1/streams/order-1", `{"expectedVersion":"no-stream","events":[{"type":"Placed","data":{}}]}`, 409, "ABORTED", "expectedVersion"},
		{"POST", "/v1/streams/order-1", `{"expectedVersion":"soon","events":[{"type":"X"}]}`, 400, "INVALID_ARGUMENT", "expectedVersion"},
		{"POST", "/v1/streams/order-1", `{"events":[{"type":""}]}`, 400, "INVALID_ARGUMENT", "events[0].type"},
		{"POST", "/v1/streams/order-1", `{"events":[{"type":"X","data":{},"dataBase64":"AA=="}]}`, 400, "INVALID_ARGUMENT", "events[0].data"},
		{"POST", "/v1/streams/order-1", `{"events":[{"type":"X"}],"extra":1}`, 400, "INVALID_ARGUMENT", "extra"},
		{"POST", "/v1/streams/order-1", `{"events":`, 400, "INVALID_ARGUMENT", ""},
		{"POST", "/v1/streams/order-1", `{"events":[{"type":"X","data":"` + strings.Repeat("x", 17<<20) + `"}]}`, 413, "PAYLOAD_TOO_LARGE", ""},
		{"POST", "/v1/streams", `{"appends":[{"stream":"a-1","events":[{"type":"X"}]},{"stream":"$b","events":[{"type":"X"}]}]}`, 400, "INVALID_ARGUMENT", "appends[1].stream"},
		{"GET", "/v1/streams/nope", ``, 404, "NOT_FOUND", "stream"},
		{"GET", "/v1/streams/order-1?max=-1", ``, 400, "INVALID_ARGUMENT", "max"},
		{"GET", "/v1/streams/order-1?from=x", ``, 400, "INVALID_ARGUMENT", "from"},
		{"GET", "/v1/all?typeRegex=(", ``, 400, "INVALID_ARGUMENT", "filter.typeRegex"},
		{"GET", "/v1/all/head?waitMs=999999", ``, 400, "INVALID_ARGUMENT", "waitMs"},
		{"POST", "/v1/streams/a%2Fb%20c", `{"events":[{"type":"X","data":1}]}`, 200, "", ""},
		{"GET", "/v1/streams/a%2Fb%20c/info", ``, 200, "", ""},
		{"DELETE", "/v1/streams/order-1?hard=true", ``, 204, "", ""},
		{"POST", "/v1/streams/order-1", `{"events":[{"type":"X"}]}`, 412, "FAILED_PRECONDITION", "stream"},
	} {
		resp, m := do(c.method, c.path, c.body)
		code, field, msg := errOf(m)
		if resp.StatusCode != c.status || code != c.code || field != c.field {
			t.Fatalf("%s %s: %d %s %s (%s), want %d %s %s", c.method, c.path, resp.StatusCode, code, field, msg, c.status, c.code, c.field)
		}
		if strings.HasPrefix(c.path, "/v1/streams/a%2F") && c.method == "GET" && m["stream"] != "a/b c" {
			t.Fatalf("escaped stream name came back as %v", m["stream"])
		}
		switch resp.StatusCode {
		case 409:
			if resp.Header.Get(httpapi.HeaderActualVersion) != "0" || !strings.Contains(msg, "actual 0") {
				t.Fatalf("conflict: header %q, message %q", resp.Header.Get(httpapi.HeaderActualVersion), msg)
			}
		case 412:
			if !strings.Contains(msg, "hard-deleted") {
				t.Fatalf("tombstoned: %q", msg)
			}
		}
	}
}
