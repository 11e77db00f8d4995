package rules

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/heraldhq/herald/event"
)

// SystemQueueConfig configures a SystemQueue.
type SystemQueueConfig struct {
	// Size bounds the events waiting for the system bus (default 4096);
	// beyond it new ones are dropped.
	Size int
	// PublishTimeout bounds one publish on the system bus (default 10s).
	PublishTimeout time.Duration
	// Logger defaults to slog.Default(); a nil Registerer registers no
	// metrics.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// SystemQueue carries the events other components emit about themselves
// (their Config.OnEvent hooks, see event.Hook) to the system bus of an
// Engine. Its Hook never blocks: events wait in a bounded buffer, and one
// that does not fit, or that the system bus refuses, is dropped, counted
// (herald_rules_system_events_dropped_total) and logged. The hook can be
// handed out before the Engine exists: events wait until Run.
type SystemQueue struct {
	cfg     SystemQueueConfig
	log     *slog.Logger
	ch      chan *event.Event
	emitted *prometheus.CounterVec
	dropped *prometheus.CounterVec

	mu          sync.Mutex
	lastDropLog time.Time
}

// NewSystemQueue returns a SystemQueue; call Run to deliver its events.
func NewSystemQueue(cfg SystemQueueConfig) *SystemQueue {
	if cfg.Size <= 0 {
		cfg.Size = 4096
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	q := &SystemQueue{cfg: cfg, log: cfg.Logger.With("component", "rules"), ch: make(chan *event.Event, cfg.Size)}
	q.emitted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_rules_system_events_total",
		Help: "Herald's own events published on the system bus, by source."}, []string{"source"})
	q.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_rules_system_events_dropped_total",
		Help: "Herald's own events dropped instead of published on the system bus, by source and reason (queue_full, publish_failed, invalid)."},
		[]string{"source", "reason"})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{q.emitted, q.dropped} {
			if err := cfg.Registerer.Register(c); err != nil {
				panic(fmt.Sprintf("rules: register metrics: %v", err))
			}
		}
	}
	return q
}

// Hook returns the hook to give components: it queues the event and
// returns at once. A nil q's hook is nil: nothing is emitted.
func (q *SystemQueue) Hook() event.Hook {
	if q == nil {
		return nil
	}
	return func(_ context.Context, ev *event.Event) {
		if ev == nil {
			return
		}
		select {
		case q.ch <- ev:
		default:
			q.drop(ev, "queue_full", nil)
		}
	}
}

// Dropped returns how many events of source were dropped for reason.
func (q *SystemQueue) Dropped(source, reason string) float64 {
	return counterValue(q.dropped.WithLabelValues(source, reason))
}

// drop counts a dropped event and logs it, at most once a second so a
// flood of drops does not flood the log too.
func (q *SystemQueue) drop(ev *event.Event, reason string, err error) {
	q.dropped.WithLabelValues(ev.Source, reason).Inc()
	q.mu.Lock()
	now := time.Now()
	logIt := now.Sub(q.lastDropLog) >= time.Second
	if logIt {
		q.lastDropLog = now
	}
	q.mu.Unlock()
	if logIt {
		q.log.Warn("dropped a system event", "source", ev.Source, "type", ev.Type, "subject", ev.Subject, "reason", reason, "err", err)
	}
}

// Start runs Run on e in a goroutine until the returned stop is called
// (before e is closed). A nil q starts nothing.
func (q *SystemQueue) Start(e *Engine) (stop func() error) {
	if q == nil {
		return func() error { return nil }
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(ctx, e)
	}()
	return func() error {
		cancel()
		<-done
		return nil
	}
}

// Run publishes queued events on e's system bus until ctx ends. The
// Engine must be started.
func (q *SystemQueue) Run(ctx context.Context, e *Engine) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-q.ch:
			if !strings.HasPrefix(ev.Source, systemSourcePrefix) || len(ev.Source) == len(systemSourcePrefix) ||
				len(ev.Data) > maxSystemEventDataSize {
				q.drop(ev, "invalid", fmt.Errorf("source %q, %d bytes of data", ev.Source, len(ev.Data)))
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, q.cfg.PublishTimeout)
			err := e.Publish(pctx, SystemBus, ev)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				q.drop(ev, "publish_failed", err)
				continue
			}
			q.emitted.WithLabelValues(ev.Source).Inc()
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
