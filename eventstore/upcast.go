package eventstore

import "fmt"

// Upcaster rewrites an event stored in an old shape into the current one
// on read, so stored events are never rewritten (schema evolution). The
// schema registry's upcasters plug in here.
type Upcaster interface {
	// Upcast returns ev in its current shape (ev itself if current).
	Upcast(ev RecordedEvent) (RecordedEvent, error)
}

// UpcasterFunc adapts a function.
type UpcasterFunc func(RecordedEvent) (RecordedEvent, error)

// Upcast implements Upcaster.
func (f UpcasterFunc) Upcast(ev RecordedEvent) (RecordedEvent, error) { return f(ev) }

// Upcasters maps an event type to the upcaster of that type. An upcaster may
// change the type (UserRegistered.v1 -> UserRegistered); the chain then
// continues with the new type's upcaster, at most 16 steps.
type Upcasters map[string]Upcaster

// Upcast implements Upcaster.
func (u Upcasters) Upcast(ev RecordedEvent) (RecordedEvent, error) {
	for i := 0; i < 16; i++ {
		up, ok := u[ev.Type]
		if !ok {
			return ev, nil
		}
		prev := ev.Type
		var err error
		ev, err = up.Upcast(ev)
		if err != nil {
			return ev, fmt.Errorf("upcast %s event %s of %s: %w", prev, ev.ID, ev.Stream, err)
		}
		if ev.Type == prev {
			return ev, nil
		}
	}
	return ev, fmt.Errorf("upcast event %s of %s: more than 16 steps (a cycle?)", ev.ID, ev.Stream)
}
