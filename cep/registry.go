package cep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/internal/httpjson"
)

// Errors of the Registry.
var (
	ErrExists       = errors.New("pattern exists")
	ErrNotFound     = errors.New("pattern not found")
	ErrUnknownTopic = errors.New("unknown topic")
	ErrClosed       = errors.New("cep: registry closed")
)

// DefaultRegistryTopic is the compacted topic holding the registered
// patterns (record key: the pattern's name; value: its Definition as
// JSON; a null value removes it).
const DefaultRegistryTopic = "_herald_cep"

// MaxDefinitionBytes bounds a pattern definition (request body).
const MaxDefinitionBytes = 256 << 10

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	Brokers    []string
	Topic      string // default DefaultRegistryTopic
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	KgoOptions []kgo.Opt
	// RetryBackoff is the first wait before a failed pattern's job is
	// run again (default 1s; doubling up to 30s).
	RetryBackoff time.Duration
}

// Definition is a server-side pattern: what POST /v1/cep/patterns takes.
type Definition struct {
	// Pattern is the JSON definition (see ParseJSON), or a string holding
	// it in YAML (see ParseYAML); its name names the server-side pattern.
	// The registry stores and shows it as JSON.
	Pattern json.RawMessage `json:"pattern"`
	Input   string          `json:"input"`
	Output  string          `json:"output"`
	// TimeoutTopic, when set, receives the partial matches that the
	// pattern's within ended.
	TimeoutTopic string `json:"timeout_topic,omitempty"`
	// Set by the registry: Start are the input's end offsets when the
	// pattern was created (it sees the events that follow), Created its
	// creation time (which also names its job, so that a pattern removed
	// and created again starts afresh).
	Start   map[int32]int64 `json:"start,omitempty"`
	Created time.Time       `json:"created"`
}

// Info describes a registered pattern.
type Info struct {
	Name         string          `json:"name"`
	Pattern      json.RawMessage `json:"pattern"`
	Input        string          `json:"input"`
	Output       string          `json:"output"`
	TimeoutTopic string          `json:"timeout_topic,omitempty"`
	Created      time.Time       `json:"created"`
	// Status is "running", or "failed" with Error saying why.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Registry runs the registered patterns as exactly-once jobs until they
// are removed, and keeps them in a compacted topic so that they run again
// (from their committed state) after a restart.
type Registry struct {
	cfg    RegistryConfig
	log    *slog.Logger
	cl     *kgo.Client
	adm    *kadm.Client
	ctx    context.Context
	cancel context.CancelFunc
	mu     struct {
		sync.Mutex
		closed   bool
		patterns map[string]*running
	}
}

type running struct {
	info   Info
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRegistry loads the registered patterns and starts them.
func NewRegistry(ctx context.Context, cfg RegistryConfig) (*Registry, error) {
	if cfg.Topic == "" {
		cfg.Topic = DefaultRegistryTopic
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks())}, cfg.KgoOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("cep: registry: %w", err)
	}
	r := &Registry{cfg: cfg, log: cfg.Logger.With("component", "cep"), cl: cl, adm: kadm.NewClient(cl)}
	r.mu.patterns = map[string]*running{}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	compact := "compact"
	resp, err := r.adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		cl.Close()
		return nil, fmt.Errorf("cep: registry: create %s: %w", cfg.Topic, err)
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
		var d Definition
		if err := json.Unmarshal(saved[n], &d); err != nil {
			r.log.Error("a registered pattern no longer decodes; skipped", "name", n, "err", err)
			continue
		}
		p, err := ParseJSON(d.Pattern)
		if err != nil {
			r.log.Error("a registered pattern no longer parses; skipped", "name", n, "err", err)
			continue
		}
		r.start(p, d)
	}
	return r, nil
}

func (r *Registry) load(ctx context.Context) (map[string][]byte, error) {
	ends, err := r.adm.ListEndOffsets(ctx, r.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("cep: registry: %w", err)
	}
	end, _ := ends.Lookup(r.cfg.Topic, 0)
	out := map[string][]byte{}
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
			return nil, fmt.Errorf("cep: registry: read %s: %w", r.cfg.Topic, ferr)
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

// jobName names a pattern's job (its group, transactional id and state
// topic): the name and the creation time.
func jobName(name string, created time.Time) string {
	return name + "-" + strconv.FormatInt(created.UnixNano(), 36)
}

// start runs the pattern's job; the caller has reserved the name.
func (r *Registry) start(p Pattern, d Definition) Info {
	info := Info{Name: p.Name, Pattern: d.Pattern, Input: d.Input, Output: d.Output, TimeoutTopic: d.TimeoutTopic,
		Created: d.Created, Status: "running"}
	ctx, cancel := context.WithCancel(r.ctx)
	run := &running{info: info, cancel: cancel, done: make(chan struct{})}
	r.mu.Lock()
	r.mu.patterns[p.Name] = run
	r.mu.Unlock()
	go func() {
		defer close(run.done)
		j, err := NewJob(JobConfig{Name: jobName(p.Name, d.Created), Brokers: r.cfg.Brokers, Pattern: p,
			Input: d.Input, Output: d.Output, TimeoutTopic: d.TimeoutTopic, Start: d.Start,
			KgoOptions: r.cfg.KgoOptions, Logger: r.cfg.Logger, Registerer: r.cfg.Registerer})
		if err != nil { // a definition that no longer validates: no retry
			r.log.Error("pattern failed", "name", p.Name, "err", err)
			r.mu.Lock()
			run.info.Status, run.info.Error = "failed", err.Error()
			r.mu.Unlock()
			return
		}
		defer j.unregister()
		// A failed job (its input topic gone, the cluster unreachable) is
		// retried with backoff; its status says failed meanwhile.
		for backoff := r.cfg.RetryBackoff; ; backoff = min(2*backoff, 30*time.Second) {
			err := j.Run(ctx)
			if ctx.Err() != nil || err == nil {
				return
			}
			r.log.Error("pattern failed; retrying", "name", p.Name, "err", err, "retry_in", backoff)
			r.mu.Lock()
			run.info.Status, run.info.Error = "failed", err.Error()
			r.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			r.mu.Lock()
			run.info.Status, run.info.Error = "running", ""
			r.mu.Unlock()
		}
	}()
	return info
}

var (
	topicName   = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	patternName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,200}$`) // its job's topics add a suffix
)

// Create registers and starts a pattern. Errors: *httpjson.Error naming
// the field for invalid definitions, ErrUnknownTopic, ErrExists.
func (r *Registry) Create(ctx context.Context, d Definition) (Info, error) {
	if len(d.Pattern) == 0 {
		return Info{}, httpjson.Invalid("pattern", "is required")
	}
	var p Pattern
	var err error
	if d.Pattern[0] == '"' { // a string: the pattern in YAML (or JSON)
		var text string
		if err := json.Unmarshal(d.Pattern, &text); err != nil {
			return Info{}, httpjson.Invalid("pattern", "%v", err)
		}
		p, err = ParseYAML([]byte(text))
	} else {
		p, err = ParseJSON(d.Pattern)
	}
	if err != nil {
		return Info{}, httpjson.Invalid("pattern", "%v", err)
	}
	if !patternName.MatchString(p.Name) {
		return Info{}, httpjson.Invalid("pattern.name", "%q: want 1 to 200 letters, digits, '.', '_' or '-'", p.Name)
	}
	for _, f := range []struct{ field, v string }{{"input", d.Input}, {"output", d.Output}, {"timeout_topic", d.TimeoutTopic}} {
		if f.v == "" && f.field != "timeout_topic" {
			return Info{}, httpjson.Invalid(f.field, "is required")
		}
		if f.v != "" && !topicName.MatchString(f.v) {
			return Info{}, httpjson.Invalid(f.field, "%q is not a topic name (1 to 249 letters, digits, '.', '_' or '-')", f.v)
		}
	}
	if d.Input == d.Output {
		return Info{}, httpjson.Invalid("output", "the input topic %q cannot also be an output", d.Input)
	}
	if d.Input == d.TimeoutTopic {
		return Info{}, httpjson.Invalid("timeout_topic", "the input topic %q cannot also be an output", d.Input)
	}
	// NB: a fresh client, since kgo answers metadata requests from a cache
	// that would hide a topic created a moment ago.
	lc, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Brokers...)}, r.cfg.KgoOptions...)...)
	if err != nil {
		return Info{}, err
	}
	ladm := kadm.NewClient(lc)
	td, err := ladm.ListTopics(ctx, d.Input)
	if err != nil {
		lc.Close()
		return Info{}, fmt.Errorf("cep: describe topic %q: %w", d.Input, err)
	}
	if t, ok := td[d.Input]; !ok || t.Err != nil {
		lc.Close()
		return Info{}, fmt.Errorf("%w %q (input)", ErrUnknownTopic, d.Input)
	}
	ends, err := ladm.ListEndOffsets(ctx, d.Input)
	lc.Close()
	if err != nil {
		return Info{}, fmt.Errorf("cep: end offsets of %q: %w", d.Input, err)
	}
	d.Start = map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			d.Start[o.Partition] = o.Offset
		}
	})
	d.Created = time.Now().UTC()
	d.Pattern, _ = json.Marshal(p) // normalized
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return Info{}, ErrClosed
	}
	if _, ok := r.mu.patterns[p.Name]; ok {
		r.mu.Unlock()
		return Info{}, fmt.Errorf("%w: %q", ErrExists, p.Name)
	}
	r.mu.patterns[p.Name] = nil // reserve the name
	r.mu.Unlock()
	val, _ := json.Marshal(d)
	if err := r.cl.ProduceSync(ctx, &kgo.Record{Topic: r.cfg.Topic, Key: []byte(p.Name), Value: val}).FirstErr(); err != nil {
		r.mu.Lock()
		delete(r.mu.patterns, p.Name)
		r.mu.Unlock()
		return Info{}, fmt.Errorf("cep: save pattern: %w", err)
	}
	r.log.Info("pattern registered", "name", p.Name, "input", d.Input, "output", d.Output)
	return r.start(p, d), nil
}

// List returns the registered patterns by name.
func (r *Registry) List() []Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Info, 0, len(r.mu.patterns))
	for _, p := range r.mu.patterns {
		if p != nil {
			out = append(out, p.info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns one pattern.
func (r *Registry) Get(name string) (Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.mu.patterns[name]
	if p == nil {
		return Info{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return p.info, nil
}

// Delete stops a pattern and forgets it. Its output topics stay.
func (r *Registry) Delete(ctx context.Context, name string) error {
	r.mu.Lock()
	p := r.mu.patterns[name]
	if p == nil {
		r.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	delete(r.mu.patterns, name)
	r.mu.Unlock()
	p.cancel()
	<-p.done
	if err := r.cl.ProduceSync(ctx, &kgo.Record{Topic: r.cfg.Topic, Key: []byte(name)}).FirstErr(); err != nil {
		return fmt.Errorf("cep: delete pattern %q: %w", name, err)
	}
	r.log.Info("pattern deleted", "name", name)
	return nil
}

// Close stops every pattern (they run again at the next NewRegistry).
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return nil
	}
	r.mu.closed = true
	ps := r.mu.patterns
	r.mu.Unlock()
	r.cancel()
	for _, p := range ps {
		if p != nil {
			<-p.done
		}
	}
	r.cl.Close()
	return nil
}

// Routes mounts the pattern API (documented in OpenAPI):
//
//	POST   /v1/cep/patterns         Definition -> 201 Info
//	GET    /v1/cep/patterns         -> {"patterns": [Info]}
//	GET    /v1/cep/patterns/{name}  -> Info
//	DELETE /v1/cep/patterns/{name}  -> 204
func Routes(h interface{ Handle(string, http.Handler) }, reg *Registry) {
	h.Handle("POST /v1/cep/patterns", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var d Definition
		if err := httpjson.Decode(w, req, MaxDefinitionBytes, &d); err != nil {
			httpjson.WriteError(w, err)
			return
		}
		info, err := reg.Create(req.Context(), d)
		if err != nil {
			writeErr(w, err)
			return
		}
		httpjson.WriteJSON(w, http.StatusCreated, info)
	}))
	h.Handle("GET /v1/cep/patterns", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		httpjson.WriteJSON(w, http.StatusOK, map[string]any{"patterns": reg.List()})
	}))
	h.Handle("GET /v1/cep/patterns/{name}", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		info, err := reg.Get(req.PathValue("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		httpjson.WriteJSON(w, http.StatusOK, info)
	}))
	h.Handle("DELETE /v1/cep/patterns/{name}", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := reg.Delete(req.Context(), req.PathValue("name")); err != nil {
			writeErr(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

func writeErr(w http.ResponseWriter, err error) {
	var he *httpjson.Error
	switch {
	case errors.As(err, &he):
		httpjson.WriteError(w, he)
	case errors.Is(err, ErrUnknownTopic):
		httpjson.WriteError(w, httpjson.Invalid("input", "%v", err))
	case errors.Is(err, ErrExists):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeAlreadyExists, "pattern.name", "%v", err))
	case errors.Is(err, ErrNotFound):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeNotFound, "", "%v", err))
	case errors.Is(err, ErrClosed):
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeUnavailable, "", "%v", err))
	default:
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeInternal, "", "%v", err))
	}
}
