package embedded

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Record kinds in the value's second byte. Frozen.
const (
	kindEvent     byte = 1 // an event of the stream named by the key
	kindMetadata  byte = 2 // the stream's metadata, replacing the previous
	kindSoftDel   byte = 3 // soft delete: versions below truncateBefore hidden
	kindTombstone byte = 4 // hard delete
)

// kindScavenged is not a value format: it stands for a scavenge marker, a
// record with the key of an event and a null value. The commit log's
// compaction drops the event (the marker is newer under the same key) and
// later the marker itself.
const kindScavenged byte = 0

// Key suffixes after the stream name and a NUL (stream names never hold
// one). Frozen.
const (
	keyEvent     byte = 'e' // followed by the version, u64 big-endian
	keyMetadata  byte = 'm'
	keySoftDel   byte = 's'
	keyTombstone byte = 't'
)

// eventKey is the key of version v of stream (and of its scavenge marker):
// unique per event, so compaction keeps every event until a marker names it.
func eventKey(dst []byte, stream string, v int64) []byte {
	dst = append(dst, stream...)
	dst = append(dst, 0, keyEvent)
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

// controlKey is the key of a metadata, soft-delete or tombstone record:
// one per stream and kind, so compaction keeps only the newest.
func controlKey(stream string, kind byte) []byte {
	return append(append([]byte(stream), 0), kind)
}

// parseKey splits a key into the stream and, for event keys, the version.
func parseKey(k []byte) (stream []byte, kind byte, version int64, err error) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || i+1 >= len(k) {
		return nil, 0, 0, fmt.Errorf("record key %q: no stream separator", k)
	}
	stream, kind = k[:i], k[i+1]
	switch kind {
	case keyEvent:
		if len(k) != i+2+8 {
			return nil, 0, 0, fmt.Errorf("record key of %q: event key of %d bytes", stream, len(k))
		}
		version = int64(binary.BigEndian.Uint64(k[i+2:]))
		if version < 0 {
			return nil, 0, 0, fmt.Errorf("record key of %q: negative version", stream)
		}
	case keyMetadata, keySoftDel, keyTombstone:
		if len(k) != i+2 {
			return nil, 0, 0, fmt.Errorf("record key of %q: %d bytes after the kind", stream, len(k)-i-2)
		}
	default:
		return nil, 0, 0, fmt.Errorf("record key of %q: unknown kind %q", stream, kind)
	}
	return stream, kind, version, nil
}

// keyKindOf is the key kind a value kind must be stored under.
func keyKindOf(kind byte) byte {
	switch kind {
	case kindEvent:
		return keyEvent
	case kindMetadata:
		return keyMetadata
	case kindSoftDel:
		return keySoftDel
	case kindTombstone:
		return keyTombstone
	}
	return 0
}

// decodeKeyed decodes a whole record: key and value (null for a scavenge
// marker), checking that they agree.
func decodeKeyed(key, value []byte, copyBytes bool) (stream []byte, r record, err error) {
	stream, kk, v, err := parseKey(key)
	if err != nil {
		return nil, r, err
	}
	if value == nil {
		if kk != keyEvent {
			return nil, r, fmt.Errorf("record of %q: null value under a non-event key", stream)
		}
		return stream, record{kind: kindScavenged, version: v}, nil
	}
	if r, err = decodeRecord(value, copyBytes); err != nil {
		return nil, r, err
	}
	if keyKindOf(r.kind) != kk || (kk == keyEvent && r.version != v) {
		return nil, r, fmt.Errorf("record of %q: key (kind %q, version %d) does not match the value (kind %d, version %d)", stream, kk, v, r.kind, r.version)
	}
	return stream, r, nil
}

// recordVersion is the value format written; readableVersions lists what
// this build reads.
const recordVersion byte = 1

// record is one decoded value of the global log.
type record struct {
	kind byte
	// kindEvent
	version  int64
	timeNano int64
	id, typ  string
	metadata []byte
	data     []byte
	// kindMetadata
	maxCount, maxAgeNano, truncateBefore int64
	// kindSoftDel uses truncateBefore
}

func appendUvarBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendUvarString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendI64(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }

// encodeEvent appends an event's value.
func encodeEvent(b []byte, version, timeNano int64, id, typ string, metadata, data []byte) []byte {
	b = append(b, recordVersion, kindEvent)
	b = appendI64(b, version)
	b = appendI64(b, timeNano)
	b = appendUvarString(b, id)
	b = appendUvarString(b, typ)
	b = appendUvarBytes(b, metadata)
	return appendUvarBytes(b, data)
}

func encodeMetadata(b []byte, maxCount, maxAgeNano, truncateBefore int64) []byte {
	b = append(b, recordVersion, kindMetadata)
	b = appendI64(b, maxCount)
	b = appendI64(b, maxAgeNano)
	return appendI64(b, truncateBefore)
}

func encodeSoftDelete(b []byte, truncateBefore int64) []byte {
	b = append(b, recordVersion, kindSoftDel)
	return appendI64(b, truncateBefore)
}

func encodeTombstone(b []byte) []byte { return append(b, recordVersion, kindTombstone) }

// maxStringField bounds an id or type on decode (limits are lower on write).
const maxStringField = 4096

// decodeRecord decodes a value of the global log. It never panics; bytes
// that do not form exactly one valid record are an error naming the field.
// With copyBytes false, metadata and data alias v.
func decodeRecord(v []byte, copyBytes bool) (record, error) {
	var r record
	if len(v) < 2 {
		return r, fmt.Errorf("record: %d bytes, too short for a header", len(v))
	}
	if v[0] != recordVersion {
		return r, fmt.Errorf("record: format version %d, this build reads %d", v[0], recordVersion)
	}
	r.kind = v[1]
	p := 2
	i64 := func(field string) (int64, error) {
		if len(v)-p < 8 {
			return 0, fmt.Errorf("record: %s truncated", field)
		}
		x := int64(binary.BigEndian.Uint64(v[p:]))
		p += 8
		return x, nil
	}
	bytesField := func(field string, limit uint64) ([]byte, error) {
		n, k := binary.Uvarint(v[p:])
		if k <= 0 {
			return nil, fmt.Errorf("record: %s length is not a valid varint", field)
		}
		p += k
		if n > limit || n > uint64(len(v)-p) {
			return nil, fmt.Errorf("record: %s length %d exceeds the %d bytes left (limit %d)", field, n, len(v)-p, limit)
		}
		b := v[p : p+int(n) : p+int(n)]
		p += int(n)
		return b, nil
	}
	var err error
	switch r.kind {
	case kindEvent:
		if r.version, err = i64("version"); err != nil {
			return r, err
		}
		if r.version < 0 {
			return r, fmt.Errorf("record: version %d is negative", r.version)
		}
		if r.timeNano, err = i64("time"); err != nil {
			return r, err
		}
		id, err := bytesField("id", maxStringField)
		if err != nil {
			return r, err
		}
		typ, err := bytesField("type", maxStringField)
		if err != nil {
			return r, err
		}
		r.id, r.typ = string(id), string(typ)
		if r.metadata, err = bytesField("metadata", uint64(len(v))); err != nil {
			return r, err
		}
		if r.data, err = bytesField("data", uint64(len(v))); err != nil {
			return r, err
		}
		if copyBytes {
			r.metadata = append([]byte(nil), r.metadata...)
			r.data = append([]byte(nil), r.data...)
		}
	case kindMetadata:
		if r.maxCount, err = i64("maxCount"); err != nil {
			return r, err
		}
		if r.maxAgeNano, err = i64("maxAge"); err != nil {
			return r, err
		}
		if r.truncateBefore, err = i64("truncateBefore"); err != nil {
			return r, err
		}
		if r.maxCount < 0 || r.maxAgeNano < 0 || r.truncateBefore < 0 {
			return r, fmt.Errorf("record: negative metadata (%d, %d, %d)", r.maxCount, r.maxAgeNano, r.truncateBefore)
		}
	case kindSoftDel:
		if r.truncateBefore, err = i64("truncateBefore"); err != nil {
			return r, err
		}
		if r.truncateBefore < 0 {
			return r, fmt.Errorf("record: truncateBefore %d is negative", r.truncateBefore)
		}
	case kindTombstone:
	default:
		return r, fmt.Errorf("record: unknown kind %d", r.kind)
	}
	if p != len(v) {
		return r, fmt.Errorf("record: %d bytes after the end", len(v)-p)
	}
	return r, nil
}
