package stream

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// JobConfig is a windowed aggregation run as an exactly-once job over a
// Kafka-protocol cluster (Herald's own or any other).
type JobConfig struct {
	// Name names the job: its consumer group and transactional id are
	// "herald-stream-<Name>", its snapshots are keyed by it.
	Name    string
	Brokers []string
	// Input is the topic read; Output receives one JSON record per
	// result (see EncodeResult), keyed by the group key.
	Input, Output string
	// LateTopic receives late events, ErrorTopic events without a usable
	// time or key and records that are not events (header
	// "herald-error" says why), StateTopic (compacted) the snapshots.
	// Defaults: "<Name>.late", "<Name>.errors", "<Name>.state".
	LateTopic, ErrorTopic, StateTopic string
	// Processor is the aggregation.
	Processor Config
	// Filter, when set, drops the events it refuses before they reach
	// the Processor (a query's WHERE).
	Filter func(*event.Event) bool
	// Having, when set, drops the results it refuses (a query's HAVING).
	Having func(*Result) bool
	// Encode, when set, replaces EncodeResult for output records.
	Encode func(*Result) []byte
	// OnStart: see RunnerConfig.OnStart.
	OnStart func(ctx context.Context) error
	// OnCommit, when set, is called after each committed transaction with
	// the output records it held (on the job's goroutine; it must not keep
	// the slice).
	OnCommit func(results []*kgo.Record)
	// MaxPollRecords bounds a transaction's input (default 1000).
	MaxPollRecords int
	// KgoOptions are added to the client's options (tests).
	KgoOptions []kgo.Opt
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Job is a Processor as the Task of a Runner, which makes it exactly
// once: the result, late and error records of a batch commit together with
// the Processor's changes and the input offsets. Checkpoints are
// incremental: a transaction writes the windows of the keys it changed.
type Job struct {
	*Runner // Run
	cfg     JobConfig
	m       struct {
		late, results   prometheus.Counter
		open, watermark prometheus.Gauge
	}
}

// NewJob validates cfg (including the Processor's Config).
func NewJob(cfg JobConfig) (*Job, error) {
	if cfg.LateTopic == "" {
		cfg.LateTopic = cfg.Name + ".late"
	}
	j := &Job{cfg: cfg}
	rc := RunnerConfig{Kind: "stream job", Name: cfg.Name, Group: "herald-stream-" + cfg.Name, Brokers: cfg.Brokers,
		Input: cfg.Input, Output: cfg.Output, SideOutputs: []string{cfg.LateTopic}, ErrorTopic: cfg.ErrorTopic, StateTopic: cfg.StateTopic,
		MaxPollRecords: cfg.MaxPollRecords, Restore: j.restore, RestoreKeyed: j.restoreKeyed, OnStart: cfg.OnStart, Subsystem: "stream",
		KgoOptions: cfg.KgoOptions, Logger: cfg.Logger, Registerer: cfg.Registerer}
	if cfg.Processor.IdleTimeout > 0 {
		rc.IdleTick = cfg.Processor.IdleTimeout/2 + time.Millisecond
	}
	var err error
	if j.Runner, err = NewRunner(rc); err != nil {
		return nil, err
	}
	j.m.late = j.Counter("late_events_total", "Events sent to the late topic.")
	j.m.results = j.Counter("results_total", "Results written to the output topic.")
	j.m.open, j.m.watermark = j.Gauge("open_windows", "Windows open."), j.Gauge("watermark_seconds", "The job's watermark, Unix seconds.")
	if err := j.Register(); err != nil {
		return nil, err
	}
	return j, nil
}

// EncodeResult is the JSON record a job writes per result:
// {"key", "window_start", "window_end", "final", then one member per
// aggregate by name}; NaN (avg, min, max over no values) is null.
func EncodeResult(r *Result) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"key":`...)
	b = strconv.AppendQuote(b, r.Key)
	b = append(b, `,"window_start":"`...)
	b = r.Start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","window_end":"`...)
	b = r.End.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","final":`...)
	b = strconv.AppendBool(b, r.Final)
	for _, v := range r.Values {
		b = append(b, ',')
		b = strconv.AppendQuote(b, v.Name)
		b = append(b, ':')
		switch {
		case v.Top != nil:
			top, _ := json.Marshal(v.Top)
			b = append(b, top...)
		case math.IsNaN(v.Number) || math.IsInf(v.Number, 0):
			b = append(b, "null"...)
		default:
			b = strconv.AppendFloat(b, v.Number, 'g', -1, 64)
		}
	}
	return append(b, '}')
}

// jobTask is a Processor as a Runner's Task.
type jobTask struct {
	j             *Job
	p             *Processor
	b             *Batch        // during Process and EndBatch
	results, late int           // since the last commit
	pending       []*kgo.Record // results since the last commit, for OnCommit
}

// restore builds the task from a full snapshot (an earlier version's)
// or none, restoreKeyed from incremental checkpoints; either way the first
// checkpoint after it writes every key.
func (j *Job) restore(snap []byte) (Task, error) {
	return j.newTask(func(p *Processor) error {
		if snap == nil {
			return nil
		}
		return p.RestoreState(snap)
	})
}

func (j *Job) restoreKeyed(global []byte, keys map[string][]byte) (Task, error) {
	return j.newTask(func(p *Processor) error { return p.RestoreChanges(global, keys) })
}

func (j *Job) newTask(load func(*Processor) error) (Task, error) {
	p, err := New(j.cfg.Processor)
	if err != nil {
		return nil, err
	}
	if err := load(p); err != nil {
		return nil, err
	}
	p.TrackChanges()
	return &jobTask{j: j, p: p}, nil
}

func (t *jobTask) Process(partition int32, ev *event.Event, b *Batch) {
	if t.j.cfg.Filter != nil && !t.j.cfg.Filter(ev) {
		return
	}
	t.b = b
	t.p.Process(partition, ev, t)
}

func (t *jobTask) EndBatch(b *Batch, idle bool) {
	if idle { // idle partitions and quiet streams move time on
		t.b = b
		t.p.Advance(t)
	}
}

func (t *jobTask) MarshalState() ([]byte, error) { return t.p.MarshalState() }

func (t *jobTask) MarshalChanges() ([]byte, map[string][]byte, error) { return t.p.MarshalChanges() }

func (t *jobTask) Committed() {
	m := &t.j.m
	m.late.Add(float64(t.late))
	m.results.Add(float64(t.results))
	t.late, t.results = 0, 0
	if t.j.cfg.OnCommit != nil {
		t.j.cfg.OnCommit(t.pending)
		clear(t.pending)
		t.pending = t.pending[:0]
	}
	st := t.p.Stats()
	m.open.Set(float64(st.OpenWindows))
	if !st.Watermark.IsZero() {
		m.watermark.Set(float64(st.Watermark.UnixNano()) / 1e9)
	}
}

// Result, Late and Invalid make jobTask the Processor's Output.
func (t *jobTask) Result(r *Result) {
	if t.j.cfg.Having != nil && !t.j.cfg.Having(r) {
		return
	}
	enc := EncodeResult
	if t.j.cfg.Encode != nil {
		enc = t.j.cfg.Encode
	}
	t.results++
	rec := &kgo.Record{Topic: t.j.cfg.Output, Key: []byte(r.Key), Value: enc(r)}
	t.b.Produce(rec)
	if t.j.cfg.OnCommit != nil {
		t.pending = append(t.pending, rec)
	}
}

func (t *jobTask) Late(*event.Event, int32) {
	t.late++
	t.b.Forward(t.j.cfg.LateTopic, "")
}

func (t *jobTask) Invalid(_ *event.Event, _ int32, err error) { t.b.Invalid(err.Error()) }
