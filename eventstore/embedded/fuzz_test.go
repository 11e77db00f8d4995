package embedded

import (
	"bytes"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary values to the on-disk record decoder: it
// must never panic, and whatever it accepts must survive a re-encode.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeEvent(nil, 0, 1, "id", "Type", nil, []byte("{}")))
	f.Add(encodeEvent(nil, 1<<40, -5, "", "", []byte("m"), nil))
	f.Add(encodeMetadata(nil, 3, 1e9, 7))
	f.Add(encodeSoftDelete(nil, 4))
	f.Add(encodeTombstone(nil))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2, 1})
	f.Add([]byte{1, 9})
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := decodeRecord(v, false)
		if err != nil {
			return
		}
		var re []byte
		switch r.kind {
		case kindEvent:
			re = encodeEvent(nil, r.version, r.timeNano, r.id, r.typ, r.metadata, r.data)
		case kindMetadata:
			re = encodeMetadata(nil, r.maxCount, r.maxAgeNano, r.truncateBefore)
		case kindSoftDel:
			re = encodeSoftDelete(nil, r.truncateBefore)
		case kindTombstone:
			re = encodeTombstone(nil)
		default:
			t.Fatalf("accepted unknown kind %d", r.kind)
		}
		r2, err := decodeRecord(re, true)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if r2.kind != r.kind || r2.version != r.version || r2.timeNano != r.timeNano || r2.id != r.id || r2.typ != r.typ ||
			!bytes.Equal(r2.data, r.data) || !bytes.Equal(r2.metadata, r.metadata) || r2.maxCount != r.maxCount ||
			r2.maxAgeNano != r.maxAgeNano || r2.truncateBefore != r.truncateBefore {
			t.Fatalf("round trip changed the record: %+v vs %+v", r, r2)
		}
	})
}

// FuzzDecodeKeyed feeds arbitrary keys and values to the whole-record
// decoder (key parsing, scavenge markers, key/value agreement).
func FuzzDecodeKeyed(f *testing.F) {
	f.Add(eventKey(nil, "s", 3), encodeEvent(nil, 3, 1, "id", "T", nil, nil), false)
	f.Add(eventKey(nil, "s", 3), []byte(nil), true)
	f.Add(controlKey("s", keyMetadata), encodeMetadata(nil, 1, 2, 3), false)
	f.Add(controlKey("s", keySoftDel), encodeSoftDelete(nil, 4), false)
	f.Add(controlKey("s", keyTombstone), encodeTombstone(nil), false)
	f.Add([]byte("s\x00e"), []byte{1, 1}, false)
	f.Add([]byte("nosep"), []byte{1, 4}, false)
	f.Fuzz(func(t *testing.T, key, value []byte, null bool) {
		if null {
			value = nil
		}
		stream, r, err := decodeKeyed(key, value, false)
		if err != nil {
			return
		}
		if bytes.IndexByte(stream, 0) >= 0 {
			t.Fatalf("stream %q holds a NUL", stream)
		}
		switch r.kind {
		case kindScavenged:
			if value != nil {
				t.Fatal("a marker with a value")
			}
			if !bytes.Equal(eventKey(nil, string(stream), r.version), key) {
				t.Fatal("marker key does not round-trip")
			}
		case kindEvent:
			if !bytes.Equal(eventKey(nil, string(stream), r.version), key) {
				t.Fatal("event key does not round-trip")
			}
		default:
			if !bytes.Equal(controlKey(string(stream), keyKindOf(r.kind)), key) {
				t.Fatal("control key does not round-trip")
			}
		}
	})
}
