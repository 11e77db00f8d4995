package stream

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
)

type discard struct{ n int }

func (d *discard) Result(*Result)                     { d.n++ }
func (d *discard) Late(*event.Event, int32)           {}
func (d *discard) Invalid(*event.Event, int32, error) {}

func benchEvents(n, keys int) []*event.Event {
	evs := make([]*event.Event, n)
	for i := range evs {
		e := event.New("bench", "OrderCreated")
		e.ID = fmt.Sprint(i)
		e.Time = t0.Add(time.Duration(i) * time.Millisecond)
		e.Data = []byte(fmt.Sprintf(`{"user":"user-%d","total":%d,"currency":"EUR"}`, i%keys, i%100))
		evs[i] = e
	}
	return evs
}

func tumblingCfg() Config {
	return Config{Key: "data.user", Window: TumblingWindow(time.Minute),
		Aggs:  []Agg{{Kind: Count}, {Kind: Sum, Field: "data.total", Name: "sum"}},
		Grace: Grace(time.Second), MaxOutOfOrder: time.Second, Emit: EmitFinal}
}

// BenchmarkTumblingCountSum: tumbling count and sum per key over 10,000
// keys on pre-decoded events (floor: 1,000,000 events/s on one core).
func BenchmarkTumblingCountSum(b *testing.B) {
	evs := benchEvents(1<<18, 10000)
	p := newP(b, tumblingCfg())
	var out discard
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := evs[i&(len(evs)-1)]
		if i&(len(evs)-1) == 0 && i > 0 {
			// Wrap time forward so that the stream stays in order.
			b.StopTimer()
			for _, x := range evs {
				x.Time = x.Time.Add(time.Duration(len(evs)) * time.Millisecond)
			}
			b.StartTimer()
		}
		p.Process(0, e, &out)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkTumblingCountSumDecode includes decoding each Kafka record
// (event.Decode) before processing.
func BenchmarkTumblingCountSumDecode(b *testing.B) {
	evs := benchEvents(1<<16, 10000)
	msgs := make([]event.Message, len(evs))
	for i, e := range evs {
		m, err := event.Encode(e)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = m
	}
	p := newP(b, tumblingCfg())
	p.cfg.ProcessingTime = false
	var out discard
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e, err := event.Decode(msgs[i&(len(msgs)-1)])
		if err != nil {
			b.Fatal(err)
		}
		e.Time = e.Time.Add(time.Duration(i>>16) * 65536 * time.Millisecond)
		p.Process(0, e, &out)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// TestOpenWindowMemory holds 1,000,000 open keyed windows (count and sum)
// and checks the heap they take (floor: 300 MiB).
func TestOpenWindowMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 1,000,000 windows")
	}
	const n = 1_000_000
	e := event.New("bench", "OrderCreated")
	e.Time = t0
	var out discard
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p := newP(t, Config{Key: "data.user", Window: TumblingWindow(time.Hour),
		Aggs:  []Agg{{Kind: Count}, {Kind: Sum, Field: "data.total", Name: "sum"}},
		Grace: Grace(time.Second), Emit: EmitFinal})
	buf := make([]byte, 0, 64)
	for i := 0; i < n; i++ {
		buf = fmt.Appendf(buf[:0], `{"user":"user-%07d","total":%d}`, i, i%100)
		e.Data = buf
		p.Process(0, e, &out)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if p.Stats().OpenWindows != n {
		t.Fatalf("open windows %d", p.Stats().OpenWindows)
	}
	used := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	t.Logf("1,000,000 open windows: %.1f MiB heap (%.0f bytes/window)", used, used*(1<<20)/n)
	if used > 300 {
		t.Fatalf("%.1f MiB for 1,000,000 windows, above the 300 MiB floor", used)
	}
	runtime.KeepAlive(p)
}

// BenchmarkMarshalChanges: the incremental checkpoint of a transaction
// that changed 100 keys, with 200,000 windows open (one per key, tumbling
// hour windows), as a job with a large state writes after every batch.
func BenchmarkMarshalChanges(b *testing.B) {
	const keys, changed = 200000, 100
	cfg := Config{Key: "data.user", Window: TumblingWindow(time.Hour), Aggs: []Agg{{Kind: Count}},
		Grace: Grace(time.Minute), Emit: EmitFinal}
	p := newP(b, cfg)
	p.TrackChanges()
	var out discard
	evs := make([]*event.Event, keys)
	for i := range evs {
		e := event.New("bench", "OrderCreated")
		e.Time = t0.Add(time.Duration(i) * time.Microsecond)
		e.Data = fmt.Appendf(nil, `{"user":"user-%d"}`, i)
		evs[i] = e
		p.Process(0, e, &out)
	}
	if _, _, err := p.MarshalChanges(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < changed; j++ {
			p.Process(0, evs[(i*changed+j*1999)%keys], &out)
		}
		_, ks, err := p.MarshalChanges()
		if err != nil {
			b.Fatal(err)
		}
		if len(ks) != changed {
			b.Fatalf("%d keys in the checkpoint, want %d", len(ks), changed)
		}
	}
}
