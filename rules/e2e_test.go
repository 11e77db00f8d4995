package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/rules/pattern"
)

func e2eRule(i int) string {
	switch i % 4 {
	case 0:
		lo := (i * 7) % 1000
		return fmt.Sprintf(`{"source":["src-%d"],"detail":{"n":[{"numeric":[">=",%d,"<",%d]}]}}`, i%100, lo, lo+100)
	case 1:
		return fmt.Sprintf(`{"type":["t-%d"],"data":{"tag":["tag-%d"],"region":[{"prefix":"reg-%d-"}]}}`, i%10, i%37, i%20)
	case 2:
		return fmt.Sprintf(`{"data":{"n":[%d]}}`, i%1000)
	}
	return fmt.Sprintf(`{"source":[{"prefix":"src-%d"}],"data":{"tag":[{"anything-but":["tag-%d"]}],"n":[{"numeric":["<",50]}]}}`, i%100, i%37)
}

// e2eWant says, by arithmetic, whether rule i matches event k.
func e2eWant(i, k int) bool {
	src, typ, n, tag, region := k%100, k%10, k%1000, k%37, k%20
	switch i % 4 {
	case 0:
		lo := (i * 7) % 1000
		return src == i%100 && n >= lo && n < lo+100
	case 1:
		return typ == i%10 && tag == i%37 && region == i%20
	case 2:
		return n == i%1000
	}
	return tag != i%37 && n < 50 && srcPrefix[src][i%100]
}

// srcPrefix[a][b]: "src-b" is a prefix of "src-a".
var srcPrefix = func() (t [100][100]bool) {
	for a := range t {
		for b := range t[a] {
			t[a][b] = strings.HasPrefix(fmt.Sprintf("src-%d", a), fmt.Sprintf("src-%d", b))
		}
	}
	return t
}()

func e2eEvent(k int) *event.Event {
	ev := event.New(fmt.Sprintf("src-%d", k%100), fmt.Sprintf("t-%d", k%10))
	ev.DataContentType = "application/json"
	ev.Data = fmt.Appendf(nil, `{"id":%d,"n":%d,"tag":"tag-%d","region":"reg-%d-x","pad":"%s"}`, k, k%1000, k%37, k%20, strings.Repeat("p", 200))
	return ev
}

// TestEndToEnd: 1,000 rules and 100,000 events (fewer under -race unless
// HERALD_LONG is set); every event reaches exactly the targets of the
// rules whose patterns match it, once.
func TestEndToEnd(t *testing.T) {
	nRules, nEvents := 1000, 100_000
	if raceEnabled && os.Getenv("HERALD_LONG") == "" {
		nRules, nEvents = 200, 10_000
	}
	if testing.Short() {
		nRules, nEvents = 100, 5_000
	}
	// The arithmetic oracle agrees with the reference matcher.
	for i := 0; i < 40; i++ {
		p := pattern.MustCompile(e2eRule(i))
		for k := 0; k < 3000; k += 7 {
			got, err := p.Match(pattern.EventJSON(e2eEvent(k)))
			if err != nil {
				t.Fatal(err)
			}
			if got != e2eWant(i, k) {
				t.Fatalf("oracle disagrees with the reference: rule %d event %d: reference %v", i, k, got)
			}
		}
	}

	// Interval fsync: this test is about routing; durability is the
	// broker's and TestDefinitionsAreDurableAndDeliveryAtLeastOnce's.
	l := newLogDurability(t, t.TempDir(), commitlog.DurabilityInterval(100*time.Millisecond))
	cfg := func(c *Config) { c.BusPartitions = 4; c.CommitInterval = 100 * time.Millisecond }
	e := newEngine(t, l, cfg)
	ctx := context.Background()
	const outs = 8
	for o := 0; o < outs; o++ {
		if err := l.CreateTopic(ctx, fmt.Sprintf("e2e-out-%d", o), 2, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < nRules; i++ {
		_, err := e.PutRule(ctx, Rule{Name: fmt.Sprintf("r%04d", i), EventPattern: json.RawMessage(e2eRule(i)),
			Targets: []Target{{ID: "out", Topic: fmt.Sprintf("e2e-out-%d", i%outs), InputTransformer: &InputTransformer{
				InputPaths: map[string]string{"id": "$.data.id"}, InputTemplate: `{"rule":"<herald.rule-name>","id":<id>}`}}}}, true)
		if err != nil {
			t.Fatal(err)
		}
	}
	want := 0
	for k := 0; k < nEvents; k++ {
		for i := 0; i < nRules; i++ {
			if e2eWant(i, k) {
				want++
			}
		}
	}
	// Publish with the engine stopped, then time the engine alone
	// draining the bus: matching, delivering and committing.
	e.Close()
	pubStart := time.Now()
	prod := eventlog.NewProducer(l)
	var batch []eventlog.Record
	for k := 0; k < nEvents; k++ {
		batch = append(batch, toRecord(e2eEvent(k)))
		if len(batch) == 1000 || k == nEvents-1 {
			if _, err := prod.Append(ctx, DefaultBus, batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	published := time.Since(pubStart)
	start := time.Now()
	e = newEngine(t, l, cfg)
	count := func() int { // cheap: end offsets, not a read
		n := 0
		for o := 0; o < outs; o++ {
			for p := int32(0); p < 2; p++ {
				_, end, err := l.Offsets(ctx, fmt.Sprintf("e2e-out-%d", o), p)
				if err != nil {
					t.Fatal(err)
				}
				n += int(end)
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n := count()
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of %d", n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	t.Logf("%d rules, %d events (published in %v): the engine matched and made %d deliveries in %v: %.0f events/s, %.0f deliveries/s",
		nRules, nEvents, published, want, elapsed, float64(nEvents)/elapsed.Seconds(), float64(want)/elapsed.Seconds())
	time.Sleep(200 * time.Millisecond) // anything extra would show now
	got := map[[2]int]int{}
	for o := 0; o < outs; o++ {
		for _, r := range readAll(t, l, fmt.Sprintf("e2e-out-%d", o)) {
			var v struct {
				Rule string `json:"rule"`
				ID   int    `json:"id"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatalf("delivered %q: %v", r.Value, err)
			}
			var i int
			fmt.Sscanf(v.Rule, "r%d", &i)
			if i%outs != o {
				t.Fatalf("rule %s delivered to e2e-out-%d", v.Rule, o)
			}
			got[[2]int{i, v.ID}]++
		}
	}
	bad := 0
	for key, c := range got {
		if c != 1 || !e2eWant(key[0], key[1]) {
			bad++
			if bad < 10 {
				t.Errorf("rule %d event %d delivered %d times, want %v", key[0], key[1], c, e2eWant(key[0], key[1]))
			}
		}
	}
	if len(got) != want || bad > 0 {
		t.Fatalf("%d distinct deliveries, want %d; %d wrong", len(got), want, bad)
	}
}
