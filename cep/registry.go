package cep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/httpjson"
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
// patterns (record key: the pattern's name; value: its Definition as
// JSON; a null value removes it).
const DefaultRegistryTopic = "_herald_cep"

// MaxDefinitionBytes bounds a pattern definition (request body).
const MaxDefinitionBytes = 256 << 10

// RegistryConfig configures a Registry (Topic default
// DefaultRegistryTopic).
type RegistryConfig = jobreg.Settings

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
	// ErrorTopic receives the input records that are not events or lack
	// the pattern's key or time field, with header "herald-error" saying
	// why (default "<name>.errors").
	ErrorTopic string `json:"error_topic,omitempty"`
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
	ErrorTopic   string          `json:"error_topic,omitempty"`
	Created      time.Time       `json:"created"`
	jobreg.State
}

// Registry is the server's patterns: a jobreg.Registry of pattern jobs,
// each running exactly once from its creation until it is deleted, and
// again from its committed state after a restart.
type Registry struct{ *jobreg.Registry[Info] }

// NewRegistry reads the saved patterns and runs them.
func NewRegistry(ctx context.Context, cfg RegistryConfig) (*Registry, error) {
	reg, err := jobreg.Open(ctx, jobreg.Config[Info]{Kind: "pattern", Settings: cfg, DefaultTopic: DefaultRegistryTopic, Open: open, Describe: info})
	if err != nil {
		return nil, err
	}
	return &Registry{reg}, nil
}

// jobName names a pattern's job (its group, transactional id and state
// topic): the name and the creation time.
func jobName(name string, created time.Time) string {
	return name + "-" + strconv.FormatInt(created.UnixNano(), 36)
}

// open builds the job of a saved Definition.
func open(set jobreg.Settings, name string, def []byte) (jobreg.Job, error) {
	var d Definition
	if err := json.Unmarshal(def, &d); err != nil {
		return jobreg.Job{}, fmt.Errorf("decode definition: %w", err)
	}
	p, err := ParseJSON(d.Pattern)
	if err != nil {
		return jobreg.Job{}, err
	}
	errTopic := d.ErrorTopic
	if errTopic == "" {
		errTopic = name + ".errors"
	}
	j, err := NewJob(JobConfig{Name: jobName(name, d.Created), Brokers: set.Brokers, Pattern: p,
		Input: d.Input, Output: d.Output, TimeoutTopic: d.TimeoutTopic, ErrorTopic: errTopic, Start: d.Start,
		KgoOptions: set.KgoOptions, Logger: set.Logger, Registerer: set.Registerer})
	if err != nil {
		return jobreg.Job{}, err
	}
	return jobreg.Job{Run: j.Run, Stop: j.Unregister}, nil
}

func info(e jobreg.Entry) Info {
	in := Info{Name: e.Name, State: e.State}
	var d Definition
	if json.Unmarshal(e.Def, &d) == nil {
		in.Pattern, in.Input, in.Output, in.TimeoutTopic, in.ErrorTopic, in.Created = d.Pattern, d.Input, d.Output, d.TimeoutTopic, d.ErrorTopic, d.Created
	}
	return in
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
	for _, f := range []struct{ field, v string }{{"input", d.Input}, {"output", d.Output}, {"timeout_topic", d.TimeoutTopic}, {"error_topic", d.ErrorTopic}} {
		if f.v == "" && (f.field == "input" || f.field == "output") {
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
	if d.Input == d.ErrorTopic {
		return Info{}, httpjson.Invalid("error_topic", "the input topic %q cannot also be an output", d.Input)
	}
	ends, ok, err := r.Registry.EndOffsets(ctx, d.Input)
	if err != nil {
		return Info{}, fmt.Errorf("cep: %w", err)
	}
	if !ok {
		return Info{}, fmt.Errorf("%w %q (input)", ErrUnknownTopic, d.Input)
	}
	d.Start = ends
	if d.ErrorTopic == "" {
		d.ErrorTopic = p.Name + ".errors"
	}
	d.Created = time.Now().UTC()
	d.Pattern, _ = json.Marshal(p) // normalized
	val, _ := json.Marshal(d)
	return r.Registry.Create(ctx, p.Name, val)
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
	reg.Registry.Routes(h, "/v1/cep/patterns", "patterns", writeErr)
}

func writeErr(w http.ResponseWriter, err error) {
	var he *httpjson.Error
	switch {
	case errors.As(err, &he):
		httpjson.WriteError(w, he)
	case errors.Is(err, ErrUnknownTopic):
		httpjson.WriteError(w, httpjson.Invalid("input", "%v", err))
	default:
		jobreg.WriteError(w, err, "pattern.name")
	}
}
