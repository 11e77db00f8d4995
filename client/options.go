package client

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/logctx"
)

// DeliveryMode says when a subscriber commits an event's offset relative to
// handling it.
type DeliveryMode int

const (
	// AtLeastOnce commits after the handler succeeds and its outputs are
	// written: nothing is lost, a crash between handling and committing
	// redelivers (pair with WithIdempotency to skip the repeat).
	AtLeastOnce DeliveryMode = iota
	// AtMostOnce commits a fetched batch before handling it: a crash loses
	// the in-flight events, nothing is handled twice. For metrics, logs,
	// cache invalidation.
	AtMostOnce
	// ExactlyOnce runs each fetched batch in one Kafka transaction: the
	// outputs (Publish, dead letters, processed ids) and the input offsets
	// commit together or not at all, so consumers reading with
	// read_committed see each input's effects once. Side effects outside
	// Kafka are still at-least-once. Costs a transaction per batch.
	ExactlyOnce
)

func (m DeliveryMode) String() string {
	switch m {
	case AtLeastOnce:
		return "at-least-once"
	case AtMostOnce:
		return "at-most-once"
	case ExactlyOnce:
		return "exactly-once"
	}
	return "DeliveryMode(?)"
}

// Option configures a Publisher or a Subscriber. Options that make sense for
// only one of them say so and are ignored by the other.
type Option func(*config)

type config struct {
	logger   *slog.Logger
	metrics  *Metrics
	kgoOpts  []kgo.Opt
	mode     DeliveryMode
	mws      []Middleware
	dlq      string
	idemTTL  time.Duration
	store    ProcessedStore
	procTop  string
	procN    int32
	txnID    string
	txnTO    time.Duration
	shutdown time.Duration
	maxPoll  int
	pause    time.Duration
	atEnd    bool
	tp       trace.TracerProvider
	dlqEvery time.Duration
}

func newConfig(opts []Option) config {
	c := config{
		logger: slog.Default(), procTop: DefaultProcessedTopic, procN: 16,
		txnTO: 20 * time.Second, shutdown: 30 * time.Second, maxPoll: 500, pause: time.Second,
		dlqEvery: 30 * time.Second,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	// Lines logged with a handler's context carry its request and
	// correlation ids (logctx).
	c.logger = slog.New(logctx.NewHandler(c.logger.Handler()))
	return c
}

// WithLogger sets the slog logger (default slog.Default()). Lines it logs
// with the context of a handler call (InfoContext, or through Logger(ctx))
// carry the event's request_id (its id) and correlation_id, as package
// logctx describes.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithRegisterer registers Prometheus metrics on reg (default: none).
// Several publishers and subscribers may use one registry.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(c *config) { c.metrics = NewMetrics(reg) }
}

// WithMetrics shares one Metrics among several publishers and subscribers.
func WithMetrics(m *Metrics) Option { return func(c *config) { c.metrics = m } }

// WithKgoOptions passes options to the underlying franz-go client, e.g. TLS or
// SASL. Options that contradict the delivery mode (auto-commit, isolation
// level, transactional id) break its guarantees.
func WithKgoOptions(opts ...kgo.Opt) Option {
	return func(c *config) { c.kgoOpts = append(c.kgoOpts, opts...) }
}

// WithDeliveryMode sets the subscriber's delivery mode (default AtLeastOnce).
func WithDeliveryMode(m DeliveryMode) Option { return func(c *config) { c.mode = m } }

// WithMiddleware wraps the subscriber's handler; the first is outermost. A
// typical chain: Trace(), Correlate(), Retry(p), CircuitBreaker(b),
// Timeout(d), Recover().
func WithMiddleware(mws ...Middleware) Option {
	return func(c *config) { c.mws = append(c.mws, mws...) }
}

// WithDeadLetter sends events that fail past the middleware (so past Retry)
// to topic, with the herald-dlq-* headers, and moves on; undecodable records
// go there at once, with the decoder's error and 0 attempts. Without it a
// failing event blocks its partition (redelivered after WithFailurePause)
// and an undecodable one is logged and skipped. The topic must exist (or the
// cluster must create topics on first use).
func WithDeadLetter(topic string) Option { return func(c *config) { c.dlq = topic } }

// WithIdempotency skips events whose ID the group handled in the last ttl,
// remembering ids in the compacted topic DefaultProcessedTopic (created if
// missing). Each handled event costs one small extra record, written after
// its outputs and before its offset is committed, and a lookup on the
// handler path (~0.7 µs: an in-memory set loaded per partition on first
// use). Longer ttl catches later duplicates and holds more ids in memory
// (~30 bytes each).
func WithIdempotency(ttl time.Duration) Option { return func(c *config) { c.idemTTL = ttl } }

// WithProcessedTopic names the processed-id topic and the partition count it
// is created with if missing (default DefaultProcessedTopic, 16).
func WithProcessedTopic(topic string, partitions int32) Option {
	return func(c *config) { c.procTop, c.procN = topic, partitions }
}

// WithProcessedStore uses store for WithIdempotency instead of the topic.
func WithProcessedStore(store ProcessedStore) Option { return func(c *config) { c.store = store } }

// WithTransactionalID sets the ExactlyOnce producer's transactional id. Use a
// stable id per instance (a pod name): a restarted instance then fences its
// crashed predecessor at once, while a fresh random id (the default) leaves
// the predecessor's open transaction blocking its partitions for up to the
// transaction timeout.
func WithTransactionalID(id string) Option { return func(c *config) { c.txnID = id } }

// WithTransactionTimeout bounds an ExactlyOnce transaction (default 20s):
// the broker aborts one open longer. It must exceed the time to handle a
// batch, retries included; shorter unblocks sooner after a crash.
func WithTransactionTimeout(d time.Duration) Option { return func(c *config) { c.txnTO = d } }

// WithShutdownTimeout bounds how long Close and a canceled Run wait for
// in-flight handlers before canceling their contexts (default 30s).
func WithShutdownTimeout(d time.Duration) Option { return func(c *config) { c.shutdown = d } }

// WithMaxPollRecords bounds the records handled between commits (default
// 500). Larger batches commit less often; under ExactlyOnce a batch is a
// transaction, and a failure redoes all of it.
func WithMaxPollRecords(n int) Option { return func(c *config) { c.maxPoll = n } }

// WithFailurePause sets the pause before a failed event (no dead-letter
// topic, or writing to it failed) is redelivered (default 1s).
func WithFailurePause(d time.Duration) Option { return func(c *config) { c.pause = d } }

// WithStartAtEnd makes a group with no committed offsets start at the end of
// each partition instead of the start (the default, which loses nothing).
func WithStartAtEnd() Option { return func(c *config) { c.atEnd = true } }

// WithTracerProvider sets the OpenTelemetry tracer provider of Trace and of
// a Publisher's spans (default: otel.GetTracerProvider() when the
// subscriber or publisher is created, or when Trace runs).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithDeadLetterDepthInterval sets how often the subscriber refreshes the
// herald_client_dlq_depth gauge of its WithDeadLetter topic (default 30s;
// it is also refreshed after each batch that dead-lettered an event).
func WithDeadLetterDepthInterval(d time.Duration) Option { return func(c *config) { c.dlqEvery = d } }
