package event

import (
	"context"
	"encoding/json"
)

// Hook receives the events a component publishes about itself (topic
// created, schema registered, group rebalanced, ...): CloudEvents of
// source "herald/COMPONENT" that herald serve puts on the rules engine's
// system bus. A component takes one as an optional Config field (nil:
// nothing is emitted). A Hook must not block and cannot fail the
// operation: the component calls it after the operation succeeded,
// possibly holding its locks, and ignores what becomes of the event.
type Hook func(ctx context.Context, ev *Event)

// Emit builds an event of source, type and subject with data marshalled
// to JSON and passes it to h. The subject is also the partition key, so
// the events of one resource stay in order. A nil h does nothing; so does data that
// does not marshal (a programming error, never the caller's failure).
func (h Hook) Emit(ctx context.Context, source, typ, subject string, data any) {
	if h == nil {
		return
	}
	ev := New(source, typ)
	ev.Subject, ev.PartitionKey = subject, subject
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return
		}
		ev.Data, ev.DataContentType = b, "application/json"
	}
	h(ctx, ev)
}
