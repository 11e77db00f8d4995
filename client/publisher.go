package client

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/event"
)

// Publisher writes events to topics with an idempotent producer (acks=all,
// per-partition sequence numbers: a retried write is never duplicated).
// It is safe for concurrent use.
type Publisher struct {
	cl      *kgo.Client
	metrics *Metrics
	tracer  trace.Tracer
	closed  atomic.Bool
}

// NewPublisher connects to brokers (host:port seeds). Options: WithLogger,
// WithRegisterer, WithMetrics, WithKgoOptions, WithTracerProvider.
func NewPublisher(brokers []string, opts ...Option) (*Publisher, error) {
	c := newConfig(opts)
	kopts := append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(0),
	}, c.kgoOpts...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("client: new publisher: %w", err)
	}
	return &Publisher{cl: cl, metrics: c.metrics, tracer: tracerOf(c.tp)}, nil
}

// Publish writes evs to topic and returns when all are acknowledged, or
// with the first error (each event is written or not independently).
// Events get an ID and Time if they have none. Each call records a
// "publish <topic>" OpenTelemetry span (kind producer, a child of ctx's
// span) whose context becomes the events' traceparent. Events of one
// PartitionKey keep their order.
func (p *Publisher) Publish(ctx context.Context, topic string, evs ...*event.Event) (err error) {
	if p.closed.Load() {
		return ErrClosed
	}
	ctx, span := startPublishSpan(ctx, p.tracer, topic, len(evs))
	defer func() { endSpan(span, err); span.End() }()
	recs := make([]*kgo.Record, 0, len(evs))
	for _, e := range evs {
		prepare(ctx, e)
		r, err := toRecord(topic, e)
		if err != nil {
			return err
		}
		recs = append(recs, r)
	}
	if err := p.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	for range recs {
		p.metrics.count(cPublished, topic)
	}
	return nil
}

// PublishAsync queues e for topic and returns at once; done (may be nil) is
// called from another goroutine with the write's outcome. Use Flush to wait
// for everything queued. Blocks only when the producer's buffer is full.
func (p *Publisher) PublishAsync(ctx context.Context, topic string, e *event.Event, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	if p.closed.Load() {
		done(ErrClosed)
		return
	}
	ctx, span := startPublishSpan(ctx, p.tracer, topic, 1)
	done0 := done
	done = func(err error) { endSpan(span, err); span.End(); done0(err) }
	prepare(ctx, e)
	r, err := toRecord(topic, e)
	if err != nil {
		done(err)
		return
	}
	p.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
		if err != nil {
			done(fmt.Errorf("publish to %s: %w", topic, err))
			return
		}
		p.metrics.count(cPublished, topic)
		done(nil)
	})
}

// Flush waits until every queued event is acknowledged or failed.
func (p *Publisher) Flush(ctx context.Context) error { return p.cl.Flush(ctx) }

// Close flushes and disconnects. Later calls return ErrClosed.
func (p *Publisher) Close() error {
	if p.closed.Swap(true) {
		return ErrClosed
	}
	err := p.cl.Flush(context.Background())
	p.cl.Close()
	if errors.Is(err, kgo.ErrClientClosed) {
		err = nil
	}
	return err
}
