package cep

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
)

type discard struct{ n int }

func (d *discard) Match(*Match)                { d.n++ }
func (d *discard) Timeout(*Match)              {}
func (d *discard) Invalid(*event.Event, error) {}

// loginEvents is a stream over users: mostly failures, one success in
// eight, in time order.
func loginEvents(n, users int) []*event.Event {
	rng := rand.New(rand.NewPCG(3, 4))
	evs := make([]*event.Event, n)
	for i := range evs {
		typ := "LoginFailed"
		if rng.IntN(8) == 0 {
			typ = "LoginSuccess"
		}
		e := event.New("auth", typ)
		e.ID = fmt.Sprintf("e%08d", i)
		e.Time = t0.Add(time.Duration(i) * time.Millisecond)
		e.Data = []byte(fmt.Sprintf(`{"user":"user-%06d","ip":"10.0.0.1"}`, rng.IntN(users)))
		evs[i] = e
	}
	return evs
}

// BenchmarkFraud is the seed's fraud pattern over 100,000 users (floor:
// 500,000 events/s on one core).
func BenchmarkFraud(b *testing.B) {
	evs := loginEvents(1<<18, 100_000)
	eng, err := NewEngine(fraud())
	if err != nil {
		b.Fatal(err)
	}
	var out discard
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		eng.Process(evs[i&(len(evs)-1)], &out)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(out.n), "matches")
}

// TestPartialMatchState measures the heap held per partial match of the
// fraud pattern (floor: 256 bytes), with 100,000 users each part-way.
func TestPartialMatchState(t *testing.T) {
	eng, err := NewEngine(fraud())
	if err != nil {
		t.Fatal(err)
	}
	var out discard
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const users = 100_000
	e := event.New("auth", "LoginFailed")
	for round := 0; round < 2; round++ {
		for u := 0; u < users; u++ {
			e2 := *e
			e2.ID = fmt.Sprintf("%s-%d-%d", "01J9ZQ4X8Y7W6V5T4S3R2Q1P0N", u, round) // a 36-byte id
			e2.Time = t0.Add(time.Duration(round*users+u) * time.Millisecond)
			e2.Data = []byte(fmt.Sprintf(`{"user":"user-%06d"}`, u))
			eng.Process(&e2, &out)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := eng.Stats()
	per := float64(after.HeapAlloc-before.HeapAlloc) / float64(st.PartialMatches)
	t.Logf("%d partial matches over %d partitions: %.0f bytes each (ids, nodes, runs, partitions)", st.PartialMatches, st.Partitions, per)
	if st.PartialMatches != 2*users {
		t.Fatalf("partial matches %d, want %d", st.PartialMatches, 2*users)
	}
	if per > 256 {
		t.Fatalf("%.0f bytes per partial match, above the 256 floor", per)
	}
	runtime.KeepAlive(eng)
}
