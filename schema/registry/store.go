package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/schema"
)

// The _schemas topic: one partition, cleanup.policy=compact, records whose
// key and value are JSON objects. The key says what the record is about;
// a null value (tombstone) removes it. Frozen formats (magic 1):
//
//	key {"keytype":"SCHEMA_ID","id":N,"magic":1}
//	    value {"id":N,"schemaType":"AVRO","schema":"...","references":[...]}
//	    A schema's text, written once when the id is first assigned and
//	    never removed, so ids are never reused, even after deletes.
//	key {"keytype":"SUBJECT_VERSION","subject":S,"version":V,"magic":1}
//	    value {"id":N,"deleted":false}   (deleted: soft-deleted)
//	    tombstone: the version was permanently deleted.
//	key {"keytype":"CONFIG","subject":S,"magic":1}   (S "" is the global one)
//	    value {"compatibilityLevel":"FULL"}; tombstone: back to the default.
//	key {"keytype":"MODE","subject":S,"magic":1}
//	    value {"mode":"READONLY"}; tombstone: back to the default.
//
// Readers skip keys of an unknown keytype (a newer writer's), and refuse a
// magic they do not know.
const (
	keySchemaID       = "SCHEMA_ID"
	keySubjectVersion = "SUBJECT_VERSION"
	keyConfig         = "CONFIG"
	keyMode           = "MODE"
	recordMagic       = 1
	// maxRecordBytes bounds one record's key or value on read.
	maxRecordBytes = 16 << 20
)

// recKey is a record key. Field order is fixed (struct order), so equal
// keys are equal bytes and compaction keeps the newest.
type recKey struct {
	KeyType string  `json:"keytype"`
	Subject *string `json:"subject,omitempty"`
	Version int     `json:"version,omitempty"`
	ID      int     `json:"id,omitempty"`
	Magic   int     `json:"magic"`
}

type schemaValue struct {
	ID         int                `json:"id"`
	SchemaType schema.Type        `json:"schemaType"`
	Schema     string             `json:"schema"`
	References []schema.Reference `json:"references,omitempty"`
}

type versionValue struct {
	ID      int  `json:"id"`
	Deleted bool `json:"deleted"`
}

type configValue struct {
	CompatibilityLevel schema.Level `json:"compatibilityLevel"`
}

type modeValue struct {
	Mode Mode `json:"mode"`
}

// record is a decoded _schemas record: exactly one of the pointers is set
// for a live record; all are nil for a tombstone (and for keys to skip).
type record struct {
	key     recKey
	schema  *schemaValue
	version *versionValue
	config  *configValue
	mode    *modeValue
	skip    bool // an unknown keytype
}

// ErrCorruptRecord: a _schemas record that cannot be decoded.
var ErrCorruptRecord = errors.New("corrupt _schemas record")

func encodeKey(k recKey) []byte {
	k.Magic = recordMagic
	b, _ := json.Marshal(k)
	return b
}

func strp(s string) *string { return &s }

func decodeRecord(key, value []byte) (record, error) {
	var r record
	if len(key) > maxRecordBytes || len(value) > maxRecordBytes {
		return r, fmt.Errorf("%w: over %d bytes", ErrCorruptRecord, maxRecordBytes)
	}
	if err := strictUnmarshal(key, &r.key); err != nil {
		return r, fmt.Errorf("%w: key: %v", ErrCorruptRecord, err)
	}
	if r.key.Magic != recordMagic {
		return r, fmt.Errorf("%w: key magic %d, want %d", ErrCorruptRecord, r.key.Magic, recordMagic)
	}
	subj := func() error {
		if r.key.Subject == nil {
			return fmt.Errorf("%w: %s key without subject", ErrCorruptRecord, r.key.KeyType)
		}
		return nil
	}
	var into any
	switch r.key.KeyType {
	case keySchemaID:
		if r.key.ID <= 0 {
			return r, fmt.Errorf("%w: schema id %d", ErrCorruptRecord, r.key.ID)
		}
		if value == nil {
			return r, fmt.Errorf("%w: schema id %d has a tombstone", ErrCorruptRecord, r.key.ID)
		}
		r.schema = new(schemaValue)
		into = r.schema
	case keySubjectVersion:
		if err := subj(); err != nil {
			return r, err
		}
		if r.key.Version <= 0 {
			return r, fmt.Errorf("%w: version %d", ErrCorruptRecord, r.key.Version)
		}
		if value != nil {
			r.version = new(versionValue)
			into = r.version
		}
	case keyConfig:
		if err := subj(); err != nil {
			return r, err
		}
		if value != nil {
			r.config = new(configValue)
			into = r.config
		}
	case keyMode:
		if err := subj(); err != nil {
			return r, err
		}
		if value != nil {
			r.mode = new(modeValue)
			into = r.mode
		}
	default:
		r.skip = true
		return r, nil
	}
	if into == nil {
		return r, nil
	}
	if err := strictUnmarshal(value, into); err != nil {
		return r, fmt.Errorf("%w: %s value: %v", ErrCorruptRecord, r.key.KeyType, err)
	}
	switch {
	case r.schema != nil:
		if r.schema.ID != r.key.ID {
			return r, fmt.Errorf("%w: schema value id %d under key id %d", ErrCorruptRecord, r.schema.ID, r.key.ID)
		}
		if _, err := schema.ParseType(string(r.schema.SchemaType)); err != nil {
			return r, fmt.Errorf("%w: %v", ErrCorruptRecord, err)
		}
	case r.version != nil:
		if r.version.ID <= 0 {
			return r, fmt.Errorf("%w: version value id %d", ErrCorruptRecord, r.version.ID)
		}
	case r.config != nil:
		if _, err := schema.ParseLevel(string(r.config.CompatibilityLevel)); err != nil {
			return r, fmt.Errorf("%w: %v", ErrCorruptRecord, err)
		}
	case r.mode != nil:
		if _, err := ParseMode(string(r.mode.Mode)); err != nil {
			return r, fmt.Errorf("%w: %v", ErrCorruptRecord, err)
		}
	}
	return r, nil
}

// strictUnmarshal decodes one JSON value, allowing unknown fields (a newer
// writer may add some) but nothing after it.
func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}
