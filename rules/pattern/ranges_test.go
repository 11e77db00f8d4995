package pattern

import (
	"math"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func TestRangeIndexAgreesWithScan(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pts := []float64{-3, -1, 0, 0.5, 1, 2, 7}
		n := rapid.IntRange(1, 40).Draw(t, "n")
		var rs []rangeEntry
		for i := 0; i < n; i++ {
			m := Matcher{Kind: KNumeric, Lo: math.Inf(-1), Hi: math.Inf(1)}
			if rapid.Bool().Draw(t, "haslo") {
				m.Lo, m.LoInc = rapid.SampledFrom(pts).Draw(t, "lo"), rapid.Bool().Draw(t, "loinc")
			}
			if rapid.Bool().Draw(t, "hashi") {
				m.Hi, m.HiInc = rapid.SampledFrom(pts).Draw(t, "hi"), rapid.Bool().Draw(t, "hiinc")
			}
			rs = append(rs, rangeEntry{m: m, next: &state{rules: []int32{int32(i)}}})
		}
		ix := buildRangeIndex(rs)
		for _, v := range append(pts, -100, -2, 0.25, 1.5, 100) {
			var got, want []int32
			ix.query(v, func(ns []*state) {
				for _, s := range ns {
					got = append(got, s.rules[0])
				}
			})
			for i := range rs {
				if inRange(&rs[i].m, v) {
					want = append(want, int32(i))
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("v=%v got %v want %v", v, got, want)
			}
		}
	})
}
