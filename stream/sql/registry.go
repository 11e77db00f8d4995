package sql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/stream"
)

// Errors of the Registry.
var (
	ErrExists       = errors.New("query exists")
	ErrNotFound     = errors.New("query not found")
	ErrUnknownTopic = errors.New("unknown topic")
	ErrClosed       = errors.New("sql: registry closed")
)

// DefaultRegistryTopic is the compacted topic holding the registered
// queries (record key: table name; value: the query text; a null value
// drops it).
const DefaultRegistryTopic = "_herald_queries"

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	Brokers    []string
	Topic      string // default DefaultRegistryTopic
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	KgoOptions []kgo.Opt
}

// Info describes a registered query.
type Info struct {
	Name   string `json:"name"`
	SQL    string `json:"sql"`
	Input  string `json:"input"`
	Output string `json:"output"`
	// Status is "running", or "failed" with Error saying why.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Registry runs the registered CREATE TABLE queries as exactly-once jobs
// until they are dropped, and keeps them in a compacted topic so that they
// run again after a restart.
type Registry struct {
	cfg    RegistryConfig
	log    *slog.Logger
	cl     *kgo.Client
	adm    *kadm.Client
	ctx    context.Context
	cancel context.CancelFunc
	mu     struct {
		sync.Mutex
		closed  bool
		queries map[string]*running
	}
}

type running struct {
	info   Info
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRegistry loads the registered queries and starts them.
func NewRegistry(ctx context.Context, cfg RegistryConfig) (*Registry, error) {
	if cfg.Topic == "" {
		cfg.Topic = DefaultRegistryTopic
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks())}, cfg.KgoOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("sql: registry: %w", err)
	}
	r := &Registry{cfg: cfg, log: cfg.Logger.With("component", "queries"), cl: cl, adm: kadm.NewClient(cl)}
	r.mu.queries = map[string]*running{}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	compact := "compact"
	resp, err := r.adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		cl.Close()
		return nil, fmt.Errorf("sql: registry: create %s: %w", cfg.Topic, err)
	}
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
		q, err := Parse(saved[n])
		if err != nil {
			r.log.Error("a registered query no longer parses; skipped", "name", n, "err", err)
			continue
		}
		r.start(q)
	}
	return r, nil
}

func (r *Registry) load(ctx context.Context) (map[string]string, error) {
	ends, err := r.adm.ListEndOffsets(ctx, r.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("sql: registry: %w", err)
	}
	end, _ := ends.Lookup(r.cfg.Topic, 0)
	out := map[string]string{}
	if end.Offset <= 0 {
		return out, nil
	}
	rd, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.cfg.Topic: {0: kgo.NewOffset().AtStart()}})}, r.cfg.KgoOptions...)...)
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
			return nil, fmt.Errorf("sql: registry: read %s: %w", r.cfg.Topic, ferr)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			next = rec.Offset + 1
			if rec.Value == nil {
				delete(out, string(rec.Key))
			} else {
				out[string(rec.Key)] = string(rec.Value)
			}
		})
	}
	return out, nil
}

// start runs q's job; the caller has checked the name is free.
func (r *Registry) start(q *Query) Info {
	info := Info{Name: q.Table, SQL: q.Text, Input: q.From, Output: q.Table, Status: "running"}
	ctx, cancel := context.WithCancel(r.ctx)
	run := &running{info: info, cancel: cancel, done: make(chan struct{})}
	r.mu.Lock()
	r.mu.queries[q.Table] = run
	r.mu.Unlock()
	go func() {
		defer close(run.done)
		cfg, err := q.JobConfig(r.cfg.Brokers)
		var j *stream.Job
		if err == nil {
			cfg.Logger, cfg.KgoOptions = r.cfg.Logger, r.cfg.KgoOptions
			j, err = stream.NewJob(cfg)
		}
		if err == nil {
			err = j.Run(ctx)
		}
		if err != nil && ctx.Err() == nil {
			r.log.Error("query failed", "name", q.Table, "err", err)
			r.mu.Lock()
			run.info.Status, run.info.Error = "failed", err.Error()
			r.mu.Unlock()
		}
	}()
	return info
}

// Create registers and starts a CREATE TABLE query. Errors: *Error (the
// query does not parse), ErrUnknownTopic, ErrExists.
func (r *Registry) Create(ctx context.Context, text string) (Info, error) {
	q, err := Parse(text)
	if err != nil {
		return Info{}, err
	}
	if q.Table == "" {
		return Info{}, &Error{1, 1, "expected CREATE TABLE name AS SELECT ...: only table queries are registered"}
	}
	// NB: a fresh client, since kgo answers metadata requests from a cache
	// that would hide a topic created a moment ago.
	lc, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Brokers...)}, r.cfg.KgoOptions...)...)
	if err != nil {
		return Info{}, err
	}
	td, err := kadm.NewClient(lc).ListTopics(ctx, q.From)
	lc.Close()
	if err != nil {
		return Info{}, fmt.Errorf("sql: describe topic %q: %w", q.From, err)
	}
	if t, ok := td[q.From]; !ok || t.Err != nil {
		return Info{}, fmt.Errorf("%w %q (FROM %s)", ErrUnknownTopic, q.From, q.From)
	}
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return Info{}, ErrClosed
	}
	if _, ok := r.mu.queries[q.Table]; ok {
		r.mu.Unlock()
		return Info{}, fmt.Errorf("%w: table %q", ErrExists, q.Table)
	}
	r.mu.queries[q.Table] = nil // reserve the name
	r.mu.Unlock()
	if err := r.cl.ProduceSync(ctx, &kgo.Record{Topic: r.cfg.Topic, Key: []byte(q.Table), Value: []byte(q.Text)}).FirstErr(); err != nil {
		r.mu.Lock()
		delete(r.mu.queries, q.Table)
		r.mu.Unlock()
		return Info{}, fmt.Errorf("sql: save query: %w", err)
	}
	r.log.Info("query registered", "name", q.Table, "from", q.From)
	return r.start(q), nil
}

// List returns the registered queries by name.
func (r *Registry) List() []Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Info, 0, len(r.mu.queries))
	for _, q := range r.mu.queries {
		if q != nil {
			out = append(out, q.info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns one query.
func (r *Registry) Get(name string) (Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.mu.queries[name]
	if q == nil {
		return Info{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return q.info, nil
}

// Drop stops a query and forgets it. Its table topic and job state stay.
func (r *Registry) Drop(ctx context.Context, name string) error {
	r.mu.Lock()
	q := r.mu.queries[name]
	if q == nil {
		r.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	delete(r.mu.queries, name)
	r.mu.Unlock()
	q.cancel()
	<-q.done
	if err := r.cl.ProduceSync(ctx, &kgo.Record{Topic: r.cfg.Topic, Key: []byte(name)}).FirstErr(); err != nil {
		return fmt.Errorf("sql: drop query %q: %w", name, err)
	}
	r.log.Info("query dropped", "name", name)
	return nil
}

// Close stops every query (they run again at the next NewRegistry).
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return nil
	}
	r.mu.closed = true
	qs := r.mu.queries
	r.mu.Unlock()
	r.cancel()
	for _, q := range qs {
		if q != nil {
			<-q.done
		}
	}
	r.cl.Close()
	return nil
}

// Routes mounts the query API:
//
//	POST   /v1/queries         {"sql": "CREATE TABLE ..."} -> 201 Info
//	GET    /v1/queries         -> {"queries": [Info]}
//	GET    /v1/queries/{name}  -> Info
//	DELETE /v1/queries/{name}  -> 204
//	POST   /v1/queries/pull    {"sql": "SELECT * FROM table WHERE ..."} -> {"rows": [...]}
//	POST   /v1/queries/push    {"sql": "SELECT ... EMIT CHANGES", "from"} -> text/event-stream
func Routes(h interface{ Handle(string, http.Handler) }, r *Registry) {
	pullRoute(h, r)
	pushRoute(h, r)
	h.Handle("POST /v1/queries", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			SQL string `json:"sql"`
		}
		if err := httpjson.Decode(w, req, MaxQueryBytes+1024, &body); err != nil {
			httpjson.WriteError(w, err)
			return
		}
		if body.SQL == "" {
			httpjson.WriteError(w, httpjson.Invalid("sql", "is required"))
			return
		}
		info, err := r.Create(req.Context(), body.SQL)
		if err != nil {
			writeErr(w, err)
			return
		}
		httpjson.WriteJSON(w, http.StatusCreated, info)
	}))
	h.Handle("GET /v1/queries", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		httpjson.WriteJSON(w, http.StatusOK, map[string]any{"queries": r.List()})
	}))
	h.Handle("GET /v1/queries/{name}", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		info, err := r.Get(req.PathValue("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		httpjson.WriteJSON(w, http.StatusOK, info)
	}))
	h.Handle("DELETE /v1/queries/{name}", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := r.Drop(req.Context(), req.PathValue("name")); err != nil {
			writeErr(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

func writeErr(w http.ResponseWriter, err error) {
	var pe *Error
	switch {
	case errors.As(err, &pe):
		httpjson.WriteError(w, httpjson.Invalid("sql", "%s", pe.Error()))
	case errors.Is(err, ErrUnknownTopic):
		httpjson.WriteError(w, httpjson.Invalid("sql", "%v", err))
	case errors.Is(err, ErrExists):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeAlreadyExists, "", "%v", err))
	case errors.Is(err, ErrNotFound):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeNotFound, "", "%v", err))
	default:
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeInternal, "", "%v", err))
	}
}
