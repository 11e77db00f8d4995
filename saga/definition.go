package saga

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Limits on a definition, checked by Validate.
const (
	MaxSteps       = 64
	maxNameLen     = 100
	maxReplyTypes  = 16
	defaultTimeout = 30 * time.Second
	defaultRetries = 3
	defaultBackoff = time.Second
)

// Definition describes a saga: steps, each a command sent to a participant
// and the replies that end it. Steps run in sequence unless a step names
// the steps it runs After, which makes parallel branches. A Definition is
// data (JSON), so services in any language take part through commands and
// replies on topics.
type Definition struct {
	// Name identifies the definition ([A-Za-z0-9._-], at most 100).
	Name string `json:"name"`
	// Version is set by Engine.Register: 1, 2, ... per Name. Instances
	// keep the version they started with.
	Version int `json:"version,omitempty"`
	// Steps run forward in dependency order; completed steps are
	// compensated in reverse completion order.
	Steps []Step `json:"steps"`
	// OnCompleted and OnCompensated are commands sent once, in the same
	// transaction as the saga's final state (e.g. CancelOrder). Optional.
	OnCompleted   *Command `json:"onCompleted,omitempty"`
	OnCompensated *Command `json:"onCompensated,omitempty"`
}

// Command is an event type sent, as a command, to a topic.
type Command struct {
	Type  string `json:"type"`
	Topic string `json:"topic"`
}

// Step is one step of a saga.
type Step struct {
	// Name identifies the step within the definition ([A-Za-z0-9._-]).
	Name string `json:"name"`
	// After lists the steps that must succeed before this one starts.
	// Absent (null): the previous step in Steps (none for the first).
	// Empty ([]): the step starts with the saga, in parallel.
	After []string `json:"after,omitempty"`
	// Command is sent to start the step.
	Command Command `json:"command"`
	// Success and Failure are the reply event types that end the step.
	// A failure is final (a business refusal): the saga compensates.
	Success []string `json:"success"`
	Failure []string `json:"failure,omitempty"`
	// Timeout is how long to wait for a reply before resending the
	// command (default 30s); Retry bounds the sends.
	Timeout Duration    `json:"timeout,omitempty"`
	Retry   RetryPolicy `json:"retry,omitempty"`
	// Compensation undoes the step. It is required unless the step is the
	// last one (every other step precedes it) or NoCompensation is set
	// (the step changes nothing that needs undoing).
	Compensation   *Compensation `json:"compensation,omitempty"`
	NoCompensation bool          `json:"noCompensation,omitempty"`
}

// Compensation is the command that undoes a step. It is resent on a
// failure reply or a timeout, with backoff, up to Retry.MaxAttempts; then
// the step is parked for an operator (Engine.Retry).
type Compensation struct {
	Command
	Success []string    `json:"success"`
	Failure []string    `json:"failure,omitempty"`
	Timeout Duration    `json:"timeout,omitempty"`
	Retry   RetryPolicy `json:"retry,omitempty"`
}

// RetryPolicy bounds how often a command is sent.
type RetryPolicy struct {
	// MaxAttempts counts every send, the first included (default 3).
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// Backoff is the wait before resending after a failure reply
	// (compensations), doubling up to MaxBackoff (default 1s, 30s).
	Backoff    Duration `json:"backoff,omitempty"`
	MaxBackoff Duration `json:"maxBackoff,omitempty"`
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = defaultRetries
	}
	if p.Backoff <= 0 {
		p.Backoff = Duration(defaultBackoff)
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = Duration(30 * time.Second)
	}
	return p
}

// backoff is the wait before send number attempt+1.
func (p RetryPolicy) backoff(attempt int) time.Duration {
	d := time.Duration(p.Backoff)
	for i := 1; i < attempt && d < time.Duration(p.MaxBackoff); i++ {
		d *= 2
	}
	return min(d, time.Duration(p.MaxBackoff))
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("30s", "1m30s").
type Duration time.Duration

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("want a duration string like \"30s\"")
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	*d = Duration(v)
	return nil
}

// ErrInvalidDefinition is wrapped by every error Validate and
// ParseDefinition return.
var ErrInvalidDefinition = errors.New("saga: invalid definition")

// DefinitionError is one problem with a definition, naming the step (if
// any) and the field.
type DefinitionError struct {
	Step   string // "" for definition-level fields
	Field  string // JSON path, e.g. "steps[2].compensation"
	Reason string
}

func (e *DefinitionError) Error() string {
	if e.Step != "" {
		return fmt.Sprintf("step %q: %s: %s", e.Step, e.Field, e.Reason)
	}
	return e.Field + ": " + e.Reason
}

// Unwrap makes every DefinitionError match ErrInvalidDefinition.
func (e *DefinitionError) Unwrap() error { return ErrInvalidDefinition }

// ParseDefinition decodes a JSON definition (unknown fields refused) and
// validates it with topicExists (nil: topics are not checked).
func ParseDefinition(b []byte, topicExists func(string) bool) (*Definition, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var d Definition
	if err := dec.Decode(&d); err != nil {
		return nil, &DefinitionError{Field: "definition", Reason: "bad JSON: " + err.Error()}
	}
	if err := d.Validate(topicExists); err != nil {
		return nil, err
	}
	return &d, nil
}

func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Validate reports every problem at once, joined; each is a
// *DefinitionError. topicExists, when not nil, must know every command
// topic. It refuses unknown or missing topics, unknown or duplicate step
// names, cycles, and steps that need a compensation and have none.
func (d *Definition) Validate(topicExists func(string) bool) error {
	var errs []error
	bad := func(step, field, format string, args ...any) {
		errs = append(errs, &DefinitionError{Step: step, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if !validName(d.Name) {
		bad("", "name", "%q: want 1-%d characters of [A-Za-z0-9._-]", d.Name, maxNameLen)
	}
	if len(d.Steps) == 0 {
		bad("", "steps", "a saga needs at least one step")
	}
	if len(d.Steps) > MaxSteps {
		bad("", "steps", "%d steps: at most %d", len(d.Steps), MaxSteps)
		return errors.Join(errs...)
	}
	checkCmd := func(step, field string, c Command) {
		if c.Type == "" {
			bad(step, field+".type", "required")
		}
		if c.Topic == "" {
			bad(step, field+".topic", "required")
		} else if topicExists != nil && !topicExists(c.Topic) {
			bad(step, field+".topic", "unknown topic %q", c.Topic)
		}
	}
	checkTypes := func(step, field string, ts []string, required bool) {
		if required && len(ts) == 0 {
			bad(step, field, "at least one reply event type is required")
		}
		if len(ts) > maxReplyTypes {
			bad(step, field, "%d types: at most %d", len(ts), maxReplyTypes)
		}
		for _, t := range ts {
			if t == "" {
				bad(step, field, "empty event type")
			}
		}
	}
	index := map[string]int{}
	for i, s := range d.Steps {
		f := fmt.Sprintf("steps[%d]", i)
		if !validName(s.Name) {
			bad(s.Name, f+".name", "%q: want 1-%d characters of [A-Za-z0-9._-]", s.Name, maxNameLen)
		} else if _, dup := index[s.Name]; dup {
			bad(s.Name, f+".name", "duplicate step name")
		} else {
			index[s.Name] = i
		}
		checkCmd(s.Name, f+".command", s.Command)
		checkTypes(s.Name, f+".success", s.Success, true)
		checkTypes(s.Name, f+".failure", s.Failure, false)
		if s.Timeout < 0 {
			bad(s.Name, f+".timeout", "negative")
		}
		if s.Compensation != nil {
			checkCmd(s.Name, f+".compensation", s.Compensation.Command)
			checkTypes(s.Name, f+".compensation.success", s.Compensation.Success, true)
			checkTypes(s.Name, f+".compensation.failure", s.Compensation.Failure, false)
			if s.NoCompensation {
				bad(s.Name, f+".noCompensation", "set together with a compensation")
			}
		}
	}
	for _, c := range []struct {
		field string
		cmd   *Command
	}{{"onCompleted", d.OnCompleted}, {"onCompensated", d.OnCompensated}} {
		if c.cmd != nil {
			checkCmd("", c.field, *c.cmd)
		}
	}
	if len(index) != len(d.Steps) {
		return errors.Join(errs...) // the graph needs unique, valid names
	}
	deps := d.deps()
	for i, s := range d.Steps {
		for _, a := range s.After {
			if _, ok := index[a]; !ok {
				bad(s.Name, fmt.Sprintf("steps[%d].after", i), "unknown step %q", a)
			} else if a == s.Name {
				bad(s.Name, fmt.Sprintf("steps[%d].after", i), "a step cannot follow itself")
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if cyc := findCycle(d, deps); cyc != nil {
		names := make([]string, len(cyc))
		for i, c := range cyc {
			names[i] = d.Steps[c].Name
		}
		bad(names[0], "after", "cycle: %s", strings.Join(names, " -> "))
		return errors.Join(errs...)
	}
	anc := ancestors(deps)
	for i, s := range d.Steps {
		if s.Compensation == nil && !s.NoCompensation && len(anc[i]) != len(d.Steps)-1 {
			bad(s.Name, fmt.Sprintf("steps[%d].compensation", i),
				"required: a later or parallel step can fail after this one succeeded (set noCompensation if there is nothing to undo)")
		}
	}
	return errors.Join(errs...)
}

// deps returns, per step index, the indexes it runs after.
func (d *Definition) deps() [][]int {
	index := make(map[string]int, len(d.Steps))
	for i, s := range d.Steps {
		index[s.Name] = i
	}
	out := make([][]int, len(d.Steps))
	for i, s := range d.Steps {
		if s.After == nil {
			if i > 0 {
				out[i] = []int{i - 1}
			}
			continue
		}
		for _, a := range s.After {
			if j, ok := index[a]; ok {
				out[i] = append(out[i], j)
			}
		}
	}
	return out
}

// findCycle returns the steps of a dependency cycle, first repeated last,
// or nil.
func findCycle(d *Definition, deps [][]int) []int {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(deps))
	var stack []int
	var found []int
	var visit func(int) bool
	visit = func(n int) bool {
		color[n] = grey
		stack = append(stack, n)
		for _, m := range deps[n] {
			if color[m] == grey {
				for i, s := range stack {
					if s == m {
						found = append(append([]int(nil), stack[i:]...), m)
					}
				}
				return true
			}
			if color[m] == white && visit(m) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	for i := range deps {
		if color[i] == white && visit(i) {
			return found
		}
	}
	return nil
}

// ancestors returns, per step, the set of steps that must succeed before
// it (transitively). deps must be acyclic.
func ancestors(deps [][]int) []map[int]bool {
	out := make([]map[int]bool, len(deps))
	var walk func(int) map[int]bool
	walk = func(n int) map[int]bool {
		if out[n] != nil {
			return out[n]
		}
		m := map[int]bool{}
		for _, p := range deps[n] {
			m[p] = true
			for a := range walk(p) {
				m[a] = true
			}
		}
		out[n] = m
		return m
	}
	for i := range deps {
		walk(i)
	}
	return out
}

// key is the definition's key in the definitions topic.
func (d *Definition) key() string { return fmt.Sprintf("%s@%d", d.Name, d.Version) }

func contains(ts []string, t string) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// ParseDefinitionYAML decodes a YAML definition (the same fields as the
// JSON one; durations as strings like "5s") and validates it like
// ParseDefinition.
func ParseDefinitionYAML(b []byte, topicExists func(string) bool) (*Definition, error) {
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, &DefinitionError{Field: "definition", Reason: "bad YAML: " + err.Error()}
	}
	j, err := json.Marshal(yamlToJSON(v))
	if err != nil {
		return nil, &DefinitionError{Field: "definition", Reason: "bad YAML: " + err.Error()}
	}
	return ParseDefinition(j, topicExists)
}

// yamlToJSON turns what yaml.v3 decodes into values encoding/json takes:
// maps with non-string keys get their keys formatted.
func yamlToJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = yamlToJSON(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = yamlToJSON(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = yamlToJSON(e)
		}
		return x
	}
	return v
}
