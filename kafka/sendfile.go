package kafka

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/commitlog"
)

// Zero-copy fetch responses.
//
// A fetch response is nearly all record bytes, and they are already in
// segment files in the form the protocol sends. Copying them through the
// server's memory cost a pread, a CRC check per batch, a copy into the
// encoded response and a write: the bytes crossed the kernel boundary
// twice and were copied three times. Instead, the fetch handler takes a
// commitlog.FileSpan per partition (the segment file held open), kmsg
// encodes the response with a short marker in place of each span's
// records, and the writer sends the bytes around the markers with write and
// each span with sendfile(2): the kernel copies the page cache to the
// socket and the server never touches the records.
//
// The marker trick keeps kmsg the only encoder of fetch responses (every
// version, flexible or not): after encoding, each marker (a process-wide
// random prefix and the span's index, unique in practice and checked to be
// found exactly once, in order) is cut out with its length prefix, and the
// length prefix of the span's real size is written in its place. If a
// marker were not where it should be, the response is re-encoded with the
// records read into memory, so a response is never wrong, only copied.

// minSpanBytes is the smallest partition read sent with sendfile; below it
// the bytes are read into memory and written with the rest of the
// response, which costs fewer system calls for the small fetches of a
// consumer at the tail of a log (latency) than write + sendfile + write.
const minSpanBytes = 16 << 10

// tailRecords: a fetch this close to the high-water mark (a consumer at
// the tail of the log, where latency matters) is read with a plain copy,
// never through a file span. Measured: with durability always at 10,000
// records/s, tail reads through FetchSpan had p99 5.1–8.1 ms end to end,
// through Fetch 2.8–3.4 ms (docs/benchmarks.md); catching-up reads, where
// sendfile pays, start further back.
const tailRecords = 256

// markerLen is the length of a span marker.
const markerLen = 16

// markerPrefix starts every span marker of this process.
var markerPrefix = func() [8]byte {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return b
}()

// heldSpan is a partition's records left in a segment file, to be sent by
// the writer.
type heldSpan struct {
	span commitlog.FileSpan
	rp   *kmsg.FetchResponseTopicPartition // whose RecordBatches holds the marker
}

func spanMarker(i int) []byte {
	b := make([]byte, markerLen)
	copy(b, markerPrefix[:])
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	return b
}

// piece is one part of a response sent in pieces: bytes, or a span.
type piece struct {
	b    []byte
	span *commitlog.FileSpan
}

// releaseSpans lets go of the spans' segment files.
func releaseSpans(spans []heldSpan) {
	for i := range spans {
		spans[i].span.Release()
	}
}

// splitFrame cuts an encoded response frame (size prefix included) at the
// spans' markers. It returns the pieces to write, the first one's size
// prefix corrected, or false if a marker is not where it should be.
func splitFrame(frame []byte, spans []heldSpan, flexible bool) ([]piece, bool) {
	pieces := make([]piece, 0, 2*len(spans)+1)
	// Every byte outside the spans goes into one buffer that the pieces
	// slice, so the frame's own buffer can be pooled again at once.
	out := make([]byte, 0, len(frame)-len(spans)*markerLen+len(spans)*5)
	from, start := 0, 0
	var size int64
	for i := range spans {
		m := spanMarker(i)
		at := bytes.Index(frame[from:], m)
		if at < 0 {
			return nil, false
		}
		at += from
		var prefix []byte
		if flexible {
			prefix = binary.AppendUvarint(nil, markerLen+1)
		} else {
			prefix = binary.BigEndian.AppendUint32(nil, markerLen)
		}
		if at < len(prefix) || !bytes.Equal(frame[at-len(prefix):at], prefix) {
			return nil, false
		}
		out = append(out, frame[from:at-len(prefix)]...)
		n := spans[i].span.Len
		if flexible {
			out = binary.AppendUvarint(out, uint64(n)+1)
		} else {
			out = binary.BigEndian.AppendUint32(out, uint32(n))
		}
		pieces = append(pieces, piece{b: out[start:len(out):len(out)]}, piece{span: &spans[i].span})
		start = len(out)
		size += n
		from = at + markerLen
	}
	if bytes.Contains(frame[from:], markerPrefix[:]) {
		// A marker found twice: the encoding is not what it seems.
		return nil, false
	}
	out = append(out, frame[from:]...)
	pieces = append(pieces, piece{b: out[start:]})
	size += int64(len(out)) - 4
	binary.BigEndian.PutUint32(out, uint32(size))
	return pieces, true
}

// writePieces writes a response sent in pieces: bytes with write (flagged
// MSG_MORE where the platform has it, so the kernel sends them with what
// follows), spans with sendfile.
func writePieces(nc net.Conn, pieces []piece) (int64, error) {
	var total int64
	for i, p := range pieces {
		if p.span != nil {
			n, err := sendSpan(nc, p.span)
			total += n
			if err != nil {
				return total, err
			}
			continue
		}
		if len(p.b) == 0 {
			continue
		}
		n, err := writeMore(nc, p.b, i < len(pieces)-1)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// copySpan sends a span by reading it, for connections and files sendfile
// cannot serve.
func copySpan(w io.Writer, s *commitlog.FileSpan) (int64, error) {
	n, err := io.Copy(w, io.NewSectionReader(s.File(), s.Pos, s.Len))
	if err == nil && n < s.Len {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

var errShortSpan = errors.New("segment file ended inside a fetched span")
