package batch_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/heraldhq/herald/commitlog/batch"
)

func manyRecords(n, valueSize int) []batch.Rec {
	recs := make([]batch.Rec, n)
	for i := range recs {
		v := bytes.Repeat([]byte{byte('a' + i%26)}, valueSize)
		recs[i] = batch.Rec{Timestamp: 1_700_000_000_000 + int64(i), Key: []byte(strconv.Itoa(i)), Value: v}
	}
	return recs
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		opts batch.BuildOptions
		recs []batch.Rec
	}{
		{"one", batch.BuildOptions{}, []batch.Rec{{Timestamp: 1, Key: []byte("k"), Value: []byte("v")}}},
		{"null key and value", batch.BuildOptions{}, []batch.Rec{{Timestamp: 5}}},
		{"empty key and value", batch.BuildOptions{}, []batch.Rec{{Key: []byte{}, Value: []byte{}}}},
		{"headers", batch.BuildOptions{}, []batch.Rec{{
			Timestamp: 10, Value: []byte("v"),
			Headers: []batch.RecordHeader{
				{Key: []byte("trace"), Value: []byte("abc")},
				{Key: []byte("null-value")},
				{Key: []byte("empty-value"), Value: []byte{}},
				{Key: nil, Value: []byte("nil key is written empty")},
			},
		}}},
		{"timestamps out of order", batch.BuildOptions{}, []batch.Rec{
			{Timestamp: 100}, {Timestamp: 50}, {Timestamp: 300}, {Timestamp: -7},
		}},
		{"extreme timestamps", batch.BuildOptions{}, []batch.Rec{
			{Timestamp: -1 << 63}, {Timestamp: 1<<63 - 1},
		}},
		{"many records", batch.BuildOptions{}, manyRecords(5000, 100)},
		{"large value", batch.BuildOptions{}, []batch.Rec{{Value: bytes.Repeat([]byte("xyz"), 200_000)}}},
		{"log append time", batch.BuildOptions{LogAppendTime: true}, []batch.Rec{{Timestamp: 3}, {Timestamp: 9}}},
		{"idempotent transactional", batch.BuildOptions{
			Producer: true, ProducerID: 42, ProducerEpoch: 3, BaseSequence: 1000, Transactional: true,
		}, manyRecords(3, 10)},
		{"control", batch.BuildOptions{Producer: true, ProducerID: 7, Control: true, Transactional: true},
			[]batch.Rec{{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0}}}},
	}
	for _, tc := range cases {
		for _, c := range codecs {
			t.Run(tc.name+"/"+c.String(), func(t *testing.T) {
				opts := tc.opts
				opts.Compression = c
				prefix := []byte("prefix")
				out, err := batch.Encode(prefix, opts, tc.recs)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out[:len(prefix)], prefix) {
					t.Fatal("Encode clobbered dst")
				}
				b := out[len(prefix):]
				h, err := batch.Validate(b, 0)
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if err := batch.ValidateRecords(b); err != nil {
					t.Fatalf("ValidateRecords: %v", err)
				}
				if h.Compression() != c || h.Size() != len(b) || h.BaseOffset != 0 || h.PartitionLeaderEpoch != -1 {
					t.Fatalf("header %+v", h)
				}
				if h.NumRecords != int32(len(tc.recs)) || h.LastOffsetDelta != int32(len(tc.recs)-1) {
					t.Fatalf("counts %+v", h)
				}
				if h.LogAppendTime() != opts.LogAppendTime || h.Transactional() != opts.Transactional || h.Control() != opts.Control {
					t.Fatalf("attribute bits %#x", h.Attributes)
				}
				wantPID, wantEpoch, wantSeq := batch.NoProducerID, batch.NoProducerEpoch, batch.NoSequence
				if opts.Producer {
					wantPID, wantEpoch, wantSeq = opts.ProducerID, opts.ProducerEpoch, opts.BaseSequence
				}
				if h.ProducerID != wantPID || h.ProducerEpoch != wantEpoch || h.BaseSequence != wantSeq {
					t.Fatalf("producer fields %+v", h)
				}
				maxTS := tc.recs[0].Timestamp
				for _, r := range tc.recs {
					maxTS = max(maxTS, r.Timestamp)
				}
				if h.BaseTimestamp != tc.recs[0].Timestamp || h.MaxTimestamp != maxTS {
					t.Fatalf("timestamps base %d max %d", h.BaseTimestamp, h.MaxTimestamp)
				}
				d, err := decodeAll(b)
				if err != nil {
					t.Fatalf("Iter: %v", err)
				}
				if diff := diffRecords(d.Recs, wantRecords(tc.recs)); diff != "" {
					t.Fatal(diff)
				}
				for i, r := range tc.recs {
					wantTS := r.Timestamp
					if opts.LogAppendTime {
						wantTS = maxTS
					}
					if d.Offsets[i] != int64(i) || d.Times[i] != wantTS {
						t.Fatalf("record %d: offset %d ts %d, want %d %d", i, d.Offsets[i], d.Times[i], i, wantTS)
					}
				}
			})
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	cases := []struct {
		name string
		opts batch.BuildOptions
		recs []batch.Rec
	}{
		{"no records", batch.BuildOptions{}, nil},
		{"unknown codec", batch.BuildOptions{Compression: 5}, manyRecords(1, 1)},
		{"producer id without Producer", batch.BuildOptions{ProducerID: 9}, manyRecords(1, 1)},
		{"transactional without Producer", batch.BuildOptions{Transactional: true}, manyRecords(1, 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := batch.Encode(dst, tc.opts, tc.recs)
			if err == nil {
				t.Fatal("Encode succeeded")
			}
			if string(out) != "keep" {
				t.Fatalf("dst changed to %q", out)
			}
		})
	}
}

func TestParseHeaderRules(t *testing.T) {
	cases := []struct {
		name      string
		magic     byte
		length    int32
		attrs     int16
		lod, n    int32
		wantField string // "" = ok
	}{
		{"ok", 2, 49, 0, 0, 1, ""},
		{"compacted: fewer records than offsets", 2, 49, 0, 10, 2, ""},
		{"compacted: empty", 2, 49, int16(batch.Zstd), 5, 0, ""},
		{"magic 1", 1, 49, 0, 0, 1, "magic"},
		{"length below minimum", 2, 48, 0, 0, 1, "batchLength"},
		{"negative length", 2, -1, 0, 0, 1, "batchLength"},
		{"codec 5", 2, 49, 5, 0, 1, "attributes.compression"},
		{"negative lastOffsetDelta", 2, 49, 0, -1, 0, "lastOffsetDelta"},
		{"negative count", 2, 49, 0, 3, -1, "recordCount"},
		{"more records than offsets", 2, 49, 0, 1, 3, "recordCount"},
		{"max lastOffsetDelta does not overflow", 2, 49, 0, 1<<31 - 1, 1<<31 - 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, batch.HeaderSize)
			binary.BigEndian.PutUint32(b[8:], uint32(tc.length))
			b[16] = tc.magic
			binary.BigEndian.PutUint16(b[21:], uint16(tc.attrs))
			binary.BigEndian.PutUint32(b[23:], uint32(tc.lod))
			binary.BigEndian.PutUint32(b[57:], uint32(tc.n))
			_, err := batch.ParseHeader(b)
			if tc.wantField == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *batch.FormatError
			if !errors.As(err, &fe) || fe.Field != tc.wantField || !errors.Is(err, batch.ErrCorrupt) {
				t.Fatalf("err = %v, want FormatError on %s", err, tc.wantField)
			}
			if !strings.Contains(err.Error(), tc.wantField) {
				t.Fatalf("message %q does not name the field", err)
			}
		})
	}
	if _, err := batch.ParseHeader(make([]byte, 60)); !errors.Is(err, batch.ErrCorrupt) {
		t.Fatalf("short header: %v", err)
	}
}

func TestHeaderAccessors(t *testing.T) {
	h := batch.Header{BaseOffset: 100, Length: 49, LastOffsetDelta: 9, Attributes: 0x3c}
	if h.Size() != 61 || h.LastOffset() != 109 || h.Compression() != batch.Zstd ||
		!h.LogAppendTime() || !h.Transactional() || !h.Control() {
		t.Fatalf("accessors wrong for %+v", h)
	}
	for c, s := range map[batch.Compression]string{batch.None: "none", batch.Gzip: "gzip", batch.Snappy: "snappy", batch.LZ4: "lz4", batch.Zstd: "zstd", 6: "compression(6)"} {
		if c.String() != s {
			t.Errorf("%d.String() = %q", c, c.String())
		}
	}
}

func TestPatching(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.String(), func(t *testing.T) {
			b := mustEncode(t, batch.BuildOptions{Compression: c}, manyRecords(3, 10))
			crc := binary.BigEndian.Uint32(b[17:])
			batch.SetBaseOffset(b, 1000)
			batch.SetPartitionLeaderEpoch(b, 7)
			h, err := batch.Validate(b, 0)
			if err != nil {
				t.Fatalf("offset/epoch patch broke the CRC: %v", err)
			}
			if h.BaseOffset != 1000 || h.PartitionLeaderEpoch != 7 || h.CRC != crc || h.LastOffset() != 1002 {
				t.Fatalf("header %+v", h)
			}
			batch.SetLogAppendTime(b, 123456)
			h, err = batch.Validate(b, 0)
			if err != nil {
				t.Fatalf("after SetLogAppendTime: %v", err)
			}
			if !h.LogAppendTime() || h.MaxTimestamp != 123456 || h.Compression() != c {
				t.Fatalf("header %+v", h)
			}
			d, err := decodeAll(b)
			if err != nil {
				t.Fatal(err)
			}
			for i := range d.Recs {
				if d.Times[i] != 123456 || d.Offsets[i] != 1000+int64(i) {
					t.Fatalf("record %d: ts %d offset %d", i, d.Times[i], d.Offsets[i])
				}
			}
		})
	}
}

func TestCompactionReencode(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.String(), func(t *testing.T) {
			b := mustEncode(t, batch.BuildOptions{Compression: c, Producer: true, ProducerID: 5, BaseSequence: 17},
				manyRecords(6, 20))
			batch.SetBaseOffset(b, 500)
			batch.SetPartitionLeaderEpoch(b, 3)
			d, err := decodeAll(b)
			if err != nil {
				t.Fatal(err)
			}
			// Keep records 1 and 3; the last one (offset delta 5) goes.
			kept := []batch.Record{d.Recs[1], d.Recs[3]}
			nb, err := batch.EncodeRecords(nil, d.H, kept)
			if err != nil {
				t.Fatal(err)
			}
			h, err := batch.Validate(nb, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := batch.ValidateRecords(nb); err != nil {
				t.Fatal(err)
			}
			if h.LastOffset() != 505 || h.NumRecords != 2 || h.Compression() != c || h.ProducerID != 5 ||
				h.BaseSequence != 17 || h.PartitionLeaderEpoch != 3 || h.BaseTimestamp != d.H.BaseTimestamp ||
				h.MaxTimestamp != d.H.MaxTimestamp {
				t.Fatalf("header %+v, from %+v", h, d.H)
			}
			d2, err := decodeAll(nb)
			if err != nil {
				t.Fatal(err)
			}
			if diff := diffRecords(d2.Recs, kept); diff != "" {
				t.Fatal(diff)
			}
			if d2.Offsets[0] != 501 || d2.Offsets[1] != 503 || d2.Times[1] != d.Times[3] {
				t.Fatalf("offsets %v times %v", d2.Offsets, d2.Times)
			}

			// Everything removed: Kafka's empty batch, no record bytes.
			eb, err := batch.EncodeRecords(nil, d.H, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(eb) != batch.HeaderSize {
				t.Fatalf("empty batch is %d bytes", len(eb))
			}
			h, err = batch.Validate(eb, 0)
			if err != nil || batch.ValidateRecords(eb) != nil {
				t.Fatalf("empty batch: %v / %v", err, batch.ValidateRecords(eb))
			}
			if h.NumRecords != 0 || h.LastOffset() != 505 || h.Compression() != c {
				t.Fatalf("empty header %+v", h)
			}

			// Out-of-order or out-of-range deltas are refused.
			if _, err := batch.EncodeRecords(nil, d.H, []batch.Record{d.Recs[3], d.Recs[1]}); err == nil {
				t.Fatal("decreasing offsetDeltas accepted")
			}
			short := d.H
			short.LastOffsetDelta = 2
			if _, err := batch.EncodeRecords(nil, short, []batch.Record{d.Recs[3]}); err == nil {
				t.Fatal("offsetDelta past lastOffsetDelta accepted")
			}
		})
	}
}

func TestValidateSizeLimit(t *testing.T) {
	b := mustEncode(t, batch.BuildOptions{}, manyRecords(10, 100))
	if _, err := batch.Validate(b, len(b)); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	_, err := batch.Validate(b, len(b)-1)
	var tl *batch.TooLargeError
	if !errors.As(err, &tl) || !errors.Is(err, batch.ErrTooLarge) || tl.Size != len(b) || tl.Limit != len(b)-1 {
		t.Fatalf("err = %v", err)
	}
	if errors.Is(err, batch.ErrCorrupt) {
		t.Fatal("too large is not corrupt")
	}
	want := "record batch of 2000000 bytes exceeds the limit of 1048576 bytes"
	if got := (&batch.TooLargeError{Size: 2000000, Limit: 1048576}).Error(); got != want {
		t.Fatalf("message %q", got)
	}
}

func TestCorruptionEveryByte(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.String(), func(t *testing.T) {
			b := mustEncode(t, batch.BuildOptions{Compression: c}, []batch.Rec{
				{Key: []byte("k"), Value: []byte("value"), Headers: []batch.RecordHeader{{Key: []byte("h"), Value: []byte("v")}}},
				{Value: []byte("second")},
			})
			for i := 21; i < len(b); i++ {
				for _, mask := range []byte{0x01, 0x80, 0xff} {
					b[i] ^= mask
					_, err := batch.Validate(b, 0)
					if !errors.Is(err, batch.ErrCorrupt) {
						t.Fatalf("byte %d ^ %#x: Validate err = %v", i, mask, err)
					}
					// The iterator (which skips the CRC) must not panic on it.
					_, _ = decodeAll(b)
					b[i] ^= mask
				}
			}
			if _, err := batch.Validate(b, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTruncatedAndLengthLies(t *testing.T) {
	b := mustEncode(t, batch.BuildOptions{}, manyRecords(4, 30))
	for n := 0; n < len(b); n++ {
		if _, err := batch.Validate(b[:n], 0); !errors.Is(err, batch.ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
		var it batch.Iter
		if err := it.Reset(b[:n]); !errors.Is(err, batch.ErrCorrupt) {
			t.Fatalf("Iter on truncated %d: %v", n, err)
		}
		if it.Next() {
			t.Fatalf("Next true after failed Reset")
		}
	}
	lies := map[string]int32{
		"too big":   int32(len(b)),
		"too small": int32(len(b) - 12 - 5),
		"negative":  -100,
		"minimum":   49,
	}
	for name, l := range lies {
		t.Run(name, func(t *testing.T) {
			c := bytes.Clone(b)
			binary.BigEndian.PutUint32(c[8:], uint32(l))
			if _, err := batch.Validate(c, 0); !errors.Is(err, batch.ErrCorrupt) {
				t.Fatalf("Validate: %v", err)
			}
			// Even with a CRC that matches the lie, the records must not parse.
			if l >= 49 && int(l)+12 <= len(c) {
				c = c[:l+12]
				fixCRC(c)
				if _, err := batch.Validate(c, 0); err != nil {
					t.Fatalf("Validate with matching CRC: %v", err)
				}
				if err := batch.ValidateRecords(c); !errors.Is(err, batch.ErrCorrupt) {
					t.Fatalf("ValidateRecords: %v", err)
				}
			}
		})
	}
}

func TestMalformedRecords(t *testing.T) {
	rec := func(od int64) []byte { return rawRecord(od, []byte("k"), []byte("v")) }
	withBody := func(body []byte) []byte { return append(zz(nil, int64(len(body))), body...) }
	cases := []struct {
		name    string
		lod, n  int32
		records []byte
		field   string // substring of the FormatError field
	}{
		{"count says more", 2, 3, concat(rec(0), rec(1)), "recordCount"},
		{"count says fewer", 2, 1, concat(rec(0), rec(1)), "records"},
		{"offsetDelta repeats", 1, 2, concat(rec(0), rec(0)), "offsetDelta"},
		{"offsetDelta decreases", 5, 2, concat(rec(3), rec(1)), "offsetDelta"},
		{"offsetDelta past lastOffsetDelta", 1, 1, rec(2), "offsetDelta"},
		{"negative offsetDelta", 1, 1, rec(-1), "offsetDelta"},
		{"length varint 6 bytes", 0, 1, concat([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, rec(0)), "length"},
		{"length varint over 32 bits", 0, 1, concat([]byte{0xff, 0xff, 0xff, 0xff, 0x7f}, rec(0)), "length"},
		{"length negative", 0, 1, concat(zz(nil, -3), rec(0)[1:]), "length"},
		{"length past the end", 0, 1, concat(zz(nil, 1000), rec(0)[1:]), "length"},
		{"length leaves bytes unused", 0, 1, withBody(append(rec(0)[1:], 0)), "length"},
		{"key length -2", 0, 1, withBody(concat([]byte{0}, zz(nil, 0), zz(nil, 0), zz(nil, -2), zz(nil, -1), zz(nil, 0))), "key"},
		{"value past the record", 0, 1, withBody(concat([]byte{0}, zz(nil, 0), zz(nil, 0), zz(nil, -1), zz(nil, 50), zz(nil, 0))), "value"},
		{"timestamp varlong 11 bytes", 0, 1, withBody(concat([]byte{0}, bytes.Repeat([]byte{0x80}, 10), []byte{0}, zz(nil, 0), zz(nil, -1), zz(nil, -1), zz(nil, 0))), "timestampDelta"},
		{"negative header count", 0, 1, withBody(concat([]byte{0}, zz(nil, 0), zz(nil, 0), zz(nil, -1), zz(nil, -1), zz(nil, -1))), "headerCount"},
		{"huge header count", 0, 1, withBody(concat([]byte{0}, zz(nil, 0), zz(nil, 0), zz(nil, -1), zz(nil, -1), zz(nil, 1<<30))), "headerCount"},
		{"null header key", 0, 1, withBody(concat([]byte{0}, zz(nil, 0), zz(nil, 0), zz(nil, -1), zz(nil, -1), zz(nil, 1), zz(nil, -1), zz(nil, -1))), "header[0].key"},
		{"count cannot fit", 1 << 30, 1 << 30, rec(0), "recordCount"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := rawBatch(0, tc.lod, tc.n, tc.records)
			if _, err := batch.Validate(b, 0); err != nil {
				t.Fatalf("Validate (structure and CRC are fine): %v", err)
			}
			err := batch.ValidateRecords(b)
			var fe *batch.FormatError
			if !errors.As(err, &fe) || !errors.Is(err, batch.ErrCorrupt) || !strings.Contains(fe.Field, tc.field) {
				t.Fatalf("ValidateRecords = %v, want FormatError on %q", err, tc.field)
			}
		})
	}
	// Control: the same helpers build an accepted batch.
	if err := batch.ValidateRecords(rawBatch(0, 4, 2, concat(rec(1), rec(4)))); err != nil {
		t.Fatalf("compacted-style batch rejected: %v", err)
	}
}

// zeros streams n zero bytes into w without holding them in memory.
func zeros(t testing.TB, w interface{ Write([]byte) (int, error) }, n int) {
	t.Helper()
	chunk := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(chunk))
		if _, err := w.Write(chunk[:k]); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
}

func TestDecompressionBomb(t *testing.T) {
	const bomb = 200 << 20
	gz := func(t *testing.T) []byte {
		var buf bytes.Buffer
		w, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		zeros(t, w, bomb)
		w.Close()
		return buf.Bytes()
	}
	zs := func(t *testing.T) []byte {
		var buf bytes.Buffer
		w, _ := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
		zeros(t, w, bomb)
		w.Close()
		return buf.Bytes()
	}
	l4 := func(t *testing.T) []byte {
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		zeros(t, w, bomb)
		w.Close()
		return buf.Bytes()
	}
	sn := func(t *testing.T) []byte {
		// A raw block whose preamble claims 1 GiB: refused before allocating.
		return binary.AppendUvarint(nil, 1<<30)
	}
	for _, tc := range []struct {
		c    batch.Compression
		make func(*testing.T) []byte
	}{{batch.Gzip, gz}, {batch.Zstd, zs}, {batch.LZ4, l4}, {batch.Snappy, sn}} {
		t.Run(tc.c.String(), func(t *testing.T) {
			comp := tc.make(t)
			b := rawBatch(int16(tc.c), 0, 1, comp)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := batch.ValidateRecords(b)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, batch.ErrTooLarge) || !strings.Contains(err.Error(), strconv.Itoa(batch.DefaultMaxDecompressed)) {
				t.Fatalf("err = %v, want ErrTooLarge naming the cap", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*batch.DefaultMaxDecompressed {
				t.Fatalf("allocated %d bytes for a %d-byte compressed bomb", alloc, len(comp))
			}
			it := batch.Iter{MaxDecompressed: 1 << 20}
			if err := it.Reset(b); !errors.Is(err, batch.ErrTooLarge) || !strings.Contains(err.Error(), "1048576") {
				t.Fatalf("Iter with 1 MiB cap: %v", err)
			}
		})
	}
}

func TestSnappyXerial(t *testing.T) {
	recs := manyRecords(200, 500)
	plain := mustEncode(t, batch.BuildOptions{}, recs)
	body := plain[batch.HeaderSize:]
	// The Java client's framing: magic, version 1, compatible 1, then
	// length-prefixed raw blocks of at most 32 KiB of input each.
	x := append([]byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}, 0, 0, 0, 1, 0, 0, 0, 1)
	for len(body) > 0 {
		k := min(len(body), 32<<10)
		blk := snappy.Encode(nil, body[:k])
		x = binary.BigEndian.AppendUint32(x, uint32(len(blk)))
		x = append(x, blk...)
		body = body[k:]
	}
	b := rawBatch(int16(batch.Snappy), int32(len(recs)-1), int32(len(recs)), x)
	d, err := decodeAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := diffRecords(d.Recs, wantRecords(recs)); diff != "" {
		t.Fatal(diff)
	}
	// A chunk length past the end is corrupt, not a panic.
	bad := append(bytes.Clone(x[:16]), 0x7f, 0xff, 0xff, 0xff, 1, 2, 3)
	if err := batch.ValidateRecords(rawBatch(int16(batch.Snappy), 0, 1, bad)); !errors.Is(err, batch.ErrCorrupt) {
		t.Fatalf("bad xerial chunk: %v", err)
	}
}

func TestIterReuseDoesNotAllocate(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.String(), func(t *testing.T) {
			if raceEnabled && c != batch.None {
				t.Skip("sync.Pool drops items under -race")
			}
			b := mustEncode(t, batch.BuildOptions{Compression: c}, []batch.Rec{
				{Value: make([]byte, 100), Headers: []batch.RecordHeader{{Key: []byte("a")}, {Key: []byte("b")}}},
				{Value: make([]byte, 100)},
			})
			var it batch.Iter
			run := func() {
				if err := it.Reset(b); err != nil {
					t.Fatal(err)
				}
				for it.Next() {
				}
				if it.Err() != nil {
					t.Fatal(it.Err())
				}
			}
			run()
			allocs := testing.AllocsPerRun(100, run)
			// Uncompressed must be allocation-free; codecs may allocate a
			// reader wrapper per batch, never per record.
			limit := 0.0
			if c != batch.None {
				limit = 4
			}
			if allocs > limit {
				t.Fatalf("%.1f allocs per batch", allocs)
			}
		})
	}
}

// TestEncodeSizesBufferOnce: encoding into a nil buffer allocates the
// batch once, whatever the record count (it grew by each record before,
// copying the batch once per record), and a buffer that is too small is
// grown once too. Records with headers and nil keys count alike.
func TestEncodeSizesBufferOnce(t *testing.T) {
	for _, n := range []int{1, 10, 1000} {
		recs := manyRecords(n, 100)
		for i := range recs {
			if i%3 == 0 {
				recs[i].Key = nil
				recs[i].Headers = []batch.RecordHeader{{Key: []byte("h"), Value: []byte("v")}, {Key: []byte("n")}}
			}
		}
		want := mustEncode(t, batch.BuildOptions{}, recs)
		for _, pre := range []int{0, 7} {
			t.Run(fmt.Sprintf("records=%d/prefix=%d", n, pre), func(t *testing.T) {
				prefix := bytes.Repeat([]byte{0xee}, pre)
				var got []byte
				allocs := testing.AllocsPerRun(20, func() {
					var err error
					got, err = batch.Encode(slices.Clip(prefix), batch.BuildOptions{}, recs)
					if err != nil {
						t.Fatal(err)
					}
				})
				// NB: the race detector's instrumentation adds one
				// allocation per call, the same for every n.
				limit := 1.0
				if raceEnabled {
					limit = 2
				}
				if allocs > limit {
					t.Errorf("Encode allocated %v times, want %v", allocs, limit)
				}
				if !bytes.Equal(got[:pre], prefix) || !bytes.Equal(got[pre:], want) {
					t.Fatal("Encode into a short buffer wrote different bytes")
				}
			})
		}
	}
}
