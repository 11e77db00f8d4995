package client

import (
	"context"

	"github.com/heraldhq/herald/event"
)

// Correlate makes outputs published from the handler (Publish) carry the
// input's correlation: CorrelationID = the input's (or the input's ID when it
// starts a flow), CausationID = the input's ID, and its TraceParent unless
// Trace supplies a newer one. An output with a CausationID of its own is
// left as it is.
func Correlate() Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e *event.Event) error {
			return next(context.WithValue(ctx, causeKey, e), e)
		}
	}
}
