//go:build race

package batch_test

// raceEnabled: sync.Pool drops items at random under the race detector, so
// allocation counts of pooled paths are meaningless there.
const raceEnabled = true
