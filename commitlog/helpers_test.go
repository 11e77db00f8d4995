package commitlog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
)

// quietLogger discards log lines unless -v.
func quietLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(&tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w *tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func openTestStore(t testing.TB, dir string, opts ...func(*StoreOptions)) *Store {
	t.Helper()
	o := StoreOptions{Logger: quietLogger(t), CleanInterval: -1}
	for _, f := range opts {
		f(&o)
	}
	st, err := OpenStore(dir, o)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	return st
}

func openTestLog(t testing.TB, st *Store, name string, o Options) *Log {
	t.Helper()
	l, err := st.OpenLog(name, o)
	if err != nil {
		t.Fatalf("OpenLog: %v", err)
	}
	return l
}

// makeBatch encodes n records whose values are "prefix-i" padded to size.
func makeBatch(t testing.TB, prefix string, n, size int, ts int64) []byte {
	t.Helper()
	recs := make([]batch.Rec, n)
	for i := range recs {
		recs[i] = batch.Rec{Timestamp: ts, Key: []byte(fmt.Sprintf("k%d", i)), Value: padValue(fmt.Sprintf("%s-%d", prefix, i), size)}
	}
	b, err := batch.Encode(nil, batch.BuildOptions{}, recs)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

func padValue(s string, size int) []byte {
	v := []byte(s)
	for len(v) < size {
		v = append(v, '.')
	}
	return v
}

// keyed encodes one record per key/value pair; a nil value is a tombstone.
func keyed(t testing.TB, ts int64, kv ...any) []byte {
	t.Helper()
	var recs []batch.Rec
	for i := 0; i < len(kv); i += 2 {
		r := batch.Rec{Timestamp: ts, Key: []byte(kv[i].(string))}
		if kv[i+1] != nil {
			r.Value = []byte(kv[i+1].(string))
		}
		recs = append(recs, r)
	}
	b, err := batch.Encode(nil, batch.BuildOptions{}, recs)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

type rec struct {
	off   int64
	ts    int64
	key   string
	value string
	null  bool
}

// readAll decodes every record from offset from to the high-water mark.
func readAll(t testing.TB, l *Log, from int64) []rec {
	t.Helper()
	var out []rec
	ctx := context.Background()
	var buf []byte
	for off := from; off < l.HighWatermark(); {
		b, err := l.Read(ctx, off, 64<<10, buf)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if len(b) == 0 {
			break
		}
		recs, next, err := decodeBatches(b, off)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recs...)
		off = next
		buf = b
	}
	return out
}

// decodeBatches decodes the records at or after from in b and returns the
// offset after the last batch.
func decodeBatches(b []byte, from int64) ([]rec, int64, error) {
	var out []rec
	var it batch.Iter
	next := from
	for p := 0; p < len(b); {
		h, err := batch.ParseHeader(b[p:])
		if err != nil {
			return out, next, fmt.Errorf("parse: %w", err)
		}
		if err := it.Reset(b[p : p+h.Size()]); err != nil {
			return out, next, fmt.Errorf("iter: %w", err)
		}
		for it.Next() {
			if it.Offset() < from {
				continue
			}
			r := it.Record()
			out = append(out, rec{off: it.Offset(), ts: it.Timestamp(), key: string(r.Key), value: string(r.Value), null: r.Value == nil})
		}
		if err := it.Err(); err != nil {
			return out, next, fmt.Errorf("iter: %w", err)
		}
		next = h.LastOffset() + 1
		p += h.Size()
	}
	return out, next, nil
}

func decodeAll(b []byte, from int64) ([]rec, int64) {
	recs, next, _ := decodeBatches(b, from)
	return recs, next
}

func mustReadDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func hasSuffix(s, suffix string) bool { return strings.HasSuffix(s, suffix) }

func mustAppend(t testing.TB, l *Log, b []byte) int64 {
	t.Helper()
	off, err := l.Append(context.Background(), b)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return off
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// abandon stops a store's background work and releases its lock without
// closing its logs, as if the process died (the page cache survives, as it
// does when a process is killed).
func abandon(st *Store) {
	close(st.stop)
	st.wg.Wait()
	st.lock.Close()
}
