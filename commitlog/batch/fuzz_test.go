package batch_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/heraldhq/herald/commitlog/batch"
)

// fuzzSeeds are valid batches of every codec plus edge cases.
func fuzzSeeds(f *testing.F) [][]byte {
	recs := []batch.Rec{
		{Timestamp: 10, Key: []byte("k"), Value: []byte("v"), Headers: []batch.RecordHeader{{Key: []byte("h"), Value: []byte("x")}, {Key: []byte("n")}}},
		{Timestamp: 5},
		{Timestamp: 20, Key: []byte{}, Value: []byte("a longer value, a longer value, a longer value")},
	}
	var seeds [][]byte
	for _, c := range codecs {
		b, err := batch.Encode(nil, batch.BuildOptions{Compression: c}, recs)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
		empty, _ := batch.EncodeRecords(nil, batch.Header{Attributes: int16(c), LastOffsetDelta: 4}, nil)
		seeds = append(seeds, empty)
	}
	lat, _ := batch.Encode(nil, batch.BuildOptions{LogAppendTime: true, Producer: true, ProducerID: 3, Transactional: true}, recs)
	seeds = append(seeds,
		lat,
		kmsgBatch(f, batch.Snappy, 9, recs, true),
		kmsgBatch(f, batch.LZ4, 9, recs, false),
		rawBatch(0, 4, 2, concat(rawRecord(1, nil, []byte("x")), rawRecord(4, []byte("k"), nil))),
		rawBatch(0, 0, 1, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}),
		make([]byte, batch.HeaderSize),
		nil,
	)
	neg := rawBatch(0, 0, 0, nil)
	binary.BigEndian.PutUint32(neg[8:], 0xffffff00)
	seeds = append(seeds, neg)
	return seeds
}

// FuzzValidate: anything Validate and ValidateRecords accept must decode,
// and re-encode through EncodeRecords to a batch that is accepted too and
// decodes to the same records and header.
func FuzzValidate(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := batch.Validate(b, 0); err != nil && !errors.Is(err, batch.ErrCorrupt) {
			t.Fatalf("Validate error does not match ErrCorrupt: %v", err)
		}
		// NB: fix the CRC so mutations reach the record decoder instead of
		// all dying at the checksum.
		if len(b) >= batch.HeaderSize {
			b = append([]byte(nil), b...)
			fixCRC(b)
		}
		h, err := batch.Validate(b, 0)
		if err != nil {
			if !errors.Is(err, batch.ErrCorrupt) {
				t.Fatalf("Validate error does not match ErrCorrupt: %v", err)
			}
			return
		}
		if err := batch.ValidateRecords(b); err != nil {
			return
		}
		d, err := decodeAll(b)
		if err != nil {
			t.Fatalf("ValidateRecords accepted what Iter rejects: %v", err)
		}
		if len(d.Recs) != int(h.NumRecords) {
			t.Fatalf("%d records, header says %d", len(d.Recs), h.NumRecords)
		}
		nb, err := batch.EncodeRecords(nil, h, d.Recs)
		if err != nil {
			t.Fatalf("EncodeRecords: %v", err)
		}
		nh, err := batch.Validate(nb, 0)
		if err != nil {
			t.Fatalf("re-encoded batch invalid: %v", err)
		}
		if err := batch.ValidateRecords(nb); err != nil {
			t.Fatalf("re-encoded records invalid: %v", err)
		}
		nh.Length, nh.CRC, h.Length, h.CRC = 0, 0, 0, 0
		if nh != h {
			t.Fatalf("header changed:\n got  %+v\n want %+v", nh, h)
		}
		d2, err := decodeAll(nb)
		if err != nil {
			t.Fatal(err)
		}
		if diff := diffRecords(d2.Recs, d.Recs); diff != "" {
			t.Fatal(diff)
		}
	})
}

// FuzzIter: the iterator never panics, and agrees with ValidateRecords.
func FuzzIter(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		it := batch.Iter{MaxDecompressed: 1 << 20}
		if err := it.Reset(b); err != nil {
			if !errors.Is(err, batch.ErrCorrupt) && !errors.Is(err, batch.ErrTooLarge) {
				t.Fatalf("Reset error matches neither sentinel: %v", err)
			}
			return
		}
		n := 0
		for it.Next() {
			r := it.Record()
			_ = it.Offset() + it.Timestamp() + int64(len(r.Key)+len(r.Value)+len(r.Headers))
			n++
		}
		if it.Err() != nil {
			if !errors.Is(it.Err(), batch.ErrCorrupt) {
				t.Fatalf("Next error does not match ErrCorrupt: %v", it.Err())
			}
			return
		}
		if n != int(it.Header().NumRecords) {
			t.Fatalf("%d records, header says %d", n, it.Header().NumRecords)
		}
		if len(b) == it.Header().Size() {
			if err := batch.ValidateRecords(b); err != nil {
				t.Fatalf("Iter accepted, ValidateRecords rejected: %v", err)
			}
		}
	})
}
