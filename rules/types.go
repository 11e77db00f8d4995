package rules

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/rules/pattern"
)

// Limits of a rule.
const (
	MaxTargets     = 5
	MaxInputPaths  = 100
	MaxTemplate    = 8 << 10
	MinEventAge    = 60 * time.Second
	MaxEventAge    = 24 * time.Hour
	MaxAttempts    = 185
	DefaultBus     = "default"
	maxNameLen     = 64
	maxDescription = 512
)

// Rule states.
const (
	Enabled  = "ENABLED"
	Disabled = "DISABLED"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Bus is an event bus: a topic whose events the bus's rules route.
type Bus struct {
	Name string `json:"name"`
	// Topic is the topic holding the bus's events (the bus's name).
	Topic string `json:"topic"`
	// Created is when the bus was created.
	Created time.Time `json:"created"`
}

// Rule routes the events of a bus that match its pattern (or, for a
// scheduled rule, an event on each tick of its schedule) to its targets.
type Rule struct {
	Name        string `json:"name"`
	Bus         string `json:"bus"`
	Description string `json:"description,omitempty"`
	// EventPattern is an EventBridge event pattern (see rules/pattern).
	EventPattern json.RawMessage `json:"event_pattern,omitempty"`
	// Schedule is "rate(N unit)" or "cron(min hour dom month dow year)".
	Schedule string `json:"schedule,omitempty"`
	// State is ENABLED (the default) or DISABLED.
	State   string    `json:"state,omitempty"`
	Targets []Target  `json:"targets"`
	Created time.Time `json:"created,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
}

// Target is where a rule sends what it matched.
type Target struct {
	// ID names the target within its rule.
	ID string `json:"id"`
	// Exactly one of Topic (a topic, such as a subscription's) and
	// Webhook (an http(s) URL receiving CloudEvents in binary mode).
	Topic   string `json:"topic,omitempty"`
	Webhook string `json:"webhook,omitempty"`
	// InputTransformer rewrites the event's data before delivery.
	InputTransformer *InputTransformer `json:"input_transformer,omitempty"`
	// RetryPolicy bounds redelivery of a failed event.
	RetryPolicy *RetryPolicy `json:"retry_policy,omitempty"`
	// DeadLetterTopic receives events whose retries are exhausted.
	DeadLetterTopic string `json:"dead_letter_topic,omitempty"`
}

// InputTransformer builds the delivered data from parts of the event.
type InputTransformer struct {
	// InputPaths maps variable names to JSONPath expressions into the
	// event as JSON ($.source, $.data.order.id, $.data.items[0].sku).
	InputPaths map[string]string `json:"input_paths,omitempty"`
	// InputTemplate is the output with <var> placeholders; <herald.event>
	// is the whole event and <herald.rule-name> the rule's name.
	InputTemplate string `json:"input_template"`
}

// RetryPolicy bounds the redelivery of an event to a failing target.
type RetryPolicy struct {
	// MaximumEventAgeSeconds: 60 to 86400 (default 86400).
	MaximumEventAgeSeconds int `json:"maximum_event_age_seconds,omitempty"`
	// MaximumRetryAttempts: 0 to 185 (default 185).
	MaximumRetryAttempts *int `json:"maximum_retry_attempts,omitempty"`
}

func (p *RetryPolicy) maxAge() time.Duration {
	if p == nil || p.MaximumEventAgeSeconds == 0 {
		return MaxEventAge
	}
	return time.Duration(p.MaximumEventAgeSeconds) * time.Second
}

func (p *RetryPolicy) maxRetries() int {
	if p == nil || p.MaximumRetryAttempts == nil {
		return MaxAttempts
	}
	return *p.MaximumRetryAttempts
}

func validName(field, s string) error {
	if s == "" {
		return httpjson.Invalid(field, "%s is required", field)
	}
	if len(s) > maxNameLen || !nameRE.MatchString(s) {
		return httpjson.Invalid(field, "%s %q must be 1-%d characters of [A-Za-z0-9._-]", field, s, maxNameLen)
	}
	return nil
}

// compiled is a validated rule with its compiled parts.
type compiled struct {
	Rule
	pattern  *pattern.Pattern
	schedule *Schedule
	tmpl     []*transformer
}

// validate checks r and compiles it. Errors are *httpjson.Error naming
// the field (event_pattern errors name the JSON path inside the pattern).
func validate(r Rule) (*compiled, error) {
	if err := validName("name", r.Name); err != nil {
		return nil, err
	}
	if r.Bus == "" {
		r.Bus = DefaultBus
	}
	if err := validName("bus", r.Bus); err != nil {
		return nil, err
	}
	if len(r.Description) > maxDescription {
		return nil, httpjson.Invalid("description", "description is %d bytes, more than %d", len(r.Description), maxDescription)
	}
	switch r.State {
	case "":
		r.State = Enabled
	case Enabled, Disabled:
	default:
		return nil, httpjson.Invalid("state", "state %q must be ENABLED or DISABLED", r.State)
	}
	c := &compiled{Rule: r}
	hasPattern := len(r.EventPattern) > 0 && string(r.EventPattern) != "null"
	switch {
	case hasPattern && r.Schedule != "":
		return nil, httpjson.Invalid("schedule", "a rule has an event_pattern or a schedule, not both")
	case !hasPattern && r.Schedule == "":
		return nil, httpjson.Invalid("event_pattern", "a rule needs an event_pattern or a schedule")
	case hasPattern:
		p, err := pattern.Compile(r.EventPattern)
		if err != nil {
			if pe, ok := err.(*pattern.Error); ok {
				return nil, httpjson.Invalid("event_pattern", "event_pattern %s: %s", pe.Path, pe.Reason)
			}
			return nil, httpjson.Invalid("event_pattern", "event_pattern: %v", err)
		}
		c.pattern = p
	default:
		s, err := ParseSchedule(r.Schedule)
		if err != nil {
			return nil, httpjson.Invalid("schedule", "schedule %q: %v", r.Schedule, err)
		}
		if now := time.Now(); s.Next(now, now).IsZero() {
			return nil, httpjson.Invalid("schedule", "schedule %q never fires", r.Schedule)
		}
		c.schedule = s
	}
	if len(r.Targets) > MaxTargets {
		return nil, httpjson.Invalid("targets", "a rule has at most %d targets, got %d", MaxTargets, len(r.Targets))
	}
	ids := map[string]bool{}
	for i, t := range r.Targets {
		f := "targets[" + strconv.Itoa(i) + "]"
		if err := validName(f+".id", t.ID); err != nil {
			return nil, err
		}
		if ids[t.ID] {
			return nil, httpjson.Invalid(f+".id", "target id %q is used twice", t.ID)
		}
		ids[t.ID] = true
		switch {
		case t.Topic != "" && t.Webhook != "":
			return nil, httpjson.Invalid(f, "a target has a topic or a webhook, not both")
		case t.Topic != "":
			if err := validName(f+".topic", t.Topic); err != nil {
				return nil, err
			}
		case t.Webhook != "":
			u, err := url.Parse(t.Webhook)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, httpjson.Invalid(f+".webhook", "webhook %q must be an http or https URL", t.Webhook)
			}
		default:
			return nil, httpjson.Invalid(f, "a target needs a topic or a webhook")
		}
		if t.DeadLetterTopic != "" {
			if err := validName(f+".dead_letter_topic", t.DeadLetterTopic); err != nil {
				return nil, err
			}
		}
		if p := t.RetryPolicy; p != nil {
			if p.MaximumEventAgeSeconds != 0 && (p.MaximumEventAgeSeconds < int(MinEventAge/time.Second) || p.MaximumEventAgeSeconds > int(MaxEventAge/time.Second)) {
				return nil, httpjson.Invalid(f+".retry_policy.maximum_event_age_seconds", "maximum_event_age_seconds %d must be between 60 and 86400", p.MaximumEventAgeSeconds)
			}
			if p.MaximumRetryAttempts != nil && (*p.MaximumRetryAttempts < 0 || *p.MaximumRetryAttempts > MaxAttempts) {
				return nil, httpjson.Invalid(f+".retry_policy.maximum_retry_attempts", "maximum_retry_attempts %d must be between 0 and %d", *p.MaximumRetryAttempts, MaxAttempts)
			}
		}
		var tr *transformer
		if t.InputTransformer != nil {
			var err error
			tr, err = compileTransformer(t.InputTransformer, f+".input_transformer")
			if err != nil {
				return nil, err
			}
		}
		c.tmpl = append(c.tmpl, tr)
	}
	return c, nil
}

func ruleKey(bus, name string) string { return fmt.Sprintf("rule/%s/%s", bus, name) }
