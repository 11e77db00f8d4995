package registry_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/heraldhq/herald/schema"
	"github.com/heraldhq/herald/schema/registry"
)

// TestReferencesEveryType registers, for each schema type, a schema that
// references another subject's, validates data through the reference, and
// checks that compatibility follows the referenced definitions.
func TestReferencesEveryType(t *testing.T) {
	e := open(t, t.TempDir())
	ctx := context.Background()
	cl := e.cl

	// JSON Schema: $ref by the reference's name.
	addr := `{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string"}},"required":["city"]}`
	if _, err := cl.RegisterSchema(ctx, "address", sr.Schema{Schema: addr, Type: sr.TypeJSON}, -1, -1); err != nil {
		t.Fatal(err)
	}
	person := `{"title":"Person","type":"object","properties":{"name":{"type":"string"},"home":{"$ref":"address.json"}}}`
	ref := []sr.SchemaReference{{Name: "address.json", Subject: "address", Version: 1}}
	pid, err := cl.RegisterSchema(ctx, "people-value", sr.Schema{Schema: person, Type: sr.TypeJSON, References: ref}, -1, -1)
	if err != nil {
		t.Fatalf("JSON with reference: %v", err)
	}
	v := e.reg.Validator()
	check := func(topic string, id int, payload string) error {
		rec := batchRecord(append(schema.AppendHeader(nil, id, nil), payload...))
		return v.ValidateRecord(topic, valueRule, &rec)
	}
	if err := check("people", pid, `{"name":"ada","home":{"city":"London"}}`); err != nil {
		t.Fatalf("valid person: %v", err)
	}
	if err := check("people", pid, `{"name":"ada","home":{"zip":"N1"}}`); err == nil || !strings.Contains(err.Error(), "/home") {
		t.Fatalf("person without a city: %v", err)
	}
	// A $ref that is not among the references is refused, never fetched.
	_, err = cl.RegisterSchema(ctx, "x", sr.Schema{Schema: `{"$ref":"http://example.com/s.json"}`, Type: sr.TypeJSON}, -1, -1)
	if code(err) != registry.ErrInvalidSchema {
		t.Fatalf("unresolvable $ref: %v", err)
	}

	// Protobuf: import by the reference's name.
	money := "syntax = \"proto3\";\npackage shop;\nmessage Money { string currency = 1; int64 units = 2; }\n"
	if _, err := cl.RegisterSchema(ctx, "money", sr.Schema{Schema: money, Type: sr.TypeProtobuf}, -1, -1); err != nil {
		t.Fatal(err)
	}
	order := "syntax = \"proto3\";\npackage shop;\nimport \"shop/money.proto\";\nimport \"google/protobuf/timestamp.proto\";\n" +
		"message Order { string id = 1; Money total = 2; google.protobuf.Timestamp at = 3; }\n"
	pref := []sr.SchemaReference{{Name: "shop/money.proto", Subject: "money", Version: 1}}
	if _, err := cl.RegisterSchema(ctx, "orders-value", sr.Schema{Schema: order, Type: sr.TypeProtobuf, References: pref}, -1, -1); err != nil {
		t.Fatalf("protobuf with reference: %v", err)
	}
	// Retyping a field of the referenced message is caught in the
	// referencing schema's next version.
	money2 := strings.Replace(money, "int64 units", "string units", 1)
	if _, err := cl.RegisterSchema(ctx, "money", sr.Schema{Schema: money2, Type: sr.TypeProtobuf}, -1, -1); code(err) != registry.ErrIncompatible || !strings.Contains(err.Error(), "shop.Money.units") {
		t.Fatalf("incompatible referenced message: %v", err)
	}

	// Avro: a named type from another subject, and the same text with a
	// different reference is a different schema.
	if _, err := cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userV1}, -1, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userV2}, -1, -1); err != nil {
		t.Fatal(err)
	}
	const team = `{"type":"record","name":"Team","fields":[{"name":"lead","type":"com.example.User"}]}`
	id1, err := cl.RegisterSchema(ctx, "teams-value", sr.Schema{Schema: team, References: []sr.SchemaReference{{Name: "com.example.User", Subject: "users-value", Version: 1}}}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := cl.RegisterSchema(ctx, "teams2-value", sr.Schema{Schema: team, References: []sr.SchemaReference{{Name: "com.example.User", Subject: "users-value", Version: 2}}}, -1, -1)
	if err != nil || id1 == id2 {
		t.Fatalf("same text, other reference: ids %d and %d, %v", id1, id2, err)
	}
	if _, err := cl.RegisterSchema(ctx, "teams-value", sr.Schema{Schema: team}, -1, -1); code(err) != registry.ErrInvalidSchema || !strings.Contains(err.Error(), "com.example.User") {
		t.Fatalf("missing reference: %v", err)
	}
}

// TestCanonicalForms: the same schema written differently gets the same id
// in every subject, for each type; a real difference gets a new id.
func TestCanonicalForms(t *testing.T) {
	e := open(t, t.TempDir())
	ctx := context.Background()
	cases := []struct {
		typ        sr.SchemaType
		a, b, diff string
	}{
		{sr.TypeAvro,
			`{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":1}]}`,
			"{ \"fields\" : [ {\"default\":1, \"type\":\"int\", \"name\":\"a\"} ],\n  \"name\":\"R\", \"type\":\"record\" }",
			`{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":2}]}`},
		{sr.TypeJSON,
			`{"type":"object","properties":{"a":{"type":"string","maxLength":5}}}`,
			"{\n  \"properties\": {\"a\": {\"maxLength\": 5, \"type\": \"string\"}},\n  \"type\": \"object\"\n}",
			`{"type":"object","properties":{"a":{"type":"string","maxLength":6}}}`},
		{sr.TypeProtobuf,
			"syntax = \"proto3\";\npackage p;\nmessage M { string a = 1; }\n",
			"// The M message.\nsyntax = \"proto3\";\n\npackage p;\n\nmessage M {\n  // a is a.\n  string a = 1;\n}\n",
			"syntax = \"proto3\";\npackage p;\nmessage M { string a = 2; }\n"},
	}
	for i, c := range cases {
		s1, s2, s3 := fmt.Sprintf("t%d-one", i), fmt.Sprintf("t%d-two", i), fmt.Sprintf("t%d-three", i)
		id1, err := cl(e).RegisterSchema(ctx, s1, sr.Schema{Schema: c.a, Type: c.typ}, -1, -1)
		if err != nil {
			t.Fatal(err)
		}
		id2, err := cl(e).RegisterSchema(ctx, s2, sr.Schema{Schema: c.b, Type: c.typ}, -1, -1)
		if err != nil || id2 != id1 {
			t.Fatalf("%s written differently: ids %d, %d (%v)", c.typ, id1, id2, err)
		}
		id3, err := cl(e).RegisterSchema(ctx, s3, sr.Schema{Schema: c.diff, Type: c.typ}, -1, -1)
		if err != nil || id3 == id1 {
			t.Fatalf("%s with a real change: ids %d, %d (%v)", c.typ, id1, id3, err)
		}
		// Lookup finds it under the other spelling too.
		if got, err := cl(e).LookupSchema(ctx, s1, sr.Schema{Schema: c.b, Type: c.typ}); err != nil || got.ID != id1 {
			t.Fatalf("%s lookup by the other spelling: %+v, %v", c.typ, got, err)
		}
	}
}

func cl(e *env) *sr.Client { return e.cl }
