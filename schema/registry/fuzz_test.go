package registry

import (
	"bytes"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary keys and values to the _schemas record
// decoder: never a panic; what decodes is applied without a panic and
// re-encodes to a key that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"keytype":"SCHEMA_ID","id":1,"magic":1}`), []byte(`{"id":1,"schemaType":"AVRO","schema":"\"string\""}`), false)
	f.Add([]byte(`{"keytype":"SUBJECT_VERSION","subject":"s","version":1,"magic":1}`), []byte(`{"id":1,"deleted":true}`), false)
	f.Add([]byte(`{"keytype":"SUBJECT_VERSION","subject":"s","version":1,"magic":1}`), []byte(nil), true)
	f.Add([]byte(`{"keytype":"CONFIG","subject":"","magic":1}`), []byte(`{"compatibilityLevel":"FULL"}`), false)
	f.Add([]byte(`{"keytype":"MODE","subject":"x","magic":1}`), []byte(`{"mode":"IMPORT"}`), false)
	f.Add([]byte(`{"keytype":"NOOP","magic":1}`), []byte(`{}`), false)
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		}
		d, err := decodeRecord(key, value)
		if err != nil {
			return
		}
		st := newState()
		_ = st.apply(d)
		if d.skip {
			return
		}
		k := encodeKey(d.key)
		d2, err := decodeRecord(k, value)
		if err != nil {
			t.Fatalf("re-encoded key %s does not decode: %v", k, err)
		}
		if !bytes.Equal(encodeKey(d2.key), k) {
			t.Fatalf("key %s decodes differently", k)
		}
	})
}
