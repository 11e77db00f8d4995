// Package logctx carries the ids of the work in progress (the request id
// and the correlation id of the flow) in a context.Context, and puts them
// on every log line written under that context.
//
// The HTTP API puts a request's X-Request-Id and correlation id (the
// X-Correlation-Id or ce-correlationid header) in the request's context;
// the SDK subscriber puts the event's id (as request_id) and correlation
// id in the context of each handler call. A logger whose handler is
// wrapped by NewHandler then adds them to records logged with that context
// (InfoContext, Log), along with the trace_id and span_id of the
// context's OpenTelemetry span; Attrs binds them to a logger for code that
// logs without a context:
//
//	log := slog.New(logctx.NewHandler(slog.NewJSONHandler(os.Stderr, nil)))
//	log.InfoContext(ctx, "charged") // ... "request_id":"...","correlation_id":"..."
package logctx

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// The attribute keys. Frozen: log pipelines search by them.
const (
	KeyRequestID     = "request_id"
	KeyCorrelationID = "correlation_id"
	KeyTraceID       = "trace_id"
	KeySpanID        = "span_id"
)

type ctxKey struct{}

type ids struct {
	request, correlation string
}

// With returns ctx carrying requestID and correlationID; an empty argument
// keeps the value ctx already carries.
func With(ctx context.Context, requestID, correlationID string) context.Context {
	old, _ := ctx.Value(ctxKey{}).(*ids)
	n := &ids{request: requestID, correlation: correlationID}
	if old != nil {
		if n.request == "" {
			n.request = old.request
		}
		if n.correlation == "" {
			n.correlation = old.correlation
		}
	}
	return context.WithValue(ctx, ctxKey{}, n)
}

// RequestID is the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	if v, ok := ctx.Value(ctxKey{}).(*ids); ok {
		return v.request
	}
	return ""
}

// CorrelationID is the correlation id ctx carries, or "".
func CorrelationID(ctx context.Context) string {
	if v, ok := ctx.Value(ctxKey{}).(*ids); ok {
		return v.correlation
	}
	return ""
}

// Attrs returns the ids ctx carries (request, correlation, trace and span
// ids, those that are set) as arguments for slog.Logger.With.
func Attrs(ctx context.Context) []any {
	var out []any
	for _, a := range attrs(ctx, 0) {
		out = append(out, a)
	}
	return out
}

// bits of the keys a handler already has (bound with WithAttrs).
const (
	bitRequest = 1 << iota
	bitCorrelation
	bitTrace
	bitSpan
)

func keyBit(k string) uint8 {
	switch k {
	case KeyRequestID:
		return bitRequest
	case KeyCorrelationID:
		return bitCorrelation
	case KeyTraceID:
		return bitTrace
	case KeySpanID:
		return bitSpan
	}
	return 0
}

// attrs lists the ids of ctx whose bits are not in skip.
func attrs(ctx context.Context, skip uint8) []slog.Attr {
	var out []slog.Attr
	if v, ok := ctx.Value(ctxKey{}).(*ids); ok {
		if v.request != "" && skip&bitRequest == 0 {
			out = append(out, slog.String(KeyRequestID, v.request))
		}
		if v.correlation != "" && skip&bitCorrelation == 0 {
			out = append(out, slog.String(KeyCorrelationID, v.correlation))
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		if skip&bitTrace == 0 {
			out = append(out, slog.String(KeyTraceID, sc.TraceID().String()))
		}
		if skip&bitSpan == 0 {
			out = append(out, slog.String(KeySpanID, sc.SpanID().String()))
		}
	}
	return out
}

// Handler adds the ids of a record's context to the record before passing
// it on; an id the record has already (as an attribute of its own, or
// bound with Logger.With) is not added twice. After WithGroup the ids go
// into the group, as any attribute would.
type Handler struct {
	next  slog.Handler
	bound uint8
}

// NewHandler wraps next; a Handler given to it is returned as it is.
func NewHandler(next slog.Handler) *Handler {
	if h, ok := next.(*Handler); ok {
		return h
	}
	return &Handler{next: next}
}

// Enabled reports whether the wrapped handler handles records at l.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle adds the ids and passes r on.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		skip := h.bound
		if as := attrs(ctx, skip); len(as) > 0 {
			r.Attrs(func(a slog.Attr) bool {
				skip |= keyBit(a.Key)
				return true
			})
			for _, a := range as {
				if skip&keyBit(a.Key) == 0 {
					r.AddAttrs(a)
				}
			}
		}
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns a Handler whose records have as; ids among them are
// not added again from the context.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	b := h.bound
	for _, a := range as {
		b |= keyBit(a.Key)
	}
	return &Handler{next: h.next.WithAttrs(as), bound: b}
}

// WithGroup returns a Handler that puts later attributes in the group.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), bound: h.bound}
}
