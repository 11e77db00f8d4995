package schema

import (
	"fmt"
	"strings"
)

// Level is a compatibility level, named as the Confluent API names it.
type Level string

// The compatibility levels. BACKWARD is the default: a new schema must read
// data written with the latest one (consumers upgrade first).
const (
	None               Level = "NONE"
	Backward           Level = "BACKWARD"
	BackwardTransitive Level = "BACKWARD_TRANSITIVE"
	Forward            Level = "FORWARD"
	ForwardTransitive  Level = "FORWARD_TRANSITIVE"
	Full               Level = "FULL"
	FullTransitive     Level = "FULL_TRANSITIVE"
)

// DefaultLevel is the level of a registry nobody configured.
const DefaultLevel = Backward

// ParseLevel parses a level name (case-insensitive).
func ParseLevel(s string) (Level, error) {
	switch l := Level(strings.ToUpper(s)); l {
	case None, Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive:
		return l, nil
	}
	return "", fmt.Errorf("compatibility level %q: want one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE", s)
}

// Transitive says whether the level checks against every earlier version
// rather than the latest only.
func (l Level) Transitive() bool { return strings.HasSuffix(string(l), "_TRANSITIVE") }

func (l Level) backward() bool {
	return strings.HasPrefix(string(l), "BACKWARD") || strings.HasPrefix(string(l), "FULL")
}
func (l Level) forward() bool {
	return strings.HasPrefix(string(l), "FORWARD") || strings.HasPrefix(string(l), "FULL")
}

// Versioned is an earlier schema of a subject, with its version number
// (used in messages).
type Versioned struct {
	Version int
	Schema  Schema
}

// Check returns why candidate may not follow previous (the subject's
// live versions, oldest first) under level; nil means it may. Non-transitive
// levels check against the last of previous only.
func Check(level Level, candidate Schema, previous []Versioned) []string {
	if level == None || len(previous) == 0 {
		return nil
	}
	if !level.Transitive() {
		previous = previous[len(previous)-1:]
	}
	var msgs []string
	for i := len(previous) - 1; i >= 0; i-- {
		p := previous[i]
		if level.backward() {
			for _, m := range CanRead(candidate, p.Schema) {
				msgs = append(msgs, fmt.Sprintf("BACKWARD against version %d: the new schema cannot read data written with it: %s", p.Version, m))
			}
		}
		if level.forward() {
			for _, m := range CanRead(p.Schema, candidate) {
				msgs = append(msgs, fmt.Sprintf("FORWARD against version %d: it cannot read data written with the new schema: %s", p.Version, m))
			}
		}
	}
	return msgs
}

// CanRead returns why data written with writer cannot be read with reader
// under the type's rules; nil means it can.
func CanRead(reader, writer Schema) []string {
	if reader.Type() != writer.Type() {
		return []string{fmt.Sprintf("TYPE_CHANGED: schema type %s cannot read %s", reader.Type(), writer.Type())}
	}
	switch r := reader.(type) {
	case *AvroSchema:
		return avroCanRead(r.Schema, writer.(*AvroSchema).Schema)
	case *JSONSchema:
		return jsonCanRead(r, writer.(*JSONSchema))
	case *ProtobufSchema:
		return protoCanRead(r, writer.(*ProtobufSchema))
	}
	return []string{fmt.Sprintf("unsupported schema type %s", reader.Type())}
}
