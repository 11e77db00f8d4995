package registry

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/schema"
)

// Validator returns the broker hook that checks produced records against
// this registry (broker.Config.Validator). Lookups are served from memory.
func (r *Registry) Validator() broker.Validator { return validator{r} }

type validator struct{ r *Registry }

// dataschemaHeader is the CloudEvents Kafka binary binding's attribute.
const dataschemaHeader = "ce_dataschema"

// ValidateRecord implements broker.Validator. A key or value must be in
// the Confluent wire format (magic 0, schema id, Protobuf message indexes)
// with a registered id, unless the value is a CloudEvent whose dataschema
// attribute names a registered schema (".../schemas/ids/ID" or
// ".../subjects/SUBJECT/versions/VERSION"). The schema must belong to the
// subject the topic's naming strategy gives; the payload must match it.
// A null key or value (a tombstone) passes.
func (v validator) ValidateRecord(topic string, rule broker.SchemaRule, rec *batch.Record) error {
	if rule.Key && rec.Key != nil {
		if err := v.check(topic, rule.Strategy, true, rec.Key, nil); err != nil {
			return fmt.Errorf("key: %w", err)
		}
	}
	if rule.Value && rec.Value != nil {
		var ds []byte
		for _, h := range rec.Headers {
			if string(h.Key) == dataschemaHeader {
				ds = h.Value
			}
		}
		if err := v.check(topic, rule.Strategy, false, rec.Value, ds); err != nil {
			return fmt.Errorf("value: %w", err)
		}
	}
	return nil
}

// errNoSchema: a record that names no registered schema.
var errNoSchema = errors.New("no registered schema")

func (v validator) check(topic, strategy string, isKey bool, data, dataschema []byte) error {
	r := v.r
	var (
		id      int
		payload []byte
		err     error
	)
	if dataschema != nil && (len(data) == 0 || data[0] != schema.WireMagic) {
		if id, err = r.idFromDataschema(string(dataschema)); err != nil {
			return fmt.Errorf("header %s: %w", dataschemaHeader, err)
		}
		payload = data
	} else if id, payload, err = schema.ParseHeader(data); err != nil {
		return err
	}
	r.mu.RLock()
	rec, ok := r.st.ids[id]
	r.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: schema id %d is not registered", errNoSchema, id)
	}
	if rec.parsed == nil {
		return fmt.Errorf("schema id %d does not parse", id)
	}
	var recordNm string
	switch s := rec.parsed.(type) {
	case *schema.AvroSchema:
		if n, ok := s.Schema.(interface{ FullName() string }); ok {
			recordNm = n.FullName()
		}
		if err := s.ValidateBinary(payload); err != nil {
			return fmt.Errorf("schema %d: %w", id, err)
		}
	case *schema.JSONSchema:
		recordNm = s.Title()
		if err := s.ValidateJSON(payload); err != nil {
			return fmt.Errorf("schema %d: %w", id, err)
		}
	case *schema.ProtobufSchema:
		idx := []int{0}
		if dataschema == nil || (len(data) > 0 && data[0] == schema.WireMagic) {
			if idx, payload, err = schema.ParseIndexes(payload); err != nil {
				return err
			}
		}
		m, err := s.Message(idx)
		if err != nil {
			return fmt.Errorf("schema %d: %w", id, err)
		}
		recordNm = string(m.FullName())
		if err := schema.ValidateMessage(m, payload); err != nil {
			return fmt.Errorf("schema %d: field %w", id, err)
		}
	}
	// The subject, built without allocating (map lookups by string(bytes)
	// do not copy).
	var buf [256]byte
	subject := buf[:0]
	switch strategy {
	case "record":
		subject = append(subject, recordNm...)
	case "topic-record":
		subject = append(append(append(subject, topic...), '-'), recordNm...)
	default:
		subject = append(subject, topic...)
		if isKey {
			subject = append(subject, "-key"...)
		} else {
			subject = append(subject, "-value"...)
		}
	}
	if !r.inSubject(subject, id) {
		return fmt.Errorf("schema id %d is not a version of subject %q (%s naming strategy)", id, string(subject), strategyName(strategy))
	}
	return nil
}

func strategyName(s string) string {
	switch s {
	case "record":
		return "RecordNameStrategy"
	case "topic-record":
		return "TopicRecordNameStrategy"
	}
	return "TopicNameStrategy"
}

// inSubject: a live version of subject has the id.
func (r *Registry) inSubject(subject []byte, id int) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, v := range r.st.subjects[string(subject)] {
		if v.id == id && !v.deleted {
			return true
		}
	}
	return false
}

// idFromDataschema maps a CloudEvents dataschema URI to a schema id.
func (r *Registry) idFromDataschema(ds string) (int, error) {
	u, err := url.Parse(ds)
	if err != nil {
		return 0, fmt.Errorf("%q is not a URI: %v", ds, err)
	}
	p := strings.Split(strings.Trim(u.Path, "/"), "/")
	for i := range p {
		switch {
		case p[i] == "ids" && i+1 < len(p) && i > 0 && p[i-1] == "schemas":
			id, err := strconv.Atoi(p[i+1])
			if err != nil || id <= 0 {
				return 0, fmt.Errorf("%q: bad schema id %q", ds, p[i+1])
			}
			return id, nil
		case p[i] == "subjects" && i+3 < len(p) && p[i+2] == "versions":
			subject, _ := url.PathUnescape(p[i+1])
			ver := -1
			if p[i+3] != "latest" {
				if ver, err = strconv.Atoi(p[i+3]); err != nil || ver <= 0 {
					return 0, fmt.Errorf("%q: bad version %q", ds, p[i+3])
				}
			}
			r.mu.RLock()
			v := r.st.version(subject, ver, false)
			r.mu.RUnlock()
			if v == nil {
				return 0, fmt.Errorf("%w: %q: subject %q has no version %s", errNoSchema, ds, subject, p[i+3])
			}
			return v.id, nil
		}
	}
	return 0, fmt.Errorf("%q names no registered schema (want .../schemas/ids/ID or .../subjects/SUBJECT/versions/VERSION)", ds)
}

// Hook is a broker.Validator to give broker.Config before the registry
// exists (the registry's topic lives in that broker): it refuses records
// of validated topics until Set.
type Hook struct{ p atomic.Pointer[Registry] }

// Set makes the hook validate with r.
func (h *Hook) Set(r *Registry) { h.p.Store(r) }

// ValidateRecord implements broker.Validator.
func (h *Hook) ValidateRecord(topic string, rule broker.SchemaRule, rec *batch.Record) error {
	r := h.p.Load()
	if r == nil {
		return errors.New("the schema registry is not started yet")
	}
	return validator{r}.ValidateRecord(topic, rule, rec)
}
