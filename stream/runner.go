package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
)

// Task is the deterministic state an exactly-once Runner drives: it takes
// the input's events, writes what they produce to a Batch, and marshals
// its whole state for the checkpoint every transaction commits. It does
// no I/O; the Runner calls it from one goroutine.
type Task interface {
	// Process takes one input event read from the given partition.
	Process(partition int32, ev *event.Event, b *Batch)
	// EndBatch is called after each polled batch's events (timers, a
	// watermark moved by the batch). idle is true when the poll found no
	// records (only with RunnerConfig.IdleTick): time moves on without
	// events.
	EndBatch(b *Batch, idle bool)
	// MarshalState returns the whole state, which RunnerConfig.Restore
	// must accept.
	MarshalState() ([]byte, error)
	// Committed is called when the transaction holding everything the
	// Task produced since the previous call has committed (metrics).
	// After an aborted transaction the Task is discarded instead and
	// rebuilt from the last committed state.
	Committed()
}

// KeyedTask is a Task whose state divides by key (a pattern's partition
// key): with RunnerConfig.RestoreKeyed set, each transaction then writes
// only the state of the keys it changed, not the whole state.
type KeyedTask interface {
	Task
	// MarshalChanges returns the state outside any key and that of each
	// key whose state changed since the previous call (nil: the key holds
	// no state any more). A Task's first call after it was built returns
	// every key.
	MarshalChanges() (global []byte, keys map[string][]byte, err error)
}

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	// Kind names the job in errors and logs ("stream job", "cep job").
	Kind string
	// Name names the job; its snapshot records are keyed "<Name>/<i>".
	Name string
	// Group is the consumer group and transactional id.
	Group   string
	Brokers []string
	// Input is the topic read; Output the Task's main output (required).
	Input, Output string
	// SideOutputs are the Task's other outputs ("" is skipped). Every
	// output is created, when missing, with the input's partition count.
	SideOutputs []string
	// ErrorTopic receives input records that are not events and those
	// the Task passes to Batch.Invalid (header "herald-error" says why);
	// default "<Name>.errors".
	ErrorTopic string
	// StateTopic (compacted, one partition) receives the snapshots;
	// default "<Name>.state".
	StateTopic string
	// Start, when the group has no committed offsets yet, are the input
	// offsets the job starts from (partition -> offset; a partition
	// missing starts at the beginning).
	Start map[int32]int64
	// MaxPollRecords bounds a transaction's input (default 1000).
	MaxPollRecords int
	// IdleTick, when positive, bounds a poll's wait: a poll that finds
	// nothing calls Task.EndBatch with idle true, and what it produces
	// commits in a transaction of its own.
	IdleTick time.Duration
	// Restore builds the Task from a snapshot (nil: the initial state,
	// which NewRunner builds once to validate the Task's definition).
	Restore func(snap []byte) (Task, error)
	// RestoreKeyed, when set, makes checkpoints incremental: the Task
	// must be a KeyedTask, and RestoreKeyed builds it from the global
	// state and the state of every key that MarshalChanges wrote. (A state
	// topic holding a full snapshot of an earlier version is still read,
	// through Restore.)
	RestoreKeyed func(global []byte, keys map[string][]byte) (Task, error)
	// OnStart, when set, is called once a Run has fenced its predecessor
	// (whose open transaction is then aborted) and restored its state,
	// before the first batch; an error ends the Run.
	OnStart func(ctx context.Context) error
	// Subsystem names the metrics: herald_<Subsystem>_events_total, ...
	Subsystem  string
	KgoOptions []kgo.Opt
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// validate reports every required field that is missing, by name, and
// the Task's definition errors.
func (c *RunnerConfig) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name: is required"))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one is required"))
	}
	if c.Input == "" {
		errs = append(errs, errors.New("input: is required"))
	}
	if c.Output == "" {
		errs = append(errs, errors.New("output: is required"))
	}
	if c.Restore == nil {
		errs = append(errs, errors.New("restore: is required"))
	} else if _, err := c.Restore(nil); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Runner runs a Task over a topic with exactly-once state: every
// transaction holds the batch's output records, a snapshot of the Task's
// whole state (to StateTopic) and the input offsets, so that a job killed
// at any point restarts from the last committed snapshot and offsets and
// its committed output equals that of a run without the crash. One
// process runs a job at a time; a second one fences the first through the
// transactional id.
type Runner struct {
	cfg  RunnerConfig
	log  *slog.Logger
	cols []prometheus.Collector // registered by Register
	m    struct {
		events, invalid, commits, aborts prometheus.Counter
	}
}

// NewRunner validates cfg (including the Task's definition, through
// Restore) and makes the Runner's metrics; Register registers them.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%s %q: %w", cfg.Kind, cfg.Name, err)
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
	r := &Runner{cfg: cfg, log: cfg.Logger}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.m.events = r.Counter("events_total", "Input records processed (committed or not).")
	r.m.invalid = r.Counter("invalid_events_total", "Records sent to the error topic.")
	r.m.commits = r.Counter("transactions_committed_total", "Transactions committed.")
	r.m.aborts = r.Counter("transactions_aborted_total", "Transactions aborted (the batch is redone from the last snapshot).")
	return r, nil
}

// Counter returns a new counter herald_<Subsystem>_<name> labelled with
// the job, which Register registers.
func (r *Runner) Counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "herald", Subsystem: r.cfg.Subsystem, Name: name, Help: help,
		ConstLabels: prometheus.Labels{"job": r.cfg.Name}})
	r.cols = append(r.cols, c)
	return c
}

// Gauge is Counter's gauge.
func (r *Runner) Gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "herald", Subsystem: r.cfg.Subsystem, Name: name, Help: help,
		ConstLabels: prometheus.Labels{"job": r.cfg.Name}})
	r.cols = append(r.cols, g)
	return g
}

// Register registers the job's metrics with RunnerConfig.Registerer (nil:
// none); on an error none stays registered.
func (r *Runner) Register() error {
	if r.cfg.Registerer == nil {
		return nil
	}
	for i, col := range r.cols {
		if err := r.cfg.Registerer.Register(col); err != nil {
			for _, c := range r.cols[:i] {
				r.cfg.Registerer.Unregister(c)
			}
			return fmt.Errorf("%s %q: register metrics: %w", r.cfg.Kind, r.cfg.Name, err)
		}
	}
	return nil
}

// Unregister removes the job's metrics from RunnerConfig.Registerer (a
// job that will not run again).
func (r *Runner) Unregister() {
	if r.cfg.Registerer != nil {
		for _, col := range r.cols {
			r.cfg.Registerer.Unregister(col)
		}
	}
}

// Group returns the job's consumer group.
func (r *Runner) Group() string { return r.cfg.Group }

// Batch collects the records of one transaction. Its methods are called by
// the Task on the Runner's goroutine.
type Batch struct {
	cfg     *RunnerConfig
	recs    []*kgo.Record
	cur     *kgo.Record // the input record being processed
	err     error
	invalid int
}

// Produce adds a record to the transaction.
func (b *Batch) Produce(r *kgo.Record) { b.recs = append(b.recs, r) }

// Forward adds a copy of the input record being processed, written to
// topic; a non-empty why is added as header "herald-error".
func (b *Batch) Forward(topic, why string) {
	r := &kgo.Record{Topic: topic, Key: b.cur.Key, Value: b.cur.Value, Headers: append([]kgo.RecordHeader(nil), b.cur.Headers...)}
	if why != "" {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "herald-error", Value: []byte(why)})
	}
	b.recs = append(b.recs, r)
}

// Invalid forwards the input record being processed to the error topic
// with why, and counts it.
func (b *Batch) Invalid(why string) {
	b.invalid++
	b.Forward(b.cfg.ErrorTopic, why)
}

// Fail ends the Runner with err after this batch (nothing of it commits).
func (b *Batch) Fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *Batch) reset() {
	clear(b.recs)
	b.recs, b.cur, b.err, b.invalid = b.recs[:0], nil, nil, 0
}

// snapshot chunks: a snapshot is written as records keyed
// "<name>/<i>", i < n, each with headers "seq" (the snapshot's sequence
// number), "chunks" (n) and "offsets" (JSON {partition: next input
// offset}, the offsets the same transaction commits), all in one
// transaction. A restart reads the state topic until the newest snapshot's
// offsets equal the group's committed offsets: then it is the snapshot of
// the last committed transaction.
const chunkSize = 512 << 10

func (r *Runner) errorf(format string, args ...any) error {
	return fmt.Errorf("%s %q: %w", r.cfg.Kind, r.cfg.Name, fmt.Errorf(format, args...))
}

// Run runs the job until ctx ends (nil) or a fatal error.
func (r *Runner) Run(ctx context.Context) error {
	// The starting offsets are committed before the group has a member.
	acl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Brokers...)}, r.cfg.KgoOptions...)...)
	if err != nil {
		return r.errorf("%w", err)
	}
	defer acl.Close()
	adm := kadm.NewClient(acl)
	if err := r.ensureTopics(ctx, adm); err != nil {
		return err
	}
	committed, err := r.committedOffsets(ctx, adm)
	if err != nil {
		return err
	}
	if len(committed) == 0 && len(r.cfg.Start) > 0 {
		os := kadm.Offsets{}
		for p, o := range r.cfg.Start {
			os.Add(kadm.Offset{Topic: r.cfg.Input, Partition: p, At: o, LeaderEpoch: -1})
		}
		if err := adm.CommitAllOffsets(ctx, r.cfg.Group, os); err != nil {
			return r.errorf("commit start offsets: %w", err)
		}
	}
	sess, err := kgo.NewGroupTransactSession(append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(r.cfg.Input),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionalID(r.cfg.Group),
		kgo.TransactionTimeout(20 * time.Second),
		kgo.RequireStableFetchOffsets(),
		kgo.ProducerLinger(0),
	}, r.cfg.KgoOptions...)...)
	if err != nil {
		return r.errorf("%w", err)
	}
	defer sess.CloseAllowingRebalance()
	cl := sess.Client()
	// NB: initializing the producer id fences a killed predecessor and
	// aborts its open transaction, so the committed offsets and the state
	// topic's committed end are stable when they are read below.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return r.errorf("init transactional producer: %w", err)
	}
	if committed, err = r.committedOffsets(ctx, adm); err != nil {
		return err
	}
	saved, err := r.loadSnapshot(ctx, committed)
	if err != nil {
		return err
	}
	seq := saved.seq
	task, err := r.restore(saved)
	if err != nil {
		return err
	}
	if r.cfg.OnStart != nil {
		if err := r.cfg.OnStart(ctx); err != nil {
			return r.errorf("start: %w", err)
		}
	}
	r.log.Info(r.cfg.Kind+" running", "job", r.cfg.Name, "input", r.cfg.Input, "restored_bytes", saved.size())

	var produceErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	b := &Batch{cfg: &r.cfg}
	for {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if r.cfg.IdleTick > 0 {
			pctx, cancel = context.WithTimeout(ctx, r.cfg.IdleTick)
		}
		fs := sess.PollRecords(pctx, r.cfg.MaxPollRecords)
		cancel()
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				r.log.Warn("fetch error", "job", r.cfg.Name, "topic", t, "partition", part, "err", err)
			}
		})
		b.reset()
		if fs.NumRecords() == 0 {
			if r.cfg.IdleTick <= 0 {
				sess.AllowRebalance()
				continue
			}
			task.EndBatch(b, true)
			if len(b.recs) == 0 && b.err == nil {
				sess.AllowRebalance()
				continue
			}
		}
		if err := sess.Begin(); err != nil {
			return r.errorf("begin transaction: %w", err)
		}
		produceErr.Store(nil)
		offsets := maps.Clone(committed)
		if offsets == nil {
			offsets = map[int32]int64{}
		}
		if fs.NumRecords() > 0 {
			fs.EachRecord(func(rec *kgo.Record) {
				offsets[rec.Partition] = rec.Offset + 1
				b.cur = rec
				r.m.events.Inc()
				hs := make([]event.Header, len(rec.Headers))
				for i, h := range rec.Headers {
					hs[i] = event.Header{Key: h.Key, Value: h.Value}
				}
				ev, err := event.DecodeAny(event.Message{Key: rec.Key, Value: rec.Value, Headers: hs})
				if err != nil {
					b.Invalid(err.Error())
					return
				}
				task.Process(rec.Partition, ev, b)
			})
			b.cur = nil
			task.EndBatch(b, false)
		}
		if b.err != nil {
			_, _ = sess.End(ctx, kgo.TryAbort)
			return r.errorf("%w", b.err)
		}
		seq++
		stateRecs, state, err := r.checkpoint(task, seq, offsets)
		if err != nil {
			_, _ = sess.End(ctx, kgo.TryAbort)
			return r.errorf("%w", err)
		}
		for _, rec := range b.recs {
			sess.Produce(ctx, rec, promise)
		}
		for _, rec := range stateRecs {
			sess.Produce(ctx, rec, promise)
		}
		ok := cl.Flush(ctx) == nil && produceErr.Load() == nil
		txnOK, err := sess.End(ctx, kgo.TransactionEndTry(ok))
		if txnOK {
			committed = offsets
			if r.cfg.RestoreKeyed == nil {
				saved = savedState{full: state, seq: seq}
			}
			r.m.commits.Inc()
			r.m.invalid.Add(float64(b.invalid))
			task.Committed()
		} else {
			// The batch will be redelivered: go back to the committed state.
			r.m.aborts.Inc()
			seq--
			if r.cfg.RestoreKeyed != nil {
				// NB: incremental checkpoints keep no copy of the
				// committed state: it is read back from the state topic.
				if saved, err = r.loadSnapshot(ctx, committed); err != nil {
					return err
				}
			}
			if task, err = r.restore(saved); err != nil {
				return err
			}
			if pe := produceErr.Load(); pe != nil {
				r.log.Warn("transaction aborted: writing its records failed; the batch will be redone", "job", r.cfg.Name, "err", *pe)
			} else {
				r.log.Warn("transaction aborted; the batch will be redone", "job", r.cfg.Name)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return r.errorf("end transaction: %w", err)
		}
		sess.AllowRebalance()
	}
}

// savedState is a committed checkpoint: a full snapshot, or (keyed) the
// global state and every key's.
type savedState struct {
	full   []byte
	keyed  bool
	global []byte
	keys   map[string][]byte
	seq    int64
}

func (s *savedState) size() int {
	n := len(s.full) + len(s.global)
	for _, v := range s.keys {
		n += len(v)
	}
	return n
}

func (r *Runner) restore(s savedState) (Task, error) {
	var t Task
	var err error
	if s.keyed {
		t, err = r.cfg.RestoreKeyed(s.global, s.keys)
	} else {
		t, err = r.cfg.Restore(s.full)
	}
	if err != nil {
		return nil, r.errorf("restore state from %s: %w", r.cfg.StateTopic, err)
	}
	return t, nil
}

// checkpoint returns the records of the transaction's checkpoint (and,
// for full snapshots, the state).
func (r *Runner) checkpoint(task Task, seq int64, offsets map[int32]int64) ([]*kgo.Record, []byte, error) {
	if r.cfg.RestoreKeyed == nil {
		state, err := task.MarshalState()
		if err != nil {
			return nil, nil, err
		}
		return r.chunks(state, seq, offsets), state, nil
	}
	kt, ok := task.(KeyedTask)
	if !ok {
		return nil, nil, fmt.Errorf("restore_keyed is set but the task (%T) is not a KeyedTask", task)
	}
	global, keys, err := kt.MarshalChanges()
	if err != nil {
		return nil, nil, err
	}
	recs := make([]*kgo.Record, 0, len(keys)+1)
	// NB: the keys first, the global record last: a reader that has seen
	// the global record of a transaction has seen all its keys.
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		recs = append(recs, &kgo.Record{Topic: r.cfg.StateTopic, Partition: 0, Key: []byte(r.cfg.Name + keyPrefix + k), Value: keys[k]})
	}
	offs, _ := json.Marshal(offsets)
	if global == nil {
		global = []byte{}
	}
	recs = append(recs, &kgo.Record{Topic: r.cfg.StateTopic, Partition: 0, Key: []byte(r.cfg.Name + globalKey), Value: global,
		Headers: []kgo.RecordHeader{{Key: "seq", Value: strconv.AppendInt(nil, seq, 10)}, {Key: "offsets", Value: offs}}})
	return recs, nil, nil
}

// Keyed checkpoints: records "<name>/k/<key>" hold a key's state (a null
// value: none), "<name>/g" the global state with headers "seq" and
// "offsets", written last in each transaction.
const (
	keyPrefix = "/k/"
	globalKey = "/g"
)

func (r *Runner) chunks(state []byte, seq int64, offsets map[int32]int64) []*kgo.Record {
	n := (len(state) + chunkSize - 1) / chunkSize
	recs := make([]*kgo.Record, 0, n)
	offs, _ := json.Marshal(offsets)
	hdr := []kgo.RecordHeader{{Key: "seq", Value: strconv.AppendInt(nil, seq, 10)}, {Key: "chunks", Value: strconv.AppendInt(nil, int64(n), 10)},
		{Key: "offsets", Value: offs}}
	for i := 0; i < n; i++ {
		end := min((i+1)*chunkSize, len(state))
		recs = append(recs, &kgo.Record{Topic: r.cfg.StateTopic, Partition: 0,
			Key: []byte(r.cfg.Name + "/" + strconv.Itoa(i)), Value: state[i*chunkSize : end], Headers: hdr})
	}
	return recs
}

func (r *Runner) ensureTopics(ctx context.Context, adm *kadm.Client) error {
	td, err := adm.ListTopics(ctx, r.cfg.Input)
	if err != nil {
		return r.errorf("describe input %q: %w", r.cfg.Input, err)
	}
	in, ok := td[r.cfg.Input]
	if !ok || in.Err != nil {
		return r.errorf("input topic %q does not exist", r.cfg.Input)
	}
	parts := int32(len(in.Partitions))
	create := func(topic string, n int32, configs map[string]*string) error {
		resp, err := adm.CreateTopic(ctx, n, -1, configs, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return r.errorf("create topic %q: %w", topic, err)
		}
		return nil
	}
	for _, t := range append([]string{r.cfg.Output, r.cfg.ErrorTopic}, r.cfg.SideOutputs...) {
		if t == "" {
			continue
		}
		if err := create(t, parts, nil); err != nil {
			return err
		}
	}
	compact := "compact"
	return create(r.cfg.StateTopic, 1, map[string]*string{"cleanup.policy": &compact})
}

// committedOffsets returns the group's committed input offsets.
func (r *Runner) committedOffsets(ctx context.Context, adm *kadm.Client) (map[int32]int64, error) {
	resp, err := adm.FetchOffsets(ctx, r.cfg.Group)
	if err != nil {
		return nil, r.errorf("committed offsets: %w", err)
	}
	offs := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == r.cfg.Input && o.Err == nil && o.At >= 0 {
			offs[o.Partition] = o.At
		}
	})
	return offs, nil
}

// restoreWait bounds how long a restart waits for the state topic to
// show the snapshot matching the committed offsets.
const restoreWait = time.Minute

// loadSnapshot reads the state topic to its committed end and returns the
// checkpoint committed with the group's offsets: the newest global record
// with its keys (keyed checkpoints) or the newest full snapshot. The state
// is the initial one when nothing was committed yet: no committed offsets,
// or the Start offsets and an empty state topic.
func (r *Runner) loadSnapshot(ctx context.Context, committed map[int32]int64) (savedState, error) {
	if len(committed) == 0 {
		return savedState{}, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.cfg.StateTopic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted())}, r.cfg.KgoOptions...)...)
	if err != nil {
		return savedState{}, r.errorf("%w", err)
	}
	defer cl.Close()
	type chunk struct {
		seq, n  int64
		offsets map[int32]int64
		val     []byte
	}
	// NB: the newest checkpoint is only known once the topic has been read
	// to its committed end: a poll may end between two snapshots with the
	// same offsets (an idle tick's) or inside a snapshot's chunks.
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, r.cfg.StateTopic)
	if err != nil {
		return savedState{}, r.errorf("end of %s: %w", r.cfg.StateTopic, err)
	}
	end, _ := ends.Lookup(r.cfg.StateTopic, 0)
	var maxOff int64 = -1
	latest := map[string]chunk{}
	keys := map[string][]byte{}
	var global *chunk
	atStart := len(r.cfg.Start) > 0 && maps.Equal(committed, r.cfg.Start)
	deadline := time.Now().Add(restoreWait)
	quiet := 0
	for {
		// The last committed transaction's records end at end-2 (its
		// commit marker is at end-1); a quiet poll ends the read when the
		// last transaction was aborted.
		read := maxOff >= end.Offset-2 || quiet > 0
		if read && r.cfg.RestoreKeyed != nil && global != nil && maps.Equal(global.offsets, committed) {
			return savedState{keyed: true, global: global.val, keys: keys, seq: global.seq}, nil
		}
		if first, ok := latest[r.cfg.Name+"/0"]; read && ok && maps.Equal(first.offsets, committed) {
			var snap []byte
			for i := int64(0); i < first.n; i++ {
				c, ok := latest[r.cfg.Name+"/"+strconv.FormatInt(i, 10)]
				if !ok || c.seq != first.seq {
					return savedState{}, r.errorf("%w: snapshot %d chunk %d of %d is missing", ErrCorruptState, first.seq, i, first.n)
				}
				snap = append(snap, c.val...)
			}
			return savedState{full: snap, seq: first.seq}, nil
		}
		if atStart && len(latest) == 0 && global == nil && quiet >= 2 {
			return savedState{}, nil
		}
		if time.Now().After(deadline) {
			return savedState{}, r.errorf("%w: no snapshot in %s matches the committed offsets %v", ErrCorruptState, r.cfg.StateTopic, committed)
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return savedState{}, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = err
			}
		})
		if ferr != nil {
			return savedState{}, r.errorf("read state: %w", ferr)
		}
		if fs.NumRecords() == 0 {
			quiet++
		}
		fs.EachRecord(func(rec *kgo.Record) {
			maxOff = max(maxOff, rec.Offset)
			key := string(rec.Key)
			if k, ok := strings.CutPrefix(key, r.cfg.Name+keyPrefix); ok {
				if rec.Value == nil {
					delete(keys, k)
				} else {
					keys[k] = rec.Value
				}
				return
			}
			c := chunk{val: rec.Value}
			for _, h := range rec.Headers {
				switch h.Key {
				case "seq":
					c.seq, _ = strconv.ParseInt(string(h.Value), 10, 64)
				case "chunks":
					c.n, _ = strconv.ParseInt(string(h.Value), 10, 64)
				case "offsets":
					_ = json.Unmarshal(h.Value, &c.offsets)
				}
			}
			if key == r.cfg.Name+globalKey {
				global = &c
				return
			}
			latest[key] = c
		})
	}
}
