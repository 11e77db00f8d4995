package pattern

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestMatchCases(t *testing.T) {
	n := 0
	all := NewMachine()
	type ev struct {
		doc  string
		want []string
	}
	var events []ev
	for i, c := range matchCases {
		p, err := Compile([]byte(c.p))
		if err != nil {
			t.Fatalf("%s: compile %s: %v", c.name, c.p, err)
		}
		m := NewMachine()
		m.Add(c.name, p)
		all.Add(fmt.Sprintf("%03d", i), p)
		check := func(doc string, want bool) {
			t.Helper()
			n++
			got, err := p.Match([]byte(doc))
			if err != nil {
				t.Errorf("%s: reference on %s: %v", c.name, doc, err)
				return
			}
			if got != want {
				_, why, _ := p.Explain([]byte(doc))
				t.Errorf("%s: reference: pattern %s event %s: got %v want %v (%s)", c.name, c.p, doc, got, want, why)
			}
			names, err := m.MatchJSON([]byte(doc), nil)
			if err != nil {
				t.Errorf("%s: machine on %s: %v", c.name, doc, err)
				return
			}
			if (len(names) == 1) != want {
				t.Errorf("%s: machine: pattern %s event %s: got %v want %v", c.name, c.p, doc, names, want)
			}
			events = append(events, ev{doc: doc})
		}
		for _, e := range c.yes {
			check(e, true)
		}
		for _, e := range c.no {
			check(e, false)
		}
	}
	if n < 150 {
		t.Errorf("only %d cases, want at least 150", n)
	}
	t.Logf("%d (pattern, event) cases", n)
	// Every event against every pattern at once: the shared machine must
	// give exactly the patterns the reference says.
	for _, e := range events {
		var want []string
		for i, c := range matchCases {
			p := MustCompile(c.p)
			if ok, _ := p.Match([]byte(e.doc)); ok {
				want = append(want, fmt.Sprintf("%03d", i))
			}
		}
		got, err := all.MatchJSON([]byte(e.doc), nil)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("shared machine, event %s: got %v want %v", e.doc, got, want)
		}
	}
}

func TestRejectCases(t *testing.T) {
	for _, c := range rejectCases {
		_, err := Compile([]byte(c.p))
		var pe *Error
		if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want a pattern error", c.p, err)
			continue
		}
		if pe.Path != c.path || !strings.Contains(pe.Reason, c.reason) {
			t.Errorf("%s: got path %q reason %q; want path %q reason containing %q", c.p, pe.Path, pe.Reason, c.path, c.reason)
		}
		if !strings.Contains(err.Error(), c.path) {
			t.Errorf("%s: message %q does not name the path", c.p, err)
		}
	}
}

func TestOrCombinationsLimit(t *testing.T) {
	alts := func(n int, f string) string {
		var b []string
		for i := 0; i < n; i++ {
			b = append(b, fmt.Sprintf(`{%q:[%d]}`, f, i))
		}
		return "[" + strings.Join(b, ",") + "]"
	}
	ok := fmt.Sprintf(`{"$or":%s,"b":{"$or":%s},"c":{"$or":%s}}`, alts(10, "a"), alts(10, "x"), alts(10, "y"))
	p, err := Compile([]byte(ok))
	if err != nil {
		t.Fatalf("1000 combinations refused: %v", err)
	}
	if len(p.Conjs) != 1000 {
		t.Fatalf("got %d conjunctions", len(p.Conjs))
	}
	bad := fmt.Sprintf(`{"$or":%s,"b":{"$or":%s},"c":{"$or":%s}}`, alts(11, "a"), alts(10, "x"), alts(10, "y"))
	_, err = Compile([]byte(bad))
	var pe *Error
	if !errors.As(err, &pe) || !strings.Contains(pe.Reason, "more than 1000") {
		t.Fatalf("1100 combinations: got %v", err)
	}
	// Nested $or counts too.
	nested := fmt.Sprintf(`{"$or":[{"a":{"$or":%s}},{"b":{"$or":%s}}],"c":{"$or":%s}}`, alts(30, "x"), alts(30, "y"), alts(20, "z"))
	if _, err := Compile([]byte(nested)); err == nil {
		t.Fatal("nested 1200 combinations accepted")
	}
}

func TestMachineAddRemove(t *testing.T) {
	m := NewMachine()
	m.Add("a", MustCompile(`{"source":["s"]}`))
	m.Add("b", MustCompile(`{"source":["s"],"type":["t"]}`))
	m.Add("c", MustCompile(`{"type":[{"anything-but":"t"}]}`))
	got, _ := m.MatchJSON([]byte(`{"source":"s","type":"t"}`), nil)
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("got %v", got)
	}
	m.Remove("a")
	got, _ = m.MatchJSON([]byte(`{"source":"s","type":"t"}`), nil)
	if !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after remove got %v", got)
	}
	m.Add("b", MustCompile(`{"source":["x"]}`)) // replace
	got, _ = m.MatchJSON([]byte(`{"source":"s","type":"u"}`), nil)
	if !slices.Equal(got, []string{"c"}) {
		t.Fatalf("after replace got %v", got)
	}
	// Churn past the rebuild threshold and check nothing stale matches.
	for i := 0; i < 3000; i++ {
		m.Add(fmt.Sprintf("r%d", i), MustCompile(fmt.Sprintf(`{"data":{"n":[%d]}}`, i)))
	}
	for i := 0; i < 3000; i += 1 {
		if i%100 != 0 {
			m.Remove(fmt.Sprintf("r%d", i))
		}
	}
	for i := 0; i < 3000; i += 50 {
		got, err := m.MatchJSON(fmt.Appendf(nil, `{"data":{"n":%d}}`, i), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if i%100 == 0 {
			want = 1
		}
		if len(got) != want {
			t.Fatalf("n=%d got %v", i, got)
		}
	}
	if m.Len() != 32 {
		t.Fatalf("Len %d", m.Len())
	}
}

func TestExplain(t *testing.T) {
	p := MustCompile(`{"source":["shop"],"data":{"total":[{"numeric":[">",100]}]}}`)
	ok, why, err := p.Explain([]byte(`{"source":"shop","data":{"total":50}}`))
	if err != nil || ok || len(why) != 1 || !strings.Contains(why[0], "data.total: value 50 does not match") {
		t.Fatalf("got %v %q %v", ok, why, err)
	}
	ok, why, _ = p.Explain([]byte(`{"source":"shop"}`))
	if ok || !strings.Contains(why[0], "data.total: field is missing") {
		t.Fatalf("got %v %q", ok, why)
	}
	ok, why, _ = p.Explain([]byte(`{"source":"shop","data":{"total":500}}`))
	if !ok || !strings.Contains(why[0], "matched") {
		t.Fatalf("got %v %q", ok, why)
	}
	if _, _, err := p.Explain([]byte(`{"source":`)); err == nil {
		t.Fatal("invalid event accepted")
	}
}

// Field names may hold any character, NUL too: a pattern on the field
// "\u0000" and one on the nested path "" -> "" are different fields.
func TestFieldNamesWithNUL(t *testing.T) {
	m := NewMachine()
	m.Add("nested", MustCompile(`{"detail":{"":{"":["x"]}}}`))
	m.Add("nul", MustCompile(`{"detail":{"\u0000":["x"]}}`))
	for _, c := range []struct {
		doc  string
		want []string
	}{
		{`{"detail":{"\u0000":"x"}}`, []string{"nul"}},
		{`{"detail":{"":{"":"x"}}}`, []string{"nested"}},
		{`{"detail":{"\u0000":"y","":{"":"y"}}}`, nil},
	} {
		got, err := m.MatchJSON([]byte(c.doc), nil)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s matched %v, want %v", c.doc, got, c.want)
		}
	}
}
