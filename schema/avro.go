package schema

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
)

// AvroSchema is a parsed Avro schema.
type AvroSchema struct {
	canon  string
	Schema avro.Schema // for encoding and decoding with hamba/avro

	once sync.Once
	prog *avroNode // compiled for ValidateBinary
}

// Type implements Schema.
func (*AvroSchema) Type() Type { return Avro }

// Canonical implements Schema.
func (s *AvroSchema) Canonical() string { return s.canon }

func parseAvro(text string, deps []Dep) (*AvroSchema, error) {
	canon, _, err := normalJSON(text)
	if err != nil {
		return nil, err
	}
	cache := &avro.SchemaCache{}
	for _, d := range deps {
		if _, err := avro.ParseWithCache(d.Text, "", cache); err != nil {
			return nil, fmt.Errorf("reference %q: %v", d.Name, err)
		}
	}
	s, err := avro.ParseWithCache(text, "", cache)
	if err != nil {
		return nil, avroPosition(text, err)
	}
	return &AvroSchema{canon: canon, Schema: s}, nil
}

// avroCanRead reports why data written with writer cannot be read with
// reader under the Avro specification's schema resolution rules; nil means
// it can. Each message names the path of the field and the rule broken.
func avroCanRead(reader, writer avro.Schema) []string {
	budget := maxAvroComparisons
	c := avroChecker{seen: map[[2]string]bool{}, budget: &budget}
	c.check("", reader, writer)
	if budget < 0 {
		return append(c.msgs, fmt.Sprintf("/: TOO_COMPLEX: comparing the schemas needs over %d steps; treated as incompatible", maxAvroComparisons))
	}
	return c.msgs
}

// maxAvroComparisons bounds one check: trying union branches nests.
const maxAvroComparisons = 100_000

type avroChecker struct {
	msgs   []string
	seen   map[[2]string]bool // named pairs being checked (recursive types)
	budget *int               // steps left, shared with trials
}

func (c *avroChecker) fail(path, format string, args ...any) {
	if path == "" {
		path = "/"
	}
	c.msgs = append(c.msgs, fmt.Sprintf("%s: ", path)+fmt.Sprintf(format, args...))
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

// avroPromotes lists the writer types each reader type accepts beyond its
// own (the specification's promotions).
var avroPromotes = map[avro.Type][]avro.Type{
	avro.Long:   {avro.Int},
	avro.Float:  {avro.Int, avro.Long},
	avro.Double: {avro.Int, avro.Long, avro.Float},
	avro.String: {avro.Bytes},
	avro.Bytes:  {avro.String},
}

func typeName(s avro.Schema) string {
	if n, ok := s.(avro.NamedSchema); ok {
		return string(s.Type()) + " " + n.FullName()
	}
	return string(s.Type())
}

// namesMatch: the reader's full name or one of its aliases is the writer's
// full name (unqualified names compared too, as Avro's resolution allows).
func namesMatch(reader, writer avro.NamedSchema) bool {
	if reader.FullName() == writer.FullName() || reader.Name() == writer.Name() {
		return true
	}
	for _, a := range reader.Aliases() {
		if a == writer.FullName() || a == writer.Name() {
			return true
		}
	}
	return false
}

// matches says whether writer could be resolved to reader at all (the
// check union branch selection uses), without recording messages.
func (c *avroChecker) matches(reader, writer avro.Schema) bool {
	sub := avroChecker{seen: c.seen, budget: c.budget}
	sub.check("", reader, writer)
	return len(sub.msgs) == 0
}

func (c *avroChecker) check(path string, reader, writer avro.Schema) {
	if *c.budget--; *c.budget < 0 {
		return
	}
	reader, writer = deref(reader), deref(writer)
	if wu, ok := writer.(*avro.UnionSchema); ok {
		// Every branch the writer may write must be readable.
		for _, b := range wu.Types() {
			c.check(path, reader, b)
		}
		return
	}
	if ru, ok := reader.(*avro.UnionSchema); ok {
		for _, b := range ru.Types() {
			if c.matches(b, writer) {
				return
			}
		}
		// Report the closest branch's reasons when there is one of the
		// same kind, else the missing branch.
		for _, b := range ru.Types() {
			if deref(b).Type() == writer.Type() {
				c.check(path, b, writer)
				return
			}
		}
		c.fail(path, "TYPE_MISMATCH: the reader's union has no branch for the writer's %s", typeName(writer))
		return
	}
	if reader.Type() != writer.Type() {
		if slices.Contains(avroPromotes[reader.Type()], writer.Type()) {
			return
		}
		c.fail(path, "TYPE_MISMATCH: reader type %s cannot read writer type %s", typeName(reader), typeName(writer))
		return
	}
	switch r := reader.(type) {
	case *avro.RecordSchema:
		w := writer.(*avro.RecordSchema)
		if !namesMatch(r, w) {
			c.fail(path, "NAME_MISMATCH: reader record %s does not match writer record %s (no alias)", r.FullName(), w.FullName())
			return
		}
		key := [2]string{r.FullName(), w.FullName()}
		if c.seen[key] {
			return // recursive type: already being checked
		}
		c.seen[key] = true
		defer delete(c.seen, key)
		for _, rf := range r.Fields() {
			fp := path + "/" + rf.Name()
			wf := writerField(w, rf)
			if wf == nil {
				if !rf.HasDefault() {
					c.fail(fp, "READER_FIELD_MISSING_DEFAULT_VALUE: field %q of record %s is not in the writer's schema and has no default", rf.Name(), r.FullName())
				}
				continue
			}
			c.check(fp, rf.Type(), wf.Type())
		}
	case *avro.EnumSchema:
		w := writer.(*avro.EnumSchema)
		if !namesMatch(r, w) {
			c.fail(path, "NAME_MISMATCH: reader enum %s does not match writer enum %s (no alias)", r.FullName(), w.FullName())
			return
		}
		if r.HasDefault() {
			return
		}
		var missing []string
		for _, s := range w.Symbols() {
			if !slices.Contains(r.Symbols(), s) {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			c.fail(path, "MISSING_ENUM_SYMBOLS: reader enum %s lacks writer symbols [%s] and has no default", r.FullName(), strings.Join(missing, ", "))
		}
	case *avro.FixedSchema:
		w := writer.(*avro.FixedSchema)
		if !namesMatch(r, w) {
			c.fail(path, "NAME_MISMATCH: reader fixed %s does not match writer fixed %s (no alias)", r.FullName(), w.FullName())
			return
		}
		if r.Size() != w.Size() {
			c.fail(path, "FIXED_SIZE_MISMATCH: reader fixed %s has size %d, writer's has %d", r.FullName(), r.Size(), w.Size())
		}
	case *avro.ArraySchema:
		c.check(path+"/items", r.Items(), writer.(*avro.ArraySchema).Items())
	case *avro.MapSchema:
		c.check(path+"/values", r.Values(), writer.(*avro.MapSchema).Values())
	}
}

// writerField finds the writer's field for a reader field, by name or by
// one of the reader field's aliases.
func writerField(w *avro.RecordSchema, rf *avro.Field) *avro.Field {
	for _, wf := range w.Fields() {
		if wf.Name() == rf.Name() {
			return wf
		}
	}
	for _, a := range rf.Aliases() {
		for _, wf := range w.Fields() {
			if wf.Name() == a {
				return wf
			}
		}
	}
	return nil
}

// avroPosition adds where in text the name an Avro parse error ends with
// first appears ("avro: unknown type: nope" gets the line and column of
// "nope"): the parser reports names, not positions.
func avroPosition(text string, err error) error {
	msg := err.Error()
	i := strings.LastIndex(msg, ": ")
	if i < 0 {
		return err
	}
	name := strings.Trim(msg[i+2:], `"' `)
	if name == "" {
		return err
	}
	at := strings.Index(text, `"`+name+`"`)
	if at < 0 {
		return err
	}
	line, col := lineCol(text, at)
	return fmt.Errorf("line %d column %d: %v", line, col, err)
}
