package stream

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
)

type rec struct {
	results []string
	late    []string
	invalid []string
}

func (r *rec) Result(x *Result) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%d,%d)", x.Key, x.Start.Unix(), x.End.Unix())
	for _, v := range x.Values {
		if v.Top != nil {
			fmt.Fprintf(&b, " %s=%v", v.Name, v.Top)
		} else {
			fmt.Fprintf(&b, " %s=%g", v.Name, v.Number)
		}
	}
	if !x.Final {
		b.WriteString(" *")
	}
	r.results = append(r.results, b.String())
}
func (r *rec) Late(ev *event.Event, _ int32) { r.late = append(r.late, ev.ID) }
func (r *rec) Invalid(ev *event.Event, _ int32, err error) {
	r.invalid = append(r.invalid, ev.ID+": "+err.Error())
}

var t0 = time.Unix(1_700_000_000, 0).Truncate(time.Hour)

// ev makes an event for user at t0+sec seconds with data.total.
func ev(id, user string, sec int, total float64) *event.Event {
	e := event.New("test", "OrderCreated")
	e.ID = id
	e.Time = t0.Add(time.Duration(sec) * time.Second)
	e.Data = []byte(fmt.Sprintf(`{"user":%q,"total":%g,"nested":{"x":"y"}}`, user, total))
	return e
}

func rel(s string) string { return s } // results print absolute unix seconds

func newP(t testing.TB, cfg Config) *Processor {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func at(sec int) int64 { return t0.Add(time.Duration(sec) * time.Second).Unix() }

func TestTumblingOutOfOrderLateAndGrace(t *testing.T) {
	p := newP(t, Config{
		Key: "data.user", Window: TumblingWindow(10 * time.Second),
		Aggs:          []Agg{{Kind: Count}, {Kind: Sum, Field: "data.total", Name: "sum"}, {Kind: Max, Field: "data.total", Name: "max"}},
		MaxOutOfOrder: 2 * time.Second, Grace: Grace(3 * time.Second), Emit: EmitFinal,
	})
	var r rec
	in := []*event.Event{
		ev("1", "a", 1, 10), ev("2", "b", 2, 5), ev("3", "a", 9, 1),
		ev("4", "a", 12, 7),  // wm 10
		ev("5", "a", 8, 2),   // out of order, window [0,10) still open (10+3 > 10)
		ev("6", "b", 16, 1),  // wm 14: closes [0,10) (10+3 <= 14)
		ev("7", "a", 5, 100), // late: window closed
		ev("8", "a", 25, 1),  // wm 23: closes [10,20)
	}
	for _, e := range in {
		p.Process(0, e, &r)
	}
	want := []string{
		fmt.Sprintf("a [%d,%d) count=3 sum=13 max=10", at(0), at(10)),
		fmt.Sprintf("b [%d,%d) count=1 sum=5 max=5", at(0), at(10)),
		fmt.Sprintf("a [%d,%d) count=1 sum=7 max=7", at(10), at(20)),
		fmt.Sprintf("b [%d,%d) count=1 sum=1 max=1", at(10), at(20)),
	}
	if got := strings.Join(r.results, "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("results:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if len(r.late) != 1 || r.late[0] != "7" {
		t.Fatalf("late = %v, want [7]", r.late)
	}
	p.Flush(&r)
	if last := r.results[len(r.results)-1]; last != fmt.Sprintf("a [%d,%d) count=1 sum=1 max=1", at(20), at(30)) {
		t.Fatalf("flush emitted %q", last)
	}
	if s := p.Stats(); s.OpenWindows != 0 || s.Late != 1 || s.Events != 8 {
		t.Fatalf("stats %+v", s)
	}
	if len(p.keyIDs) != 0 || len(p.aligned) != 0 {
		t.Fatalf("state left after flush: %d keys, %d windows", len(p.keyIDs), len(p.aligned))
	}
}

func TestInvalidTimeAndKeyCounted(t *testing.T) {
	p := newP(t, Config{Key: "data.user", Window: TumblingWindow(time.Second), Aggs: []Agg{{Kind: Count}},
		TimeField: "data.ts", Grace: Grace(0), Emit: EmitFinal})
	var r rec
	e1 := ev("nots", "a", 0, 1)
	e2 := ev("badts", "a", 0, 1)
	e2.Data = []byte(`{"user":"a","ts":"yesterday"}`)
	e3 := ev("nokey", "a", 0, 1)
	e3.Data = []byte(`{"ts":1700000000000}`)
	e4 := ev("ok", "a", 0, 1)
	e4.Data = []byte(`{"user":"a","ts":"2026-01-01T00:00:00Z"}`)
	for _, e := range []*event.Event{e1, e2, e3, e4} {
		p.Process(0, e, &r)
	}
	if len(r.invalid) != 3 || p.Stats().Invalid != 3 {
		t.Fatalf("invalid = %q", r.invalid)
	}
	for i, want := range []string{`"data.ts" is missing`, `"yesterday" is not an RFC 3339`, `key field "data.user" is missing`} {
		if !strings.Contains(r.invalid[i], want) {
			t.Errorf("invalid[%d] = %q, want it to say %s", i, r.invalid[i], want)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Window: TumblingWindow(0), Aggs: []Agg{{Kind: Count}}, Grace: Grace(0), Emit: EmitFinal}, "window.size: 0s is not positive"},
		{Config{Window: TumblingWindow(time.Second), Aggs: []Agg{{Kind: Count}}, Emit: EmitFinal}, "grace: is required"},
		{Config{Window: HoppingWindow(time.Second, 3*time.Second), Aggs: []Agg{{Kind: Count}}, Grace: Grace(0), Emit: EmitFinal}, "window.advance"},
		{Config{Window: SessionWindow(0), Aggs: []Agg{{Kind: Count}}, Grace: Grace(0), Emit: EmitFinal}, "window.gap"},
		{Config{Window: TumblingWindow(time.Second), Aggs: []Agg{{Kind: Sum}}, Grace: Grace(0), Emit: EmitFinal}, "aggregates[0] (sum): field is required"},
		{Config{Key: "data..x", Window: TumblingWindow(time.Second), Aggs: []Agg{{Kind: Count}}, Grace: Grace(0), Emit: EmitFinal}, "key: field path"},
	} {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", c.cfg, err, c.want)
		}
	}
}

func TestHoppingAndEmitChanges(t *testing.T) {
	p := newP(t, Config{Window: HoppingWindow(10*time.Second, 5*time.Second), Aggs: []Agg{{Kind: Count}},
		Grace: Grace(0), Emit: EmitChanges})
	var r rec
	p.Process(0, ev("1", "a", 7, 1), &r)
	want := []string{
		fmt.Sprintf(" [%d,%d) count=1 *", at(5), at(15)),
		fmt.Sprintf(" [%d,%d) count=1 *", at(0), at(10)),
	}
	if strings.Join(r.results, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q want %q", r.results, want)
	}
}

func TestSessionMerge(t *testing.T) {
	p := newP(t, Config{Key: "data.user", Window: SessionWindow(5 * time.Second),
		Aggs: []Agg{{Kind: Count}, {Kind: Sum, Field: "data.total", Name: "sum"}}, Grace: Grace(0),
		MaxOutOfOrder: 20 * time.Second, Emit: EmitFinal})
	var r rec
	// Two sessions for a ([0,5) and [8,13)), then an event at 4 bridges them.
	for _, e := range []*event.Event{ev("1", "a", 0, 1), ev("2", "a", 8, 2), ev("3", "b", 9, 9), ev("4", "a", 4, 3)} {
		p.Process(0, e, &r)
	}
	if p.Stats().OpenWindows != 2 {
		t.Fatalf("open windows %d, want 2 after the merge", p.Stats().OpenWindows)
	}
	p.Flush(&r)
	sort.Strings(r.results)
	want := []string{
		fmt.Sprintf("a [%d,%d) count=3 sum=6", at(0), at(13)),
		fmt.Sprintf("b [%d,%d) count=1 sum=9", at(9), at(14)),
	}
	if strings.Join(r.results, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q want %q", r.results, want)
	}
}

func TestSlidingWindow(t *testing.T) {
	p := newP(t, Config{Window: SlidingWindow(10 * time.Second), Aggs: []Agg{{Kind: Sum, Field: "data.total", Name: "sum"}},
		Grace: Grace(0), MaxOutOfOrder: time.Minute, Emit: EmitFinal})
	var r rec
	for _, e := range []*event.Event{ev("1", "a", 0, 1), ev("2", "a", 5, 2), ev("3", "a", 12, 4), ev("4", "a", 3, 8)} {
		p.Process(0, e, &r)
	}
	p.Flush(&r)
	want := []string{
		fmt.Sprintf(" [%d,%d) sum=1", at(-10), at(0)),
		fmt.Sprintf(" [%d,%d) sum=9", at(-7), at(3)),
		fmt.Sprintf(" [%d,%d) sum=11", at(-5), at(5)),
		fmt.Sprintf(" [%d,%d) sum=14", at(2), at(12)),
	}
	if strings.Join(r.results, "|") != strings.Join(want, "|") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(r.results, "\n"), strings.Join(want, "\n"))
	}
}

func TestIdlePartitionWatermark(t *testing.T) {
	now := t0
	p := newP(t, Config{Window: TumblingWindow(10 * time.Second), Aggs: []Agg{{Kind: Count}}, Grace: Grace(0),
		IdleTimeout: 30 * time.Second, Emit: EmitFinal, Now: func() time.Time { return now }})
	var r rec
	p.Process(0, ev("1", "a", 1, 1), &r)
	p.Process(1, ev("2", "a", 2, 1), &r)
	p.Process(0, ev("3", "a", 50, 1), &r) // partition 1 holds the watermark at 2
	if len(r.results) != 0 {
		t.Fatalf("window closed while partition 1 holds the watermark: %q", r.results)
	}
	now = now.Add(31 * time.Second) // partition 1 idle; partition 0 too
	p.Advance(&r)
	if len(r.results) != 1 {
		t.Fatalf("after the idle timeout: %q, want the [0,10) window", r.results)
	}
	now = now.Add(time.Minute) // every partition idle: time advances
	p.Advance(&r)
	if len(r.results) != 2 {
		t.Fatalf("quiet stream did not close [50,60): %q", r.results)
	}
}

func TestDistinctAndTopK(t *testing.T) {
	p := newP(t, Config{Window: TumblingWindow(time.Hour), Aggs: []Agg{
		{Kind: CountDistinct, Field: "data.user", Name: "users"}, {Kind: TopK, Field: "data.user", K: 2, Name: "top"},
		{Kind: Avg, Field: "data.total", Name: "avg"}, {Kind: Min, Field: "data.total", Name: "min"}},
		Grace: Grace(0), Emit: EmitFinal})
	var r rec
	for i := 0; i < 20000; i++ {
		p.Process(0, ev("x", fmt.Sprintf("u%d", i%5000), 1, float64(i%10)), &r)
	}
	// Space-saving keeps any value more frequent than N/(4k): "hot" (5000
	// of 25000) must lead, its count overestimated by at most N/(4k).
	for i := 0; i < 5000; i++ {
		p.Process(0, ev("x", "hot", 1, 1), &r)
	}
	p.Flush(&r)
	var users float64
	var top string
	fmt.Sscanf(r.results[0][strings.Index(r.results[0], "users=")+6:], "%g", &users)
	if math.Abs(users-5001)/5001 > 0.06 {
		t.Errorf("count distinct %v, want about 5001", users)
	}
	top = r.results[0]
	var hot int
	fmt.Sscanf(top[strings.Index(top, "top=[{hot ")+10:], "%d", &hot)
	if hot < 5000 || hot > 5000+25000/8 || !strings.Contains(top, "min=0") {
		t.Errorf("result %q", top)
	}
}

// TestRandomAgainstReference compares tumbling, hopping and session output
// with a brute-force computation over random out-of-order streams.
func TestRandomAgainstReference(t *testing.T) {
	for seed := uint64(0); seed < 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		for _, w := range []Window{TumblingWindow(10 * time.Second), HoppingWindow(10*time.Second, 5*time.Second), SessionWindow(4 * time.Second)} {
			ooo := time.Duration(rng.IntN(10)) * time.Second
			grace := time.Duration(rng.IntN(5)) * time.Second
			if w.Kind == Session {
				// The reference sessionizes all accepted events at once, which
				// matches only when no event comes within a gap of a session
				// already closed: an out-of-orderness bound covering the
				// stream's disorder (14s) ensures it; merges still happen.
				ooo = 14 * time.Second
			}
			p := newP(t, Config{Key: "data.user", Window: w, Aggs: []Agg{{Kind: Count}, {Kind: Sum, Field: "data.total", Name: "sum"}},
				MaxOutOfOrder: ooo, Grace: Grace(grace), Emit: EmitFinal})
			var r rec
			var taken []*event.Event
			var wms []int64
			maxT := 0
			for i := 0; i < 200; i++ {
				sec := maxT + rng.IntN(4) - rng.IntN(15)
				if sec > maxT {
					maxT = sec
				}
				e := ev(fmt.Sprint(i), fmt.Sprintf("u%d", rng.IntN(3)), sec, float64(rng.IntN(100)))
				nl := len(r.late)
				wm := p.wm
				p.Process(0, e, &r)
				if len(r.late) == nl {
					taken = append(taken, e)
					wms = append(wms, wm)
				}
			}
			p.Flush(&r)
			got := append([]string(nil), r.results...)
			sort.Strings(got)
			want := reference(w, grace, taken, wms)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("seed %d %v ooo %v grace %v:\ngot\n%s\nwant\n%s", seed, w.Kind, ooo, grace, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
	}
}

// reference aggregates the accepted events by brute force. For sessions,
// it is only exact when late events were refused for whole sessions, which
// holds because a refused event merges into no open session.
// Hopping events are added to the windows still open at the watermark
// they met (wms, nanoseconds).
func reference(w Window, grace time.Duration, evs []*event.Event, wms []int64) []string {
	type agg struct {
		n   int
		sum float64
	}
	type wk struct {
		user       string
		start, end int64
	}
	out := map[wk]*agg{}
	add := func(k wk, v float64) {
		if out[k] == nil {
			out[k] = &agg{}
		}
		out[k].n++
		out[k].sum += v
	}
	byUser := map[string][]*event.Event{}
	for i, e := range evs {
		u, _, _ := MustField("data.user").Raw(e)
		v, _ := MustField("data.total").Number(e)
		ts := e.Time.Unix()
		switch w.Kind {
		case Tumbling, Hopping:
			size, adv := int64(w.Size/time.Second), int64(w.Advance/time.Second)
			if adv == 0 {
				adv = size
			}
			for s := floorDiv(ts, adv) * adv; s > ts-size; s -= adv {
				if wms[i] != noTime && time.Unix(s+size, 0).Add(grace).UnixNano() <= wms[i] {
					continue
				}
				add(wk{string(u), s, s + size}, v)
			}
		case Session:
			byUser[string(u)] = append(byUser[string(u)], e)
		}
	}
	gap := int64(w.Gap / time.Second)
	for u, es := range byUser {
		sort.SliceStable(es, func(i, j int) bool { return es[i].Time.Before(es[j].Time) })
		var cur *wk
		var a agg
		flush := func() {
			if cur != nil {
				out[*cur] = &agg{a.n, a.sum}
			}
		}
		for _, e := range es {
			ts := e.Time.Unix()
			v, _ := MustField("data.total").Number(e)
			if cur == nil || ts >= cur.end {
				flush()
				cur = &wk{u, ts, ts + gap}
				a = agg{}
			}
			cur.end = ts + gap
			a.n++
			a.sum += v
		}
		flush()
	}
	var res []string
	for k, a := range out {
		res = append(res, fmt.Sprintf("%s [%d,%d) count=%d sum=%g", k.user, k.start, k.end, a.n, a.sum))
	}
	sort.Strings(res)
	return res
}

func TestJSONLookup(t *testing.T) {
	doc := []byte(` {"a": [1, {"b": "}"}], "s": "x\"y", "n": {"m": -1.5e3 , "o": {}}, "t": true}`)
	for path, want := range map[string]string{"a": `[1, {"b": "}"}]`, "s": `"x\"y"`, "n.m": "-1.5e3", "n.o": "{}", "t": "true"} {
		got, ok := jsonLookup(doc, strings.Split(path, "."))
		if !ok || string(got) != want {
			t.Errorf("%s = %q %v, want %q", path, got, ok, want)
		}
	}
	for _, path := range []string{"x", "a.b", "n.m.z", "s.q"} {
		if got, ok := jsonLookup(doc, strings.Split(path, ".")); ok {
			t.Errorf("%s found %q", path, got)
		}
	}
}

func FuzzJSONLookup(f *testing.F) {
	f.Add([]byte(`{"a":{"b":1}}`), "a.b")
	f.Add([]byte(`{"a":"\`), "a")
	f.Add([]byte(`[{]`), "a")
	f.Fuzz(func(t *testing.T, doc []byte, path string) {
		v, ok := jsonLookup(doc, strings.Split(path, "."))
		if ok && len(v) == 0 {
			t.Fatalf("found an empty value")
		}
	})
}

// TestMultiKey groups by a data field, a numeric data field and an
// attribute: the result key is the JSON array of their values, an event
// missing one is invalid, and a snapshot restores under the same Keys only.
func TestMultiKey(t *testing.T) {
	cfg := Config{Keys: []string{"data.user", "data.total", "subject"}, Window: TumblingWindow(10 * time.Second),
		Aggs: []Agg{{Kind: Count}}, Grace: Grace(0), Emit: EmitFinal}
	p := newP(t, cfg)
	var r rec
	mk := func(id, user string, sec int, total float64, subject string) *event.Event {
		e := ev(id, user, sec, total)
		e.Subject = subject
		return e
	}
	for _, e := range []*event.Event{
		mk("1", "a", 1, 5, "eu"), mk("2", "a", 2, 5, `e"u`), mk("3", "a", 3, 5, "eu"), mk("4", "b", 4, 5, "eu"),
		mk("5", "a", 5, 7, "eu"), mk("6", "a", 6, 5, ""), // no subject: invalid
	} {
		p.Process(0, e, &r)
	}
	snap, err := p.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	p2 := newP(t, cfg)
	if err := p2.RestoreState(snap); err != nil {
		t.Fatal(err)
	}
	p2.Process(0, mk("7", "z", 30, 1, "x"), &r)
	want := []string{
		fmt.Sprintf(`["a",5,"e\"u"] [%d,%d) count=1`, at(0), at(10)),
		fmt.Sprintf(`["a",5,"eu"] [%d,%d) count=2`, at(0), at(10)),
		fmt.Sprintf(`["a",7,"eu"] [%d,%d) count=1`, at(0), at(10)),
		fmt.Sprintf(`["b",5,"eu"] [%d,%d) count=1`, at(0), at(10)),
	}
	if strings.Join(r.results, "\n") != strings.Join(want, "\n") {
		t.Errorf("results:\n%s\nwant:\n%s", strings.Join(r.results, "\n"), strings.Join(want, "\n"))
	}
	if len(r.invalid) != 1 || !strings.Contains(r.invalid[0], `key field "subject" is missing`) {
		t.Errorf("invalid = %q", r.invalid)
	}
	other := cfg
	other.Keys = []string{"data.user"}
	if err := newP(t, other).RestoreState(snap); err == nil {
		t.Error("a snapshot restored under other keys")
	}
	if _, err := New(Config{Key: "data.user", Keys: []string{"source"}, Window: TumblingWindow(time.Second), Aggs: []Agg{{Kind: Count}},
		Grace: Grace(0), Emit: EmitFinal}); err == nil || !strings.Contains(err.Error(), "key and keys") {
		t.Errorf("key and keys: %v", err)
	}
}
