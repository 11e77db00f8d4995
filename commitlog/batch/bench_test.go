package batch_test

import (
	"fmt"
	"testing"

	"github.com/heraldhq/herald/commitlog/batch"
)

func BenchmarkIter(b *testing.B) {
	const n = 1000
	for _, c := range codecs {
		for _, size := range []int{100, 1000} {
			name := c.String()
			if c == batch.None {
				name = "uncompressed"
			}
			b.Run(fmt.Sprintf("%s/value=%d", name, size), func(b *testing.B) {
				recs := manyRecords(n, size)
				for i := range recs {
					recs[i].Key = nil
				}
				buf := mustEncode(b, batch.BuildOptions{Compression: c}, recs)
				var it batch.Iter
				b.ReportAllocs()
				b.SetBytes(int64(n * size))
				b.ResetTimer()
				for b.Loop() {
					if err := it.Reset(buf); err != nil {
						b.Fatal(err)
					}
					for it.Next() {
					}
					if it.Err() != nil {
						b.Fatal(it.Err())
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	recs := manyRecords(1<<20/110, 100)
	buf := mustEncode(b, batch.BuildOptions{}, recs)
	b.Run("size=1MiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			if _, err := batch.Validate(buf, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("size=1MiB/records", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			if err := batch.ValidateRecords(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	const n = 1000
	for _, c := range codecs {
		b.Run(fmt.Sprintf("%s/records=%d/value=100", c, n), func(b *testing.B) {
			recs := manyRecords(n, 100)
			var dst []byte
			b.ReportAllocs()
			b.SetBytes(int64(n * 100))
			for b.Loop() {
				var err error
				if dst, err = batch.Encode(dst[:0], batch.BuildOptions{Compression: c}, recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkEncodeFresh encodes into a nil buffer each time, as the broker
// does for a batch it builds once (control markers, compaction rewrites,
// the SDK's tests): the cost of growing the buffer shows here, not in
// BenchmarkEncode, which reuses one.
func BenchmarkEncodeFresh(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		for _, c := range []batch.Compression{batch.None, batch.Snappy} {
			b.Run(fmt.Sprintf("%s/records=%d/value=100", c, n), func(b *testing.B) {
				recs := manyRecords(n, 100)
				b.ReportAllocs()
				b.SetBytes(int64(n * 100))
				for b.Loop() {
					if _, err := batch.Encode(nil, batch.BuildOptions{Compression: c}, recs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
