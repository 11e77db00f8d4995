package pattern

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCompile: no pattern crashes Compile, every refusal is a *Error
// naming a path, and an accepted pattern can be added to a machine and
// matched.
func FuzzCompile(f *testing.F) {
	for _, c := range matchCases {
		f.Add(c.p)
	}
	for _, c := range rejectCases {
		f.Add(c.p)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Compile([]byte(src))
		if err != nil {
			pe, ok := err.(*Error)
			if !ok || !strings.HasPrefix(pe.Path, "$") || pe.Reason == "" {
				t.Fatalf("error %v is not a path-naming *Error", err)
			}
			return
		}
		if len(p.Conjs) == 0 || len(p.Conjs) > MaxCombinations {
			t.Fatalf("%d conjunctions", len(p.Conjs))
		}
		m := NewMachine()
		m.Add("r", p)
		for _, c := range matchCases[:10] {
			for _, e := range c.yes {
				got, err := m.MatchJSON([]byte(e), nil)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := p.Match([]byte(e))
				if (len(got) == 1) != want {
					t.Fatalf("pattern %s event %s: machine %v reference %v", src, e, got, want)
				}
			}
		}
	})
}

type flatView struct {
	path  string
	k     vkind
	s     string
	num   float64
	trail string
}

func normTrails(trails [][]tpos) []string {
	ids := map[int32]int{}
	var out []string
	for _, tr := range trails {
		var b strings.Builder
		for _, p := range tr {
			id, ok := ids[p.arr]
			if !ok {
				id = len(ids)
				ids[p.arr] = id
			}
			fmt.Fprintf(&b, "%d:%d/", id, p.idx)
		}
		out = append(out, b.String())
	}
	return out
}

// FuzzFlatten: the zero-allocation flattener never crashes and, on valid
// JSON, yields exactly the fields of the plain encoding/json-based one.
func FuzzFlatten(f *testing.F) {
	for _, c := range matchCases {
		for _, e := range append(slices.Clone(c.yes), c.no...) {
			f.Add([]byte(e))
		}
	}
	f.Add([]byte(`{"a":"\ud800","b":"\u00zz"}`))
	f.Add([]byte(`{"a":[[[[]]]],"b":1e999,"c":-0.0e-0}`))
	f.Add([]byte(`{"a" : [ {"b" : "\\\""} , 1 ] }`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		ref, rerr := rflatten(doc)
		// Register every leaf path the reference found, plus a few.
		mm := newMachine()
		mm.pathID([]string{"a"})
		mm.pathID([]string{"a", "b"})
		for _, r := range ref {
			mm.pathID(r.segs)
		}
		var fl flattener
		ferr := fl.flattenDoc(doc, mm.root)
		if rerr != nil || !json.Valid(doc) || !utf8.Valid(doc) {
			return // only crashes matter for invalid input
		}
		if ferr != nil {
			if ferr == errDepth {
				return
			}
			t.Fatalf("flattener refused valid JSON %q: %v", doc, ferr)
		}
		names := make(map[int32]string)
		for k, id := range mm.pathIDs {
			names[id] = k
		}
		var got, want []flatView
		var gotTr, wantTr [][]tpos
		for _, x := range fl.fields {
			got = append(got, flatView{path: names[x.path], k: x.k, s: string(x.s), num: x.num})
			gotTr = append(gotTr, fl.trails[x.t0:x.t1])
		}
		for _, r := range ref {
			want = append(want, flatView{path: r.path, k: r.k, s: string(r.s), num: r.num})
			wantTr = append(wantTr, r.trail)
		}
		gt, wt := normTrails(gotTr), normTrails(wantTr)
		for i := range got {
			got[i].trail = gt[i]
		}
		for i := range want {
			want[i].trail = wt[i]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("doc %q\nflattener %+v\nreference %+v", doc, got, want)
		}
	})
}
