package registry

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald/schema"
)

// TestFastPathAllocatesNothing: parsing a request and finding its
// rendered answer allocate nothing, for every route.
func TestFastPathAllocatesNothing(t *testing.T) {
	r := &Registry{st: newState(), m: newMetrics(nil)}
	for _, rec := range []struct {
		k recKey
		v any
	}{
		{recKey{KeyType: keySchemaID, ID: 1}, schemaValue{ID: 1, SchemaType: schema.Avro, Schema: `"string"`}},
		{recKey{KeyType: keySubjectVersion, Subject: strp("orders-value"), Version: 1}, versionValue{ID: 1}},
	} {
		er := jsonRec(rec.k, rec.v)
		d, err := decodeRecord(er.Key, er.Value)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.st.apply(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, req := range []string{
		"GET /schemas/ids/1 HTTP/1.1\r\nHost: r\r\n\r\n",
		"GET /schemas/ids/1/schema?fetchMaxId=false&subject=orders-value HTTP/1.1\r\nHost: r\r\nConnection: keep-alive\r\n\r\n",
		"GET /subjects/orders-value/versions/latest HTTP/1.1\r\nHost: r\r\n\r\n",
		"GET /subjects/orders-value/versions/1/schema?deleted=false HTTP/1.1\r\nHost: r\r\nAccept: */*\r\n\r\n",
	} {
		b := []byte(req)
		var resp *rendered
		allocs := testing.AllocsPerRun(1000, func() {
			q, n, res := parseRequest(b)
			if res != parseOK || n != len(b) {
				t.Fatalf("%q: parse result %d, length %d", req, res, n)
			}
			resp = r.fastResponse(&q)
		})
		if resp == nil {
			t.Fatalf("%q: no rendered answer", req)
		}
		if allocs != 0 {
			t.Errorf("%q: %v allocations per request", req, allocs)
		}
	}
}

// TestRenderedVersionFollowsItsSchema: a schema record for an id already
// known, with other references (only another writer of the topic makes
// one), re-renders the versions that use the id; the same record again
// changes nothing.
func TestRenderedVersionFollowsItsSchema(t *testing.T) {
	st := newState()
	apply := func(k recKey, v any) {
		t.Helper()
		er := jsonRec(k, v)
		d, err := decodeRecord(er.Key, er.Value)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.apply(d); err != nil {
			t.Fatal(err)
		}
	}
	apply(recKey{KeyType: keySchemaID, ID: 1}, schemaValue{ID: 1, SchemaType: schema.Avro, Schema: `"string"`})
	apply(recKey{KeyType: keySchemaID, ID: 2}, schemaValue{ID: 2, SchemaType: schema.Avro, Schema: `"long"`,
		References: []schema.Reference{{Name: "a", Subject: "s", Version: 1}}})
	apply(recKey{KeyType: keySubjectVersion, Subject: strp("s"), Version: 1}, versionValue{ID: 2})
	before := st.subjects["s"][0].resp
	apply(recKey{KeyType: keySchemaID, ID: 2}, schemaValue{ID: 2, SchemaType: schema.Avro, Schema: `"long"`,
		References: []schema.Reference{{Name: "a", Subject: "s", Version: 1}}})
	if st.subjects["s"][0].resp != before {
		t.Fatal("the same schema record again re-rendered the version")
	}
	apply(recKey{KeyType: keySchemaID, ID: 2}, schemaValue{ID: 2, SchemaType: schema.Avro, Schema: `"long"`,
		References: []schema.Reference{{Name: "b", Subject: "s", Version: 1}}})
	body := string(st.subjects["s"][0].resp.body())
	if !strings.Contains(body, `"name":"b"`) || strings.Contains(body, `"name":"a"`) {
		t.Fatalf("version after its schema's references changed: %s", body)
	}
	if !strings.Contains(string(st.ids[2].byID.body()), `"name":"b"`) || len(st.byGUID) != 2 {
		t.Fatalf("schema 2: %s, %d GUIDs", st.ids[2].byID.body(), len(st.byGUID))
	}
}
