package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sort"

	"github.com/heraldhq/herald/internal/binrec"
)

// Key state layout (incremental checkpoints; frozen at version 1): the
// windows of one key, written as the value of the key's record (the key
// itself is the record's key, not repeated here).
//
//	offset  size  field
//	0       4     magic "HSTK"
//	4       1     version (1)
//	5       4     CRC-32C of the payload, big-endian
//	9       4     CRC-32C of the Processor's definition (fingerprint)
//	13      n     payload
//
// payload: uvarint window count, then per window: varint start, varint
// last, floats (uvarint count, then 8 bytes each, big-endian IEEE 754),
// uvarint sketch count then per sketch bytes (uvarint length+1, 0 for
// none), uvarint top-k count then per top-k (uvarint entries, then per
// entry bytes and a varint count); then uvarint sliding count (0 or 1)
// and per sliding state: uvarint event count, per event varint time,
// floats, uvarint string count and per string bytes; then the window
// ends (uvarint count, varint each).
const (
	keyStateMagic   = "HSTK"
	keyStateVersion = 1
	keyStateHeader  = 13
)

type keyEnc struct{ b []byte }

func (e *keyEnc) uv(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *keyEnc) v(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *keyEnc) bytes(x []byte) {
	if x == nil {
		e.uv(0)
		return
	}
	e.uv(uint64(len(x)) + 1)
	e.b = append(e.b, x...)
}
func (e *keyEnc) floats(fs []float64) {
	e.uv(uint64(len(fs)))
	for _, f := range fs {
		e.b = binary.BigEndian.AppendUint64(e.b, math.Float64bits(f))
	}
}

// encodeKeyState writes one key's windows and sliding state.
func encodeKeyState(fingerprint string, ws []winSnap, slides []slideSnap) []byte {
	e := keyEnc{b: make([]byte, keyStateHeader, 64)}
	e.uv(uint64(len(ws)))
	for _, w := range ws {
		e.v(w.Start)
		e.v(w.Last)
		e.floats(w.Nums)
		e.uv(uint64(len(w.HLL)))
		for _, h := range w.HLL {
			e.bytes(h)
		}
		e.uv(uint64(len(w.Top)))
		for _, top := range w.Top {
			names := make([]string, 0, len(top))
			for k := range top {
				names = append(names, k)
			}
			sort.Strings(names)
			e.uv(uint64(len(names)))
			for _, k := range names {
				e.bytes([]byte(k))
				e.v(top[k])
			}
		}
	}
	e.uv(uint64(len(slides)))
	for _, s := range slides {
		e.uv(uint64(len(s.Evs)))
		for _, ev := range s.Evs {
			e.v(ev.T)
			e.floats(ev.Nums)
			e.uv(uint64(len(ev.Strs)))
			for _, x := range ev.Strs {
				e.bytes(x)
			}
		}
		e.uv(uint64(len(s.Ends)))
		for _, end := range s.Ends {
			e.v(end)
		}
	}
	copy(e.b, keyStateMagic)
	e.b[4] = keyStateVersion
	binary.BigEndian.PutUint32(e.b[5:], crc32.Checksum(e.b[keyStateHeader:], crcTable))
	binary.BigEndian.PutUint32(e.b[9:], crc32.Checksum([]byte(fingerprint), crcTable))
	return e.b
}

// keyDec is a key state reader; failures wrap ErrCorruptState.
type keyDec struct{ *binrec.Reader }

// errKeyState prefixes every key state decoding failure.
var errKeyState = fmt.Errorf("%w: key state", ErrCorruptState)

// bytes reads what keyEnc.bytes wrote: nil, or a copy (empty, not nil, for
// a zero length).
func (d keyDec) bytes(what string) []byte {
	n := d.Uvarint(what + " length")
	if n == 0 {
		return nil
	}
	if n-1 > uint64(d.Len()) {
		d.Fail(fmt.Sprintf("%s length %d exceeds the %d bytes left", what, n-1, d.Len()))
		return nil
	}
	return append([]byte{}, d.Take(int(n-1), what)...)
}

func (d keyDec) floats(what string) []float64 {
	fs := make([]float64, d.UvarintCount(what+" count", 8))
	for i := range fs {
		fs[i] = math.Float64frombits(d.U64(what))
	}
	return fs
}

// decodeKeyState reads what encodeKeyState wrote for key; the
// definition's fingerprint must match.
func decodeKeyState(b []byte, key, fingerprint string) ([]winSnap, []slideSnap, error) {
	if len(b) < keyStateHeader {
		return nil, nil, fmt.Errorf("%w: key state: %d bytes, shorter than the %d-byte header", ErrCorruptState, len(b), keyStateHeader)
	}
	if string(b[:4]) != keyStateMagic || b[4] != keyStateVersion {
		return nil, nil, fmt.Errorf("%w: key state: bad magic or version %q", ErrCorruptState, b[:5])
	}
	if crc32.Checksum(b[keyStateHeader:], crcTable) != binary.BigEndian.Uint32(b[5:]) {
		return nil, nil, fmt.Errorf("%w: key state: checksum mismatch", ErrCorruptState)
	}
	if crc32.Checksum([]byte(fingerprint), crcTable) != binary.BigEndian.Uint32(b[9:]) {
		return nil, nil, errors.New("stream: the key state was written under another definition")
	}
	d := keyDec{binrec.NewReader(b[keyStateHeader:], errKeyState, keyStateVersion)}
	ws := make([]winSnap, d.UvarintCount("window count", 3))
	for i := range ws {
		w := &ws[i]
		w.Key, w.Start, w.Last, w.Nums = key, d.Varint("window start"), d.Varint("window last"), d.floats("window value")
		w.HLL = make([][]byte, d.UvarintCount("sketch count", 1))
		for j := range w.HLL {
			w.HLL[j] = d.bytes("sketch")
		}
		w.Top = make([]map[string]int64, d.UvarintCount("top-k count", 1))
		for j := range w.Top {
			n := d.UvarintCount("top-k entry count", 2)
			w.Top[j] = make(map[string]int64, n)
			for ; n > 0; n-- {
				k := d.bytes("top-k name")
				w.Top[j][string(k)] = d.Varint("top-k count")
			}
		}
	}
	slides := make([]slideSnap, d.UvarintCount("sliding count", 2))
	for i := range slides {
		s := &slides[i]
		s.Key = key
		s.Evs = make([]slideEvSnap, d.UvarintCount("sliding event count", 3))
		for j := range s.Evs {
			ev := &s.Evs[j]
			ev.T, ev.Nums = d.Varint("sliding event time"), d.floats("sliding event value")
			if n := d.UvarintCount("sliding event string count", 1); n > 0 {
				if n != len(ev.Nums) {
					d.Fail(fmt.Sprintf("a sliding event with %d values and %d strings", len(ev.Nums), n))
				}
				ev.Strs = make([][]byte, n)
				for k := range ev.Strs {
					ev.Strs[k] = d.bytes("sliding event string")
				}
			}
		}
		s.Ends = make([]int64, d.UvarintCount("window end count", 1))
		for j := range s.Ends {
			s.Ends[j] = d.Varint("window end")
		}
	}
	if err := d.End("state"); err != nil {
		return nil, nil, err
	}
	return ws, slides, nil
}
