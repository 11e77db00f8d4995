package pattern

import (
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
)

// benchEvent builds an event of about 1 KiB with 20 fields whose values
// depend on k.
func benchEvent(k int) *event.Event {
	note := strings.Repeat("lorem ipsum dolor sit amet ", 14)
	data := fmt.Sprintf(`{"customer":"cust-%d","region":"reg-%d-east","status":"Status-%d","amount":%d.5,`+
		`"currency":"EUR","items":[{"sku":"sku-%d","qty":%d},{"sku":"sku-x","qty":1}],`+
		`"address":{"street":"1 Main Street","city":"Springfield","zip":"%05d","country":"DE"},`+
		`"note":%q,"tags":["a","b","c"],"created":"2026-11-26T07:00:00Z","priority":%d,"express":true,"coupon":null,`+
		`"channel":"web","ip":"10.%d.%d.7"}`, k, k, k, k*10, k, k%5, k, note, k%3, k%256, (k/256)%256)
	e := event.New(fmt.Sprintf("svc-%d", k%50), fmt.Sprintf("order.t%d", k%20))
	e.Subject = fmt.Sprintf("order-%d", k)
	e.DataContentType = "application/json"
	e.Data = []byte(data)
	return e
}

func simpleRule(i int) string {
	switch i % 3 {
	case 0:
		return fmt.Sprintf(`{"source":["svc-%d"],"data":{"customer":["cust-%d"]}}`, i%50, i)
	case 1:
		return fmt.Sprintf(`{"data":{"region":[{"prefix":"reg-%d-"}]}}`, i)
	}
	return fmt.Sprintf(`{"detail":{"status":[{"equals-ignore-case":"STATUS-%d"}]}}`, i)
}

func numericRule(i int) string {
	if i%2 == 0 {
		return fmt.Sprintf(`{"data":{"amount":[{"numeric":[">=",%d,"<",%d]}]}}`, i*10, i*10+10)
	}
	return fmt.Sprintf(`{"data":{"customer":["cust-%d"],"status":[{"anything-but":["cancelled","Status-%d"]}]}}`, i, i+1)
}

func benchMatch(b *testing.B, rules int, gen func(int) string, wantMin int) {
	m := NewMachine()
	for i := 0; i < rules; i++ {
		m.Add(fmt.Sprint(i), MustCompile(gen(i)))
	}
	events := make([]*event.Event, 256)
	for i := range events {
		events[i] = benchEvent((i * 7919) % rules)
	}
	var out []string
	matched := 0
	b.SetBytes(int64(len(events[0].Data)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		out = m.MatchEvent(events[i&255], out[:0])
		matched += len(out)
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// On a shared machine wall time includes waiting for a core; the
	// process's CPU time (with -cpu 1, GC included) is what one core costs.
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
	if matched < wantMin*b.N {
		b.Fatalf("matched %d over %d events, want at least %d each", matched, b.N, wantMin)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMatch/kind=simple: exact, prefix and equals-ignore-case rules
// (a third each); kind=numeric: numeric ranges and anything-but.
func BenchmarkMatch(b *testing.B) {
	for _, kind := range []struct {
		name string
		gen  func(int) string
	}{{"simple", simpleRule}, {"numeric", numericRule}} {
		for _, n := range []int{10, 100, 1000, 10000} {
			b.Run(fmt.Sprintf("kind=%s/rules=%d", kind.name, n), func(b *testing.B) {
				benchMatch(b, n, kind.gen, 1)
			})
		}
	}
}

// BenchmarkMatchParallel matches on every core at once (GOMAXPROCS
// goroutines), as a bus's partitions are matched in parallel: events/s is
// wall-clock throughput of the whole machine.
func BenchmarkMatchParallel(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("kind=simple/rules=%d", n), func(b *testing.B) {
			m := NewMachine()
			for i := 0; i < n; i++ {
				m.Add(fmt.Sprint(i), MustCompile(simpleRule(i)))
			}
			events := make([]*event.Event, 256)
			for i := range events {
				events[i] = benchEvent((i * 7919) % n)
			}
			b.SetBytes(int64(len(events[0].Data)))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				var out []string
				i := 0
				for pb.Next() {
					out = m.MatchEvent(events[i&255], out[:0])
					if len(out) == 0 {
						panic("no match")
					}
					i++
				}
			})
			cpu := cpuTime() - cpu0
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
		})
	}
}

// BenchmarkFlatten is the flattening alone of a 1 KiB event.
func BenchmarkFlatten(b *testing.B) {
	m := NewMachine()
	m.Add("r", MustCompile(`{"data":{"customer":["x"],"amount":[1],"items":{"sku":["y"]}}}`))
	e := benchEvent(1)
	doc := EventJSON(e)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	var out []string
	for i := 0; i < b.N; i++ {
		var err error
		out, err = m.MatchJSON(doc, out[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
}

func TestMatchEventAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates and sync.Pool drops items under it")
	}
	m := NewMachine()
	for i := 0; i < 300; i++ {
		m.Add(fmt.Sprint(i), MustCompile(simpleRule(i)))
		m.Add(fmt.Sprint("n", i), MustCompile(numericRule(i)))
	}
	e := benchEvent(7)
	out := m.MatchEvent(e, nil)
	if len(out) == 0 {
		t.Fatal("no match")
	}
	allocs := testing.AllocsPerRun(200, func() { out = m.MatchEvent(e, out[:0]) })
	if allocs > 0 {
		t.Fatalf("MatchEvent allocates %.1f times per event", allocs)
	}
	doc := EventJSON(e)
	allocs = testing.AllocsPerRun(200, func() { out, _ = m.MatchJSON(doc, out[:0]) })
	if allocs > 0 {
		t.Fatalf("MatchJSON allocates %.1f times per event", allocs)
	}
}

// TestMemoryPerRule: a simple rule costs at most 2 KiB of heap.
func TestMemoryPerRule(t *testing.T) {
	const n = 20000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := NewMachine()
	for i := 0; i < n; i++ {
		m.Add(fmt.Sprint("rule-", i), MustCompile(fmt.Sprintf(`{"source":["svc-%d"],"data":{"customer":["cust-%d"]}}`, i%50, i)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per simple rule", per)
	if per > 2048 {
		t.Fatalf("%.0f bytes per simple rule, want <= 2048", per)
	}
	runtime.KeepAlive(m)
}
