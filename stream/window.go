package stream

import (
	"fmt"
	"time"
)

// WindowKind names a kind of window.
type WindowKind uint8

// The window kinds.
const (
	// Tumbling windows are fixed, aligned to the epoch, and do not overlap:
	// [k*Size, (k+1)*Size).
	Tumbling WindowKind = iota + 1
	// Hopping windows are fixed, Size long, starting every Advance
	// (Advance <= Size; Size a multiple of Advance); an event belongs to
	// Size/Advance of them.
	Hopping
	// Sliding windows are (t-Size, t] for the time t of every event: the
	// aggregate over the Size before each event, as Kafka Streams' sliding
	// windows with a time difference.
	Sliding
	// Session windows group a key's events separated by less than Gap;
	// a window is [first event, last event + Gap) and an event that
	// bridges two sessions merges them.
	Session
)

var windowNames = [...]string{Tumbling: "tumbling", Hopping: "hopping", Sliding: "sliding", Session: "session"}

func (k WindowKind) String() string {
	if int(k) < len(windowNames) && windowNames[k] != "" {
		return windowNames[k]
	}
	return fmt.Sprintf("WindowKind(%d)", k)
}

// Window describes a window: its kind and durations (Size for tumbling,
// hopping and sliding; Advance for hopping; Gap for session).
type Window struct {
	Kind    WindowKind
	Size    time.Duration
	Advance time.Duration
	Gap     time.Duration
}

// TumblingWindow returns tumbling windows of size.
func TumblingWindow(size time.Duration) Window { return Window{Kind: Tumbling, Size: size} }

// HoppingWindow returns hopping windows of size starting every advance.
func HoppingWindow(size, advance time.Duration) Window {
	return Window{Kind: Hopping, Size: size, Advance: advance}
}

// SlidingWindow returns sliding windows with time difference size.
func SlidingWindow(size time.Duration) Window { return Window{Kind: Sliding, Size: size} }

// SessionWindow returns session windows closed by an inactivity gap.
func SessionWindow(gap time.Duration) Window { return Window{Kind: Session, Gap: gap} }

// maxHops bounds the windows one event of a hopping window updates.
const maxHops = 1000

// Validate names the first thing wrong with w.
func (w Window) Validate() error {
	switch w.Kind {
	case Tumbling, Sliding:
		if w.Size <= 0 {
			return fmt.Errorf("window.size: %v is not positive; a %s window needs a size > 0", w.Size, w.Kind)
		}
	case Hopping:
		if w.Size <= 0 {
			return fmt.Errorf("window.size: %v is not positive; a hopping window needs a size > 0", w.Size)
		}
		if w.Advance <= 0 || w.Advance > w.Size {
			return fmt.Errorf("window.advance: %v must be > 0 and <= size %v", w.Advance, w.Size)
		}
		if w.Size%w.Advance != 0 {
			return fmt.Errorf("window.advance: size %v is not a multiple of advance %v", w.Size, w.Advance)
		}
		if w.Size/w.Advance > maxHops {
			return fmt.Errorf("window.advance: size/advance is %d, above the limit %d", w.Size/w.Advance, maxHops)
		}
	case Session:
		if w.Gap <= 0 {
			return fmt.Errorf("window.gap: %v is not positive; a session window needs a gap > 0", w.Gap)
		}
	default:
		return fmt.Errorf("window.kind: unknown kind %d (want tumbling, hopping, sliding or session)", w.Kind)
	}
	return nil
}

// floorDiv is floor(a/b) for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
