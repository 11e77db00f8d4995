package schema

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestJSONCompatBudget: a reader whose anyOf alternatives share $defs
// unfolds to 2^24 trials; the check gives up as incompatible, quickly.
func TestJSONCompatBudget(t *testing.T) {
	var defs []string
	const depth = 24
	for i := range depth {
		defs = append(defs, fmt.Sprintf(`"l%d":{"anyOf":[{"$ref":"#/$defs/l%d"},{"$ref":"#/$defs/l%d"}]}`, i, i+1, i+1))
	}
	defs = append(defs, fmt.Sprintf(`"l%d":{"type":"string"}`, depth))
	reader, err := Parse(JSON, `{"$defs":{`+strings.Join(defs, ",")+`},"$ref":"#/$defs/l0"}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	writer, err := Parse(JSON, `{"type":"integer"}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	msgs := CanRead(reader, writer)
	if took := time.Since(start); took > 30*time.Second || len(msgs) == 0 || !strings.Contains(strings.Join(msgs, "\n"), "TOO_COMPLEX") {
		t.Fatalf("took %v: %v", took, msgs)
	}
}

// TestAvroCompatBudget: unions of records nested 24 deep, failing at the
// bottom, make 2^24 branch trials; the check gives up as incompatible.
func TestAvroCompatBudget(t *testing.T) {
	build := func(leaf string) string {
		const depth = 24
		s := fmt.Sprintf(`{"type":"record","name":"A%d","fields":[{"name":"x","type":%q}]}, {"type":"record","name":"B%d","fields":[{"name":"x","type":%q}]}`, depth, leaf, depth, leaf)
		for i := depth - 1; i >= 0; i-- {
			s = fmt.Sprintf(`{"type":"record","name":"A%d","fields":[{"name":"f","type":[%s]}]}, {"type":"record","name":"B%d","fields":[{"name":"f","type":["A%d","B%d"]}]}`, i, s, i, i+1, i+1)
		}
		return `{"type":"record","name":"Root","fields":[{"name":"f","type":[` + s + `]}]}`
	}
	reader, err := Parse(Avro, build("int"), nil)
	if err != nil {
		t.Fatal(err)
	}
	writer, err := Parse(Avro, build("string"), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	msgs := CanRead(reader, writer)
	if took := time.Since(start); took > 30*time.Second || !strings.Contains(strings.Join(msgs, "\n"), "TOO_COMPLEX") {
		t.Fatalf("took %v: %d messages, %v", took, len(msgs), msgs[:min(3, len(msgs))])
	}
}
