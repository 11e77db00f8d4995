package commitlog

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/heraldhq/herald/internal/vfs"
)

// FuzzRecoverTail appends arbitrary bytes to the active segment of a cleanly
// closed log, as a crash mid-write or a bad disk might, and reopens it. The
// open must succeed (the bytes lie after the recovery point), keep every
// record written before, and read back only valid batches.
func FuzzRecoverTail(f *testing.F) {
	good := makeBatch(f, "seed", 3, 20, 1)
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add(make([]byte, 4096))
	f.Add(good[:30])
	f.Add(good[:len(good)-1])
	f.Add(good)
	wrongOffset := append([]byte(nil), good...)
	binary.BigEndian.PutUint64(wrongOffset, 99)
	f.Add(wrongOffset)
	huge := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(huge[8:], 1<<31-1)
	f.Add(huge)
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		st := openTestStore(t, dir)
		// NB: unsafe-none only speeds up the setup; Close syncs everything.
		l := openTestLog(t, st, "p", Options{Durability: DurabilityUnsafeNone})
		for i := 0; i < 3; i++ {
			mustAppend(t, l, makeBatch(t, "r", 2, 10, int64(i)))
		}
		want := readAll(t, l, 0)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		seg := filepath.Join(dir, logsDir, "p", segmentName(0)+segSuffix)
		fh, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh.Write(tail)
		fh.Close()

		st = openTestStore(t, dir)
		defer st.Close()
		l, err = st.OpenLog("p", Options{Durability: DurabilityUnsafeNone})
		if err != nil {
			t.Fatalf("open after appending %d bytes: %v", len(tail), err)
		}
		got := readAll(t, l, 0)
		if len(got) < len(want) || !reflect.DeepEqual(got[:len(want)], want) {
			t.Fatalf("records before the tail changed: got %d, want %d", len(got), len(want))
		}
		r := l.Recovery()
		if len(got) == len(want) && int64(len(tail)) != r.TruncatedBytes+r.UnwrittenBytes {
			t.Fatalf("tail of %d bytes dropped, report says %d truncated and %d unwritten", len(tail), r.TruncatedBytes, r.UnwrittenBytes)
		}
		if allZero := bytes.Count(tail, []byte{0}) == len(tail); allZero != (r.UnwrittenBytes == int64(len(tail))) || (allZero && r.Lost()) {
			t.Fatalf("tail of %d bytes, all zero %v: report %+v", len(tail), allZero, r)
		}
		if off := mustAppend(t, l, makeBatch(t, "after", 1, 10, 9)); off != int64(len(got)) {
			t.Fatalf("append after recovery at offset %d, want %d", off, len(got))
		}
	})
}

// FuzzDecodeCheckpoint feeds arbitrary bytes to the recovery-points decoder.
func FuzzDecodeCheckpoint(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "rp")
	if err := writeCheckpoint(vfs.Default, path, map[string]recoveryPoint{
		"orders/0": {seg: 10, fileID: 7, pos: 4096, next: 77, maxTs: 1700000000000, maxTsRel: 3},
		"a":        {seg: 0, pos: 32, maxTs: -1},
	}); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Add(b[:20])
	f.Add([]byte(ckptMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		rps, err := decodeCheckpoint(b, "fuzz")
		if err != nil {
			if !IsCorruption(err) && !reflect.TypeOf(err).AssignableTo(reflect.TypeOf(&FormatVersionError{})) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		p := filepath.Join(t.TempDir(), "rp")
		if err := writeCheckpoint(vfs.Default, p, rps); err != nil {
			t.Fatal(err)
		}
		again, err := readCheckpoint(vfs.Default, p)
		if err != nil || !reflect.DeepEqual(again, rps) {
			t.Fatalf("re-encoded checkpoint differs: %v", err)
		}
	})
}

// FuzzLoadIndex feeds arbitrary bytes to both index loaders: they must never
// panic and must only return strictly increasing entries inside the segment.
func FuzzLoadIndex(f *testing.F) {
	valid := fileHeader{magic: offIdxMagic, version: formatVersion, base: 100, fileID: 5}.encode()
	valid = appendOffEntry(valid, 1, 64)
	valid = appendOffEntry(valid, 9, 900)
	f.Add(valid)
	f.Add(valid[:40])
	f.Add(append(valid, make([]byte, offIdxEntrySize)...))
	tvalid := fileHeader{magic: timeIdxMagic, version: formatVersion, base: 100, fileID: 5}.encode()
	tvalid = appendTimeEntry(tvalid, 1000, 1)
	tvalid = appendTimeEntry(tvalid, 2000, 7)
	f.Add(tvalid)
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "x")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		const size = 1000
		if x, err := loadOffsetIndex(vfs.Default, p, 100, 5, size); err == nil {
			for i, e := range x.ents {
				rel, pos := uint32(e>>32), uint32(e)
				if pos < segHeaderSize || pos >= size || (i > 0 && (rel <= uint32(x.ents[i-1]>>32) || pos <= uint32(x.ents[i-1]))) {
					t.Fatalf("bad entry %d: rel %d pos %d", i, rel, pos)
				}
			}
		}
		// The same bytes with the time index magic.
		if len(b) >= 8 {
			copy(b, timeIdxMagic)
			os.WriteFile(p, b, 0o644)
		}
		if x, err := loadTimeIndex(vfs.Default, p, 100, 5, 50); err == nil {
			for i := range x.ts {
				if x.rel[i] > 50 || (i > 0 && (x.ts[i] <= x.ts[i-1] || x.rel[i] < x.rel[i-1])) {
					t.Fatalf("bad time entry %d", i)
				}
			}
		}
	})
}
