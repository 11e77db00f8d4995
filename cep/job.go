package cep

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/stream"
)

// JobConfig is a pattern run as an exactly-once job over a Kafka-protocol
// cluster (Herald's own or any other).
type JobConfig struct {
	// Name names the job: its consumer group and transactional id are
	// "herald-cep-<Name>", its snapshots are keyed by it.
	Name    string
	Brokers []string
	// KgoOptions, Logger, Registerer and MaxPollRecords: see
	// stream.RunnerConfig.
	KgoOptions     []kgo.Opt
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
	MaxPollRecords int
	Pattern        Pattern
	// Input is the topic read; Output receives the event each match emits
	// (Match.Event, Kafka binary binding, keyed by the partition key).
	Input, Output string
	// TimeoutTopic, when set, receives the event of each partial match
	// that Within ended (type "<Type>TimedOut", or "<Name>TimedOut" when
	// Pattern.Type is empty; data.timeout true). Setting it turns
	// Pattern.EmitTimeouts on.
	TimeoutTopic string
	// ErrorTopic receives the input records that are not events or lack
	// the pattern's key or time field, with header "herald-error" saying
	// why (default "<Name>.errors"). StateTopic (compacted) receives the
	// snapshots (default "<Name>.state").
	ErrorTopic, StateTopic string
	// Start, when the group has no committed offsets yet, are the input
	// offsets the job starts from (partition -> offset; a partition
	// missing starts at the beginning).
	Start map[int32]int64
}

// Job is an Engine as the Task of a stream.Runner, which makes it exactly
// once: the match, timeout and error records of a batch commit together
// with the engine's changes and the input offsets. Checkpoints are
// incremental: a transaction writes the state of the partitions (keys)
// it changed, not the whole state.
//
// Time: after each batch the engine is advanced to the greatest event
// time seen (a watermark without allowed lateness), so partial matches of
// quiet keys time out too.
type Job struct {
	*stream.Runner // Run
	cfg            JobConfig
	m              struct {
		matches, timeouts prometheus.Counter
		partial           prometheus.Gauge
	}
}

// NewJob validates cfg.
func NewJob(cfg JobConfig) (*Job, error) {
	if cfg.TimeoutTopic != "" {
		cfg.Pattern.EmitTimeouts = true
	}
	j := &Job{cfg: cfg}
	var err error
	j.Runner, err = stream.NewRunner(stream.RunnerConfig{Kind: "cep job", Name: cfg.Name, Group: "herald-cep-" + cfg.Name,
		Brokers: cfg.Brokers, Input: cfg.Input, Output: cfg.Output, SideOutputs: []string{cfg.TimeoutTopic},
		ErrorTopic: cfg.ErrorTopic, StateTopic: cfg.StateTopic, Start: cfg.Start, MaxPollRecords: cfg.MaxPollRecords,
		Restore: j.restore, RestoreKeyed: j.restoreKeyed, Subsystem: "cep", KgoOptions: cfg.KgoOptions, Logger: cfg.Logger, Registerer: cfg.Registerer})
	if err != nil {
		return nil, err
	}
	j.m.matches, j.m.timeouts = j.Counter("matches_total", "Match events committed to the output topic."),
		j.Counter("timeouts_total", "Timed-out partial matches committed to the timeout topic.")
	j.m.partial = j.Gauge("partial_matches", "Partial matches held.")
	if err := j.Register(); err != nil {
		return nil, err
	}
	return j, nil
}

// jobTask is an Engine as a Runner's Task.
type jobTask struct {
	j                 *Job
	eng               *Engine
	b                 *stream.Batch // during Process and EndBatch
	maxT              time.Time     // the batch's greatest event time
	matches, timeouts int           // since the last commit
}

// restore builds the task from a full snapshot (an earlier version's)
// or none; restoreKeyed from incremental checkpoints. Either way the
// first checkpoint after it writes every partition.
func (j *Job) restore(snap []byte) (stream.Task, error) {
	return j.newTask(func(eng *Engine) error {
		if snap == nil {
			return nil
		}
		return eng.RestoreState(snap)
	})
}

func (j *Job) restoreKeyed(global []byte, keys map[string][]byte) (stream.Task, error) {
	return j.newTask(func(eng *Engine) error { return eng.RestoreChanges(global, keys) })
}

func (j *Job) newTask(load func(*Engine) error) (stream.Task, error) {
	eng, err := NewEngine(j.cfg.Pattern)
	if err != nil {
		return nil, err
	}
	if err := load(eng); err != nil {
		return nil, err
	}
	eng.TrackChanges()
	return &jobTask{j: j, eng: eng}, nil
}

func (t *jobTask) Process(_ int32, ev *event.Event, b *stream.Batch) {
	if ev.Time.After(t.maxT) {
		t.maxT = ev.Time
	}
	t.b = b
	t.eng.Process(ev, t)
}

func (t *jobTask) EndBatch(b *stream.Batch, _ bool) {
	if !t.maxT.IsZero() {
		t.b = b
		t.eng.Advance(t.maxT, t)
		t.maxT = time.Time{}
	}
}

func (t *jobTask) MarshalState() ([]byte, error) { return t.eng.MarshalState() }

func (t *jobTask) MarshalChanges() ([]byte, map[string][]byte, error) { return t.eng.MarshalChanges() }

func (t *jobTask) Committed() {
	t.j.m.matches.Add(float64(t.matches))
	t.j.m.timeouts.Add(float64(t.timeouts))
	t.matches, t.timeouts = 0, 0
	t.j.m.partial.Set(float64(t.eng.Stats().PartialMatches))
}

func (t *jobTask) add(topic string, m *Match) {
	msg, err := event.Encode(m.Event(&t.j.cfg.Pattern))
	if err != nil {
		t.b.Fail(fmt.Errorf("encode match event: %w", err))
		return
	}
	r := &kgo.Record{Topic: topic, Key: msg.Key, Value: msg.Value}
	for _, h := range msg.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	t.b.Produce(r)
}

// Match, Timeout and Invalid make jobTask the Engine's Output.
func (t *jobTask) Match(m *Match) { t.matches++; t.add(t.j.cfg.Output, m) }

func (t *jobTask) Timeout(m *Match) {
	if t.j.cfg.TimeoutTopic != "" {
		t.timeouts++
		t.add(t.j.cfg.TimeoutTopic, m)
	}
}

func (t *jobTask) Invalid(_ *event.Event, err error) { t.b.Invalid(err.Error()) }
