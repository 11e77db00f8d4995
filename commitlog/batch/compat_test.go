package batch_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"
	"pgregory.net/rapid"

	"github.com/heraldhq/herald/commitlog/batch"
)

// The tests in this file check byte compatibility against franz-go's kmsg,
// an independent implementation of the same wire format, and use the codec
// libraries directly (not through this package) for compressed bodies.

// kmsgDecompress decompresses a records section the way a Kafka client
// would, independently of this package.
func kmsgDecompress(t tb, c batch.Compression, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch c {
	case batch.None:
		return b
	case batch.Gzip:
		gr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = gr
	case batch.Snappy:
		out, err := s2.Decode(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case batch.LZ4:
		r = lz4.NewReader(bytes.NewReader(b))
	case batch.Zstd:
		d, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		out, err := d.DecodeAll(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kmsgCompress compresses a records section the way franz-go's producer
// does, with each library's own defaults.
func kmsgCompress(t testing.TB, c batch.Compression, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch c {
	case batch.None:
		return b
	case batch.Gzip:
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
	case batch.Snappy:
		return s2.EncodeSnappy(nil, b)
	case batch.LZ4:
		w := lz4.NewWriter(&buf) // 4 MiB blocks, content checksum: unlike ours
		w.Write(b)
		w.Close()
	case batch.Zstd:
		e, _ := zstd.NewWriter(nil, zstd.WithWindowSize(64<<10), zstd.WithEncoderConcurrency(1))
		return e.EncodeAll(b, nil)
	}
	return buf.Bytes()
}

// kmsgRecords parses a decompressed records section with kmsg.Record.
func kmsgRecords(t tb, b []byte, n int) []kmsg.Record {
	t.Helper()
	var out []kmsg.Record
	for i := 0; i < n; i++ {
		l, k := binary.Varint(b)
		if k <= 0 || int(l) > len(b)-k {
			t.Fatalf("record %d: bad length prefix", i)
		}
		var r kmsg.Record
		if err := r.ReadFrom(b[:k+int(l)]); err != nil {
			t.Fatalf("kmsg record %d: %v", i, err)
		}
		out = append(out, r)
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes after %d records", len(b), n)
	}
	return out
}

// checkWithKmsg decodes our batch b with kmsg and compares it with recs.
func checkWithKmsg(t tb, b []byte, opts batch.BuildOptions, recs []batch.Rec) {
	t.Helper()
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(b); err != nil {
		t.Fatalf("kmsg.RecordBatch.ReadFrom: %v", err)
	}
	if int(kb.Length)+12 != len(b) || kb.Magic != 2 || kb.FirstOffset != 0 || kb.PartitionLeaderEpoch != -1 {
		t.Fatalf("kmsg header %+v", kb)
	}
	if uint32(kb.CRC) != crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)) {
		t.Fatal("CRC does not match an independent CRC-32C")
	}
	if batch.Compression(kb.Attributes&7) != opts.Compression || int(kb.NumRecords) != len(recs) ||
		int(kb.LastOffsetDelta) != len(recs)-1 || kb.FirstTimestamp != recs[0].Timestamp {
		t.Fatalf("kmsg header %+v", kb)
	}
	kr := kmsgRecords(t, kmsgDecompress(t, opts.Compression, kb.Records), len(recs))
	for i, r := range kr {
		w := recs[i]
		if r.OffsetDelta != int32(i) || kb.FirstTimestamp+r.TimestampDelta64 != w.Timestamp ||
			!bytesEq(r.Key, w.Key) || !bytesEq(r.Value, w.Value) || len(r.Headers) != len(w.Headers) {
			t.Fatalf("record %d: kmsg %+v, want %+v", i, r, w)
		}
		for j, h := range r.Headers {
			if h.Key != string(w.Headers[j].Key) || !bytesEq(h.Value, w.Headers[j].Value) {
				t.Fatalf("record %d header %d: kmsg %+v, want %+v", i, j, h, w.Headers[j])
			}
		}
	}
}

// tb is the part of testing.TB that *rapid.T also has.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// bytesEq compares including nil-ness (null vs empty).
func bytesEq(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func TestKmsgDecodesOurs(t *testing.T) {
	recs := []batch.Rec{
		{Timestamp: 1000, Key: []byte("k0"), Value: []byte("v0")},
		{Timestamp: 900, Value: []byte{}},
		{Timestamp: 1500, Key: []byte{}, Headers: []batch.RecordHeader{{Key: []byte("h"), Value: []byte("x")}, {Key: []byte("n")}}},
	}
	recs = append(recs, manyRecords(300, 64)...)
	for _, c := range codecs {
		t.Run(c.String(), func(t *testing.T) {
			opts := batch.BuildOptions{Compression: c}
			checkWithKmsg(t, mustEncode(t, opts, recs), opts, recs)
		})
	}
}

// kmsgBatch builds a batch entirely with kmsg and the codec libraries.
func kmsgBatch(t testing.TB, c batch.Compression, base int64, recs []batch.Rec, xerial bool) []byte {
	var body []byte
	for i, r := range recs {
		kr := kmsg.Record{TimestampDelta64: r.Timestamp - recs[0].Timestamp, OffsetDelta: int32(i), Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: string(h.Key), Value: h.Value})
		}
		kr.Length = int32(len(kr.AppendTo(nil)) - 1) // Length 0 encodes in one byte
		body = kr.AppendTo(body)
	}
	comp := kmsgCompress(t, c, body)
	if xerial {
		x := append([]byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}, 0, 0, 0, 1, 0, 0, 0, 1)
		x = binary.BigEndian.AppendUint32(x, uint32(len(comp)))
		comp = append(x, comp...)
	}
	maxTS := recs[0].Timestamp
	for _, r := range recs {
		maxTS = max(maxTS, r.Timestamp)
	}
	kb := kmsg.RecordBatch{
		FirstOffset: base, Length: int32(49 + len(comp)), PartitionLeaderEpoch: 4, Magic: 2,
		Attributes: int16(c), LastOffsetDelta: int32(len(recs) - 1),
		FirstTimestamp: recs[0].Timestamp, MaxTimestamp: maxTS,
		ProducerID: 77, ProducerEpoch: 1, FirstSequence: 10, NumRecords: int32(len(recs)), Records: comp,
	}
	b := kb.AppendTo(nil)
	fixCRC(b)
	return b
}

func TestWeDecodeKmsg(t *testing.T) {
	recs := []batch.Rec{
		{Timestamp: 50, Key: []byte("a"), Value: []byte("b"), Headers: []batch.RecordHeader{{Key: []byte("hk"), Value: []byte("hv")}}},
		{Timestamp: 40, Value: bytes.Repeat([]byte("z"), 1000)},
		{Timestamp: 60, Key: []byte{}, Value: nil},
	}
	recs = append(recs, manyRecords(500, 80)...)
	type variant struct {
		c      batch.Compression
		xerial bool
	}
	vs := []variant{{batch.None, false}, {batch.Gzip, false}, {batch.Snappy, false}, {batch.Snappy, true}, {batch.LZ4, false}, {batch.Zstd, false}}
	for _, v := range vs {
		t.Run(fmt.Sprintf("%s/xerial=%v", v.c, v.xerial), func(t *testing.T) {
			b := kmsgBatch(t, v.c, 1<<40, recs, v.xerial)
			h, err := batch.Validate(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := batch.ValidateRecords(b); err != nil {
				t.Fatal(err)
			}
			if h.BaseOffset != 1<<40 || h.PartitionLeaderEpoch != 4 || h.ProducerID != 77 || h.ProducerEpoch != 1 ||
				h.BaseSequence != 10 || h.Compression() != v.c {
				t.Fatalf("header %+v", h)
			}
			d, err := decodeAll(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := diffRecords(d.Recs, wantRecords(recs)); diff != "" {
				t.Fatal(diff)
			}
			for i := range recs {
				if d.Offsets[i] != 1<<40+int64(i) || d.Times[i] != recs[i].Timestamp {
					t.Fatalf("record %d: offset %d ts %d", i, d.Offsets[i], d.Times[i])
				}
			}
			if v.c == batch.None {
				// Uncompressed, the two encoders must agree byte for byte.
				opts := batch.BuildOptions{Producer: true, ProducerID: 77, ProducerEpoch: 1, BaseSequence: 10}
				ours := mustEncode(t, opts, recs)
				batch.SetBaseOffset(ours, 1<<40)
				batch.SetPartitionLeaderEpoch(ours, 4)
				if !bytes.Equal(ours, b) {
					t.Fatal("uncompressed encoding differs from kmsg's")
				}
			}
		})
	}
}

func genBytes(t *rapid.T, label string) []byte {
	switch rapid.IntRange(0, 3).Draw(t, label+"Kind") {
	case 0:
		return nil
	case 1:
		return []byte{}
	default:
		return rapid.SliceOfN(rapid.Byte(), 1, 300).Draw(t, label)
	}
}

func TestRapidRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 40).Draw(t, "n")
		base := rapid.Int64().Draw(t, "base")
		recs := make([]batch.Rec, n)
		for i := range recs {
			recs[i] = batch.Rec{
				Timestamp: base + rapid.Int64Range(-1<<40, 1<<40).Draw(t, "tsDelta"),
				Key:       genBytes(t, "key"),
				Value:     genBytes(t, "value"),
			}
			for j := rapid.IntRange(0, 3).Draw(t, "headers"); j > 0; j-- {
				recs[i].Headers = append(recs[i].Headers, batch.RecordHeader{
					Key:   rapid.SliceOfN(rapid.Byte(), 1, 20).Draw(t, "hkey"),
					Value: genBytes(t, "hvalue"),
				})
			}
		}
		opts := batch.BuildOptions{
			Compression:   rapid.SampledFrom(codecs).Draw(t, "codec"),
			LogAppendTime: rapid.Bool().Draw(t, "lat"),
		}
		b, err := batch.Encode(nil, opts, recs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := batch.Validate(b, 0); err != nil {
			t.Fatal(err)
		}
		if err := batch.ValidateRecords(b); err != nil {
			t.Fatal(err)
		}
		d, err := decodeAll(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := diffRecords(d.Recs, wantRecords(recs)); diff != "" {
			t.Fatal(diff)
		}
		checkWithKmsg(t, b, opts, recs)

		// Compaction path: drop a random subset and re-encode.
		var kept []batch.Record
		for _, r := range d.Recs {
			if rapid.Bool().Draw(t, "keep") {
				kept = append(kept, r)
			}
		}
		nb, err := batch.EncodeRecords(nil, d.H, kept)
		if err != nil {
			t.Fatal(err)
		}
		h, err := batch.Validate(nb, 0)
		if err != nil || batch.ValidateRecords(nb) != nil || h.LastOffset() != d.H.LastOffset() {
			t.Fatalf("re-encoded: %v / %v, header %+v", err, batch.ValidateRecords(nb), h)
		}
		d2, err := decodeAll(nb)
		if err != nil {
			t.Fatal(err)
		}
		if diff := diffRecords(d2.Recs, kept); diff != "" {
			t.Fatal(diff)
		}
	})
}
