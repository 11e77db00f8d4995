package cep

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldhq/herald/rules/pattern"
	"github.com/heraldhq/herald/stream"
)

// Contiguity says how a step's events follow the previous matched event.
type Contiguity uint8

// The contiguities.
const (
	// Relaxed (followed-by, the default): events that do not match the step
	// are skipped, but the first one that matches must be taken.
	Relaxed Contiguity = iota
	// Strict (next): the step's event must come immediately after the
	// previous matched event of the partition.
	Strict
	// Any (non-deterministic followed-by-any): any later matching event
	// may be taken, each choice making its own partial match.
	Any
)

var contiguityNames = [...]string{Relaxed: "relaxed", Strict: "strict", Any: "any"}

func (c Contiguity) String() string {
	if int(c) < len(contiguityNames) {
		return contiguityNames[c]
	}
	return fmt.Sprintf("Contiguity(%d)", c)
}

// Negation makes a step an absence condition.
type Negation uint8

// The negations.
const (
	NoNegation Negation = iota
	// NotNext: the event right after the previous matched event must not
	// match the step.
	NotNext
	// NotFollowedBy: no event between the previous and the next matched
	// events may match the step. At the end of a pattern it needs Within:
	// the match is emitted when Within has passed without such an event.
	NotFollowedBy
)

var negationNames = [...]string{NoNegation: "", NotNext: "not_next", NotFollowedBy: "not_followed_by"}

// Skip is an after-match skip strategy.
type Skip uint8

// The skip strategies.
const (
	// NoSkip emits every match.
	NoSkip Skip = iota
	// SkipPastLastEvent drops every partial match that started at or before
	// the last event of an emitted match.
	SkipPastLastEvent
	// SkipToNext drops the partial matches that started with the same
	// event as an emitted match.
	SkipToNext
)

var skipNames = [...]string{NoSkip: "no_skip", SkipPastLastEvent: "skip_past_last_event", SkipToNext: "skip_to_next"}

// Compare is a condition comparing a field of the current event with a
// field of the last event an earlier step matched, e.g. an amount
// greater than the previous one: {Field: "data.amount", Op: ">", Step:
// "first", StepField: "data.amount"}. Numbers compare numerically when both
// sides are numbers, else as strings.
type Compare struct {
	Field     string `json:"field"`
	Op        string `json:"op"`
	Step      string `json:"step"`
	StepField string `json:"step_field,omitempty"`
}

// Step is one step of a pattern.
type Step struct {
	// Name identifies the step in matches and in comparisons.
	Name string
	// Match is an EventBridge event pattern (rules/pattern); nil matches
	// every event.
	Match json.RawMessage
	// Where are further conditions against earlier matched events.
	Where []Compare
	// Min and Max bound how many events the step takes (both 0: exactly
	// one; Max -1: unbounded). Min 0 makes the step optional.
	Min, Max int
	// Greedy makes a looping step take an event it can take rather than
	// let a later step take it.
	Greedy bool
	// Contiguity relates the step's events to the previous matched event.
	Contiguity Contiguity
	// Negation turns the step into an absence condition (Min, Max,
	// Greedy and Contiguity unused).
	Negation Negation
}

// Pattern is a CEP pattern.
type Pattern struct {
	// Name names the pattern in its output.
	Name string
	// Key is the field path partitioning events ("data.user"); "" is one
	// partition.
	Key string
	// TimeField is where event time is read ("time" when empty).
	TimeField string
	// Steps are the sequence.
	Steps []Step
	// Within bounds the time from a match's first to its last event (0:
	// unbounded).
	Within time.Duration
	// Skip is the after-match skip strategy.
	Skip Skip
	// EmitTimeouts reports partial matches that Within ended.
	EmitTimeouts bool
	// Source and Type are those of the events matches emit (defaults
	// "herald/cep/<name>" and "<Name>Matched").
	Source, Type string
}

// Limits.
const (
	maxSteps = 32
	maxTimes = 1000
)

var cmpOps = map[string]bool{"==": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true}

// compiled is a validated pattern ready to run.
type compiled struct {
	p       Pattern
	key     stream.Field
	timeF   stream.Field
	pos     []cstep // positive steps, in order
	trailer *guard  // a trailing not-followed-by
	mach    *pattern.Machine
	nmatch  int // conditions in mach (names are their indexes)
	// capture[i]: fields of positive step i's events that later
	// comparisons read.
	capture [][]stream.Field
}

type cstep struct {
	name       string
	cond       int // machine condition index, -1 = any event
	where      []cwhere
	min, max   int // max -1 = unbounded
	greedy     bool
	contiguity Contiguity
	guards     []guard // negations in the gap before this step
}

type guard struct {
	neg  Negation
	cond int
	name string
}

type cwhere struct {
	field stream.Field
	op    string
	step  int // positive step index
	slot  int // index into that step's captured values
}

// Validate compiles p and reports every problem, naming the field.
func (p *Pattern) Validate() error {
	_, err := compile(*p)
	return err
}

func compile(p Pattern) (*compiled, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	c := &compiled{p: p, mach: pattern.NewMachine()}
	if p.Name == "" {
		bad("name: is required")
	}
	if p.Key != "" {
		f, err := stream.ParseField(p.Key)
		if err != nil {
			bad("key: %v", err)
		}
		c.key = f
	}
	tf := p.TimeField
	if tf == "" {
		tf = "time"
	}
	f, err := stream.ParseField(tf)
	if err != nil {
		bad("time_field: %v", err)
	}
	c.timeF = f
	if p.Within < 0 {
		bad("within: %v is negative", p.Within)
	}
	if p.Skip > SkipToNext {
		bad("skip: unknown strategy %d", p.Skip)
	}
	if len(p.Steps) == 0 {
		bad("steps: at least one step is required")
	}
	if len(p.Steps) > maxSteps {
		bad("steps: %d steps, above the limit %d", len(p.Steps), maxSteps)
	}
	names := map[string]int{}
	var pending []guard
	addCond := func(i int, src json.RawMessage) int {
		if len(bytes.TrimSpace(src)) == 0 {
			return -1
		}
		pt, err := pattern.Compile(src)
		if err != nil {
			bad("steps[%d].match: %v", i, err)
			return -1
		}
		id := c.nmatch
		c.nmatch++
		c.mach.Add(strconv.Itoa(id), pt)
		return id
	}
	for i, s := range p.Steps {
		if s.Name == "" {
			bad("steps[%d].name: is required", i)
		} else if _, dup := names[s.Name]; dup {
			bad("steps[%d].name: %q is used twice", i, s.Name)
		}
		if s.Negation != NoNegation {
			if s.Negation > NotFollowedBy {
				bad("steps[%d].negation: unknown negation %d", i, s.Negation)
			}
			if i == 0 {
				bad("steps[0].negation: a pattern cannot start with a negation")
			}
			if len(s.Where) > 0 {
				bad("steps[%d].where: a negated step takes no comparisons", i)
			}
			if s.Min != 0 || s.Max != 0 || s.Greedy {
				bad("steps[%d]: a negated step takes no quantifier", i)
			}
			pending = append(pending, guard{neg: s.Negation, cond: addCond(i, s.Match), name: s.Name})
			names[s.Name] = -1
			continue
		}
		cs := cstep{name: s.Name, min: s.Min, max: s.Max, greedy: s.Greedy, contiguity: s.Contiguity, guards: pending}
		pending = nil
		if cs.min == 0 && cs.max == 0 {
			cs.min, cs.max = 1, 1
		}
		switch {
		case cs.min < 0 || cs.min > maxTimes:
			bad("steps[%d].min: %d is out of range 0..%d", i, cs.min, maxTimes)
		case cs.max != -1 && (cs.max < 1 || cs.max > maxTimes):
			bad("steps[%d].max: %d is out of range 1..%d (or -1 for unbounded)", i, cs.max, maxTimes)
		case cs.max != -1 && cs.max < cs.min:
			bad("steps[%d].max: %d is below min %d", i, cs.max, cs.min)
		}
		if s.Contiguity > Any {
			bad("steps[%d].contiguity: unknown contiguity %d", i, s.Contiguity)
		}
		if len(c.pos) == 0 && cs.min == 0 {
			bad("steps[%d].min: the first step cannot be optional", i)
		}
		if s.Greedy && cs.max == 1 {
			bad("steps[%d].greedy: only a looping step (max > 1) can be greedy", i)
		}
		cs.cond = addCond(i, s.Match)
		for j, w := range s.Where {
			ref, ok := names[w.Step]
			switch {
			case !ok:
				bad("steps[%d].where[%d].step: %q is not an earlier step", i, j, w.Step)
				continue
			case ref < 0:
				bad("steps[%d].where[%d].step: %q is a negated step", i, j, w.Step)
				continue
			}
			if !cmpOps[w.Op] {
				bad("steps[%d].where[%d].op: %q is not one of == != < <= > >=", i, j, w.Op)
			}
			ff, err := stream.ParseField(w.Field)
			if err != nil {
				bad("steps[%d].where[%d].field: %v", i, j, err)
			}
			sf := w.StepField
			if sf == "" {
				sf = w.Field
			}
			of, err := stream.ParseField(sf)
			if err != nil {
				bad("steps[%d].where[%d].step_field: %v", i, j, err)
			}
			slot := len(c.capture[ref])
			c.capture[ref] = append(c.capture[ref], of)
			cs.where = append(cs.where, cwhere{field: ff, op: w.Op, step: ref, slot: slot})
		}
		names[s.Name] = len(c.pos)
		c.pos = append(c.pos, cs)
		c.capture = append(c.capture, nil)
	}
	if len(pending) > 0 {
		g := pending[len(pending)-1]
		switch {
		case len(pending) > 1:
			bad("steps: a pattern can end with at most one negation")
		case g.neg == NotNext:
			bad("steps[%d].negation: a pattern cannot end with not_next; use not_followed_by with within", len(p.Steps)-1)
		case p.Within == 0:
			bad("steps[%d].negation: a pattern ending with not_followed_by needs within (a time bound), else it could never match", len(p.Steps)-1)
		default:
			c.trailer = &g
		}
	}
	if len(c.pos) == 0 && len(p.Steps) > 0 {
		bad("steps: at least one step must not be negated")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pattern %q: %w", p.Name, err)
	}
	return c, nil
}

// MarshalJSON writes the pattern's JSON definition.
func (p Pattern) MarshalJSON() ([]byte, error) {
	j := patternJSON{Name: p.Name, Key: p.Key, TimeField: p.TimeField, Skip: skipNames[p.Skip],
		EmitTimeouts: p.EmitTimeouts, Source: p.Source, Type: p.Type}
	if p.Within > 0 {
		j.Within = p.Within.String()
	}
	for _, s := range p.Steps {
		sj := stepJSON{Name: s.Name, Match: s.Match, Where: s.Where, Min: s.Min, Max: s.Max, Greedy: s.Greedy,
			Negation: negationNames[s.Negation]}
		if s.Contiguity != Relaxed {
			sj.Contiguity = s.Contiguity.String()
		}
		j.Steps = append(j.Steps, sj)
	}
	return json.Marshal(j)
}

type patternJSON struct {
	Name         string     `json:"name"`
	Key          string     `json:"key,omitempty"`
	TimeField    string     `json:"time_field,omitempty"`
	Steps        []stepJSON `json:"steps"`
	Within       string     `json:"within,omitempty"`
	Skip         string     `json:"skip,omitempty"`
	EmitTimeouts bool       `json:"emit_timeouts,omitempty"`
	Source       string     `json:"source,omitempty"`
	Type         string     `json:"type,omitempty"`
}

type stepJSON struct {
	Name       string          `json:"name"`
	Match      json.RawMessage `json:"match,omitempty"`
	Where      []Compare       `json:"where,omitempty"`
	Min        int             `json:"min,omitempty"`
	Max        int             `json:"max,omitempty"`
	Greedy     bool            `json:"greedy,omitempty"`
	Contiguity string          `json:"contiguity,omitempty"`
	Negation   string          `json:"negation,omitempty"`
}

// ParseJSON reads a pattern's JSON definition and validates it:
//
//	{"name": "fraud", "key": "data.user", "within": "10m",
//	 "skip": "skip_past_last_event",
//	 "steps": [
//	   {"name": "fail", "match": {"type": ["LoginFailed"]}, "min": 3, "max": 3},
//	   {"name": "ok", "match": {"type": ["LoginSuccess"]}}]}
func ParseJSON(b []byte) (Pattern, error) {
	var j patternJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Pattern{}, fmt.Errorf("pattern: %w", err)
	}
	p := Pattern{Name: j.Name, Key: j.Key, TimeField: j.TimeField, EmitTimeouts: j.EmitTimeouts, Source: j.Source, Type: j.Type}
	var errs []error
	if j.Within != "" {
		d, err := time.ParseDuration(j.Within)
		if err != nil {
			errs = append(errs, fmt.Errorf("within: %q is not a duration like \"10m\"", j.Within))
		}
		p.Within = d
	}
	if j.Skip != "" {
		found := false
		for k, n := range skipNames {
			if n == j.Skip {
				p.Skip, found = Skip(k), true
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("skip: %q is not no_skip, skip_past_last_event or skip_to_next", j.Skip))
		}
	}
	for i, sj := range j.Steps {
		s := Step{Name: sj.Name, Match: sj.Match, Where: sj.Where, Min: sj.Min, Max: sj.Max, Greedy: sj.Greedy}
		switch sj.Contiguity {
		case "", "relaxed":
		case "strict":
			s.Contiguity = Strict
		case "any":
			s.Contiguity = Any
		default:
			errs = append(errs, fmt.Errorf("steps[%d].contiguity: %q is not strict, relaxed or any", i, sj.Contiguity))
		}
		switch sj.Negation {
		case "":
		case "not_next":
			s.Negation = NotNext
		case "not_followed_by":
			s.Negation = NotFollowedBy
		default:
			errs = append(errs, fmt.Errorf("steps[%d].negation: %q is not not_next or not_followed_by", i, sj.Negation))
		}
		p.Steps = append(p.Steps, s)
	}
	if err := errors.Join(errs...); err != nil {
		return Pattern{}, fmt.Errorf("pattern %q: %w", p.Name, err)
	}
	if err := p.Validate(); err != nil {
		return Pattern{}, err
	}
	return p, nil
}
