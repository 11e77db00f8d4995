package cep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// JobConfig is a pattern run as an exactly-once job over a Kafka-protocol
// cluster (Herald's own or any other).
type JobConfig struct {
	// Name names the job: its consumer group and transactional id are
	// "herald-cep-<Name>", its snapshots are keyed by it.
	Name    string
	Brokers []string
	Pattern Pattern
	// Input is the topic read; Output receives the event each match emits
	// (Match.Event, Kafka binary binding, keyed by the partition key).
	Input, Output string
	// TimeoutTopic, when set, receives the event of each partial match
	// that Within ended (type "<Type>TimedOut", or "<Name>TimedOut" when
	// Pattern.Type is empty; data.timeout true). Setting it turns
	// Pattern.EmitTimeouts on.
	TimeoutTopic string
	// StateTopic (compacted) receives the snapshots (default
	// "<Name>.state").
	StateTopic string
	// Start, when the group has no committed offsets yet, are the input
	// offsets the job starts from (partition -> offset; a partition
	// missing starts at the beginning).
	Start map[int32]int64
	// MaxPollRecords bounds a transaction's input (default 1000).
	MaxPollRecords int
	KgoOptions     []kgo.Opt
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

// Job runs a pattern over a topic exactly once: every transaction holds
// the batch's match and timeout events, a snapshot of the engine's whole
// state (to StateTopic) and the input offsets, so that a job killed at
// any point restarts from the last committed snapshot and offsets, and
// its committed output equals that of a run without the crash.
//
// Time: after each batch the engine is advanced to the greatest event
// time seen (a watermark without allowed lateness), so partial matches of
// quiet keys time out too.
type Job struct {
	cfg JobConfig
	log *slog.Logger
	m   struct {
		events, matches, timeouts, invalid, commits, aborts prometheus.Counter
		partial                                             prometheus.Gauge
	}
}

// NewJob validates cfg.
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
	if cfg.TimeoutTopic != "" {
		cfg.Pattern.EmitTimeouts = true
	}
	if _, err := NewEngine(cfg.Pattern); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cep job %q: %w", cfg.Name, err)
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
	j.log = j.log.With("cep_job", cfg.Name)
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "herald", Subsystem: "cep", Name: name, Help: help,
			ConstLabels: prometheus.Labels{"job": cfg.Name}})
	}
	j.m.events = c("events_total", "Input records processed (committed or not).")
	j.m.matches = c("matches_total", "Match events committed to the output topic.")
	j.m.timeouts = c("timeouts_total", "Timed-out partial matches committed to the timeout topic.")
	j.m.invalid = c("invalid_events_total", "Input records that are not events or lack the key or time field (skipped).")
	j.m.commits = c("transactions_committed_total", "Transactions committed.")
	j.m.aborts = c("transactions_aborted_total", "Transactions aborted (the batch is redone from the last snapshot).")
	j.m.partial = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "herald", Subsystem: "cep", Name: "partial_matches",
		Help: "Partial matches held.", ConstLabels: prometheus.Labels{"job": cfg.Name}})
	if cfg.Registerer != nil {
		for _, col := range j.collectors() {
			if err := cfg.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("cep job %q: register metrics: %w", cfg.Name, err)
			}
		}
	}
	return j, nil
}

func (j *Job) collectors() []prometheus.Collector {
	return []prometheus.Collector{j.m.events, j.m.matches, j.m.timeouts, j.m.invalid, j.m.commits, j.m.aborts, j.m.partial}
}

// unregister removes the job's metrics from the Registerer (a stopped
// server-side pattern).
func (j *Job) unregister() {
	if j.cfg.Registerer != nil {
		for _, col := range j.collectors() {
			j.cfg.Registerer.Unregister(col)
		}
	}
}

func (j *Job) group() string { return "herald-cep-" + j.cfg.Name }

// jobOut collects a batch's records.
type jobOut struct {
	j                          *Job
	recs                       []*kgo.Record
	err                        error
	matches, timeouts, invalid int
}

func (o *jobOut) add(topic string, m *Match) {
	ev := m.Event(&o.j.cfg.Pattern)
	msg, err := event.Encode(ev)
	if err != nil {
		o.err = err
		return
	}
	r := &kgo.Record{Topic: topic, Key: msg.Key, Value: msg.Value}
	for _, h := range msg.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	o.recs = append(o.recs, r)
}

func (o *jobOut) Match(m *Match) { o.matches++; o.add(o.j.cfg.Output, m) }
func (o *jobOut) Timeout(m *Match) {
	if o.j.cfg.TimeoutTopic != "" {
		o.timeouts++
		o.add(o.j.cfg.TimeoutTopic, m)
	}
}
func (o *jobOut) Invalid(ev *event.Event, err error) {
	o.invalid++
	o.j.log.Debug("event skipped", "id", ev.ID, "err", err)
}

const chunkSize = 512 << 10

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
	// The starting offsets are committed before the group has a member.
	acl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(j.cfg.Brokers...)}, j.cfg.KgoOptions...)...)
	if err != nil {
		return fmt.Errorf("cep job %q: %w", j.cfg.Name, err)
	}
	adm := kadm.NewClient(acl)
	defer acl.Close()
	if err := j.ensureTopics(ctx, adm); err != nil {
		return err
	}
	committed, err := j.committedOffsets(ctx, adm)
	if err != nil {
		return err
	}
	fresh := len(committed) == 0
	if fresh && len(j.cfg.Start) > 0 {
		os := kadm.Offsets{}
		for p, o := range j.cfg.Start {
			os.Add(kadm.Offset{Topic: j.cfg.Input, Partition: p, At: o, LeaderEpoch: -1})
		}
		if err := adm.CommitAllOffsets(ctx, j.group(), os); err != nil {
			return fmt.Errorf("cep job %q: commit start offsets: %w", j.cfg.Name, err)
		}
		committed = map[int32]int64{}
		for p, o := range j.cfg.Start {
			committed[p] = o
		}
	}
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("cep job %q: %w", j.cfg.Name, err)
	}
	defer sess.CloseAllowingRebalance()
	cl := sess.Client()
	// NB: initializing the producer id fences a killed predecessor and
	// aborts its open transaction, so the state topic's committed end is
	// stable before it is read.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return fmt.Errorf("cep job %q: init transactional producer: %w", j.cfg.Name, err)
	}
	var snap []byte
	var seq int64
	if !fresh {
		if snap, seq, err = j.loadSnapshot(ctx, committed); err != nil {
			return err
		}
	}
	eng, err := j.restore(snap)
	if err != nil {
		return err
	}
	j.log.Info("cep job running", "input", j.cfg.Input, "output", j.cfg.Output, "timeouts", j.cfg.TimeoutTopic,
		"restored_bytes", len(snap), "partial_matches", eng.Stats().PartialMatches)

	var produceErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	out := &jobOut{j: j}
	for {
		fs := sess.PollRecords(ctx, j.cfg.MaxPollRecords)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, part int32, err error) {
			j.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
		})
		if fs.NumRecords() == 0 {
			sess.AllowRebalance()
			continue
		}
		out.recs, out.err = out.recs[:0], nil
		out.matches, out.timeouts, out.invalid = 0, 0, 0
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("cep job %q: begin transaction: %w", j.cfg.Name, err)
		}
		produceErr.Store(nil)
		offsets := make(map[int32]int64, len(committed))
		for k, v := range committed {
			offsets[k] = v
		}
		var maxT time.Time
		fs.EachRecord(func(r *kgo.Record) {
			offsets[r.Partition] = r.Offset + 1
			j.m.events.Inc()
			hs := make([]event.Header, len(r.Headers))
			for i, h := range r.Headers {
				hs[i] = event.Header{Key: h.Key, Value: h.Value}
			}
			ev, err := event.DecodeAny(event.Message{Key: r.Key, Value: r.Value, Headers: hs})
			if err != nil {
				out.invalid++
				j.log.Debug("record skipped: not an event", "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			if ev.Time.After(maxT) {
				maxT = ev.Time
			}
			eng.Process(ev, out)
		})
		if !maxT.IsZero() {
			eng.Advance(maxT, out)
		}
		if out.err != nil {
			return fmt.Errorf("cep job %q: encode match event: %w", j.cfg.Name, out.err)
		}
		state, err := eng.MarshalState()
		if err != nil {
			return fmt.Errorf("cep job %q: %w", j.cfg.Name, err)
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
			j.m.commits.Inc()
			j.m.matches.Add(float64(out.matches))
			j.m.timeouts.Add(float64(out.timeouts))
			j.m.invalid.Add(float64(out.invalid))
			j.m.partial.Set(float64(eng.Stats().PartialMatches))
		} else {
			j.m.aborts.Inc()
			seq--
			if eng, err = j.restore(snap); err != nil {
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
			return fmt.Errorf("cep job %q: end transaction: %w", j.cfg.Name, err)
		}
		sess.AllowRebalance()
	}
}

func (j *Job) restore(snap []byte) (*Engine, error) {
	eng, err := NewEngine(j.cfg.Pattern)
	if err != nil {
		return nil, err
	}
	if snap != nil {
		if err := eng.RestoreState(snap); err != nil {
			return nil, fmt.Errorf("cep job %q: restore state from %s: %w", j.cfg.Name, j.cfg.StateTopic, err)
		}
	}
	return eng, nil
}

// chunks: a snapshot is written as records keyed "<name>/<i>", i < n,
// each with headers "seq", "chunks" (n) and "offsets" (JSON {partition:
// next input offset}, those the same transaction commits).
func (j *Job) chunks(state []byte, seq int64, offsets map[int32]int64) []*kgo.Record {
	n := (len(state) + chunkSize - 1) / chunkSize
	offs, _ := json.Marshal(offsets)
	hdr := []kgo.RecordHeader{{Key: "seq", Value: strconv.AppendInt(nil, seq, 10)}, {Key: "chunks", Value: strconv.AppendInt(nil, int64(n), 10)},
		{Key: "offsets", Value: offs}}
	recs := make([]*kgo.Record, 0, n)
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
		return fmt.Errorf("cep job %q: describe input %q: %w", j.cfg.Name, j.cfg.Input, err)
	}
	in, ok := td[j.cfg.Input]
	if !ok || in.Err != nil {
		return fmt.Errorf("cep job %q: input topic %q does not exist", j.cfg.Name, j.cfg.Input)
	}
	parts := int32(len(in.Partitions))
	create := func(topic string, n int32, configs map[string]*string) error {
		resp, err := adm.CreateTopic(ctx, n, -1, configs, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("cep job %q: create topic %q: %w", j.cfg.Name, topic, err)
		}
		return nil
	}
	for _, t := range []string{j.cfg.Output, j.cfg.TimeoutTopic} {
		if t == "" {
			continue
		}
		if err := create(t, parts, nil); err != nil {
			return err
		}
	}
	compact := "compact"
	return create(j.cfg.StateTopic, 1, map[string]*string{"cleanup.policy": &compact})
}

func (j *Job) committedOffsets(ctx context.Context, adm *kadm.Client) (map[int32]int64, error) {
	resp, err := adm.FetchOffsets(ctx, j.group())
	if err != nil {
		return nil, fmt.Errorf("cep job %q: committed offsets: %w", j.cfg.Name, err)
	}
	offs := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == j.cfg.Input && o.Err == nil && o.At >= 0 {
			offs[o.Partition] = o.At
		}
	})
	return offs, nil
}

const restoreWait = time.Minute

// loadSnapshot reads the state topic until its newest snapshot is the one
// committed with the group's offsets. When the committed offsets are the
// job's Start offsets and no snapshot ever matched, the state is empty
// (nothing was committed past the start yet).
func (j *Job) loadSnapshot(ctx context.Context, committed map[int32]int64) ([]byte, int64, error) {
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
	atStart := maps.Equal(committed, j.cfg.Start)
	var maxSeq int64
	deadline := time.Now().Add(restoreWait)
	quiet := 0
	for {
		if first, ok := latest[j.cfg.Name+"/0"]; ok && maps.Equal(first.offsets, committed) {
			var snap []byte
			for i := int64(0); i < first.n; i++ {
				c, ok := latest[j.cfg.Name+"/"+strconv.FormatInt(i, 10)]
				if !ok || c.seq != first.seq {
					return nil, 0, fmt.Errorf("cep job %q: %w: snapshot %d chunk %d of %d is missing", j.cfg.Name, ErrCorruptState, first.seq, i, first.n)
				}
				snap = append(snap, c.val...)
			}
			return snap, first.seq, nil
		}
		if atStart && len(latest) == 0 && quiet >= 2 {
			return nil, maxSeq, nil
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("cep job %q: %w: no snapshot in %s matches the committed offsets %v", j.cfg.Name, ErrCorruptState, j.cfg.StateTopic, committed)
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
			return nil, 0, fmt.Errorf("cep job %q: read state: %w", j.cfg.Name, ferr)
		}
		if fs.NumRecords() == 0 {
			quiet++
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
			maxSeq = max(maxSeq, c.seq)
			latest[string(r.Key)] = c
		})
	}
}
