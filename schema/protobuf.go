package schema

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ProtobufSchema is a parsed .proto file.
type ProtobufSchema struct {
	canon string
	File  protoreflect.FileDescriptor
}

// Type implements Schema.
func (*ProtobufSchema) Type() Type { return Protobuf }

// Canonical implements Schema: the file's descriptor without source info
// (comments and layout), deterministically encoded.
func (s *ProtobufSchema) Canonical() string { return s.canon }

func parseProtobuf(text string, deps []Dep) (*ProtobufSchema, error) {
	main := "schema.proto"
	srcs := map[string]string{}
	for _, d := range deps {
		srcs[d.Name] = d.Text
		if d.Name == main {
			main = "herald-schema.proto"
		}
	}
	srcs[main] = text
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			Accessor: protocompile.SourceAccessorFromMap(srcs),
		}),
		MaxParallelism: 1,
	}
	files, err := c.Compile(context.Background(), main)
	if err != nil {
		return nil, err
	}
	fd := files.FindFileByPath(main)
	fdp := protodesc.ToFileDescriptorProto(fd)
	fdp.SourceCodeInfo = nil
	fdp.Name = nil
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(fdp)
	if err != nil {
		return nil, err
	}
	return &ProtobufSchema{canon: base64.StdEncoding.EncodeToString(b), File: fd}, nil
}

// Message returns the message a Confluent message-index path names: the
// first index picks a top-level message, each further one a nested
// message of the previous.
func (s *ProtobufSchema) Message(indexes []int) (protoreflect.MessageDescriptor, error) {
	if len(indexes) == 0 {
		indexes = []int{0}
	}
	msgs := s.File.Messages()
	var md protoreflect.MessageDescriptor
	for i, x := range indexes {
		if x < 0 || x >= msgs.Len() {
			return nil, fmt.Errorf("message index %d at position %d: the schema has %d messages there", x, i, msgs.Len())
		}
		md = msgs.Get(x)
		msgs = md.Messages()
	}
	return md, nil
}

// ValidateMessage checks that data is a well-formed encoding of md: every
// known field has the wire type its declaration needs, nested messages are
// well-formed, proto3 strings are UTF-8, proto2 required fields are present.
// The error names the field.
func ValidateMessage(md protoreflect.MessageDescriptor, data []byte) error {
	return validateMsg(string(md.Name()), md, data, 0)
}

func validateMsg(path string, md protoreflect.MessageDescriptor, b []byte, depth int) error {
	if depth > 64 {
		return fmt.Errorf("%s: messages nested deeper than 64", path)
	}
	seen := map[protowire.Number]bool{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%s: bad field tag: %v", path, protowire.ParseError(n))
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		vn := protowire.ConsumeFieldValue(num, typ, b)
		if vn < 0 {
			name := fmt.Sprintf("#%d", num)
			if fd != nil {
				name = string(fd.Name())
			}
			return fmt.Errorf("%s.%s: bad value: %v", path, name, protowire.ParseError(vn))
		}
		v := b[:vn]
		b = b[vn:]
		if fd == nil {
			continue // unknown fields are kept, as protobuf does
		}
		seen[num] = true
		fp := path + "." + string(fd.Name())
		want := wireType(fd.Kind())
		if typ != want {
			if fd.IsList() && typ == protowire.BytesType && want != protowire.BytesType {
				continue // packed repeated scalars
			}
			return fmt.Errorf("%s: wire type %d, the field's %s needs %d", fp, typ, fd.Kind(), want)
		}
		if typ != protowire.BytesType {
			continue
		}
		body, _ := protowire.ConsumeBytes(v)
		switch fd.Kind() {
		case protoreflect.MessageKind:
			if err := validateMsg(fp, fd.Message(), body, depth+1); err != nil {
				return err
			}
		case protoreflect.StringKind:
			if fd.Syntax() == protoreflect.Proto3 && !utf8.Valid(body) {
				return fmt.Errorf("%s: string is not valid UTF-8", fp)
			}
		}
	}
	fields := md.Fields()
	for i := range fields.Len() {
		if f := fields.Get(i); f.Cardinality() == protoreflect.Required && !seen[f.Number()] {
			return fmt.Errorf("%s.%s: required field missing", path, f.Name())
		}
	}
	return nil
}

func wireType(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind,
		protoreflect.Uint32Kind, protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		return protowire.VarintType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	}
	return protowire.BytesType
}

// wireGroup: kinds in one group read each other's encodings (the
// protobuf guide's "Updating a message type").
func wireGroup(k protoreflect.Kind) string {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Uint32Kind, protoreflect.Int64Kind, protoreflect.Uint64Kind,
		protoreflect.BoolKind, protoreflect.EnumKind:
		return "varint"
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return "zigzag"
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
		return "fixed32"
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return "fixed64"
	case protoreflect.StringKind, protoreflect.BytesKind:
		return "bytes"
	}
	return k.String()
}

// protoCanRead compares the writer's and reader's messages by full name
// and fields by number.
func protoCanRead(reader, writer *ProtobufSchema) []string {
	var msgs []string
	fail := func(path, format string, args ...any) {
		msgs = append(msgs, path+": "+fmt.Sprintf(format, args...))
	}
	if reader.File.Package() != writer.File.Package() {
		fail("/", "PACKAGE_CHANGED: package %q became %q", writer.File.Package(), reader.File.Package())
	}
	var walk func(ws protoreflect.MessageDescriptors)
	walk = func(ws protoreflect.MessageDescriptors) {
		for i := range ws.Len() {
			wm := ws.Get(i)
			if wm.IsMapEntry() {
				continue
			}
			name := string(wm.FullName())
			rd, _ := findMessage(reader.File, wm.FullName())
			if rd == nil {
				fail(name, "MESSAGE_REMOVED: message %s is gone", name)
				continue
			}
			protoMessage(name, rd, wm, fail)
			walk(wm.Messages())
		}
	}
	walk(writer.File.Messages())
	return msgs
}

func findMessage(f protoreflect.FileDescriptor, name protoreflect.FullName) (protoreflect.MessageDescriptor, bool) {
	var find func(ms protoreflect.MessageDescriptors) protoreflect.MessageDescriptor
	find = func(ms protoreflect.MessageDescriptors) protoreflect.MessageDescriptor {
		for i := range ms.Len() {
			m := ms.Get(i)
			if m.FullName() == name {
				return m
			}
			if r := find(m.Messages()); r != nil {
				return r
			}
		}
		return nil
	}
	m := find(f.Messages())
	return m, m != nil
}

func inReserved(rr protoreflect.FieldRanges, n protoreflect.FieldNumber) bool { return rr.Has(n) }

func protoMessage(name string, rm, wm protoreflect.MessageDescriptor, fail func(string, string, ...any)) {
	wf, rf := wm.Fields(), rm.Fields()
	movedTo := map[protoreflect.FullName][]string{}
	for i := range wf.Len() {
		w := wf.Get(i)
		fp := name + "." + string(w.Name())
		r := rf.ByNumber(w.Number())
		if r == nil {
			switch {
			case w.Cardinality() == protoreflect.Required:
				fail(fp, "REQUIRED_FIELD_REMOVED: required field %d is gone", w.Number())
			case w.ContainingOneof() != nil && !w.ContainingOneof().IsSynthetic():
				fail(fp, "ONEOF_FIELD_REMOVED: field %d of oneof %s is gone", w.Number(), w.ContainingOneof().Name())
			}
			continue
		}
		if rm.ReservedNames().Has(w.Name()) && r.Name() != w.Name() {
			fail(fp, "RESERVED_FIELD_REUSED: the reader reserves the name %q", w.Name())
		}
		wk, rk := w.Kind(), r.Kind()
		wmsg := wk == protoreflect.MessageKind || wk == protoreflect.GroupKind
		rmsg := rk == protoreflect.MessageKind || rk == protoreflect.GroupKind
		switch {
		case wmsg != rmsg:
			fail(fp, "FIELD_KIND_CHANGED: field %d changed from %s to %s", w.Number(), kindName(w), kindName(r))
		case wmsg && w.Message().FullName() != r.Message().FullName():
			if !(w.IsMap() && r.IsMap()) {
				fail(fp, "FIELD_NAMED_TYPE_CHANGED: field %d changed from message %s to %s", w.Number(), w.Message().FullName(), r.Message().FullName())
			}
		case wk == protoreflect.EnumKind && rk == protoreflect.EnumKind && w.Enum().FullName() != r.Enum().FullName():
			fail(fp, "FIELD_NAMED_TYPE_CHANGED: field %d changed from enum %s to %s", w.Number(), w.Enum().FullName(), r.Enum().FullName())
		case !wmsg && wireGroup(wk) != wireGroup(rk):
			fail(fp, "FIELD_SCALAR_KIND_CHANGED: field %d changed from %s to %s, which do not share a wire encoding", w.Number(), wk, rk)
		}
		if w.IsMap() != r.IsMap() {
			fail(fp, "FIELD_KIND_CHANGED: field %d changed between map and non-map", w.Number())
		} else if w.IsList() != r.IsList() && !w.IsMap() {
			fail(fp, "FIELD_LABEL_CHANGED: field %d changed from %s to %s", w.Number(), w.Cardinality(), r.Cardinality())
		}
		if (w.Cardinality() == protoreflect.Required) != (r.Cardinality() == protoreflect.Required) && !w.IsList() && !r.IsList() {
			if r.Cardinality() == protoreflect.Required {
				fail(fp, "REQUIRED_FIELD_ADDED: field %d became required", w.Number())
			} else {
				fail(fp, "REQUIRED_FIELD_REMOVED: field %d is no longer required", w.Number())
			}
		}
		wo, ro := realOneof(w), realOneof(r)
		switch {
		case wo == nil && ro != nil:
			if wm.Oneofs().ByName(ro.Name()) != nil {
				fail(fp, "FIELD_MOVED_TO_EXISTING_ONEOF: field %d moved into the existing oneof %s", w.Number(), ro.Name())
			} else {
				movedTo[ro.FullName()] = append(movedTo[ro.FullName()], string(w.Name()))
			}
		case wo != nil && ro == nil:
			fail(fp, "ONEOF_FIELD_REMOVED: field %d left oneof %s", w.Number(), wo.Name())
		}
	}
	for o, fs := range movedTo {
		if len(fs) > 1 {
			slices.Sort(fs)
			fail(name, "MULTIPLE_FIELDS_MOVED_TO_ONEOF: fields %s moved into the new oneof %s", strings.Join(fs, ", "), o.Name())
		}
	}
	for i := range rf.Len() {
		r := rf.Get(i)
		fp := name + "." + string(r.Name())
		w := wf.ByNumber(r.Number())
		if w != nil {
			continue
		}
		if r.Cardinality() == protoreflect.Required {
			fail(fp, "REQUIRED_FIELD_ADDED: new required field %d", r.Number())
		}
		if inReserved(wm.ReservedRanges(), r.Number()) {
			fail(fp, "RESERVED_FIELD_REUSED: field number %d was reserved by the writer", r.Number())
		}
		if wm.ReservedNames().Has(r.Name()) {
			fail(fp, "RESERVED_FIELD_REUSED: field name %q was reserved by the writer", r.Name())
		}
	}
}

func realOneof(f protoreflect.FieldDescriptor) protoreflect.OneofDescriptor {
	if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() {
		return o
	}
	return nil
}

func kindName(f protoreflect.FieldDescriptor) string {
	switch f.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "message " + string(f.Message().FullName())
	case protoreflect.EnumKind:
		return "enum " + string(f.Enum().FullName())
	}
	return f.Kind().String()
}
