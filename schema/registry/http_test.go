package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldhq/herald/schema/registry"
)

// TestHTTPStatusesAndErrors checks raw responses: the media type, the
// {"error_code","message"} body, and the status each code maps to.
func TestHTTPStatusesAndErrors(t *testing.T) {
	e := open(t, t.TempDir())
	// Mounted as herald serve mounts it on the main HTTP port.
	mux := http.NewServeMux()
	mux.Handle("/registry/", http.StripPrefix("/registry", e.reg.Handler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	do := func(method, path, body string) (int, string, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+"/registry"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", registry.ContentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != registry.ContentType && resp.StatusCode != 204 {
			t.Fatalf("%s %s: Content-Type %q", method, path, ct)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		return resp.StatusCode, string(b), m
	}
	avro := func(s string) string { b, _ := json.Marshal(map[string]string{"schema": s}); return string(b) }

	if st, body, _ := do("POST", "/subjects/a%2Fb/versions", avro(userV1)); st != 200 || body != `{"id":1}` {
		t.Fatalf("register under a subject with a slash: %d %s", st, body)
	}
	if st, body, _ := do("GET", "/subjects", ""); st != 200 || body != `["a/b"]` {
		t.Fatalf("subjects: %d %s", st, body)
	}
	if st, body, _ := do("GET", "/schemas/ids/1/schema", ""); st != 200 || body != userV1 {
		t.Fatalf("raw schema: %d %s", st, body)
	}
	cases := []struct {
		method, path, body string
		status, code       int
		msg                string
	}{
		{"GET", "/schemas/ids/42", "", 404, 40403, "Schema 42 not found"},
		{"GET", "/schemas/ids/x", "", 404, 40403, ""},
		{"GET", "/subjects/nope/versions", "", 404, 40401, "nope"},
		{"GET", "/subjects/a%2Fb/versions/9", "", 404, 40402, "Version 9"},
		{"GET", "/subjects/a%2Fb/versions/0", "", 422, 42202, "not a valid version"},
		{"GET", "/subjects/a%2Fb/versions/two", "", 422, 42202, ""},
		{"PUT", "/config", `{"compatibility":"SIDEWAYS"}`, 422, 42203, "SIDEWAYS"},
		{"PUT", "/mode", `{"mode":"SOMETIMES"}`, 422, 42204, "SOMETIMES"},
		{"GET", "/config/a%2Fb", "", 404, 40408, "subject-level compatibility"},
		{"GET", "/mode/a%2Fb", "", 404, 40409, "subject-level mode"},
		{"POST", "/subjects/s/versions", `not json`, 422, 422, "not JSON"},
		{"POST", "/subjects/s/versions", `{"schema":"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"nope\"}]}"}`, 422, 42201, "line 1 column 58: avro: unknown type: nope"},
		{"POST", "/subjects/s/versions", `{"schema":"{\"type\":\"object\",","schemaType":"JSON"}`, 422, 42201, "line 1 column"},
		{"POST", "/subjects/s/versions", `{"schema":"syntax = \"proto3\"; message M { strin a = 1; }","schemaType":"PROTOBUF"}`, 422, 42201, "schema.proto:1:"},
		{"POST", "/subjects/s/versions", `{"schema":"\"int\"","schemaType":"XML"}`, 422, 42201, "XML"},
		{"POST", "/subjects/s/versions", `{"schema":"\"int\"","references":[{"name":"x","subject":"missing","version":1}]}`, 422, 42201, `subject "missing" version 1 not found`},
		{"POST", "/subjects/a%2Fb/versions", avro(userV3), 409, 409, "/age"},
		{"DELETE", "/subjects/a%2Fb?permanent=true", "", 404, 40405, "not deleted first"},
		{"DELETE", "/subjects/a%2Fb/versions/1?permanent=true", "", 404, 40407, "not deleted first"},
		{"GET", "/nowhere", "", 404, 404, "Not Found"},
		{"POST", "/subjects/%01bad/versions", avro(userV1), 422, 42208, "Invalid subject"},
	}
	for _, c := range cases {
		st, body, m := do(c.method, c.path, c.body)
		code, _ := m["error_code"].(float64)
		msg, _ := m["message"].(string)
		if st != c.status || int(code) != c.code || !strings.Contains(msg, c.msg) || len(m) != 2 {
			t.Errorf("%s %s: %d %s; want %d with error_code %d and a message with %q", c.method, c.path, st, body, c.status, c.code, c.msg)
		}
	}
	// Config: subject level, defaultToGlobal, verbose compatibility.
	if st, _, m := do("GET", "/config/a%2Fb?defaultToGlobal=true", ""); st != 200 || m["compatibilityLevel"] != "BACKWARD" {
		t.Fatalf("config defaultToGlobal: %d %v", st, m)
	}
	if st, _, m := do("POST", "/compatibility/subjects/a%2Fb/versions/latest?verbose=true", avro(userV3)); st != 200 || m["is_compatible"] != false || len(m["messages"].([]any)) != 1 {
		t.Fatalf("compatibility verbose: %d %v", st, m)
	}
	if st, body, _ := do("POST", "/compatibility/subjects/a%2Fb/versions/latest", avro(userV2)); st != 200 || body != `{"is_compatible":true}` {
		t.Fatalf("compatibility: %d %s", st, body)
	}
	if st, body, _ := do("GET", "/subjects/a%2Fb/versions/latest/referencedby", ""); st != 200 || body != `[]` {
		t.Fatalf("referencedby: %d %s", st, body)
	}
	if st, body, _ := do("GET", "/schemas/types", ""); st != 200 || body != `["JSON","PROTOBUF","AVRO"]` {
		t.Fatalf("types: %d %s", st, body)
	}

	// Modes: a subject's READONLY refuses deletes and registrations; IMPORT
	// needs force on a non-empty registry and ids on registrations.
	steps := []struct {
		method, path, body string
		status, code       int
	}{
		{"PUT", "/mode/a%2Fb", `{"mode":"READONLY"}`, 200, 0},
		{"DELETE", "/subjects/a%2Fb", "", 422, 42205},
		{"DELETE", "/subjects/a%2Fb/versions/1", "", 422, 42205},
		{"POST", "/subjects/a%2Fb/versions", avro(userV2), 422, 42205},
		{"PUT", "/config/a%2Fb", `{"compatibility":"FULL"}`, 200, 0},
		{"GET", "/mode/a%2Fb", "", 200, 0},
		{"DELETE", "/mode/a%2Fb", "", 200, 0},
		{"PUT", "/mode", `{"mode":"IMPORT"}`, 422, 42205},
		{"PUT", "/mode?force=true", `{"mode":"IMPORT"}`, 200, 0},
		{"POST", "/subjects/c/versions", avro(`"int"`), 422, 42205},
		{"POST", "/subjects/c/versions", `{"schema":"\"int\"","id":7,"version":3}`, 200, 0},
		{"POST", "/subjects/c/versions", `{"schema":"\"long\"","id":7,"version":4}`, 422, 42207},
		{"DELETE", "/mode", "", 200, 0},
		{"GET", "/subjects/c/versions/3", "", 200, 0},
	}
	for _, c := range steps {
		st, body, m := do(c.method, c.path, c.body)
		code, _ := m["error_code"].(float64)
		if st != c.status || int(code) != c.code {
			t.Fatalf("%s %s: %d %s; want %d, code %d", c.method, c.path, st, body, c.status, c.code)
		}
	}
}

// TestLargeSchema registers a schema near the 1 MiB limit (stored in one
// _schemas record) and refuses one over it with 42209.
func TestLargeSchema(t *testing.T) {
	e := open(t, t.TempDir())
	var fields []string
	for i := 0; len(strings.Join(fields, ",")) < 1000<<10; i++ {
		fields = append(fields, `{"name":"f`+itoa(i)+`","type":"string","doc":"`+strings.Repeat(`\"q\" `, 1000)+`"}`)
	}
	big := `{"type":"record","name":"Big","fields":[` + strings.Join(fields, ",") + `]}`
	if len(big) > 1<<20 {
		t.Fatalf("test schema is %d bytes", len(big))
	}
	id, err := e.reg.Register(context.Background(), "big", registry.RegisterRequest{Schema: big})
	if err != nil || id != 1 {
		t.Fatalf("register %d bytes: %d, %v", len(big), id, err)
	}
	huge := big[:len(big)-2] + `,{"name":"g","type":"string","doc":"` + strings.Repeat("x", 100<<10) + `"}]}`
	_, err = e.reg.Register(context.Background(), "big", registry.RegisterRequest{Schema: huge})
	var re *registry.Error
	if !errors.As(err, &re) || re.Code != registry.ErrSchemaTooLarge {
		t.Fatalf("register %d bytes: %v", len(huge), err)
	}
}
