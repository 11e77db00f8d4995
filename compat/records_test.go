package compat

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// record is a client-neutral record: what a test wrote or read back.
type record struct {
	Key, Value string
	Headers    []header // in order; nil for none
	Partition  int32    // where it was read from (not compared)
	Offset     int64    // where it was read from (not compared)
}

type header struct{ Key, Value string }

// id is the identity records are compared by: key, value and headers.
func (r record) id(withHeaders bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q=%q", r.Key, r.Value)
	if withHeaders {
		for _, h := range r.Headers {
			fmt.Fprintf(&b, " [%q=%q]", h.Key, h.Value)
		}
	}
	return b.String()
}

// makeRecords returns n distinct records tagged with prefix: keys are
// unique, values vary in length, and every record carries two headers.
func makeRecords(prefix string, n int) []record {
	out := make([]record, n)
	for i := range out {
		out[i] = record{
			Key:   fmt.Sprintf("%s-k%05d", prefix, i),
			Value: fmt.Sprintf("%s-v%05d-%s", prefix, i, strings.Repeat("x", i%37)),
			Headers: []header{
				{"client", prefix},
				{"seq", fmt.Sprint(i)},
			},
		}
	}
	return out
}

// requireSameRecords fails the test unless got holds exactly the records of
// want, each once: it reports missing, unexpected and duplicated records.
// Order is not compared (records spread over partitions); see
// requireOrderedByPartition for that.
func requireSameRecords(t *testing.T, what string, want, got []record, withHeaders bool) {
	t.Helper()
	wantN := map[string]int{}
	for _, r := range want {
		wantN[r.id(withHeaders)]++
	}
	gotN := map[string]int{}
	for _, r := range got {
		gotN[r.id(withHeaders)]++
	}
	var missing, extra, dups []string
	for id, n := range wantN {
		switch g := gotN[id]; {
		case g == 0:
			missing = append(missing, id)
		case g > n:
			dups = append(dups, fmt.Sprintf("%s ×%d", id, g))
		}
	}
	for id := range gotN {
		if wantN[id] == 0 {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(extra)+len(dups) == 0 && len(got) == len(want) {
		return
	}
	slices.Sort(missing)
	slices.Sort(extra)
	slices.Sort(dups)
	t.Fatalf("%s: want %d records, got %d: %d missing %s, %d unexpected %s, %d duplicated %s",
		what, len(want), len(got), len(missing), head(missing), len(extra), head(extra), len(dups), head(dups))
}

// requireOrderedByPartition fails unless, within every partition, records
// were read in strictly increasing offsets and in the order they were
// written (want's order).
func requireOrderedByPartition(t *testing.T, what string, want, got []record) {
	t.Helper()
	pos := map[string]int{}
	for i, r := range want {
		pos[r.Key] = i
	}
	type last struct {
		off int64
		pos int
	}
	seen := map[int32]last{}
	for _, r := range got {
		l, ok := seen[r.Partition]
		p := pos[r.Key]
		if ok && (r.Offset <= l.off || p <= l.pos) {
			t.Fatalf("%s: partition %d: %q at offset %d (written #%d) read after offset %d (written #%d)",
				what, r.Partition, r.Key, r.Offset, p, l.off, l.pos)
		}
		seen[r.Partition] = last{r.Offset, p}
	}
}

func head(s []string) string {
	if len(s) > 5 {
		return fmt.Sprint(s[:5], "…")
	}
	return fmt.Sprint(s)
}
