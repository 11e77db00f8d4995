package lineage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/embedded"
)

// openLogAt opens a broker on dir behind an eventlog; close stops it all,
// as a server shutting down does.
func openLogAt(t *testing.T, dir string) (l eventlog.Log, close func()) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := broker.Open(broker.Config{DataDir: dir, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	store, err := b.GroupStore()
	if err != nil {
		t.Fatal(err)
	}
	g, err := groups.New(context.Background(), groups.Config{Store: store, Logger: logger,
		TopicExists: b.PartitionExists, HighWatermark: b.HighWatermark})
	if err != nil {
		t.Fatal(err)
	}
	el, err := embedded.New(embedded.Config{Broker: b, Groups: g})
	if err != nil {
		t.Fatal(err)
	}
	done := false
	close = func() {
		if !done {
			done = true
			el.Close()
			g.Close()
			b.Close()
		}
	}
	t.Cleanup(close)
	return el, close
}

// startIndexer starts an indexer persisting in dir over l's topics and
// waits until it has caught up.
func startIndexer(t *testing.T, l eventlog.Log, dir string, topics map[string]int) *Indexer {
	t.Helper()
	x, err := NewIndexer(Config{Log: l, Dir: dir, Poll: 10 * time.Millisecond,
		Topics: func() map[string]int { return topics }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	x.Start(context.Background())
	t.Cleanup(func() { x.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for !x.CaughtUp() {
		if time.Now().After(deadline) {
			t.Fatal("the indexer did not catch up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return x
}

func flowJSON(t *testing.T, x *Indexer, id string) string {
	t.Helper()
	f, ok := x.Index().Flow(id, 1000)
	if !ok {
		return "<none>"
	}
	b, _ := json.Marshal(f)
	return string(b)
}

// counter is how many events x read from the topics and indexed.
func counter(x *Indexer) float64 {
	var m dto.Metric
	x.indexed.Write(&m)
	return m.GetCounter().GetValue()
}

// TestIndexSurvivesRestart: with Config.Dir the index is kept in a file; a
// server restarted on the same directories answers the same flows and
// lineages from the file without reading the events again, goes on with the
// events written after, and keeps those across the next restart. A torn
// tail is cut and what it held is read again from the topics; a damaged
// header sets the file aside and the index is rebuilt from the topics; a
// deleted topic's events leave the index at the next start.
func TestIndexSurvivesRestart(t *testing.T) {
	dataDir, idxDir := t.TempDir(), t.TempDir()
	ctx := context.Background()
	topics := map[string]int{"orders": 1, "payments": 1, "gone": 1}
	l, stop := openLogAt(t, dataDir)
	for name := range topics {
		if err := l.CreateTopic(ctx, name, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	flow := orderFlow("r1-")
	where := []string{"orders", "payments", "payments", "orders", "orders"}
	for i, e := range flow {
		appendEvent(t, l, where[i], e)
	}
	other := event.New("/gone", "gone.event")
	other.ID, other.CorrelationID = "g-2", "g-1"
	appendEvent(t, l, "gone", other)

	x := startIndexer(t, l, idxDir, topics)
	want := flowJSON(t, x, "r1-placed")
	if x.Index().Len() != 6 || want == "<none>" {
		t.Fatalf("indexed %d events; flow %s", x.Index().Len(), want)
	}
	x.Close()
	stop()

	// Restart: everything comes from the file.
	l, stop = openLogAt(t, dataDir)
	x = startIndexer(t, l, idxDir, topics)
	if got := flowJSON(t, x, "r1-placed"); got != want {
		t.Fatalf("after a restart the flow is\n%s\nwant\n%s", got, want)
	}
	if n := counter(x); n != 0 || x.Index().Len() != 6 {
		t.Fatalf("after a restart %v events were read from the topics again and %d are indexed; want 0 and 6", n, x.Index().Len())
	}
	// Later events are indexed, and kept by the next restart.
	late := event.NewFrom(flow[4], "/orders", "order.archived")
	late.ID = "r1-archived"
	appendEvent(t, l, "orders", late)
	waitFor(t, func() bool { return x.Index().Len() == 7 })
	want = flowJSON(t, x, "r1-placed")
	x.Close()
	stop()

	l, stop = openLogAt(t, dataDir)
	x = startIndexer(t, l, idxDir, topics)
	if got := flowJSON(t, x, "r1-placed"); got != want || counter(x) != 0 {
		t.Fatalf("after a second restart (%v events read again) the flow is\n%s\nwant\n%s", counter(x), got, want)
	}
	x.Close()

	// A torn tail: cut, and what it lost read again from the topics.
	path := filepath.Join(idxDir, indexFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	torn := append(b[:len(b)-40:len(b)-40], 0xde, 0xad, 0xbe, 0xef, 0, 0, 0)
	if err := os.WriteFile(path, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	x = startIndexer(t, l, idxDir, topics)
	if got := flowJSON(t, x, "r1-placed"); got != want || x.Index().Len() != 7 {
		t.Fatalf("after a torn tail: %d events, flow\n%s\nwant\n%s", x.Index().Len(), got, want)
	}
	x.Close()
	if _, valid, err := readFile(t, path); err != nil || valid != fileSize(t, path) {
		t.Fatalf("the file was not rewritten whole: valid %d of %d, %v", valid, fileSize(t, path), err)
	}

	// A damaged header: set aside, rebuilt from the topics.
	b, _ = os.ReadFile(path)
	b[0] ^= 0xff
	os.WriteFile(path, b, 0o644)
	x = startIndexer(t, l, idxDir, topics)
	if got := flowJSON(t, x, "r1-placed"); got != want || counter(x) != 7 {
		t.Fatalf("after a damaged header (%v events read from the topics) the flow is\n%s\nwant\n%s", counter(x), got, want)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Errorf("the damaged file was not set aside: %v", err)
	}
	x.Close()

	// A deleted topic's events leave the index at the next start.
	if err := l.DeleteTopic(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	delete(topics, "gone")
	x = startIndexer(t, l, idxDir, topics)
	if _, ok := x.Index().Flow("g-1", 10); ok || x.Index().Len() != 6 {
		t.Fatalf("the deleted topic's event is still indexed (%d events)", x.Index().Len())
	}
	x.Close()
	stop()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readFile(t *testing.T, path string) ([]*Entry, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*Entry
	_, valid, err := readIndexFile(f, func(e *Entry) { out = append(out, e) })
	return out, valid, err
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestIndexFileRoundTrip: entries and checkpoints read back as written.
func TestIndexFileRoundTrip(t *testing.T) {
	idx := NewIndex()
	for i, e := range orderFlow("rt-") {
		idx.Add(entry(e, "orders", int64(i)))
	}
	idx.Add(Entry{ID: "odd", Topic: "t", Partition: 3, Offset: 1 << 40, Time: time.Unix(0, -5).UTC()})
	next := map[tp]int64{{"orders", 0}: 5, {"t", 3}: 1<<40 + 1}
	path := filepath.Join(t.TempDir(), indexFileName)
	xf, err := createIndexFile(path, idx, next)
	if err != nil {
		t.Fatal(err)
	}
	if err := xf.close(next); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	got := NewIndex()
	gotNext, valid, err := readIndexFile(f, func(e *Entry) { got.Add(*e) })
	if err != nil || valid != fileSize(t, path) {
		t.Fatalf("read: valid %d of %d, %v", valid, fileSize(t, path), err)
	}
	if len(gotNext) != 2 || gotNext[tp{"t", 3}] != 1<<40+1 || gotNext[tp{"orders", 0}] != 5 {
		t.Errorf("checkpoint %v", gotNext)
	}
	a, _ := json.Marshal(idx.byID)
	b, _ := json.Marshal(got.byID)
	if !bytes.Equal(a, b) {
		t.Errorf("entries\n%s\nwant\n%s", b, a)
	}
	// A file of another version is refused, named as corrupt.
	raw, _ := os.ReadFile(path)
	raw[9] = 2
	if _, _, err := readIndexFile(bytes.NewReader(raw), func(*Entry) {}); !errors.Is(err, ErrCorruptFile) {
		t.Errorf("version 2: %v", err)
	}
}

// FuzzReadIndexFile: any bytes read as an index file give a good prefix and
// the entries in it, never a panic; the entries read encode and decode to
// themselves.
func FuzzReadIndexFile(f *testing.F) {
	idx := NewIndex()
	for i, e := range orderFlow("fz-") {
		idx.Add(entry(e, "orders", int64(i)))
	}
	path := filepath.Join(f.TempDir(), indexFileName)
	xf, err := createIndexFile(path, idx, map[tp]int64{{"orders", 0}: 5})
	if err != nil {
		f.Fatal(err)
	}
	xf.close(map[tp]int64{{"orders", 0}: 5})
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add(good[:fileHeaderLen])
	f.Add(good[:len(good)-3])
	f.Add([]byte{})
	f.Add([]byte("HLINEAGE\x00\x01\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var entries []*Entry
		_, valid, err := readIndexFile(bytes.NewReader(b), func(e *Entry) { entries = append(entries, e) })
		if err != nil {
			if !errors.Is(err, ErrCorruptFile) {
				t.Fatalf("error %v does not wrap ErrCorruptFile", err)
			}
			return
		}
		if valid > int64(len(b)) || (len(b) > 0 && valid < fileHeaderLen) {
			t.Fatalf("valid prefix %d of %d bytes", valid, len(b))
		}
		for _, e := range entries {
			back, _, err := decodeBody(encodeEntry(nil, e))
			if err != nil || *back != *e {
				t.Fatalf("entry %+v reads back as %+v (%v)", e, back, err)
			}
		}
	})
}
