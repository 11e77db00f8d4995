package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Type is a schema language, named as the Confluent API names it.
type Type string

// The schema types Herald supports.
const (
	Avro     Type = "AVRO"
	JSON     Type = "JSON"
	Protobuf Type = "PROTOBUF"
)

// Types lists the supported types, as GET /schemas/types answers.
var Types = []Type{JSON, Protobuf, Avro}

// ParseType maps a schemaType field ("" means AVRO) to a Type.
func ParseType(s string) (Type, error) {
	switch t := Type(strings.ToUpper(s)); t {
	case "":
		return Avro, nil
	case Avro, JSON, Protobuf:
		return t, nil
	}
	return "", fmt.Errorf("schemaType %q: want AVRO, JSON or PROTOBUF", s)
}

// Reference names another registered schema that a schema uses: for Avro
// the full name of a type it defines, for JSON Schema the URL its $ref
// uses, for Protobuf the import path.
type Reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// Dep is a referenced schema's text under the name a schema refers to it
// by. The registry resolves references transitively and passes them in
// dependency order: a Dep's own dependencies come before it.
type Dep struct {
	Name string
	Text string
}

// ErrInvalid wraps every parse error (a syntax error carries its position).
var ErrInvalid = errors.New("invalid schema")

// Schema is a parsed schema. Implementations are immutable and safe for
// concurrent use.
type Schema interface {
	// Type is the schema's language.
	Type() Type
	// Canonical is the schema's normal form: two texts that differ only in
	// formatting, key order or comments have the same one. Defaults,
	// aliases and constraints are kept, since they change what the schema
	// accepts. The registry gives equal canonical forms (with equal
	// references) the same id.
	Canonical() string
}

// Parse parses text as a schema of type t whose references resolve to deps.
func Parse(t Type, text string, deps []Dep) (Schema, error) {
	var (
		s   Schema
		err error
	)
	switch t {
	case Avro, "":
		s, err = parseAvro(text, deps)
	case JSON:
		s, err = parseJSONSchema(text, deps)
	case Protobuf:
		s, err = parseProtobuf(text, deps)
	default:
		return nil, fmt.Errorf("%w: unknown schemaType %q", ErrInvalid, t)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return s, nil
}

// Fingerprint identifies a schema with its references: the registry's
// dedup key, so the same schema gets the same id in every subject.
func Fingerprint(s Schema, refs []Reference) string {
	h := sha256.New()
	h.Write([]byte(s.Type()))
	h.Write([]byte{0})
	h.Write([]byte(s.Canonical()))
	for _, r := range refs {
		fmt.Fprintf(h, "\x00%s\x00%s\x00%d", r.Name, r.Subject, r.Version)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// jsonSyntax turns a JSON syntax error into one with line and column.
func jsonSyntax(text string, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(text, int(se.Offset))
		return fmt.Errorf("line %d column %d: %v", line, col, se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		line, col := lineCol(text, len(text))
		return fmt.Errorf("line %d column %d: unexpected end of JSON", line, col)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		line, col := lineCol(text, int(te.Offset))
		return fmt.Errorf("line %d column %d: %v", line, col, te)
	}
	return err
}

func lineCol(text string, off int) (int, int) {
	off = min(max(off, 0), len(text))
	line := 1 + strings.Count(text[:off], "\n")
	col := off - strings.LastIndexByte(text[:off], '\n')
	return line, col
}

// normalJSON re-encodes a JSON document with sorted keys and no
// whitespace (encoding/json sorts map keys), keeping numbers as written.
func normalJSON(text string) (string, any, error) {
	d := json.NewDecoder(strings.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", nil, jsonSyntax(text, err)
	}
	if d.More() {
		return "", nil, fmt.Errorf("data after the JSON document at byte %d", d.InputOffset())
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", nil, err
	}
	return string(b), v, nil
}
