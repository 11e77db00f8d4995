package schema

import (
	"fmt"
	"strings"
	"testing"
)

// compatCase: under level, may next follow prev (oldest first)? want ""
// means compatible; otherwise a substring every failing run's messages
// must contain (the rule and the field).
type compatCase struct {
	name  string
	level Level
	prev  []string
	next  string
	want  string
}

func runCompat(t *testing.T, typ Type, cases []compatCase) {
	t.Helper()
	levels := map[Level]int{}
	for _, c := range cases {
		levels[c.level]++
		t.Run(fmt.Sprintf("%s/%s", c.level, c.name), func(t *testing.T) {
			var prev []Versioned
			for i, p := range c.prev {
				s, err := Parse(typ, p, nil)
				if err != nil {
					t.Fatalf("parse version %d: %v", i+1, err)
				}
				prev = append(prev, Versioned{Version: i + 1, Schema: s})
			}
			next, err := Parse(typ, c.next, nil)
			if err != nil {
				t.Fatalf("parse next: %v", err)
			}
			msgs := Check(c.level, next, prev)
			got := strings.Join(msgs, "\n")
			switch {
			case c.want == "" && len(msgs) > 0:
				t.Fatalf("want compatible, got:\n%s", got)
			case c.want != "" && len(msgs) == 0:
				t.Fatalf("want incompatible (%s), got compatible", c.want)
			case c.want != "":
				for _, w := range strings.Split(c.want, "|") {
					if !strings.Contains(got, w) {
						t.Fatalf("messages lack %q:\n%s", w, got)
					}
				}
			}
		})
	}
	for _, l := range []Level{None, Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive} {
		if levels[l] == 0 {
			t.Errorf("no %s case", l)
		}
	}
}

func rec(fields ...string) string {
	return `{"type":"record","name":"R","namespace":"t","fields":[` + strings.Join(fields, ",") + `]}`
}

func fld(name, typ string) string { return fmt.Sprintf(`{"name":%q,"type":%s}`, name, typ) }
func fldDef(name, typ, def string) string {
	return fmt.Sprintf(`{"name":%q,"type":%s,"default":%s}`, name, typ, def)
}

// TestAvroCompatibility follows the Avro specification's schema resolution
// rules (reader = the schema reading, writer = the one data was written
// with); BACKWARD makes the new schema the reader, FORWARD the old ones.
func TestAvroCompatibility(t *testing.T) {
	id := fld("id", `"long"`)
	enum := func(syms string, def string) string {
		s := `{"type":"enum","name":"Color","symbols":[` + syms + `]`
		if def != "" {
			s += `,"default":` + def
		}
		return s + "}"
	}
	cases := []compatCase{
		{"add field with default", Backward, []string{rec(id)}, rec(id, fldDef("name", `"string"`, `"x"`)), ""},
		{"add field without default", Backward, []string{rec(id)}, rec(id, fld("age", `"int"`)), "READER_FIELD_MISSING_DEFAULT_VALUE|/age"},
		{"remove field", Backward, []string{rec(id, fld("name", `"string"`))}, rec(id), ""},
		{"int to long", Backward, []string{rec(fld("n", `"int"`))}, rec(fld("n", `"long"`)), ""},
		{"long to int", Backward, []string{rec(fld("n", `"long"`))}, rec(fld("n", `"int"`)), "TYPE_MISMATCH|/n"},
		{"int to float", Backward, []string{rec(fld("n", `"int"`))}, rec(fld("n", `"float"`)), ""},
		{"int to double", Backward, []string{rec(fld("n", `"int"`))}, rec(fld("n", `"double"`)), ""},
		{"long to float", Backward, []string{rec(fld("n", `"long"`))}, rec(fld("n", `"float"`)), ""},
		{"long to double", Backward, []string{rec(fld("n", `"long"`))}, rec(fld("n", `"double"`)), ""},
		{"float to double", Backward, []string{rec(fld("n", `"float"`))}, rec(fld("n", `"double"`)), ""},
		{"double to float", Backward, []string{rec(fld("n", `"double"`))}, rec(fld("n", `"float"`)), "TYPE_MISMATCH|/n"},
		{"string to bytes", Backward, []string{rec(fld("s", `"string"`))}, rec(fld("s", `"bytes"`)), ""},
		{"bytes to string", Backward, []string{rec(fld("s", `"bytes"`))}, rec(fld("s", `"string"`)), ""},
		{"string to int", Backward, []string{rec(fld("s", `"string"`))}, rec(fld("s", `"int"`)), "TYPE_MISMATCH|/s"},
		{"boolean to int", Backward, []string{rec(fld("b", `"boolean"`))}, rec(fld("b", `"int"`)), "TYPE_MISMATCH|/b"},
		{"enum symbol added", Backward, []string{rec(fld("c", enum(`"RED"`, "")))}, rec(fld("c", enum(`"RED","BLUE"`, ""))), ""},
		{"enum symbol removed", Backward, []string{rec(fld("c", enum(`"RED","BLUE"`, "")))}, rec(fld("c", enum(`"RED"`, ""))), "MISSING_ENUM_SYMBOLS|BLUE|/c"},
		{"enum symbol removed with reader default", Backward, []string{rec(fld("c", enum(`"RED","BLUE"`, "")))}, rec(fld("c", enum(`"RED"`, `"RED"`))), ""},
		{"record renamed", Backward, []string{rec(id)}, strings.Replace(rec(id), `"name":"R"`, `"name":"S"`, 1), "NAME_MISMATCH"},
		{"record renamed with alias", Backward, []string{rec(id)}, strings.Replace(rec(id), `"name":"R"`, `"name":"S","aliases":["t.R"]`, 1), ""},
		{"field renamed with alias", Backward, []string{rec(fld("name", `"string"`))}, rec(`{"name":"full_name","type":"string","aliases":["name"]}`), ""},
		{"field renamed without alias", Backward, []string{rec(fld("name", `"string"`))}, rec(fld("full_name", `"string"`)), "READER_FIELD_MISSING_DEFAULT_VALUE|/full_name"},
		{"type to union containing it", Backward, []string{rec(fld("s", `"string"`))}, rec(fld("s", `["null","string"]`)), ""},
		{"union to one of its branches", Backward, []string{rec(fld("s", `["null","string"]`))}, rec(fld("s", `"string"`)), "TYPE_MISMATCH|/s|null"},
		{"union branch added", Backward, []string{rec(fld("u", `["null","int"]`))}, rec(fld("u", `["null","int","string"]`)), ""},
		{"union branch removed", Backward, []string{rec(fld("u", `["null","int","string"]`))}, rec(fld("u", `["null","int"]`)), "/u|string"},
		{"union branch promoted", Backward, []string{rec(fld("u", `["null","int"]`))}, rec(fld("u", `["null","long"]`)), ""},
		{"fixed size changed", Backward, []string{rec(fld("f", `{"type":"fixed","name":"F","size":16}`))}, rec(fld("f", `{"type":"fixed","name":"F","size":8}`)), "FIXED_SIZE_MISMATCH|/f"},
		{"fixed unchanged", Backward, []string{rec(fld("f", `{"type":"fixed","name":"F","size":16}`))}, rec(fld("f", `{"type":"fixed","name":"F","size":16}`)), ""},
		{"array items promoted", Backward, []string{rec(fld("a", `{"type":"array","items":"int"}`))}, rec(fld("a", `{"type":"array","items":"long"}`)), ""},
		{"array items retyped", Backward, []string{rec(fld("a", `{"type":"array","items":"string"}`))}, rec(fld("a", `{"type":"array","items":"int"}`)), "TYPE_MISMATCH|/a/items"},
		{"map values narrowed", Backward, []string{rec(fld("m", `{"type":"map","values":"long"}`))}, rec(fld("m", `{"type":"map","values":"int"}`)), "TYPE_MISMATCH|/m/values"},
		{"nested field without default", Backward,
			[]string{rec(fld("address", `{"type":"record","name":"A","fields":[{"name":"city","type":"string"}]}`))},
			rec(fld("address", `{"type":"record","name":"A","fields":[{"name":"city","type":"string"},{"name":"zip","type":"string"}]}`)),
			"READER_FIELD_MISSING_DEFAULT_VALUE|/address/zip"},
		{"recursive type unchanged", Backward,
			[]string{`{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}`},
			`{"type":"record","name":"Node","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","Node"]}]}`, ""},
		{"logical type on same base", Backward, []string{rec(fld("ts", `"long"`))}, rec(fld("ts", `{"type":"long","logicalType":"timestamp-millis"}`)), ""},
		{"record to primitive", Backward, []string{rec(id)}, `"string"`, "TYPE_MISMATCH"},

		{"add field without default", Forward, []string{rec(id)}, rec(id, fld("age", `"int"`)), ""},
		{"remove field without default", Forward, []string{rec(id, fld("name", `"string"`))}, rec(id), "READER_FIELD_MISSING_DEFAULT_VALUE|/name"},
		{"remove field with default", Forward, []string{rec(id, fldDef("name", `"string"`, `""`))}, rec(id), ""},
		{"enum symbol added", Forward, []string{rec(fld("c", enum(`"RED"`, "")))}, rec(fld("c", enum(`"RED","BLUE"`, ""))), "MISSING_ENUM_SYMBOLS|BLUE"},
		{"int to long", Forward, []string{rec(fld("n", `"int"`))}, rec(fld("n", `"long"`)), "TYPE_MISMATCH|/n"},

		{"add optional field", Full, []string{rec(id)}, rec(id, fldDef("email", `["null","string"]`, "null")), ""},
		{"add field without default", Full, []string{rec(id)}, rec(id, fld("age", `"int"`)), "BACKWARD|/age"},
		{"int to long", Full, []string{rec(fld("n", `"int"`))}, rec(fld("n", `"long"`)), "FORWARD|/n"},
		{"remove field with default", Full, []string{rec(id, fldDef("name", `"string"`, `""`))}, rec(id), ""},

		// x was an int in v1, dropped in v2, comes back as a string: fine
		// against v2, not against v1.
		{"field back with another type", Backward,
			[]string{rec(id, fld("x", `"int"`)), rec(id)}, rec(id, fldDef("x", `"string"`, `""`)), ""},
		{"field back with another type", BackwardTransitive,
			[]string{rec(id, fld("x", `"int"`)), rec(id)}, rec(id, fldDef("x", `"string"`, `""`)), "version 1|TYPE_MISMATCH|/x"},
		{"optional fields added in turn", BackwardTransitive,
			[]string{rec(id), rec(id, fldDef("a", `"int"`, "0"))}, rec(id, fldDef("a", `"int"`, "0"), fldDef("b", `"int"`, "0")), ""},
		// b got a default in v2 and is dropped in v3: v2 readers cope, v1
		// readers do not.
		{"field dropped after default added", Forward,
			[]string{rec(id, fld("b", `"int"`)), rec(id, fldDef("b", `"int"`, "0"))}, rec(id), ""},
		{"field dropped after default added", ForwardTransitive,
			[]string{rec(id, fld("b", `"int"`)), rec(id, fldDef("b", `"int"`, "0"))}, rec(id), "version 1|/b"},
		{"optional fields added in turn", FullTransitive,
			[]string{rec(id), rec(id, fldDef("a", `"int"`, "0"))}, rec(id, fldDef("a", `"int"`, "0"), fldDef("b", `"int"`, "0")), ""},
		{"field back with another type", FullTransitive,
			[]string{rec(id, fld("x", `"int"`)), rec(id)}, rec(id, fldDef("x", `"string"`, `""`)), "version 1|/x"},
		{"anything goes", None, []string{rec(id)}, `"string"`, ""},
		{"anything goes, many versions", None, []string{rec(id), `"int"`}, rec(fld("z", `"bytes"`)), ""},
	}
	if len(cases) < 40 {
		t.Fatalf("%d Avro cases, want at least 40", len(cases))
	}
	runCompat(t, Avro, cases)
}

func obj(props string, extra string) string {
	s := `{"type":"object","properties":{` + props + `}`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

// TestJSONSchemaCompatibility follows the content-model rules: the
// reader must accept every document the writer accepts. An open model
// (additionalProperties absent or true) may carry any property, a closed
// one (false) only those it lists.
func TestJSONSchemaCompatibility(t *testing.T) {
	a := `"a":{"type":"string"}`
	closed := `"additionalProperties":false`
	cases := []compatCase{
		{"property added to open model", Backward, []string{obj(a, "")}, obj(a+`,"b":{"type":"integer"}`, ""), "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL|/b"},
		{"property added to closed model", Backward, []string{obj(a, closed)}, obj(a+`,"b":{"type":"integer"}`, closed), ""},
		{"required property added", Backward, []string{obj(a+`,"b":{"type":"integer"}`, closed)}, obj(a+`,"b":{"type":"integer"}`, closed+`,"required":["b"]`), "REQUIRED_PROPERTY_ADDED|/b"},
		{"required property dropped", Backward, []string{obj(a, `"required":["a"]`)}, obj(a, ""), ""},
		{"property removed, open reader", Backward, []string{obj(a+`,"b":{"type":"integer"}`, "")}, obj(a, ""), ""},
		{"property removed, closed reader", Backward, []string{obj(a+`,"b":{"type":"integer"}`, closed)}, obj(a, closed), "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL|/b"},
		{"integer widened to number", Backward, []string{`{"type":"integer"}`}, `{"type":"number"}`, ""},
		{"number narrowed to integer", Backward, []string{`{"type":"number"}`}, `{"type":"integer"}`, "TYPE_NARROWED|number"},
		{"null allowed", Backward, []string{`{"type":"string"}`}, `{"type":["string","null"]}`, ""},
		{"null no longer allowed", Backward, []string{`{"type":["string","null"]}`}, `{"type":"string"}`, "TYPE_NARROWED|null"},
		{"enum value added", Backward, []string{`{"enum":["a","b"]}`}, `{"enum":["a","b","c"]}`, ""},
		{"enum value removed", Backward, []string{`{"enum":["a","b"]}`}, `{"enum":["a"]}`, `ENUM_ARRAY_NARROWED|"b"`},
		{"maximum raised", Backward, []string{`{"type":"integer","maximum":10}`}, `{"type":"integer","maximum":100}`, ""},
		{"maximum lowered", Backward, []string{`{"type":"integer","maximum":100}`}, `{"type":"integer","maximum":10}`, "MAXIMUM_DECREASED"},
		{"minimum added", Backward, []string{`{"type":"number"}`}, `{"type":"number","minimum":0}`, "MINIMUM_ADDED"},
		{"maxLength raised", Backward, []string{`{"type":"string","maxLength":10}`}, `{"type":"string","maxLength":20}`, ""},
		{"maxLength lowered", Backward, []string{`{"type":"string","maxLength":20}`}, `{"type":"string","maxLength":10}`, "MAXLENGTH_DECREASED"},
		{"minLength raised", Backward, []string{`{"type":"string","minLength":1}`}, `{"type":"string","minLength":5}`, "MINLENGTH_INCREASED"},
		{"pattern added", Backward, []string{`{"type":"string"}`}, `{"type":"string","pattern":"^[a-z]+$"}`, "PATTERN_CHANGED"},
		{"closed model opened", Backward, []string{obj(a, closed)}, obj(a, ""), ""},
		{"open model closed", Backward, []string{obj(a, "")}, obj(a, closed), "ADDITIONAL_PROPERTIES_NARROWED"},
		{"nested property narrowed", Backward,
			[]string{obj(`"address":{"type":"object","properties":{"zip":{"type":"string"}}}`, "")},
			obj(`"address":{"type":"object","properties":{"zip":{"type":"integer"}}}`, ""), "TYPE_NARROWED|/address/zip"},
		{"array items widened", Backward, []string{`{"type":"array","items":{"type":"integer"}}`}, `{"type":"array","items":{"type":"number"}}`, ""},
		{"array items narrowed", Backward, []string{`{"type":"array","items":{"type":"number"}}`}, `{"type":"array","items":{"type":"integer"}}`, "TYPE_NARROWED|/items"},
		{"maxItems lowered", Backward, []string{`{"type":"array","maxItems":10}`}, `{"type":"array","maxItems":5}`, "MAXITEMS_DECREASED"},
		{"narrowed through $ref", Backward,
			[]string{`{"$defs":{"n":{"type":"number"}},"type":"object","properties":{"x":{"$ref":"#/$defs/n"}}}`},
			`{"$defs":{"n":{"type":"integer"}},"type":"object","properties":{"x":{"$ref":"#/$defs/n"}}}`, "TYPE_NARROWED|/x"},
		{"description changed", Backward, []string{`{"type":"string","description":"a"}`}, `{"type":"string","description":"b"}`, ""},
		{"recursive schema narrowed", Backward,
			[]string{`{"type":"object","properties":{"v":{"type":"number"},"child":{"$ref":"#"}}}`},
			`{"type":"object","properties":{"v":{"type":"integer"},"child":{"$ref":"#"}}}`, "TYPE_NARROWED|/v"},
		{"recursive schema widened", Backward,
			[]string{`{"type":"object","properties":{"v":{"type":"integer"},"child":{"$ref":"#"}}}`},
			`{"type":"object","properties":{"v":{"type":"number"},"child":{"$ref":"#"}}}`, ""},
		{"anyOf alternative added", Backward, []string{`{"anyOf":[{"type":"string"},{"type":"integer"}]}`}, `{"anyOf":[{"type":"string"},{"type":"integer"},{"type":"null"}]}`, ""},
		{"anyOf alternative removed", Backward, []string{`{"anyOf":[{"type":"string"},{"type":"integer"}]}`}, `{"anyOf":[{"type":"string"}]}`, "anyOf/1"},

		{"required property added", Forward, []string{obj(a, "")}, obj(a+`,"b":{"type":"integer"}`, `"required":["b"]`), ""},
		{"enum value added", Forward, []string{`{"enum":["a","b"]}`}, `{"enum":["a","b","c"]}`, `ENUM_ARRAY_NARROWED|"c"`},
		{"maximum raised", Forward, []string{`{"type":"integer","maximum":10}`}, `{"type":"integer","maximum":100}`, "MAXIMUM_DECREASED"},

		{"property added to closed model", Full, []string{obj(a, closed)}, obj(a+`,"b":{"type":"integer"}`, closed), "FORWARD|PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL|/b"},
		{"description changed", Full, []string{`{"type":"string","description":"a"}`}, `{"type":"string","description":"b"}`, ""},
		{"type widened", Full, []string{`{"type":"integer"}`}, `{"type":"number"}`, "FORWARD|TYPE_NARROWED"},

		{"narrowed against an older version", Backward, []string{`{"type":"number"}`, `{"type":"integer"}`}, `{"type":"integer"}`, ""},
		{"narrowed against an older version", BackwardTransitive, []string{`{"type":"number"}`, `{"type":"integer"}`}, `{"type":"integer"}`, "version 1|TYPE_NARROWED"},
		{"widened against an older version", ForwardTransitive, []string{`{"type":"integer"}`, `{"type":"number"}`}, `{"type":"number"}`, "version 1|TYPE_NARROWED"},
		{"unchanged", FullTransitive, []string{`{"type":"integer"}`, `{"type":"integer"}`}, `{"type":"integer"}`, ""},
		{"any change", None, []string{`{"type":"integer"}`}, `{"type":"string"}`, ""},
	}
	if len(cases) < 25 {
		t.Fatalf("%d JSON Schema cases, want at least 25", len(cases))
	}
	runCompat(t, JSON, cases)
}

func proto3(body string) string { return "syntax = \"proto3\";\npackage p;\n" + body }
func proto2(body string) string { return "syntax = \"proto2\";\npackage p;\n" + body }

// TestProtobufCompatibility follows protobuf's wire rules: fields are
// matched by number; kinds must share a wire encoding; messages may not
// disappear; oneofs and required fields constrain moves.
func TestProtobufCompatibility(t *testing.T) {
	m := func(fields string) string { return proto3("message M {\n" + fields + "\n}\n") }
	cases := []compatCase{
		{"field added", Backward, []string{m("string a = 1;")}, m("string a = 1; int32 b = 2;"), ""},
		{"field removed", Backward, []string{m("string a = 1; int32 b = 2;")}, m("string a = 1;"), ""},
		{"field renamed", Backward, []string{m("string a = 1;")}, m("string name = 1;"), ""},
		{"int32 to int64", Backward, []string{m("int32 n = 1;")}, m("int64 n = 1;"), ""},
		{"int32 to string", Backward, []string{m("int32 n = 1;")}, m("string n = 1;"), "FIELD_SCALAR_KIND_CHANGED|p.M.n"},
		{"sint32 to int32", Backward, []string{m("sint32 n = 1;")}, m("int32 n = 1;"), "FIELD_SCALAR_KIND_CHANGED"},
		{"fixed32 to sfixed32", Backward, []string{m("fixed32 n = 1;")}, m("sfixed32 n = 1;"), ""},
		{"string to bytes", Backward, []string{m("string s = 1;")}, m("bytes s = 1;"), ""},
		{"double to float", Backward, []string{m("double d = 1;")}, m("float d = 1;"), "FIELD_SCALAR_KIND_CHANGED"},
		{"scalar to message", Backward, []string{proto3("message N {}\nmessage M { string a = 1; }")}, proto3("message N {}\nmessage M { N a = 1; }"), "FIELD_KIND_CHANGED|p.M.a"},
		{"message type changed", Backward, []string{proto3("message N {}\nmessage O {}\nmessage M { N a = 1; }")}, proto3("message N {}\nmessage O {}\nmessage M { O a = 1; }"), "FIELD_NAMED_TYPE_CHANGED"},
		{"message removed", Backward, []string{proto3("message M {}\nmessage N {}")}, proto3("message M {}"), "MESSAGE_REMOVED|p.N"},
		{"message added", Backward, []string{proto3("message M {}")}, proto3("message M {}\nmessage N {}"), ""},
		{"repeated to singular", Backward, []string{m("repeated string a = 1;")}, m("string a = 1;"), "FIELD_LABEL_CHANGED"},
		{"oneof field removed", Backward, []string{m("oneof o { string a = 1; int32 b = 2; }")}, m("oneof o { string a = 1; }"), "ONEOF_FIELD_REMOVED|p.M.b"},
		{"one field moved into a new oneof", Backward, []string{m("string a = 1;")}, m("oneof o { string a = 1; }"), ""},
		{"two fields moved into a new oneof", Backward, []string{m("string a = 1; int32 b = 2;")}, m("oneof o { string a = 1; int32 b = 2; }"), "MULTIPLE_FIELDS_MOVED_TO_ONEOF"},
		{"field moved into an existing oneof", Backward, []string{m("string a = 1; oneof o { int32 b = 2; }")}, m("oneof o { string a = 1; int32 b = 2; }"), "FIELD_MOVED_TO_EXISTING_ONEOF|p.M.a"},
		{"reserved number reused", Backward, []string{m("string a = 1; reserved 2;")}, m("string a = 1; int64 b = 2;"), "RESERVED_FIELD_REUSED|p.M.b"},
		{"package changed", Backward, []string{m("string a = 1;")}, strings.Replace(m("string a = 1;"), "package p;", "package q;", 1), "PACKAGE_CHANGED"},
		{"enum to int32", Backward, []string{proto3("enum E { E0 = 0; }\nmessage M { E e = 1; }")}, proto3("enum E { E0 = 0; }\nmessage M { int32 e = 1; }"), ""},
		{"enum type changed", Backward, []string{proto3("enum E { E0 = 0; }\nenum F { F0 = 0; }\nmessage M { E e = 1; }")}, proto3("enum E { E0 = 0; }\nenum F { F0 = 0; }\nmessage M { F e = 1; }"), "FIELD_NAMED_TYPE_CHANGED"},
		{"nested message field retyped", Backward, []string{m("message In { int32 x = 1; } In in = 1;")}, m("message In { string x = 1; } In in = 1;"), "p.M.In.x"},
		{"required field added", Backward, []string{proto2("message M { optional string a = 1; }")}, proto2("message M { optional string a = 1; required int32 b = 2; }"), "REQUIRED_FIELD_ADDED|p.M.b"},
		{"required field removed", Backward, []string{proto2("message M { required string a = 1; }")}, proto2("message M { }"), "REQUIRED_FIELD_REMOVED|p.M.a"},

		{"field added", Forward, []string{m("string a = 1;")}, m("string a = 1; int32 b = 2;"), ""},
		{"required field added", Forward, []string{proto2("message M { optional string a = 1; }")}, proto2("message M { optional string a = 1; required int32 b = 2; }"), "REQUIRED_FIELD_REMOVED|p.M.b"},
		{"message removed", Forward, []string{proto3("message M {}\nmessage N {}")}, proto3("message M {}"), ""},

		{"field added", Full, []string{m("string a = 1;")}, m("string a = 1; int32 b = 2;"), ""},
		{"int32 to string", Full, []string{m("int32 n = 1;")}, m("string n = 1;"), "BACKWARD|FORWARD|FIELD_SCALAR_KIND_CHANGED"},

		// Field 2 was a string in v1, dropped in v2, comes back as int32.
		{"number reused with another kind", Backward, []string{m("string a = 1; string b = 2;"), m("string a = 1;")}, m("string a = 1; int32 c = 2;"), ""},
		{"number reused with another kind", BackwardTransitive, []string{m("string a = 1; string b = 2;"), m("string a = 1;")}, m("string a = 1; int32 c = 2;"), "version 1|FIELD_SCALAR_KIND_CHANGED"},
		{"number reused with another kind", ForwardTransitive, []string{m("string a = 1; string b = 2;"), m("string a = 1;")}, m("string a = 1; int32 c = 2;"), "version 1|FIELD_SCALAR_KIND_CHANGED"},
		{"number reused with another kind", FullTransitive, []string{m("string a = 1; string b = 2;"), m("string a = 1;")}, m("string a = 1; int32 c = 2;"), "version 1"},
		{"fields added in turn", FullTransitive, []string{m("string a = 1;"), m("string a = 1; int32 b = 2;")}, m("string a = 1; int32 b = 2; bool c = 3;"), ""},
		{"anything goes", None, []string{m("int32 n = 1;")}, m("string n = 1;"), ""},
	}
	if len(cases) < 20 {
		t.Fatalf("%d Protobuf cases, want at least 20", len(cases))
	}
	runCompat(t, Protobuf, cases)
}
