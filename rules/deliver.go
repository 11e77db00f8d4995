package rules

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
)

// Dead-letter record headers (besides the event's own ce_ headers).
const (
	HeaderDLQBus       = "herald-bus"
	HeaderDLQRule      = "herald-rule"
	HeaderDLQTarget    = "herald-target"
	HeaderDLQErrorCode = "herald-error-code"
	HeaderDLQErrorMsg  = "herald-error-message"
	HeaderDLQExhausted = "herald-exhausted"
	HeaderDLQAttempts  = "herald-attempts"
)

// Conditions that end a delivery's retries (HeaderDLQExhausted).
const (
	ExhaustedAttempts    = "MaximumRetryAttempts"
	ExhaustedEventAge    = "MaximumEventAge"
	ExhaustedNonRetrying = "NonRetryableError"
)

const maxBatch = 512

// job is one event owed to one target.
type job struct {
	ev       *sharedEvent
	done     func()
	attempts int
	due      time.Time
}

type jobHeap []*job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h jobHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)        { *h = append(*h, x.(*job)) }
func (h *jobHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type targetConfig struct {
	t  Target
	tr *transformer
}

// targetWorker delivers one (rule, target)'s events, in its own
// goroutine, with its own queue and retry heap.
type targetWorker struct {
	e                 *Engine
	bus, rule, id     string
	cfg               atomic.Pointer[targetConfig]
	notify, quit      chan struct{}
	exited            chan struct{}
	stopOnce          sync.Once
	drop              atomic.Bool
	delivered, failed atomic.Int64
	deadLettered      atomic.Int64
	dropped           atomic.Int64
	latencyNanos      atomic.Int64
	// deliveredC and latencyO are the engine metrics' children for this
	// target, looked up once.
	deliveredC prometheus.Counter
	latencyO   prometheus.Observer
	spanName   string // "deliver BUS/RULE"
	mu         struct {
		sync.Mutex
		queue []*job
		retry jobHeap
	}
}

func (e *Engine) newTargetWorker(bus, rule, id string) *targetWorker {
	w := &targetWorker{e: e, bus: bus, rule: rule, id: id, notify: make(chan struct{}, 1), quit: make(chan struct{}), exited: make(chan struct{}),
		deliveredC: e.m.delivered.WithLabelValues(bus, rule, id), latencyO: e.m.latency.WithLabelValues(bus, rule, id),
		spanName: "deliver " + bus + "/" + rule}
	e.wg.Add(1)
	go w.run()
	return w
}

func (w *targetWorker) setConfig(t Target, tr *transformer) { w.cfg.Store(&targetConfig{t: t, tr: tr}) }

func (w *targetWorker) enqueue(j *job) {
	if w.drop.Load() {
		j.done()
		return
	}
	w.mu.Lock()
	w.mu.queue = append(w.mu.queue, j)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *targetWorker) pending() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int64(len(w.mu.queue) + len(w.mu.retry))
}

// stop ends the worker after the batch it is delivering. With drop (the
// rule or target was deleted) its owed events are acknowledged without
// delivery; without (the Engine is closing) they stay uncommitted for the
// next start.
func (w *targetWorker) stop(drop bool) {
	w.stopOnce.Do(func() {
		w.drop.Store(drop)
		close(w.quit)
	})
}

func (w *targetWorker) run() {
	defer w.e.wg.Done()
	defer close(w.exited)
	for {
		batch, wait := w.take()
		if len(batch) > 0 {
			w.deliver(batch)
			continue
		}
		var timer <-chan time.Time
		var t *time.Timer
		if wait > 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		quit := false
		select {
		case <-w.quit:
			if w.drop.Load() {
				w.mu.Lock()
				jobs := append(w.mu.queue, w.mu.retry...)
				w.mu.queue, w.mu.retry = nil, nil
				w.mu.Unlock()
				for _, j := range jobs {
					j.done()
				}
			}
			quit = true
		case <-w.e.ctx.Done():
			quit = true // the Engine stopped without Close: owed events stay uncommitted
		case <-w.notify:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if quit {
			return
		}
	}
}

// take returns the jobs ready now, or how long until a retry is due.
func (w *targetWorker) take() ([]*job, time.Duration) {
	select {
	case <-w.quit:
		return nil, 0
	case <-w.e.ctx.Done():
		return nil, 0
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	var batch []*job
	for len(w.mu.retry) > 0 && !w.mu.retry[0].due.After(now) && len(batch) < maxBatch {
		batch = append(batch, heap.Pop(&w.mu.retry).(*job))
	}
	n := min(len(w.mu.queue), maxBatch-len(batch))
	batch = append(batch, w.mu.queue[:n]...)
	w.mu.queue = w.mu.queue[n:]
	if len(w.mu.queue) == 0 {
		w.mu.queue = nil
	}
	if len(batch) == 0 && len(w.mu.retry) > 0 {
		return nil, max(time.Until(w.mu.retry[0].due), time.Millisecond)
	}
	return batch, 0
}

// deliveryError is a failed attempt.
type deliveryError struct {
	code, msg string
	retryable bool
}

// outgoing builds the event a target receives: the bus event, with its
// data replaced by the transformer's output when there is one.
func (w *targetWorker) outgoing(cfg *targetConfig, j *job) *event.Event {
	if cfg.tr == nil {
		return j.ev.ev
	}
	out := *j.ev.ev
	out.Data = cfg.tr.apply(j.ev.json(), w.rule)
	if json.Valid(out.Data) {
		out.DataContentType = "application/json"
	} else {
		out.DataContentType = "text/plain"
	}
	return &out
}

func (w *targetWorker) deliver(batch []*job) {
	cfg := w.cfg.Load()
	errs := make([]*deliveryError, len(batch))
	outs := make([]*event.Event, len(batch))
	for i, j := range batch {
		ctx, span := w.startDeliverySpan(cfg, j.ev.ev)
		defer func() { endDeliverySpan(span, errs[i]) }()
		outs[i] = traced(ctx, w.outgoing(cfg, j))
	}
	if cfg.t.Topic != "" {
		recs := make([]eventlog.Record, 0, len(batch))
		for i, j := range batch {
			if outs[i] == j.ev.ev && j.ev.raw.Value != nil {
				recs = append(recs, j.ev.raw) // unchanged: no need to encode it again
				continue
			}
			recs = append(recs, toRecord(outs[i]))
		}
		err := w.e.writer(cfg.t.Topic).append(recs)
		if err != nil {
			de := &deliveryError{code: "APPEND_FAILED", msg: err.Error(), retryable: true}
			switch {
			case errors.Is(err, eventlog.ErrUnknownTopic):
				de.code = "TOPIC_NOT_FOUND"
				w.e.prod.Forget(cfg.t.Topic)
			case errors.Is(err, eventlog.ErrRecordTooLarge):
				de.code, de.retryable = "RECORD_TOO_LARGE", false
			}
			for i := range errs {
				errs[i] = de
			}
		}
	} else {
		var wg sync.WaitGroup
		sem := make(chan struct{}, w.e.cfg.WebhookConcurrency)
		for i := range batch {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				errs[i] = w.post(cfg, outs[i])
			}()
		}
		wg.Wait()
	}
	if w.e.ctx.Err() != nil {
		return // closing: what failed stays uncommitted
	}
	now := time.Now()
	for i, j := range batch {
		j.attempts++
		if errs[i] == nil {
			w.delivered.Add(1)
			lat := now.Sub(j.ev.arrived)
			w.latencyNanos.Add(int64(lat))
			w.deliveredC.Inc()
			w.latencyO.Observe(lat.Seconds())
			j.done()
			continue
		}
		w.fail(cfg, j, errs[i], now)
	}
}

func (w *targetWorker) backoff(attempt int) time.Duration {
	d := w.e.cfg.RetryBase
	for i := 1; i < attempt && d < w.e.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, w.e.cfg.RetryMax)
	return d/2 + rand.N(d/2+1)
}

func (w *targetWorker) fail(cfg *targetConfig, j *job, de *deliveryError, now time.Time) {
	w.failed.Add(1)
	w.e.m.failed.WithLabelValues(w.bus, w.rule, w.id).Inc()
	exhausted := ""
	wait := w.backoff(j.attempts)
	switch {
	case !de.retryable:
		exhausted = ExhaustedNonRetrying
	case j.attempts > cfg.t.RetryPolicy.maxRetries():
		exhausted = ExhaustedAttempts
	case now.Add(wait).Sub(j.ev.arrived) > cfg.t.RetryPolicy.maxAge():
		exhausted = ExhaustedEventAge
	}
	if exhausted == "" {
		j.due = now.Add(wait)
		w.mu.Lock()
		heap.Push(&w.mu.retry, j)
		w.mu.Unlock()
		return
	}
	w.deadLetter(cfg, j, de, exhausted)
}

// deadLetter writes the event to the target's dead-letter topic (retrying
// until it is written or the Engine closes) and acknowledges it.
func (w *targetWorker) deadLetter(cfg *targetConfig, j *job, de *deliveryError, exhausted string) {
	// Failures of rules on the system bus are not announced on it: a rule
	// reacting to failures whose own target fails would feed itself.
	if w.bus != SystemBus {
		w.e.emitAsync(TypeRuleTargetFailed, w.bus+"/"+w.rule+"/"+w.id, TargetFailure{
			Bus: w.bus, Rule: w.rule, Target: w.id, EventID: j.ev.ev.ID, EventSource: j.ev.ev.Source,
			ErrorCode: de.code, ErrorMessage: truncate(de.msg, 1024), Exhausted: exhausted, Attempts: j.attempts,
			DeadLetterTopic: cfg.t.DeadLetterTopic})
	}
	if cfg.t.DeadLetterTopic == "" {
		w.dropped.Add(1)
		w.e.m.dropped.WithLabelValues(w.bus, w.rule, w.id).Inc()
		w.e.log.Warn("delivery failed; retries exhausted and no dead-letter topic: event dropped",
			"bus", w.bus, "rule", w.rule, "target", w.id, "event", j.ev.ev.ID, "code", de.code, "err", de.msg, "exhausted", exhausted)
		j.done()
		return
	}
	rec := toRecord(j.ev.ev)
	rec.Headers = append(rec.Headers,
		eventlog.Header{Key: HeaderDLQBus, Value: []byte(w.bus)},
		eventlog.Header{Key: HeaderDLQRule, Value: []byte(w.rule)},
		eventlog.Header{Key: HeaderDLQTarget, Value: []byte(w.id)},
		eventlog.Header{Key: HeaderDLQErrorCode, Value: []byte(de.code)},
		eventlog.Header{Key: HeaderDLQErrorMsg, Value: []byte(truncate(de.msg, 1024))},
		eventlog.Header{Key: HeaderDLQExhausted, Value: []byte(exhausted)},
		eventlog.Header{Key: HeaderDLQAttempts, Value: []byte(strconv.Itoa(j.attempts))},
	)
	for attempt := 1; ; attempt++ {
		_, err := w.e.prod.Append(w.e.ctx, cfg.t.DeadLetterTopic, rec)
		if err == nil {
			break
		}
		if w.e.ctx.Err() != nil {
			return
		}
		w.e.log.Error("write dead-letter record", "bus", w.bus, "rule", w.rule, "target", w.id, "topic", cfg.t.DeadLetterTopic, "err", err)
		select {
		case <-w.e.ctx.Done():
			return
		case <-w.quit:
			return // stays uncommitted (or is dropped with its rule)
		case <-time.After(w.backoff(attempt)):
		}
	}
	w.deadLettered.Add(1)
	w.e.m.deadLettered.WithLabelValues(w.bus, w.rule, w.id).Inc()
	j.done()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func toRecord(ev *event.Event) eventlog.Record {
	m, err := event.Encode(ev)
	if err != nil {
		// A transformed event keeps the bus event's valid attributes, so
		// this is only a bus event that slipped past validation.
		return eventlog.Record{Value: ev.Data}
	}
	rec := eventlog.Record{Key: m.Key, Value: m.Value, Headers: make([]eventlog.Header, len(m.Headers))}
	for i, h := range m.Headers {
		rec.Headers[i] = eventlog.Header{Key: h.Key, Value: h.Value}
	}
	return rec
}

// post delivers ev to a webhook in CloudEvents HTTP binary mode.
func (w *targetWorker) post(cfg *targetConfig, ev *event.Event) *deliveryError {
	m, err := event.Encode(ev)
	if err != nil {
		return &deliveryError{code: "INVALID_EVENT", msg: err.Error()}
	}
	req, err := http.NewRequestWithContext(w.e.ctx, http.MethodPost, cfg.t.Webhook, bytes.NewReader(m.Value))
	if err != nil {
		return &deliveryError{code: "INVALID_WEBHOOK", msg: err.Error()}
	}
	for _, h := range m.Headers {
		switch {
		case h.Key == event.HeaderContentType:
			req.Header.Set("Content-Type", string(h.Value))
		case strings.HasPrefix(h.Key, event.HeaderPrefix):
			req.Header.Set("ce-"+strings.TrimPrefix(h.Key, event.HeaderPrefix), string(h.Value))
		}
	}
	req.Header.Set("Herald-Rule", w.rule)
	injectTraceHeader(req.Header, ev)
	resp, err := w.e.cfg.HTTPClient.Do(req)
	if err != nil {
		return &deliveryError{code: "HTTP_ERROR", msg: err.Error(), retryable: true}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	de := &deliveryError{code: "HTTP_" + strconv.Itoa(resp.StatusCode),
		msg: fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))}
	de.retryable = resp.StatusCode >= 500 || resp.StatusCode == 408 || resp.StatusCode == 429
	return de
}
