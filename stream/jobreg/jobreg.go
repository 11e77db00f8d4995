// Package jobreg keeps server-side jobs (continuous queries, CEP
// patterns) registered in a compacted topic and runs each until it is
// deleted: a restarted server reads the topic and runs them again.
//
// The topic has one partition; a record's key is the job's name, its value
// the definition (opaque bytes to this package), and a null value deletes
// it. A job whose Run fails is run again with backoff and shows as failed
// meanwhile.
package jobreg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/internal/httpjson"
)

// Errors of the Registry, wrapped with the kind and name.
var (
	ErrExists   = errors.New("exists")
	ErrNotFound = errors.New("not found")
	ErrClosed   = errors.New("registry closed")
)

// Job is a registered job opened from its definition.
type Job struct {
	// Run runs the job until ctx ends (nil) or an error; after an error it
	// is called again.
	Run func(ctx context.Context) error
	// Stop, when set, is called once the job will not run again.
	Stop func()
}

// Settings are what a server gives a registry of any kind.
type Settings struct {
	Brokers []string
	// Topic is the compacted topic holding the definitions (default: the
	// kind's).
	Topic      string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	KgoOptions []kgo.Opt
	// RetryBackoff is the first wait before a failed job is run again
	// (default 1s; doubling up to 30s).
	RetryBackoff time.Duration
}

// Config configures a Registry whose jobs are described as I.
type Config[I any] struct {
	Settings
	// Kind names the jobs in errors and logs ("query", "pattern").
	Kind string
	// DefaultTopic is the Topic when Settings leave it empty.
	DefaultTopic string
	// Open builds the job of a definition. An error refuses the
	// definition at Create; for a saved one, it shows as failed and is not
	// retried.
	Open func(set Settings, name string, def []byte) (Job, error)
	// Describe turns an Entry into what List and Get return.
	Describe func(Entry) I
}

// State is a job's state, as the kinds' descriptions show it.
type State struct {
	// Status is "running", or "failed" with Error saying why.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Entry describes a registered job.
type Entry struct {
	Name string
	Def  []byte
	State
}

// Registry runs the registered jobs. Its methods are safe for concurrent
// use.
type Registry[I any] struct {
	cfg    Config[I]
	log    *slog.Logger
	cl     *kgo.Client
	ctx    context.Context
	cancel context.CancelFunc
	mu     struct {
		sync.Mutex
		closed bool
		jobs   map[string]*running // nil: a name reserved by Create
	}
}

type running struct {
	entry  Entry
	cancel context.CancelFunc
	done   chan struct{}
}

// Open creates the topic if needed, reads the saved definitions and starts
// their jobs.
func Open[I any](ctx context.Context, cfg Config[I]) (*Registry[I], error) {
	if cfg.Topic == "" {
		cfg.Topic = cfg.DefaultTopic
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks())}, cfg.KgoOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("%s registry: %w", cfg.Kind, err)
	}
	r := &Registry[I]{cfg: cfg, log: cfg.Logger.With("component", cfg.Kind+"-registry"), cl: cl}
	r.mu.jobs = map[string]*running{}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	saved, err := r.load(ctx)
	if err != nil {
		cl.Close()
		return nil, err
	}
	names := make([]string, 0, len(saved))
	for n := range saved {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		j, err := cfg.Open(cfg.Settings, n, saved[n])
		r.start(n, saved[n], j, err)
	}
	return r, nil
}

func (r *Registry[I]) load(ctx context.Context) (map[string][]byte, error) {
	adm := kadm.NewClient(r.cl)
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, r.cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return nil, fmt.Errorf("%s registry: create %s: %w", r.cfg.Kind, r.cfg.Topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, r.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("%s registry: %w", r.cfg.Kind, err)
	}
	end, _ := ends.Lookup(r.cfg.Topic, 0)
	out := map[string][]byte{}
	if end.Offset <= 0 {
		return out, nil
	}
	rd, err := r.NewClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.cfg.Topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	for next := int64(0); next < end.Offset; {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("%s registry: read %s: %w", r.cfg.Kind, r.cfg.Topic, ferr)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			next = rec.Offset + 1
			if rec.Value == nil {
				delete(out, string(rec.Key))
			} else {
				out[string(rec.Key)] = rec.Value
			}
		})
	}
	return out, nil
}

// Settings returns the registry's Settings with their defaults.
func (r *Registry[I]) Settings() Settings { return r.cfg.Settings }

// NewClient returns a client of the registry's brokers with its
// KgoOptions and opts.
func (r *Registry[I]) NewClient(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Brokers...)}, opts...), r.cfg.KgoOptions...)...)
}

// start runs j (or records openErr) under name.
func (r *Registry[I]) start(name string, def []byte, j Job, openErr error) Entry {
	ctx, cancel := context.WithCancel(r.ctx)
	run := &running{entry: Entry{Name: name, Def: def, State: State{Status: "running"}}, cancel: cancel, done: make(chan struct{})}
	if openErr != nil {
		r.log.Error(r.cfg.Kind+" no longer valid; not run", "name", name, "err", openErr)
		run.entry.State = State{"failed", openErr.Error()}
		close(run.done)
	}
	r.mu.Lock()
	r.mu.jobs[name] = run
	r.mu.Unlock()
	if openErr != nil {
		return run.entry
	}
	setStatus := func(status string, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		run.entry.State = State{Status: status}
		if err != nil {
			run.entry.Error = err.Error()
		}
	}
	started := run.entry // the goroutine's setStatus writes it under r.mu
	go func() {
		defer close(run.done)
		if j.Stop != nil {
			defer j.Stop()
		}
		for backoff := r.cfg.RetryBackoff; ; backoff = min(2*backoff, 30*time.Second) {
			err := j.Run(ctx)
			if ctx.Err() != nil || err == nil {
				return
			}
			r.log.Error(r.cfg.Kind+" failed; retrying", "name", name, "err", err, "retry_in", backoff)
			setStatus("failed", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			setStatus("running", nil)
		}
	}()
	return started
}

// Create saves def under name and starts its job. Errors: Config.Open's,
// ErrExists, ErrClosed.
func (r *Registry[I]) Create(ctx context.Context, name string, def []byte) (I, error) {
	var zero I
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return zero, ErrClosed
	}
	if _, ok := r.mu.jobs[name]; ok {
		r.mu.Unlock()
		return zero, fmt.Errorf("%s %q: %w", r.cfg.Kind, name, ErrExists)
	}
	r.mu.jobs[name] = nil // reserve the name
	r.mu.Unlock()
	release := func() {
		r.mu.Lock()
		delete(r.mu.jobs, name)
		r.mu.Unlock()
	}
	j, err := r.cfg.Open(r.cfg.Settings, name, def)
	if err != nil {
		release()
		return zero, err
	}
	if err := r.cl.ProduceSync(ctx, &kgo.Record{Topic: r.cfg.Topic, Key: []byte(name), Value: def}).FirstErr(); err != nil {
		release()
		if j.Stop != nil {
			j.Stop()
		}
		return zero, fmt.Errorf("save %s %q: %w", r.cfg.Kind, name, err)
	}
	r.log.Info(r.cfg.Kind+" registered", "name", name)
	return r.cfg.Describe(r.start(name, def, j, nil)), nil
}

// List returns the registered jobs by name.
func (r *Registry[I]) List() []I {
	r.mu.Lock()
	es := make([]Entry, 0, len(r.mu.jobs))
	for _, j := range r.mu.jobs {
		if j != nil {
			es = append(es, j.entry)
		}
	}
	r.mu.Unlock()
	sort.Slice(es, func(i, j int) bool { return es[i].Name < es[j].Name })
	out := make([]I, len(es))
	for i, e := range es {
		out[i] = r.cfg.Describe(e)
	}
	return out
}

// Get returns one job. Errors: ErrNotFound.
func (r *Registry[I]) Get(name string) (I, error) {
	r.mu.Lock()
	j := r.mu.jobs[name]
	var e Entry
	if j != nil {
		e = j.entry
	}
	r.mu.Unlock()
	if j == nil {
		var zero I
		return zero, fmt.Errorf("%s %q: %w", r.cfg.Kind, name, ErrNotFound)
	}
	return r.cfg.Describe(e), nil
}

// Delete stops a job, waits for it to end and forgets it. Errors:
// ErrNotFound.
func (r *Registry[I]) Delete(ctx context.Context, name string) error {
	r.mu.Lock()
	j := r.mu.jobs[name]
	if j == nil {
		r.mu.Unlock()
		return fmt.Errorf("%s %q: %w", r.cfg.Kind, name, ErrNotFound)
	}
	delete(r.mu.jobs, name)
	r.mu.Unlock()
	j.cancel()
	<-j.done
	if err := r.cl.ProduceSync(ctx, &kgo.Record{Topic: r.cfg.Topic, Key: []byte(name)}).FirstErr(); err != nil {
		return fmt.Errorf("delete %s %q: %w", r.cfg.Kind, name, err)
	}
	r.log.Info(r.cfg.Kind+" deleted", "name", name)
	return nil
}

// Close stops every job (they run again at the next Open) and waits for
// them.
func (r *Registry[I]) Close() error {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return nil
	}
	r.mu.closed = true
	jobs := r.mu.jobs
	r.mu.Unlock()
	r.cancel()
	for _, j := range jobs {
		if j != nil {
			<-j.done
		}
	}
	r.cl.Close()
	return nil
}

// EndOffsets returns the end offset of each partition of topic, read with
// a fresh client (kgo answers metadata from a cache that would hide a
// topic created a moment ago); ok is false when the topic does not exist.
func (r *Registry[I]) EndOffsets(ctx context.Context, topic string) (ends map[int32]int64, ok bool, err error) {
	lc, err := r.NewClient()
	if err != nil {
		return nil, false, err
	}
	defer lc.Close()
	adm := kadm.NewClient(lc)
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, false, fmt.Errorf("describe topic %q: %w", topic, err)
	}
	if t, ok := td[topic]; !ok || t.Err != nil {
		return nil, false, nil
	}
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, false, fmt.Errorf("end offsets of %q: %w", topic, err)
	}
	ends = map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			ends[o.Partition] = o.Offset
		}
	})
	return ends, true, nil
}

// Routes mounts the read and delete half of a registry's HTTP API (the
// create half takes each kind's own body):
//
//	GET    base         -> {listKey: [I]}
//	GET    base/{name}  -> I
//	DELETE base/{name}  -> 204
//
// writeErr writes the errors (WriteError, after the kind's own).
func (r *Registry[I]) Routes(h interface{ Handle(string, http.Handler) }, base, listKey string, writeErr func(http.ResponseWriter, error)) {
	h.Handle("GET "+base, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		httpjson.WriteJSON(w, http.StatusOK, map[string]any{listKey: r.List()})
	}))
	h.Handle("GET "+base+"/{name}", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		info, err := r.Get(req.PathValue("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		httpjson.WriteJSON(w, http.StatusOK, info)
	}))
	h.Handle("DELETE "+base+"/{name}", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := r.Delete(req.Context(), req.PathValue("name")); err != nil {
			writeErr(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

// WriteError writes the Registry's errors: ErrExists (409, naming
// nameField), ErrNotFound (404), ErrClosed (503), anything else 500.
func WriteError(w http.ResponseWriter, err error, nameField string) {
	switch {
	case errors.Is(err, ErrExists):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeAlreadyExists, nameField, "%v", err))
	case errors.Is(err, ErrNotFound):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeNotFound, "", "%v", err))
	case errors.Is(err, ErrClosed):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeUnavailable, "", "%v", err))
	default:
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeInternal, "", "%v", err))
	}
}
