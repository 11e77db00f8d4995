package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/internal/httpjson"
)

// SystemBus carries Herald's own events, as EventBridge's built-in
// sources: CloudEvents with source "herald/COMPONENT" that rules on this
// bus can react to like any other event. It always exists.
const SystemBus = "herald-system"

// Types of the system events the rules engine itself emits (source
// "herald/rules").
const (
	TypeRuleCreated        = "herald.rule.created"
	TypeRuleDeleted        = "herald.rule.deleted"
	TypeRuleTargetFailed   = "herald.rule.target.failed"
	systemSourceRules      = "herald/rules"
	systemSourcePrefix     = "herald/"
	maxSystemEventDataSize = 64 << 10
)

// Emitter publishes Herald's own events on the system bus, synchronously;
// *Engine is one. Components below the rules engine (the broker, the
// schema registry, group coordination, subscriptions, sagas) do not see
// it: they take an event.Hook, which herald serve feeds to a SystemQueue
// that publishes here without making them wait.
type Emitter interface {
	// Emit publishes an event of source ("herald/COMPONENT"), type and
	// subject with data (marshalled to JSON) on the system bus.
	Emit(ctx context.Context, source, typ, subject string, data any) error
}

var _ Emitter = (*Engine)(nil)

// Emit implements Emitter.
func (e *Engine) Emit(ctx context.Context, source, typ, subject string, data any) error {
	if !strings.HasPrefix(source, systemSourcePrefix) || len(source) == len(systemSourcePrefix) {
		return httpjson.Invalid("source", "system event source %q must be herald/COMPONENT", source)
	}
	ev := event.New(source, typ)
	ev.Subject = subject
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("rules: system event data: %w", err)
		}
		if len(b) > maxSystemEventDataSize {
			return httpjson.Invalid("data", "system event data is %d bytes, more than %d", len(b), maxSystemEventDataSize)
		}
		ev.Data, ev.DataContentType = b, "application/json"
	}
	return e.Publish(ctx, SystemBus, ev)
}

// emitAsync publishes a system event of the rules engine without making
// the caller wait or fail: a lost system event is logged, never a reason
// to fail the operation that caused it.
func (e *Engine) emitAsync(typ, subject string, data any) {
	if e.ctx.Err() != nil {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.Emit(e.ctx, systemSourceRules, typ, subject, data); err != nil && e.ctx.Err() == nil {
			e.log.Warn("emit system event", "type", typ, "subject", subject, "err", err)
		}
	}()
}

// TargetFailure is the data of a herald.rule.target.failed event: an
// event whose delivery to a target ended without success.
type TargetFailure struct {
	Bus          string `json:"bus"`
	Rule         string `json:"rule"`
	Target       string `json:"target"`
	EventID      string `json:"event_id"`
	EventSource  string `json:"event_source"`
	ErrorCode    string `json:"error_code"`
	ErrorMessage string `json:"error_message"`
	Exhausted    string `json:"exhausted"`
	Attempts     int    `json:"attempts"`
	// DeadLetterTopic is where the event went ("" if it was dropped).
	DeadLetterTopic string `json:"dead_letter_topic,omitempty"`
}
