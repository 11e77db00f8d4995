package embedded

import (
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
