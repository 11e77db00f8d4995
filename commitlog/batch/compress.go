package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// DefaultMaxDecompressed caps the decompressed records section of one batch
// when Iter.MaxDecompressed is 0 and in ValidateRecords.
const DefaultMaxDecompressed = 64 << 20

// maxZstdWindow bounds the window a zstd frame may ask for, so a small frame
// cannot make the decoder allocate a huge history buffer.
const maxZstdWindow = 64 << 20

// xerialMagic starts the framed snappy format of snappy-java, which the Java
// client writes: magic, then version and compatible version (int32 each),
// then chunks of int32 length + raw snappy block.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderSize = 16

var (
	gzipReaders = sync.Pool{New: func() any { return new(gzip.Reader) }}
	gzipWriters = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
		return w
	}}
	lz4Readers = sync.Pool{New: func() any { return lz4.NewReader(nil) }}
	lz4Writers = sync.Pool{New: func() any {
		w := lz4.NewWriter(nil)
		// NB: 64 KiB blocks, as Kafka's Java producer writes; consumers
		// size their buffers by the frame's block size.
		_ = w.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ConcurrencyOption(1))
		return w
	}}
	zstdReaders = sync.Pool{New: func() any {
		// Concurrency 1 decodes synchronously: no goroutines to leak when
		// the pool drops a decoder.
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			panic(err) // static options; cannot fail
		}
		return d
	}}
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithZeroFrames(true))
		if err != nil {
			panic(err) // static options; cannot fail
		}
		return e
	})
)

// appendWriter is an io.Writer that appends to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// compress appends src compressed with c to dst.
func compress(dst []byte, c Compression, src []byte) ([]byte, error) {
	switch c {
	case None:
		return append(dst, src...), nil
	case Gzip:
		aw := &appendWriter{b: dst}
		w := gzipWriters.Get().(*gzip.Writer)
		defer gzipWriters.Put(w)
		w.Reset(aw)
		if _, err := w.Write(src); err != nil {
			return dst, fmt.Errorf("gzip: %w", err)
		}
		if err := w.Close(); err != nil {
			return dst, fmt.Errorf("gzip: %w", err)
		}
		w.Reset(nil)
		return aw.b, nil
	case Snappy:
		n := snappy.MaxEncodedLen(len(src))
		if n < 0 {
			return dst, fmt.Errorf("snappy: %d bytes is too large to compress", len(src))
		}
		dst = grow(dst, n)
		enc := snappy.Encode(dst[len(dst):len(dst)+n], src)
		return dst[:len(dst)+len(enc)], nil
	case LZ4:
		aw := &appendWriter{b: dst}
		w := lz4Writers.Get().(*lz4.Writer)
		defer lz4Writers.Put(w)
		w.Reset(aw)
		if _, err := w.Write(src); err != nil {
			return dst, fmt.Errorf("lz4: %w", err)
		}
		if err := w.Close(); err != nil {
			return dst, fmt.Errorf("lz4: %w", err)
		}
		w.Reset(nil)
		return aw.b, nil
	case Zstd:
		return zstdEncoder().EncodeAll(src, dst), nil
	}
	return dst, fmt.Errorf("unknown compression %d", c)
}

// decompress replaces buf's contents with src decompressed with c and
// returns it. The output never exceeds limit bytes: past that it fails with
// an error matching ErrTooLarge. Malformed input fails with *FormatError.
func decompress(buf []byte, c Compression, src []byte, limit int) ([]byte, error) {
	buf = buf[:0]
	var err error
	switch c {
	case Gzip:
		r := gzipReaders.Get().(*gzip.Reader)
		if err = r.Reset(bytes.NewReader(src)); err == nil {
			buf, err = readCapped(buf, r, limit, len(src))
		}
		gzipReaders.Put(r)
	case Snappy:
		buf, err = decodeSnappy(buf, src, limit)
	case LZ4:
		r := lz4Readers.Get().(*lz4.Reader)
		r.Reset(bytes.NewReader(src))
		buf, err = readCapped(buf, r, limit, len(src))
		r.Reset(nil)
		lz4Readers.Put(r)
	case Zstd:
		d := zstdReaders.Get().(*zstd.Decoder)
		if err = d.Reset(bytes.NewReader(src)); err == nil {
			buf, err = readCapped(buf, d, limit, len(src))
		}
		_ = d.Reset(nil)
		zstdReaders.Put(d)
	default:
		return buf, corrupt("attributes.compression", int64(c), "unknown codec")
	}
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return buf, fmt.Errorf("decompress %s records: output exceeds the cap of %d bytes: %w", c, limit, ErrTooLarge)
		}
		// NB: the codec's own error type is not leaked; only its text.
		return buf, corrupt("records", int64(len(src)), c.String()+" decompression failed: "+err.Error())
	}
	return buf, nil
}

// readCapped reads r to EOF into buf[:0], growing buf geometrically but never
// past limit bytes; it fails with ErrTooLarge if r has more than limit bytes.
func readCapped(buf []byte, r io.Reader, limit, hint int) ([]byte, error) {
	buf = buf[:0]
	if cap(buf) == 0 {
		buf = make([]byte, 0, min(max(4*hint, 512), limit))
	}
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= limit {
				// Full at the cap: one more byte means too large.
				var one [1]byte
				n, err := io.ReadFull(r, one[:])
				if n > 0 {
					return buf, ErrTooLarge
				}
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return buf, nil
				}
				return buf, err
			}
			buf = grow(buf, min(max(cap(buf), 512), limit-len(buf)))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// grow returns b with room for at least n more bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

// decodeSnappy decodes either one raw snappy block (librdkafka, franz-go,
// Herald) or the xerial framed format (the Java client). Raw blocks are
// decoded strictly: the s2 extensions Kafka's consumers cannot read are
// rejected rather than stored and served.
func decodeSnappy(buf, src []byte, limit int) ([]byte, error) {
	if len(src) < xerialHeaderSize || !bytes.Equal(src[:len(xerialMagic)], xerialMagic) {
		return appendSnappyBlock(buf[:0], src, limit)
	}
	buf = buf[:0]
	src = src[xerialHeaderSize:]
	for len(src) > 0 {
		if len(src) < 4 {
			return buf, errors.New("xerial: truncated chunk length")
		}
		n := binary.BigEndian.Uint32(src)
		src = src[4:]
		if uint64(n) > uint64(len(src)) {
			return buf, fmt.Errorf("xerial: chunk of %d bytes but %d remain", n, len(src))
		}
		var err error
		if buf, err = appendSnappyBlock(buf, src[:n], limit); err != nil {
			return buf, err
		}
		src = src[n:]
	}
	return buf, nil
}

func appendSnappyBlock(buf, block []byte, limit int) ([]byte, error) {
	n, err := snappy.DecodedLen(block)
	if err != nil {
		return buf, err
	}
	if n > limit-len(buf) {
		return buf, ErrTooLarge
	}
	buf = grow(buf, n)
	out, err := snappy.DecodeStrict(buf[len(buf):cap(buf)], block)
	if err != nil {
		return buf, err
	}
	if len(out) != n || (n > 0 && &out[0] != &buf[len(buf):cap(buf)][0]) {
		return buf, errors.New("snappy: decoded length mismatch")
	}
	return buf[:len(buf)+n], nil
}
