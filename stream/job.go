package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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
	// MaxPollRecords bounds a transaction's input (default 1000).
	MaxPollRecords int
	// KgoOptions are added to the client's options (tests).
	KgoOptions []kgo.Opt
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Job runs a Processor over a topic with exactly-once state: every
// transaction holds the batch's output records, late and error records,
// a snapshot of the Processor's whole state (to StateTopic) and the input
// offsets, so that a job killed at any point restarts from the last
// committed snapshot and offsets and its committed output equals that of
// a run without the crash. One process runs a job at a time; a second one
// fences the first through the transactional id.
type Job struct {
	cfg JobConfig
	log *slog.Logger
	m   jobMetrics
}

type jobMetrics struct {
	events, late, invalid, results, commits, aborts prometheus.Counter
	open, watermark                                 prometheus.Gauge
}

// NewJob validates cfg (including the Processor's Config).
func NewJob(cfg JobConfig) (*Job, error) {
	var errs []error
	if cfg.Name == "" {
		errs = append(errs, errors.New("name: is required"))
	}
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one is required"))
	}
	if cfg.Input == "" {
		errs = append(errs, errors.New("input: is required"))
	}
	if cfg.Output == "" {
		errs = append(errs, errors.New("output: is required"))
	}
	if _, err := New(cfg.Processor); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("stream job %q: %w", cfg.Name, err)
	}
	if cfg.LateTopic == "" {
		cfg.LateTopic = cfg.Name + ".late"
	}
	if cfg.ErrorTopic == "" {
		cfg.ErrorTopic = cfg.Name + ".errors"
	}
	if cfg.StateTopic == "" {
		cfg.StateTopic = cfg.Name + ".state"
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 1000
	}
	j := &Job{cfg: cfg, log: cfg.Logger}
	if j.log == nil {
		j.log = slog.Default()
	}
	j.log = j.log.With("job", cfg.Name)
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "herald", Subsystem: "stream", Name: name, Help: help,
			ConstLabels: prometheus.Labels{"job": cfg.Name}})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "herald", Subsystem: "stream", Name: name, Help: help,
			ConstLabels: prometheus.Labels{"job": cfg.Name}})
	}
	j.m = jobMetrics{
		events:    c("events_total", "Input records processed (committed or not)."),
		late:      c("late_events_total", "Events sent to the late topic."),
		invalid:   c("invalid_events_total", "Records sent to the error topic."),
		results:   c("results_total", "Results written to the output topic."),
		commits:   c("transactions_committed_total", "Transactions committed."),
		aborts:    c("transactions_aborted_total", "Transactions aborted (the batch is redone from the last snapshot)."),
		open:      g("open_windows", "Windows open."),
		watermark: g("watermark_seconds", "The job's watermark, Unix seconds."),
	}
	if cfg.Registerer != nil {
		for _, col := range []prometheus.Collector{j.m.events, j.m.late, j.m.invalid, j.m.results, j.m.commits, j.m.aborts, j.m.open, j.m.watermark} {
			if err := cfg.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("stream job %q: register metrics: %w", cfg.Name, err)
			}
		}
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

// jobOut collects a batch's records.
type jobOut struct {
	j                      *Job
	recs                   []*kgo.Record
	cur                    *kgo.Record // the input record being processed
	results, late, invalid int         // this batch's, counted on commit
}

func (o *jobOut) Result(r *Result) {
	if o.j.cfg.Having != nil && !o.j.cfg.Having(r) {
		return
	}
	enc := EncodeResult
	if o.j.cfg.Encode != nil {
		enc = o.j.cfg.Encode
	}
	o.results++
	o.recs = append(o.recs, &kgo.Record{Topic: o.j.cfg.Output, Key: []byte(r.Key), Value: enc(r)})
}

func (o *jobOut) Late(*event.Event, int32) {
	o.late++
	o.recs = append(o.recs, o.copyInput(o.j.cfg.LateTopic, ""))
}

func (o *jobOut) Invalid(_ *event.Event, _ int32, err error) {
	o.invalid++
	o.recs = append(o.recs, o.copyInput(o.j.cfg.ErrorTopic, err.Error()))
}

func (o *jobOut) copyInput(topic, why string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: o.cur.Key, Value: o.cur.Value, Headers: append([]kgo.RecordHeader(nil), o.cur.Headers...)}
	if why != "" {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "herald-error", Value: []byte(why)})
	}
	return r
}

// snapshot chunks: a snapshot is written as records keyed
// "<name>/<i>", i < n, each with headers "seq" (the snapshot's sequence
// number), "chunks" (n) and "offsets" (JSON {partition: next input
// offset}, the offsets the same transaction commits), all in one
// transaction. A restart reads the state topic until the newest snapshot's
// offsets equal the group's committed offsets: then it is the snapshot of
// the last committed transaction.
const chunkSize = 512 << 10

func (j *Job) group() string { return "herald-stream-" + j.cfg.Name }

// Run runs the job until ctx ends (nil) or a fatal error.
func (j *Job) Run(ctx context.Context) error {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(j.cfg.Brokers...),
		kgo.ConsumerGroup(j.group()),
		kgo.ConsumeTopics(j.cfg.Input),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionalID(j.group()),
		kgo.TransactionTimeout(20 * time.Second),
		kgo.RequireStableFetchOffsets(),
		kgo.ProducerLinger(0),
	}, j.cfg.KgoOptions...)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("stream job %q: %w", j.cfg.Name, err)
	}
	defer sess.CloseAllowingRebalance()
	cl := sess.Client()
	// NB: initializing the producer id fences a killed predecessor and
	// aborts its open transaction, so the state topic's committed end is
	// stable before it is read.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return fmt.Errorf("stream job %q: init transactional producer: %w", j.cfg.Name, err)
	}
	if err := j.ensureTopics(ctx, kadm.NewClient(cl)); err != nil {
		return err
	}
	committed, err := j.committedOffsets(ctx, kadm.NewClient(cl))
	if err != nil {
		return err
	}
	snap, seq, err := j.loadSnapshot(ctx, committed)
	if err != nil {
		return err
	}
	p, err := j.restore(snap)
	if err != nil {
		return err
	}
	j.log.Info("stream job running", "input", j.cfg.Input, "output", j.cfg.Output, "restored_bytes", len(snap),
		"open_windows", p.Stats().OpenWindows, "watermark", p.Watermark())

	var produceErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	out := &jobOut{j: j}
	for {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if p.cfg.IdleTimeout > 0 {
			pctx, cancel = context.WithTimeout(ctx, p.cfg.IdleTimeout/2+time.Millisecond)
		}
		fs := sess.PollRecords(pctx, j.cfg.MaxPollRecords)
		cancel()
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				j.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		out.recs = out.recs[:0]
		out.results, out.late, out.invalid = 0, 0, 0
		if fs.NumRecords() == 0 {
			if p.cfg.IdleTimeout <= 0 {
				sess.AllowRebalance()
				continue
			}
			p.Advance(out) // idle partitions and quiet streams move time on
			if len(out.recs) == 0 {
				sess.AllowRebalance()
				continue
			}
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("stream job %q: begin transaction: %w", j.cfg.Name, err)
		}
		produceErr.Store(nil)
		offsets := make(map[int32]int64, len(committed))
		for k, v := range committed {
			offsets[k] = v
		}
		fs.EachRecord(func(r *kgo.Record) {
			offsets[r.Partition] = r.Offset + 1
			out.cur = r
			j.m.events.Inc()
			hs := make([]event.Header, len(r.Headers))
			for i, h := range r.Headers {
				hs[i] = event.Header{Key: h.Key, Value: h.Value}
			}
			ev, err := event.DecodeAny(event.Message{Key: r.Key, Value: r.Value, Headers: hs})
			if err != nil {
				out.invalid++
				out.recs = append(out.recs, out.copyInput(j.cfg.ErrorTopic, err.Error()))
				return
			}
			if j.cfg.Filter != nil && !j.cfg.Filter(ev) {
				return
			}
			p.Process(r.Partition, ev, out)
		})
		state, err := p.MarshalState()
		if err != nil {
			return fmt.Errorf("stream job %q: %w", j.cfg.Name, err)
		}
		seq++
		for _, r := range out.recs {
			sess.Produce(ctx, r, promise)
		}
		for _, r := range j.chunks(state, seq, offsets) {
			sess.Produce(ctx, r, promise)
		}
		ok := cl.Flush(ctx) == nil && produceErr.Load() == nil
		txnOK, err := sess.End(ctx, kgo.TransactionEndTry(ok))
		if txnOK {
			snap, committed = state, offsets
			after := p.Stats()
			j.m.commits.Inc()
			j.m.late.Add(float64(out.late))
			j.m.invalid.Add(float64(out.invalid))
			j.m.results.Add(float64(out.results))
			j.m.open.Set(float64(after.OpenWindows))
			if !after.Watermark.IsZero() {
				j.m.watermark.Set(float64(after.Watermark.UnixNano()) / 1e9)
			}
		} else {
			// The batch will be redelivered: go back to the committed state.
			j.m.aborts.Inc()
			seq--
			if p, err = j.restore(snap); err != nil {
				return err
			}
			if pe := produceErr.Load(); pe != nil {
				j.log.Warn("transaction aborted: writing its records failed; the batch will be redone", "err", *pe)
			} else {
				j.log.Warn("transaction aborted; the batch will be redone")
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("stream job %q: end transaction: %w", j.cfg.Name, err)
		}
		sess.AllowRebalance()
	}
}

func (j *Job) restore(snap []byte) (*Processor, error) {
	p, err := New(j.cfg.Processor)
	if err != nil {
		return nil, err
	}
	if snap != nil {
		if err := p.RestoreState(snap); err != nil {
			return nil, fmt.Errorf("stream job %q: restore state from %s: %w", j.cfg.Name, j.cfg.StateTopic, err)
		}
	}
	return p, nil
}

func (j *Job) chunks(state []byte, seq int64, offsets map[int32]int64) []*kgo.Record {
	n := (len(state) + chunkSize - 1) / chunkSize
	recs := make([]*kgo.Record, 0, n)
	offs, _ := json.Marshal(offsets)
	hdr := []kgo.RecordHeader{{Key: "seq", Value: strconv.AppendInt(nil, seq, 10)}, {Key: "chunks", Value: strconv.AppendInt(nil, int64(n), 10)},
		{Key: "offsets", Value: offs}}
	for i := 0; i < n; i++ {
		end := min((i+1)*chunkSize, len(state))
		recs = append(recs, &kgo.Record{Topic: j.cfg.StateTopic, Partition: 0,
			Key: []byte(j.cfg.Name + "/" + strconv.Itoa(i)), Value: state[i*chunkSize : end], Headers: hdr})
	}
	return recs
}

func (j *Job) ensureTopics(ctx context.Context, adm *kadm.Client) error {
	td, err := adm.ListTopics(ctx, j.cfg.Input)
	if err != nil {
		return fmt.Errorf("stream job %q: describe input %q: %w", j.cfg.Name, j.cfg.Input, err)
	}
	in, ok := td[j.cfg.Input]
	if !ok || in.Err != nil {
		return fmt.Errorf("stream job %q: input topic %q does not exist", j.cfg.Name, j.cfg.Input)
	}
	parts := int32(len(in.Partitions))
	create := func(topic string, n int32, configs map[string]*string) error {
		resp, err := adm.CreateTopic(ctx, n, -1, configs, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("stream job %q: create topic %q: %w", j.cfg.Name, topic, err)
		}
		return nil
	}
	for _, t := range []string{j.cfg.Output, j.cfg.LateTopic, j.cfg.ErrorTopic} {
		if err := create(t, parts, nil); err != nil {
			return err
		}
	}
	compact := "compact"
	return create(j.cfg.StateTopic, 1, map[string]*string{"cleanup.policy": &compact})
}

// committedOffsets returns the group's committed input offsets.
func (j *Job) committedOffsets(ctx context.Context, adm *kadm.Client) (map[int32]int64, error) {
	resp, err := adm.FetchOffsets(ctx, j.group())
	if err != nil {
		return nil, fmt.Errorf("stream job %q: committed offsets: %w", j.cfg.Name, err)
	}
	offs := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == j.cfg.Input && o.Err == nil && o.At >= 0 {
			offs[o.Partition] = o.At
		}
	})
	return offs, nil
}

// restoreWait bounds how long a restart waits for the state topic to
// show the snapshot matching the committed offsets.
const restoreWait = time.Minute

// loadSnapshot reads the state topic until its newest snapshot is the
// one committed with the group's offsets (nil when nothing was committed
// yet), and returns it with its sequence number.
func (j *Job) loadSnapshot(ctx context.Context, committed map[int32]int64) ([]byte, int64, error) {
	if len(committed) == 0 {
		return nil, 0, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(j.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{j.cfg.StateTopic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted())}, j.cfg.KgoOptions...)...)
	if err != nil {
		return nil, 0, err
	}
	defer cl.Close()
	type chunk struct {
		seq, n  int64
		offsets map[int32]int64
		val     []byte
	}
	latest := map[string]chunk{}
	deadline := time.Now().Add(restoreWait)
	for {
		if first, ok := latest[j.cfg.Name+"/0"]; ok && maps.Equal(first.offsets, committed) {
			var snap []byte
			for i := int64(0); i < first.n; i++ {
				c, ok := latest[j.cfg.Name+"/"+strconv.FormatInt(i, 10)]
				if !ok || c.seq != first.seq {
					return nil, 0, fmt.Errorf("stream job %q: %w: snapshot %d chunk %d of %d is missing", j.cfg.Name, ErrCorruptState, first.seq, i, first.n)
				}
				snap = append(snap, c.val...)
			}
			return snap, first.seq, nil
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("stream job %q: %w: no snapshot in %s matches the committed offsets %v", j.cfg.Name, ErrCorruptState, j.cfg.StateTopic, committed)
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = err
			}
		})
		if ferr != nil {
			return nil, 0, fmt.Errorf("stream job %q: read state: %w", j.cfg.Name, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			c := chunk{val: r.Value}
			for _, h := range r.Headers {
				switch h.Key {
				case "seq":
					c.seq, _ = strconv.ParseInt(string(h.Value), 10, 64)
				case "chunks":
					c.n, _ = strconv.ParseInt(string(h.Value), 10, 64)
				case "offsets":
					_ = json.Unmarshal(h.Value, &c.offsets)
				}
			}
			latest[string(r.Key)] = c
		})
	}
}
