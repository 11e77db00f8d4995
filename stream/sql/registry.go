package sql

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/stream"
	"github.com/heraldhq/herald/stream/jobreg"
)

// Errors of the Registry.
var (
	ErrExists       = jobreg.ErrExists
	ErrNotFound     = jobreg.ErrNotFound
	ErrUnknownTopic = errors.New("unknown topic")
	ErrClosed       = jobreg.ErrClosed
)

// DefaultRegistryTopic is the compacted topic holding the registered
// queries (record key: table name; value: the query text; a null value
// drops it).
const DefaultRegistryTopic = "_herald_queries"

// RegistryConfig configures a Registry (Topic default
// DefaultRegistryTopic).
type RegistryConfig = jobreg.Settings

// Info describes a registered query.
type Info struct {
	Name   string `json:"name"`
	SQL    string `json:"sql"`
	Input  string `json:"input"`
	Output string `json:"output"`
	jobreg.State
}

// Registry runs the registered CREATE TABLE queries as exactly-once jobs
// until they are dropped; the queries are kept in a compacted topic and
// run again after a restart. List, Get, Delete and Close are
// jobreg.Registry's.
type Registry struct {
	*jobreg.Registry[Info]
	tables     sync.Map     // name -> *table, while its job may run
	topicReads atomic.Int64 // table topic reads (tests)
}

// NewRegistry loads the registered queries and starts them.
func NewRegistry(ctx context.Context, cfg RegistryConfig) (*Registry, error) {
	r := &Registry{}
	reg, err := jobreg.Open(ctx, jobreg.Config[Info]{Settings: cfg, Kind: "query", DefaultTopic: DefaultRegistryTopic,
		Open: r.open, Describe: info})
	if err != nil {
		return nil, fmt.Errorf("sql: %w", err)
	}
	r.Registry = reg
	return r, nil
}

// open builds the job of a saved query, with its table in memory.
func (r *Registry) open(set jobreg.Settings, name string, def []byte) (jobreg.Job, error) {
	q, err := Parse(string(def))
	if err != nil {
		return jobreg.Job{}, err
	}
	cfg, err := q.JobConfig(set.Brokers)
	if err != nil {
		return jobreg.Job{}, err
	}
	t := &table{retention: q.TableRetention()}
	cfg.Logger, cfg.KgoOptions = set.Logger, set.KgoOptions
	cfg.OnStart = func(ctx context.Context) error { return t.load(ctx, r, cfg.Output) }
	cfg.OnCommit = t.apply
	j, err := stream.NewJob(cfg)
	if err != nil {
		return jobreg.Job{}, err
	}
	return jobreg.Job{Run: func(ctx context.Context) error {
		r.tables.Store(name, t)
		return j.Run(ctx)
	}, Stop: func() { r.tables.CompareAndDelete(name, t) }}, nil
}

func info(e jobreg.Entry) Info {
	in := Info{Name: e.Name, SQL: string(e.Def), Output: e.Name, State: e.State}
	if q, err := Parse(in.SQL); err == nil {
		in.Input = q.From
	}
	return in
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
	_, ok, err := r.Registry.EndOffsets(ctx, q.From)
	if err != nil {
		return Info{}, fmt.Errorf("sql: %w", err)
	}
	if !ok {
		return Info{}, fmt.Errorf("%w %q (FROM %s)", ErrUnknownTopic, q.From, q.From)
	}
	return r.Registry.Create(ctx, q.Table, []byte(q.Text))
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
	r.Registry.Routes(h, "/v1/queries", "queries", writeErr)
}

func writeErr(w http.ResponseWriter, err error) {
	var pe *Error
	switch {
	case errors.As(err, &pe):
		httpjson.WriteError(w, httpjson.Invalid("sql", "%s", pe.Error()))
	case errors.Is(err, ErrUnknownTopic):
		httpjson.WriteError(w, httpjson.Invalid("sql", "%v", err))
	default:
		jobreg.WriteError(w, err, "sql")
	}
}

// Drop stops a query and forgets it (Delete). Its table topic and job
// state stay.
func (r *Registry) Drop(ctx context.Context, name string) error { return r.Delete(ctx, name) }
