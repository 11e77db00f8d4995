package batch_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"reflect"
	"testing"

	"github.com/heraldhq/herald/commitlog/batch"
)

var codecs = []batch.Compression{batch.None, batch.Gzip, batch.Snappy, batch.LZ4, batch.Zstd}

// decoded is a deep copy of one batch's records, safe to keep.
type decoded struct {
	H       batch.Header
	Recs    []batch.Record
	Offsets []int64
	Times   []int64
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func cloneRecord(r *batch.Record) batch.Record {
	c := batch.Record{
		Attributes:     r.Attributes,
		TimestampDelta: r.TimestampDelta,
		OffsetDelta:    r.OffsetDelta,
		Key:            cloneBytes(r.Key),
		Value:          cloneBytes(r.Value),
	}
	for _, h := range r.Headers {
		c.Headers = append(c.Headers, batch.RecordHeader{Key: cloneBytes(h.Key), Value: cloneBytes(h.Value)})
	}
	return c
}

// decodeAll iterates b with a fresh Iter and returns deep copies.
func decodeAll(b []byte) (decoded, error) {
	var it batch.Iter
	if err := it.Reset(b); err != nil {
		return decoded{}, err
	}
	d := decoded{H: it.Header()}
	for it.Next() {
		d.Recs = append(d.Recs, cloneRecord(it.Record()))
		d.Offsets = append(d.Offsets, it.Offset())
		d.Times = append(d.Times, it.Timestamp())
	}
	return d, it.Err()
}

// wantRecords is what Encode(recs) must decode to.
func wantRecords(recs []batch.Rec) []batch.Record {
	var out []batch.Record
	for i, r := range recs {
		w := batch.Record{
			TimestampDelta: r.Timestamp - recs[0].Timestamp,
			OffsetDelta:    int32(i),
			Key:            cloneBytes(r.Key),
			Value:          cloneBytes(r.Value),
		}
		for _, h := range r.Headers {
			k := cloneBytes(h.Key)
			if k == nil {
				k = []byte{} // header keys are never null on the wire
			}
			w.Headers = append(w.Headers, batch.RecordHeader{Key: k, Value: cloneBytes(h.Value)})
		}
		out = append(out, w)
	}
	return out
}

// diffRecords reports the first difference, treating nil and empty as
// different for keys and values (null vs empty is observable in Kafka).
func diffRecords(got, want []batch.Record) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			return fmt.Sprintf("record %d:\n got  %+v\n want %+v", i, got[i], want[i])
		}
	}
	return ""
}

func mustEncode(t testing.TB, opts batch.BuildOptions, recs []batch.Rec) []byte {
	t.Helper()
	b, err := batch.Encode(nil, opts, recs)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

// rawBatch hand-builds an uncompressed-or-not batch around an arbitrary
// records section, with a correct length and CRC, so tests can plant
// malformed records that Encode would never write.
func rawBatch(attrs int16, lastOffsetDelta, numRecords int32, records []byte) []byte {
	b := make([]byte, batch.HeaderSize, batch.HeaderSize+len(records))
	be := binary.BigEndian
	be.PutUint32(b[8:], uint32(batch.HeaderSize-12+len(records)))
	be.PutUint32(b[12:], 0xffffffff)
	b[16] = batch.Magic
	be.PutUint16(b[21:], uint16(attrs))
	be.PutUint32(b[23:], uint32(lastOffsetDelta))
	be.PutUint64(b[43:], 0xffffffffffffffff)
	be.PutUint16(b[51:], 0xffff)
	be.PutUint32(b[53:], 0xffffffff)
	be.PutUint32(b[57:], uint32(numRecords))
	b = append(b, records...)
	fixCRC(b)
	return b
}

// fixCRC recomputes the CRC independently of the package under test.
func fixCRC(b []byte) {
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
}

// zz appends a zigzag varint (test-side encoder, independent of encode.go).
func zz(dst []byte, v int64) []byte {
	return binary.AppendUvarint(dst, uint64(v<<1)^uint64(v>>63))
}

// rawRecord hand-encodes a record body and prefixes its length.
func rawRecord(offsetDelta int64, key, value []byte) []byte {
	var body []byte
	body = append(body, 0)
	body = zz(body, 0)
	body = zz(body, offsetDelta)
	body = zz(body, int64(len(key)))
	body = append(body, key...)
	body = zz(body, int64(len(value)))
	body = append(body, value...)
	body = zz(body, 0)
	return append(zz(nil, int64(len(body))), body...)
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
