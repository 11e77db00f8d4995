package pattern

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

var (
	propStrings = []string{"", "a", "ab", "abc", "A", "Ab", "b", "ba", "x*y", "10.0.0.1", "10.1.0.1", "é", "É"}
	propNums    = []float64{-1, 0, 1, 1.5, 2, 100, 1e9}
	propKeys    = []string{"a", "b", "c"}
)

func genLeafValue(t *rapid.T, label string) any {
	switch rapid.IntRange(0, 5).Draw(t, label+"k") {
	case 0, 1:
		return rapid.SampledFrom(propStrings).Draw(t, label+"s")
	case 2:
		return rapid.SampledFrom(propNums).Draw(t, label+"n")
	case 3:
		return rapid.SampledFrom([]any{true, false, nil}).Draw(t, label+"l")
	case 4:
		return rapid.SliceOfN(rapid.SampledFrom(propStrings), 0, 3).Draw(t, label+"a")
	default:
		return rapid.SliceOfN(rapid.SampledFrom(propNums), 1, 3).Draw(t, label+"an")
	}
}

// genEvent builds a random object of depth d with arrays of objects.
func genEvent(t *rapid.T, label string, d int) map[string]any {
	m := map[string]any{}
	for _, k := range propKeys {
		switch x := rapid.IntRange(0, 9).Draw(t, label+k); {
		case x < 3:
			// absent
		case x < 7 || d == 0:
			m[k] = genLeafValue(t, label+k)
		case x < 9:
			m[k] = genEvent(t, label+k+".", d-1)
		default:
			n := rapid.IntRange(0, 3).Draw(t, label+k+"#")
			var arr []any
			for i := 0; i < n; i++ {
				arr = append(arr, genEvent(t, fmt.Sprintf("%s%s[%d].", label, k, i), d-1))
			}
			if arr == nil {
				arr = []any{}
			}
			m[k] = arr
		}
	}
	return m
}

func genMatcher(t *rapid.T, label string) any {
	s := func() string { return rapid.SampledFrom(propStrings).Draw(t, label+"s") }
	n := func() float64 { return rapid.SampledFrom(propNums).Draw(t, label+"n") }
	switch rapid.IntRange(0, 17).Draw(t, label) {
	case 0, 1:
		return s()
	case 2:
		return n()
	case 3:
		return rapid.SampledFrom([]any{true, false, nil}).Draw(t, label+"l")
	case 4:
		return map[string]any{"prefix": s()}
	case 5:
		return map[string]any{"suffix": map[string]any{"equals-ignore-case": s()}}
	case 6:
		return map[string]any{"equals-ignore-case": s()}
	case 7:
		return map[string]any{"wildcard": rapid.SampledFrom([]string{"*", "a*", "*b", "a*c", "*b*", "x\\*y", "ab"}).Draw(t, label+"w")}
	case 8:
		return map[string]any{"anything-but": s()}
	case 9:
		return map[string]any{"anything-but": []float64{n(), n()}}
	case 10:
		return map[string]any{"anything-but": map[string]any{"prefix": rapid.SampledFrom([]string{"a", "A", "b"}).Draw(t, label+"p")}}
	case 11:
		return map[string]any{"anything-but": map[string]any{"equals-ignore-case": []string{s()}}}
	case 12:
		lo := n()
		return map[string]any{"numeric": []any{">=", lo, "<", lo + 1.5}}
	case 13:
		return map[string]any{"numeric": []any{rapid.SampledFrom([]string{"<", "<=", ">", ">=", "="}).Draw(t, label+"op"), n()}}
	case 14:
		return map[string]any{"cidr": rapid.SampledFrom([]string{"10.0.0.0/16", "10.0.0.0/8", "::/0"}).Draw(t, label+"c")}
	case 15:
		return map[string]any{"exists": rapid.Bool().Draw(t, label+"e")}
	case 16:
		return map[string]any{"suffix": s()}
	default:
		return map[string]any{"anything-but": map[string]any{"wildcard": "a*"}}
	}
}

func genPattern(t *rapid.T, label string, d int, orOK bool) map[string]any {
	m := map[string]any{}
	for len(m) == 0 {
		for _, k := range propKeys {
			switch x := rapid.IntRange(0, 9).Draw(t, label+k); {
			case x < 5:
			case x < 8 || d == 0:
				m[k] = rapid.SliceOfN(rapid.Custom(func(t *rapid.T) any { return genMatcher(t, label+k+"m") }), 1, 3).Draw(t, label+k+"ms")
			default:
				m[k] = genPattern(t, label+k+".", d-1, orOK)
			}
		}
		if orOK && rapid.IntRange(0, 4).Draw(t, label+"or") == 0 {
			m["$or"] = []any{genPattern(t, label+"or0.", d, false), genPattern(t, label+"or1.", d, false)}
		}
	}
	return m
}

// TestMachineAgreesWithReference: random patterns in one machine, random
// events; the machine's answer for every pattern must be the reference's.
func TestMachineAgreesWithReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		np := rapid.IntRange(1, 12).Draw(t, "npatterns")
		m := NewMachine()
		var pats []*Pattern
		for i := 0; i < np; i++ {
			src, _ := json.Marshal(genPattern(t, fmt.Sprintf("p%d.", i), 2, true))
			p, err := Compile(src)
			if err != nil {
				t.Fatalf("generated pattern %s refused: %v", src, err)
			}
			pats = append(pats, p)
			m.Add(fmt.Sprint(i), p)
		}
		// Remove and re-add one to exercise removal.
		if np > 1 {
			m.Remove("0")
			m.Add("0", pats[0])
		}
		for e := 0; e < 8; e++ {
			doc, _ := json.Marshal(genEvent(t, fmt.Sprintf("e%d.", e), 2))
			got, err := m.MatchJSON(doc, nil)
			if err != nil {
				t.Fatalf("event %s: %v", doc, err)
			}
			slices.Sort(got)
			var want []string
			for i, p := range pats {
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
				var ps []string
				for i, p := range pats {
					ps = append(ps, fmt.Sprintf("%d: %s", i, p.Source()))
				}
				t.Fatalf("event %s\nmachine %v, reference %v\npatterns:\n%s", doc, got, want, strings.Join(ps, "\n"))
			}
		}
	})
}
