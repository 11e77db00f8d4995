// Package typed makes Go structs versioned, schema'd events without code
// generation. A Codec derives a JSON Schema or an Avro schema from a struct
// type (its json tags name the fields), registers it under a subject at
// start-up (so an incompatible change fails the deploy, as `herald schema
// check` would in CI), and encodes values in the Confluent wire format.
// Decoding reads any registered version of the subject: data written with
// an older schema is decoded with that schema and passed through the
// Upcasters registered for the versions in between, so readers always see
// the current shape.
//
// Derivation rules (both formats): exported fields with their json names
// (json:"-" skipped); pointers are optional (JSON: not required; Avro: a
// ["null", T] union with default null); other fields are required. JSON
// Schema models are closed (additionalProperties false), so adding an
// optional field is backward compatible and removing one is not, the
// evolution the registry's BACKWARD level enforces. Avro: bool→boolean,
// int8/16/32, uint8/16→int, int, int64, uint32→long, float32→float,
// float64→double, string, []byte→bytes, time.Time→long timestamp-millis,
// slices→array, map[string]T→map, structs→records named after the Go type.
package typed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/heraldhq/herald/schema"
)

// Format is the encoding a Codec uses.
type Format int

// Formats.
const (
	JSON Format = iota
	Avro
)

// Upcaster turns a decoded event of version From into the shape of version
// From+1 (a generic map: JSON objects, or Avro records as maps).
type Upcaster struct {
	From int
	Fn   func(map[string]any) (map[string]any, error)
}

// Codec encodes and decodes T as the latest version of a subject. Safe for
// concurrent use.
type Codec[T any] struct {
	cl        *sr.Client
	subject   string
	format    Format
	id        int
	version   int
	text      string
	avro      avro.Schema
	api       avro.API
	upcasters map[int]Upcaster

	mu      sync.Mutex
	writers map[int]writer // by schema id
}

type writer struct {
	version int
	avro    avro.Schema // nil for JSON
}

// ErrIncompatible: the struct's schema is refused by the subject's
// compatibility level.
var ErrIncompatible = errors.New("schema incompatible with the subject's earlier versions")

// New derives T's schema, registers it under subject (a no-op when the
// latest version already has it) and returns a Codec for it. Upcasters
// must cover every version from the oldest one data may have up to the
// current one (From = 1, 2, ...); a missing step fails Decode.
func New[T any](ctx context.Context, cl *sr.Client, subject string, format Format, upcasters ...Upcaster) (*Codec[T], error) {
	c := &Codec[T]{cl: cl, subject: subject, format: format, upcasters: map[int]Upcaster{}, writers: map[int]writer{}}
	c.api = avro.Config{TagKey: "json"}.Freeze()
	for _, u := range upcasters {
		if u.From <= 0 || u.Fn == nil {
			return nil, fmt.Errorf("typed: upcaster from version %d: want From >= 1 and a function", u.From)
		}
		c.upcasters[u.From] = u
	}
	s, err := SchemaOf[T](subject, format)
	if err != nil {
		return nil, err
	}
	if format == Avro {
		if c.avro, err = avro.Parse(s.Schema); err != nil {
			return nil, fmt.Errorf("typed: derived Avro schema does not parse: %w", err)
		}
	}
	c.text = s.Schema
	ss, err := cl.CreateSchema(ctx, subject, s)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.ErrorCode == 409 {
			return nil, fmt.Errorf("typed: %s: %w: %s", subject, ErrIncompatible, re.Message)
		}
		return nil, fmt.Errorf("typed: register %s: %w", subject, err)
	}
	c.id, c.version = ss.ID, ss.Version
	c.writers[c.id] = writer{version: c.version, avro: c.avro}
	return c, nil
}

// SchemaOf returns T's derived schema in format, as New would register it.
func SchemaOf[T any](subject string, format Format) (sr.Schema, error) {
	var zero T
	t := reflect.TypeOf(zero)
	switch format {
	case JSON:
		doc, err := JSONSchemaFor(t)
		if err != nil {
			return sr.Schema{}, err
		}
		b, _ := json.Marshal(doc)
		return sr.Schema{Schema: string(b), Type: sr.TypeJSON}, nil
	case Avro:
		text, err := AvroSchemaFor(t, avroName(subject))
		if err != nil {
			return sr.Schema{}, err
		}
		return sr.Schema{Schema: text, Type: sr.TypeAvro}, nil
	}
	return sr.Schema{}, fmt.Errorf("typed: unknown format %d", format)
}

// Check tells whether T's schema may be registered under subject (against
// what registering would check), without registering it: for a test or a
// CI step before a deploy (herald schema check does the same for a file).
// It returns the rules broken; none means compatible.
func Check[T any](ctx context.Context, cl *sr.Client, subject string, format Format) ([]string, error) {
	s, err := SchemaOf[T](subject, format)
	if err != nil {
		return nil, err
	}
	res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), subject, -2, s)
	if err != nil {
		return nil, fmt.Errorf("typed: check %s: %w", subject, err)
	}
	if res.Is {
		return nil, nil
	}
	if len(res.Messages) == 0 {
		return []string{"incompatible (the registry gave no reasons)"}, nil
	}
	return res.Messages, nil
}

// ID and Version are the schema id and subject version T is written with.
func (c *Codec[T]) ID() int      { return c.id }
func (c *Codec[T]) Version() int { return c.version }

// Schema is T's derived schema text.
func (c *Codec[T]) Schema() string { return c.text }

// Encode writes v in the Confluent wire format under the current version.
func (c *Codec[T]) Encode(v T) ([]byte, error) {
	b := schema.AppendHeader(make([]byte, 0, 64), c.id, nil)
	switch c.format {
	case Avro:
		p, err := c.api.Marshal(c.avro, v)
		if err != nil {
			return nil, fmt.Errorf("typed: encode %s: %w", c.subject, err)
		}
		return append(b, p...), nil
	default:
		p, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("typed: encode %s: %w", c.subject, err)
		}
		return append(b, p...), nil
	}
}

// Decode reads data written with any version of the subject into T,
// upcasting older versions.
func (c *Codec[T]) Decode(ctx context.Context, data []byte) (T, error) {
	var out T
	id, payload, err := schema.ParseHeader(data)
	if err != nil {
		return out, fmt.Errorf("typed: %w", err)
	}
	if id == c.id {
		return out, c.unmarshal(payload, c.avro, &out)
	}
	w, err := c.writer(ctx, id)
	if err != nil {
		return out, err
	}
	var m map[string]any
	if err := c.unmarshal(payload, w.avro, &m); err != nil {
		return out, err
	}
	for v := w.version; v < c.version; v++ {
		u, ok := c.upcasters[v]
		if !ok {
			continue // the versions agree on this step: nothing to change
		}
		if m, err = u.Fn(m); err != nil {
			return out, fmt.Errorf("typed: upcast %s from version %d: %w", c.subject, v, err)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return out, fmt.Errorf("typed: upcast %s: %w", c.subject, err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("typed: %s version %d upcast to %d does not fit %T: %w", c.subject, w.version, c.version, out, err)
	}
	return out, nil
}

func (c *Codec[T]) unmarshal(p []byte, as avro.Schema, into any) error {
	if c.format == Avro {
		if err := c.api.Unmarshal(as, p, into); err != nil {
			return fmt.Errorf("typed: decode %s: %w", c.subject, err)
		}
		if m, ok := into.(*map[string]any); ok {
			*m = avroToJSON(*m).(map[string]any)
		}
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber() // int64s survive the trip through a map
	if err := d.Decode(into); err != nil {
		return fmt.Errorf("typed: decode %s: %w", c.subject, err)
	}
	return nil
}

// avroToJSON makes generic Avro values JSON-shaped (timestamps as RFC
// 3339 text, as encoding/json writes time.Time).
func avroToJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = avroToJSON(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = avroToJSON(e)
		}
		return x
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	return v
}

// writer finds the version and schema of an id in the subject.
func (c *Codec[T]) writer(ctx context.Context, id int) (writer, error) {
	c.mu.Lock()
	w, ok := c.writers[id]
	c.mu.Unlock()
	if ok {
		return w, nil
	}
	vs, err := c.cl.SchemaVersionsByID(sr.WithParams(ctx, sr.ShowDeleted), id)
	if err != nil {
		return w, fmt.Errorf("typed: schema id %d: %w", id, err)
	}
	w.version = -1
	for _, v := range vs {
		if v.Subject == c.subject {
			w.version = v.Version
		}
	}
	if w.version < 0 {
		return w, fmt.Errorf("typed: schema id %d is not a version of %s", id, c.subject)
	}
	if c.format == Avro {
		s, err := c.cl.SchemaByID(ctx, id)
		if err != nil {
			return w, fmt.Errorf("typed: schema id %d: %w", id, err)
		}
		if w.avro, err = avro.Parse(s.Schema); err != nil {
			return w, fmt.Errorf("typed: schema id %d: %w", id, err)
		}
	}
	c.mu.Lock()
	c.writers[id] = w
	c.mu.Unlock()
	return w, nil
}

type field struct {
	name     string
	t        reflect.Type
	optional bool
}

func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		omit := false
		if tag, ok := f.Tag.Lookup("json"); ok {
			n, opts, _ := strings.Cut(tag, ",")
			if n == "-" {
				continue
			}
			if n != "" {
				name = n
			}
			omit = slices.Contains(strings.Split(opts, ","), "omitempty")
		}
		out = append(out, field{name: name, t: f.Type, optional: f.Type.Kind() == reflect.Pointer || omit})
	}
	return out
}

var timeType = reflect.TypeOf(time.Time{})

// JSONSchemaFor derives a JSON Schema (draft 2020-12) from a struct type.
func JSONSchemaFor(t reflect.Type) (map[string]any, error) {
	s, err := jsonSchema(t, 0)
	if err != nil {
		return nil, err
	}
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["title"] = t.Name()
	return s, nil
}

func jsonSchema(t reflect.Type, depth int) (map[string]any, error) {
	if depth > 32 {
		return nil, fmt.Errorf("typed: %s nests deeper than 32 (recursive types are not supported)", t)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return map[string]any{"type": "string", "format": "date-time"}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}, nil
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}, nil
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}, nil
		}
		items, err := jsonSchema(t.Elem(), depth+1)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("typed: %s: map keys must be strings", t)
		}
		vals, err := jsonSchema(t.Elem(), depth+1)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "object", "additionalProperties": vals}, nil
	case reflect.Struct:
		props := map[string]any{}
		var req []string
		for _, f := range fieldsOf(t) {
			p, err := jsonSchema(f.t, depth+1)
			if err != nil {
				return nil, err
			}
			if f.t.Kind() == reflect.Pointer {
				p["type"] = []any{p["type"], "null"}
			}
			props[f.name] = p
			if !f.optional {
				req = append(req, f.name)
			}
		}
		s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(req) > 0 {
			s["required"] = req
		}
		return s, nil
	}
	return nil, fmt.Errorf("typed: %s: unsupported kind %s", t, t.Kind())
}

// AvroSchemaFor derives an Avro schema from a struct type. The top-level
// record is named name (the Go type's name if empty); New names it after
// the subject, so renaming the Go type between versions keeps the schemas
// compatible.
func AvroSchemaFor(t reflect.Type, name string) (string, error) {
	s, err := avroSchema(t, map[reflect.Type]bool{}, 0)
	if err != nil {
		return "", err
	}
	if m, ok := s.(map[string]any); ok && name != "" {
		m["name"] = name
	}
	b, err := json.Marshal(s)
	return string(b), err
}

func avroSchema(t reflect.Type, named map[reflect.Type]bool, depth int) (any, error) {
	if depth > 32 {
		return nil, fmt.Errorf("typed: %s nests deeper than 32", t)
	}
	if t.Kind() == reflect.Pointer {
		inner, err := avroSchema(t.Elem(), named, depth+1)
		if err != nil {
			return nil, err
		}
		return []any{"null", inner}, nil
	}
	if t == timeType {
		return map[string]any{"type": "long", "logicalType": "timestamp-millis"}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean", nil
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint8, reflect.Uint16:
		return "int", nil
	case reflect.Int, reflect.Int64, reflect.Uint32:
		return "long", nil
	case reflect.Float32:
		return "float", nil
	case reflect.Float64:
		return "double", nil
	case reflect.String:
		return "string", nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "bytes", nil
		}
		items, err := avroSchema(t.Elem(), named, depth+1)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("typed: %s: map keys must be strings", t)
		}
		vals, err := avroSchema(t.Elem(), named, depth+1)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "map", "values": vals}, nil
	case reflect.Struct:
		name := t.Name()
		if name == "" {
			return nil, fmt.Errorf("typed: anonymous struct %s: Avro records need a name", t)
		}
		if named[t] {
			return name, nil // defined already: refer to it by name
		}
		named[t] = true
		var fields []any
		for _, f := range fieldsOf(t) {
			ft, err := avroSchema(f.t, named, depth+1)
			if err != nil {
				return nil, err
			}
			fd := map[string]any{"name": f.name, "type": ft}
			if f.t.Kind() == reflect.Pointer {
				fd["default"] = nil
			}
			fields = append(fields, fd)
		}
		if fields == nil {
			fields = []any{}
		}
		return map[string]any{"type": "record", "name": name, "fields": fields}, nil
	}
	return nil, fmt.Errorf("typed: %s: unsupported kind %s for Avro", t, t.Kind())
}

// avroName makes an Avro name from a subject: letters, digits and _.
func avroName(subject string) string {
	b := []byte(subject)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] >= '0' && b[0] <= '9' {
		b = append([]byte{'_'}, b...)
	}
	return string(b)
}
