package pattern

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestEditsWhileMatching edits the machine (adds, removes, replacements,
// enough removals to force rebuilds) while matchers run, and checks that
// every match sees a whole rule set: the stable rules always match, a rule
// replaced by another pattern that also matches is never missing, and a
// rule flipping between a matching and a non-matching pattern is reported
// at most once. Run it with -race.
func TestEditsWhileMatching(t *testing.T) {
	m := NewMachine()
	const stable = 200
	for i := 0; i < stable; i++ {
		m.Add(fmt.Sprintf("stable-%d", i), MustCompile(fmt.Sprintf(`{"source":["svc-%d"]}`, i%4)))
	}
	m.Add("replaced", MustCompile(`{"data":{"status":["Status-1"]}}`))
	ev := benchEvent(1) // source svc-1, data.status Status-1
	wantStable := stable / 4

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var matches atomic.Int64
	errs := make(chan string, 8)
	for g := 0; g < 2; g++ { // two matchers: one per core
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out []string
			for {
				select {
				case <-stop:
					return
				default:
				}
				out = m.MatchEvent(ev, out[:0])
				// Leave the writer a core on a busy machine: this test is
				// about what matchers see, not how many they do.
				if matches.Add(1)%8 == 0 {
					time.Sleep(10 * time.Microsecond)
				}
				n, replaced, flip := 0, 0, 0
				for _, name := range out {
					switch {
					case name == "replaced":
						replaced++
					case name == "flip":
						flip++
					case len(name) > 7 && name[:7] == "stable-":
						n++
					}
				}
				if n != wantStable || replaced != 1 || flip > 1 {
					select {
					case errs <- fmt.Sprintf("match saw %d stable rules (want %d), replaced %d times, flip %d times: %v", n, wantStable, replaced, flip, out):
					default:
					}
					return
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		// Replacing keeps "replaced" matching throughout.
		if i%2 == 0 {
			m.Add("replaced", MustCompile(`{"source":[{"prefix":"svc-"}]}`))
		} else {
			m.Add("replaced", MustCompile(`{"data":{"status":[{"equals-ignore-case":"STATUS-1"}]}}`))
		}
		if i%3 == 0 {
			m.Add("flip", MustCompile(`{"source":["svc-1"]}`))
		} else {
			m.Add("flip", MustCompile(`{"source":["svc-2"]}`))
		}
		churn := fmt.Sprintf("churn-%d", i)
		// Twelve conjunctions each: 100 removals leave enough dead states
		// to force rebuilds.
		m.Add(churn, MustCompile(fmt.Sprintf(`{"$or":[{"data":{"customer":["x-%d"]}},{"data":{"amount":[{"numeric":[">",%d]}]}}],`+
			`"source":["a-%d","b","c"],"type":[{"prefix":"t-%d"},{"suffix":"u"}]}`, i, i, i, i)))
		if i%2 == 1 {
			m.Remove(churn)
			m.Remove(fmt.Sprintf("churn-%d", i-1))
		}
	}
	close(stop)
	wg.Wait()
	select {
	case e := <-errs:
		t.Fatal(e)
	default:
	}
	t.Logf("%d matches during the edits", matches.Load())
	if matches.Load() == 0 {
		t.Fatal("no match ran during the edits")
	}
	// The last edits left "flip" on svc-2 (199 % 3 != 0).
	if got := m.MatchEvent(ev, nil); !slices.Contains(got, "replaced") || slices.Contains(got, "flip") || len(got) != wantStable+1 {
		t.Fatalf("after the edits: %d matches %v", len(got), got)
	}
	if m.Len() != stable+2 {
		t.Fatalf("Len = %d, want %d", m.Len(), stable+2)
	}
}
