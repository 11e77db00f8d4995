package schema

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestInferJSONSchema(t *testing.T) {
	samples := []string{
		`{"id":"5f0c6a8e-1b2c-4d3e-8f90-a1b2c3d4e5f6","at":"2026-11-26T07:00:00Z","amount":12,"tags":["a"],"buyer":{"email":"a@example.com","vip":true}}`,
		`{"id":"0b9e7a1c-2d3e-4f50-9a8b-7c6d5e4f3a2b","at":"2026-11-26T07:01:00.5+01:00","amount":3.5,"tags":[],"buyer":{"email":"b@example.org"},"note":null}`,
		`{"id":"1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f","at":"2026-11-26T08:00:00Z","amount":7,"tags":["b","c"],"buyer":{"email":"c@example.net","vip":false},"note":"gift"}`,
	}
	var in Inferrer
	for _, s := range samples {
		if !in.Add([]byte(s)) {
			t.Fatalf("sample not taken: %s", s)
		}
	}
	if in.Add([]byte("not json")) || in.NotJSON != 1 || in.Samples != 3 {
		t.Fatalf("NotJSON %d, Samples %d", in.NotJSON, in.Samples)
	}
	got := in.Schema("Order")
	b, _ := json.Marshal(got)
	var doc map[string]any
	json.Unmarshal(b, &doc)
	want := map[string]any{
		"$schema":  "https://json-schema.org/draft/2020-12/schema",
		"title":    "Order",
		"type":     "object",
		"required": []any{"amount", "at", "buyer", "id", "tags"},
		"properties": map[string]any{
			"id":     map[string]any{"type": "string", "format": "uuid"},
			"at":     map[string]any{"type": "string", "format": "date-time"},
			"amount": map[string]any{"type": "number"},
			"tags":   map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			"note":   map[string]any{"type": []any{"null", "string"}},
			"buyer": map[string]any{"type": "object", "required": []any{"email"}, "properties": map[string]any{
				"email": map[string]any{"type": "string", "format": "email"},
				"vip":   map[string]any{"type": "boolean"},
			}},
		},
	}
	if !reflect.DeepEqual(doc, want) {
		w, _ := json.MarshalIndent(want, "", " ")
		g, _ := json.MarshalIndent(doc, "", " ")
		t.Fatalf("inferred\n%s\nwant\n%s", g, w)
	}
	// Every sample is valid under what was inferred from it.
	s, err := Parse(JSON, string(b), nil)
	if err != nil {
		t.Fatalf("inferred schema does not parse: %v", err)
	}
	for i, smp := range samples {
		if err := s.(*JSONSchema).ValidateJSON([]byte(smp)); err != nil {
			t.Fatalf("sample %d invalid under the inferred schema: %v", i, err)
		}
	}
	// A document that breaks it is refused, naming the field.
	if err := s.(*JSONSchema).ValidateJSON([]byte(`{"id":"5f0c6a8e-1b2c-4d3e-8f90-a1b2c3d4e5f6","at":"2026-11-26T07:00:00Z","amount":1,"tags":[],"buyer":{}}`)); err == nil || err.Error() != "field /buyer: missing property 'email'" {
		t.Fatalf("a document without buyer.email: %v", err)
	}
	// Formats are asserted, not just annotations.
	if err := s.(*JSONSchema).ValidateJSON([]byte(`{"id":"5f0c6a8e-1b2c-4d3e-8f90-a1b2c3d4e5f6","at":"yesterday","amount":1,"tags":[],"buyer":{"email":"a@example.com"}}`)); err == nil || !strings.HasPrefix(err.Error(), "field /at:") {
		t.Fatalf("a document with a bad date-time: %v", err)
	}
}
