package client

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/logctx"
)

// HandlerFunc handles one event. Returning nil acknowledges it: its outputs
// (see Publish) are written and its offset committed as the subscriber's
// DeliveryMode says. Returning an error fails this attempt; what happens
// next is up to the middleware (Retry, DeadLetter) and, past all of them,
// the subscriber, which redelivers the event after a pause.
//
// Handlers of different partitions run concurrently; events of one
// partition (so of one partition key) are handled one at a time, in order.
type HandlerFunc func(ctx context.Context, e *event.Event) error

// Middleware wraps a handler with behaviour of its own.
type Middleware func(HandlerFunc) HandlerFunc

// Chain wraps h in mws; mws[0] is the outermost and sees the event first.
func Chain(h HandlerFunc, mws ...Middleware) HandlerFunc {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Delivery says where the event being handled came from.
type Delivery struct {
	Group     string
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	// Message is the record as read: key, value and headers.
	Message event.Message

	batch *partResult // the partition's batch being handled, if any
}

type ctxKey int

const (
	deliveryKey ctxKey = iota
	eventKey
	causeKey
	outboxKey
	envKey
	tracerKey
)

// DeliveryFrom returns the delivery of the event ctx is handling.
func DeliveryFrom(ctx context.Context) (Delivery, bool) {
	d, ok := ctx.Value(deliveryKey).(*Delivery)
	if !ok {
		return Delivery{}, false
	}
	return *d, true
}

// EventFrom returns the event ctx is handling, or nil outside a handler.
func EventFrom(ctx context.Context) *event.Event {
	e, _ := ctx.Value(eventKey).(*event.Event)
	return e
}

// ErrNoPublisher is returned by Publish outside a subscriber's handler.
var ErrNoPublisher = errors.New("client: Publish called outside a handler (use a Publisher)")

// ErrClosed is returned by calls on a closed Publisher or Subscriber.
var ErrClosed = errors.New("client: closed")

// Publish publishes outputs of the event being handled through the
// subscriber that runs the handler. Outputs are held until the handler (this
// attempt of it) returns nil, and dropped if it fails, so a retried handler
// does not publish twice. They are then written before the input's offset
// is committed (AtLeastOnce, AtMostOnce) or in the same transaction as the
// offset commit (ExactlyOnce).
//
// Each event gets an ID and Time if it has none. Under the Correlate
// middleware it also gets CorrelationID and CausationID from the input
// event; under Trace, a "publish <topic>" span (a child of the handler's
// span) is recorded and each event's TraceParent names it.
func Publish(ctx context.Context, topic string, evs ...*event.Event) error {
	ob, ok := ctx.Value(outboxKey).(*outbox)
	if !ok {
		return ErrNoPublisher
	}
	if tr := tracerFrom(ctx); tr != nil {
		var span trace.Span
		ctx, span = startPublishSpan(ctx, tr, topic, len(evs))
		defer span.End()
	}
	recs := make([]*kgo.Record, 0, len(evs))
	for _, e := range evs {
		prepare(ctx, e)
		r, err := toRecord(topic, e)
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	ob.add(recs)
	return nil
}

// prepare fills what a service author should not have to: ID, Time,
// causation (under Correlate) and trace context (under Trace).
func prepare(ctx context.Context, e *event.Event) {
	if e.ID == "" {
		e.ID = event.NewID()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if cause, ok := ctx.Value(causeKey).(*event.Event); ok && e.CausationID == "" {
		e.CausedBy(cause)
	}
	if tp := injectTraceParent(ctx); tp != "" {
		e.TraceParent = tp
	}
}

func toRecord(topic string, e *event.Event) (*kgo.Record, error) {
	m, err := event.Encode(e)
	if err != nil {
		return nil, err
	}
	r := &kgo.Record{Topic: topic, Key: m.Key, Value: m.Value, Headers: make([]kgo.RecordHeader, len(m.Headers))}
	for i, h := range m.Headers {
		r.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
	}
	return r, nil
}

func toMessage(r *kgo.Record) event.Message {
	m := event.Message{Key: r.Key, Value: r.Value, Headers: make([]event.Header, len(r.Headers))}
	for i, h := range r.Headers {
		m.Headers[i] = event.Header{Key: h.Key, Value: h.Value}
	}
	return m
}

// outbox collects what one handled event produces: output records, and
// processed-id marks. Attempts of a handler get a child outbox that is
// merged into the event's outbox only on success.
type outbox struct {
	mu    sync.Mutex
	recs  []*kgo.Record
	marks []mark
	mark1 [1]mark // NB: inline room for the usual one mark: no allocation
	// NB: no inline room here: every event allocates an outbox (two, with
	// the attempt's), and a bigger one costs subscribers without the store.
	idms []idMark // marks of the processed-id topic store
}

// mark is a processed-id mark of a handled event. The subscriber writes
// record() (if not nil) once the event's outputs are durable, and calls
// pending when the handler has succeeded (the id is then visible to Seen,
// so a redelivery in the same batch is caught), then commit once the
// record is durable or undo if it will not be (the event is then
// redelivered and handled again).
type mark interface {
	record() *kgo.Record
	pending()
	commit()
	undo()
}

func (o *outbox) add(recs []*kgo.Record) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.recs = append(o.recs, recs...)
}

func (o *outbox) addMark(m mark) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.appendMarksLocked(m)
}

func (o *outbox) appendMarksLocked(ms ...mark) {
	if o.marks == nil {
		o.marks = o.mark1[:0]
	}
	o.marks = append(o.marks, ms...)
}

func (o *outbox) addIDMark(m idMark) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.appendIDMarksLocked(m)
}

func (o *outbox) appendIDMarksLocked(ms ...idMark) {
	if len(ms) == 0 {
		return
	}
	o.idms = append(o.idms, ms...)
}

func (o *outbox) take() ([]*kgo.Record, []mark, []idMark) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, m, im := o.recs, o.marks, o.idms
	o.recs, o.marks, o.idms = nil, nil, nil
	return r, m, im
}

// attempt scopes the outputs of one call of h: kept on success, dropped on
// error. The subscriber puts it innermost, right around the user's handler.
// Under Trace each attempt is a "handle" span.
func attempt(h HandlerFunc) HandlerFunc {
	run := func(ctx context.Context, e *event.Event) error {
		parent, ok := ctx.Value(outboxKey).(*outbox)
		if !ok {
			return h(ctx, e)
		}
		child := &outbox{}
		if err := h(context.WithValue(ctx, outboxKey, child), e); err != nil {
			return err
		}
		recs, marks, idms := child.take()
		parent.mu.Lock()
		parent.recs = append(parent.recs, recs...)
		parent.appendMarksLocked(marks...)
		parent.appendIDMarksLocked(idms...)
		parent.mu.Unlock()
		return nil
	}
	return func(ctx context.Context, e *event.Event) error {
		tr := tracerFrom(ctx)
		if tr == nil {
			return run(ctx, e)
		}
		ctx, span := tr.Start(ctx, "handle "+e.Type, trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(attribute.String("messaging.message.id", e.ID)))
		defer span.End()
		err := run(ctx, e)
		endSpan(span, err)
		return err
	}
}

// env is what the subscriber shares with middleware through the context.
type env struct {
	metrics *Metrics
	logger  *slog.Logger
	tp      trace.TracerProvider // nil: the global one
}

func envFrom(ctx context.Context) *env {
	if v, ok := ctx.Value(envKey).(*env); ok {
		return v
	}
	return &env{logger: slog.Default()}
}

// Logger returns the logger for the event ctx is handling, with the
// subscriber's group, the topic, partition, offset and event id attached.
func Logger(ctx context.Context) *slog.Logger {
	l := envFrom(ctx).logger
	if d, ok := DeliveryFrom(ctx); ok {
		l = l.With("group", d.Group, "topic", d.Topic, "partition", d.Partition, "offset", d.Offset)
	}
	if e := EventFrom(ctx); e != nil {
		l = l.With("event_id", e.ID)
	}
	return l.With(logctx.Attrs(ctx)...)
}
