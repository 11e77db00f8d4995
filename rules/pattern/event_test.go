package pattern

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
)

// TestMatchEventAgreesWithEventJSON: matching an event.Event directly
// gives what the reference gives on its JSON form, attributes included.
func TestMatchEventAgreesWithEventJSON(t *testing.T) {
	pats := []string{
		`{"source":["svc-1"]}`,
		`{"type":[{"prefix":"order."}],"subject":[{"exists":true}]}`,
		`{"subject":[{"exists":false}]}`,
		`{"time":[{"prefix":"2026-11-26T"}]}`,
		`{"id":[{"exists":true}],"specversion":["1.0"]}`,
		`{"kind":["command"]}`,
		`{"kind":["event"],"source":["svc-2"]}`,
		`{"correlationid":["c1"],"aggregateversion":["7"]}`,
		`{"tenant":["acme"]}`,
		`{"datacontenttype":["application/json"],"data":{"amount":[{"numeric":[">",10]}]}}`,
		`{"detail":{"customer":[{"equals-ignore-case":"CUST-3"}]}}`,
		`{"data":[{"exists":false}]}`,
		`{"data":{"items":{"sku":["sku-3"],"qty":[3]}}}`,
	}
	m := NewMachine()
	var ps []*Pattern
	for i, s := range pats {
		p := MustCompile(s)
		ps = append(ps, p)
		m.Add(fmt.Sprint(i), p)
	}
	for k := 0; k < 40; k++ {
		e := benchEvent(k)
		e.Time = time.Date(2026, 11, 25+k%3, 7, 0, 0, 0, time.UTC)
		if k%4 == 0 {
			e.Subject = ""
		}
		if k%5 == 0 {
			e.Kind = event.KindCommand
		}
		if k%6 == 0 {
			e.CorrelationID, e.AggregateVersion = "c1", 7
		}
		if k%7 == 0 {
			e.Extensions = map[string]string{"tenant": "acme"}
		}
		if k%8 == 0 {
			e.Data = []byte("not json")
		}
		if k%9 == 0 {
			e.DataContentType = "text/plain"
		}
		doc := EventJSON(e)
		got := m.MatchEvent(e, nil)
		slices.Sort(got)
		var want []string
		for i, p := range ps {
			ok, err := p.Match(doc)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				want = append(want, fmt.Sprint(i))
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("event %d (%s): MatchEvent %v, reference on EventJSON %v", k, doc, got, want)
		}
	}
}

// TestConcurrentAddRemoveMatch: rules come and go while events are
// matched; a rule that stays is always matched.
func TestConcurrentAddRemoveMatch(t *testing.T) {
	m := NewMachine()
	m.Add("stable", MustCompile(`{"source":["svc-1"]}`))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, i%500)
				if i%3 == 2 {
					m.Remove(name)
				} else {
					m.Add(name, MustCompile(numericRule(i)))
				}
			}
		}()
	}
	e := benchEvent(1)
	var out []string
	for i := 0; i < 20000; i++ {
		out = m.MatchEvent(e, out[:0])
		if !slices.Contains(out, "stable") {
			t.Fatalf("stable rule not matched at %d: %v", i, out)
		}
	}
	close(stop)
	wg.Wait()
}
