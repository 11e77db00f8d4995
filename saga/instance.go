package saga

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/event"
)

// Status is where a saga instance is.
type Status string

// Saga statuses. Completed and Compensated are final; Parked waits for an
// operator (Engine.Retry or Engine.Abort do not apply to final sagas).
const (
	StatusRunning      Status = "running"
	StatusCompensating Status = "compensating"
	StatusCompleted    Status = "completed"
	StatusCompensated  Status = "compensated"
	StatusParked       Status = "parked"
)

// Final reports whether s is completed or compensated.
func (s Status) Final() bool { return s == StatusCompleted || s == StatusCompensated }

// StepStatus is where one step of an instance is.
type StepStatus string

// Step statuses.
const (
	StepPending      StepStatus = "pending"      // not started
	StepRunning      StepStatus = "running"      // command sent, waiting for a reply
	StepSucceeded    StepStatus = "succeeded"    // success reply
	StepFailed       StepStatus = "failed"       // failure reply: nothing to undo
	StepTimedOut     StepStatus = "timedout"     // no reply after every attempt
	StepCompensating StepStatus = "compensating" // compensation sent (or due)
	StepCompensated  StepStatus = "compensated"  // compensation succeeded (or nothing to undo)
	StepParked       StepStatus = "parked"       // compensation failed every attempt
	StepSkipped      StepStatus = "skipped"      // never started: the saga compensated first
)

// Instance is the durable state of one saga: what the state topic holds
// under the saga's id and what operators inspect.
type Instance struct {
	ID         string          `json:"id"`
	Definition string          `json:"definition"`
	Version    int             `json:"version"`
	Status     Status          `json:"status"`
	Reason     string          `json:"reason,omitempty"`
	Input      json.RawMessage `json:"input,omitempty"`
	Steps      []StepState     `json:"steps"`
	Created    time.Time       `json:"created"`
	Updated    time.Time       `json:"updated"`
	// Seq counts the instance's state changes.
	Seq int64 `json:"seq"`
	// Done counts steps that succeeded, in order: StepState.Done.
	Done int `json:"done"`
	// History is every state change, oldest first; the oldest beyond
	// the engine's MaxHistory are dropped and counted.
	History []Entry `json:"history"`
	// FinalSent is set once OnCompleted or OnCompensated was sent, so a
	// saga reopened by a late reply does not send it twice.
	FinalSent      bool `json:"finalSent,omitempty"`
	HistoryDropped int  `json:"historyDropped,omitempty"`
}

// StepState is one step of an instance.
type StepState struct {
	Name         string     `json:"name"`
	Status       StepStatus `json:"status"`
	Attempts     int        `json:"attempts,omitempty"`
	CompAttempts int        `json:"compAttempts,omitempty"`
	// Deadline is when the engine acts if no reply came: resend, give up
	// or park. Zero when the step waits for nothing.
	Deadline time.Time `json:"deadline,omitzero"`
	Started  time.Time `json:"started,omitzero"`
	Ended    time.Time `json:"ended,omitzero"`
	// Done is the step's place in completion order (1 = first to
	// succeed); compensation runs from the highest down.
	Done  int    `json:"done,omitempty"`
	Error string `json:"error,omitempty"`
}

// Entry is one line of an instance's history.
type Entry struct {
	At     time.Time `json:"at"`
	Step   string    `json:"step,omitempty"`
	Event  string    `json:"event"`
	Detail string    `json:"detail,omitempty"`
}

// fits reports whether in can run under def: the same steps in the same
// order. A state that does not fit (written by hand into the state topic,
// or for another definition) is never acted on.
func (in *Instance) fits(def *Definition) bool {
	if len(in.Steps) != len(def.Steps) {
		return false
	}
	for i := range in.Steps {
		if in.Steps[i].Name != def.Steps[i].Name {
			return false
		}
	}
	return true
}

// CurrentStep names the step the saga waits on ("" when none).
func (in *Instance) CurrentStep() string {
	for _, s := range in.Steps {
		switch s.Status {
		case StepRunning, StepCompensating, StepParked:
			return s.Name
		}
	}
	return ""
}

func (in *Instance) clone() *Instance {
	c := *in
	c.Steps = append([]StepState(nil), in.Steps...)
	c.History = append(make([]Entry, 0, len(in.History)+4), in.History...)
	return &c
}

// Event types the engine reads from its inbox; anything else is a reply.
const (
	TypeStart = "herald.saga.start"
	TypeRetry = "herald.saga.retry"
	TypeAbort = "herald.saga.abort"
)

// Extension attributes of the commands the engine sends. A participant
// replies to the topic in ExtReplyTo with an event whose partition key is
// the command's (the saga id) and whose causation id is the command's id;
// Reply builds one.
const (
	ExtSagaID   = "sagaid"
	ExtStep     = "sagastep"
	ExtPhase    = "sagaphase" // "do" or "undo"
	ExtAttempt  = "sagaattempt"
	ExtReplyTo  = "replyto"
	ExtDef      = "sagadef"
	ExtDefVer   = "sagaversion"
	phaseDo     = "do"
	phaseUndo   = "undo"
	maxIDLength = 200
)

// CommandID is the id of the command of a step: the same for every attempt,
// so participants deduplicate by it.
func CommandID(sagaID, step string, compensation bool) string {
	if compensation {
		return sagaID + "/" + step + "/" + phaseUndo
	}
	return sagaID + "/" + step + "/" + phaseDo
}

// parseCommandID splits a CommandID.
func parseCommandID(id string) (sagaID, step string, undo, ok bool) {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return "", "", false, false
	}
	phase := id[i+1:]
	if phase != phaseDo && phase != phaseUndo {
		return "", "", false, false
	}
	j := strings.LastIndexByte(id[:i], '/')
	if j <= 0 {
		return "", "", false, false
	}
	return id[:j], id[j+1 : i], phase == phaseUndo, true
}

// Reply returns the reply of a participant to cmd: an event of type typ
// with the command's partition key (the saga id), correlation and
// causation, and data. Publish it to ReplyTopic(cmd).
func Reply(cmd *event.Event, source, typ string, data []byte) *event.Event {
	r := event.NewFrom(cmd, source, typ)
	r.PartitionKey = cmd.PartitionKey
	r.Data = data
	if data != nil {
		r.DataContentType = "application/json"
	}
	return r
}

// ReplyTopic is where a participant sends its reply to cmd.
func ReplyTopic(cmd *event.Event) string { return cmd.Extensions[ExtReplyTo] }

// out is one command to send.
type out struct {
	topic string
	ev    *event.Event
}

// effect is what a state change tells the metrics, applied once it commits.
type effect struct {
	kind string // started, completed, compensated, failed, parked, step, ignored
	step string
	dur  time.Duration
}

// machine applies one input to one instance. It does no I/O: tests drive it
// with scripted inputs.
type machine struct {
	def        *Definition
	in         *Instance
	now        time.Time
	causeID    string
	replyTo    string
	maxHistory int
	outs       []out
	effects    []effect
	changed    bool
}

func (m *machine) log(step, ev, detail string) {
	m.changed = true
	m.in.History = append(m.in.History, Entry{At: m.now, Step: step, Event: ev, Detail: detail})
	if m.maxHistory > 0 && len(m.in.History) > m.maxHistory {
		n := len(m.in.History) - m.maxHistory
		m.in.HistoryDropped += n
		m.in.History = append(m.in.History[:0:0], m.in.History[n:]...)
	}
}

func (m *machine) effect(kind, step string, d time.Duration) {
	m.effects = append(m.effects, effect{kind: kind, step: step, dur: d})
}

// newInstance starts a saga and sends its first commands.
func (m *machine) start(id string, input json.RawMessage) {
	in := &Instance{ID: id, Definition: m.def.Name, Version: m.def.Version, Status: StatusRunning,
		Input: input, Created: m.now, Updated: m.now}
	for _, s := range m.def.Steps {
		in.Steps = append(in.Steps, StepState{Name: s.Name, Status: StepPending})
	}
	m.in = in
	m.log("", "started", "")
	m.effect("started", "", 0)
	m.dispatch()
}

// dispatch starts every pending step whose predecessors all succeeded.
func (m *machine) dispatch() {
	if m.in.Status != StatusRunning {
		return
	}
	deps := m.def.deps()
	for i := range m.in.Steps {
		if m.in.Steps[i].Status != StepPending {
			continue
		}
		ready := true
		for _, d := range deps[i] {
			if m.in.Steps[d].Status != StepSucceeded {
				ready = false
			}
		}
		if ready {
			m.send(i)
		}
	}
}

func (m *machine) command(i int, c Command, undo bool, attempt int) {
	s := m.def.Steps[i]
	phase := phaseDo
	if undo {
		phase = phaseUndo
	}
	e := &event.Event{
		ID: CommandID(m.in.ID, s.Name, undo), Source: "/herald/saga/" + m.def.Name, Type: c.Type,
		Kind: event.KindCommand, PartitionKey: m.in.ID, CorrelationID: m.in.ID, CausationID: m.causeID,
		Time: m.now, Data: m.in.Input,
		Extensions: map[string]string{ExtSagaID: m.in.ID, ExtStep: s.Name, ExtPhase: phase,
			ExtAttempt: strconv.Itoa(attempt), ExtReplyTo: m.replyTo},
	}
	if len(m.in.Input) > 0 {
		e.DataContentType = "application/json"
	}
	m.outs = append(m.outs, out{topic: c.Topic, ev: e})
}

func (m *machine) send(i int) {
	s, st := &m.def.Steps[i], &m.in.Steps[i]
	st.Status = StepRunning
	st.Attempts++
	if st.Started.IsZero() {
		st.Started = m.now
	}
	st.Deadline = m.now.Add(timeoutOr(s.Timeout))
	m.command(i, s.Command, false, st.Attempts)
	m.log(s.Name, "command sent", fmt.Sprintf("%s to %s, attempt %d", s.Command.Type, s.Command.Topic, st.Attempts))
}

func (m *machine) sendComp(i int) {
	s, st := &m.def.Steps[i], &m.in.Steps[i]
	st.Status = StepCompensating
	st.CompAttempts++
	st.Deadline = m.now.Add(timeoutOr(s.Compensation.Timeout))
	m.command(i, s.Compensation.Command, true, st.CompAttempts)
	m.log(s.Name, "compensation sent", fmt.Sprintf("%s to %s, attempt %d", s.Compensation.Type, s.Compensation.Topic, st.CompAttempts))
}

func timeoutOr(d Duration) time.Duration {
	if d <= 0 {
		return defaultTimeout
	}
	return time.Duration(d)
}

func (m *machine) stepIndex(name string) int {
	for i, s := range m.def.Steps {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// reply applies a participant's reply.
func (m *machine) reply(e *event.Event) {
	_, step, undo, ok := parseCommandID(e.CausationID)
	if !ok {
		step, undo = e.Extensions[ExtStep], e.Extensions[ExtPhase] == phaseUndo
	}
	i := m.stepIndex(step)
	if i < 0 {
		m.ignore("", "reply to an unknown step", fmt.Sprintf("%s (causation %q)", e.Type, e.CausationID))
		return
	}
	s, st := &m.def.Steps[i], &m.in.Steps[i]
	if undo {
		m.compReply(i, e)
		return
	}
	success, failure := contains(s.Success, e.Type), contains(s.Failure, e.Type)
	if !success && !failure {
		m.ignore(s.Name, "unexpected reply type", e.Type)
		return
	}
	switch {
	case st.Status == StepRunning && success:
		m.succeed(i, e.Type, "")
	case st.Status == StepRunning && failure:
		st.Status, st.Deadline, st.Ended, st.Error = StepFailed, time.Time{}, m.now, e.Type
		m.log(s.Name, "failed", e.Type)
		if m.in.Status == StatusRunning {
			m.failForward("step " + s.Name + " failed: " + e.Type)
		} else {
			m.advanceComp()
		}
	case st.Status == StepTimedOut && success:
		// NB: the participant did act after all; its effect must be undone
		// like any completed step's.
		m.succeed(i, e.Type, "late reply after the timeout")
	case st.Status == StepTimedOut:
		m.ignore(s.Name, "late reply ignored", e.Type+": the step had timed out and did nothing")
	default:
		m.ignore(s.Name, "duplicate reply ignored", fmt.Sprintf("%s: step is %s", e.Type, st.Status))
	}
}

func (m *machine) ignore(step, ev, detail string) {
	m.log(step, ev, detail)
	m.effect("ignored", ev, 0)
}

func (m *machine) succeed(i int, typ, note string) {
	s, st := &m.def.Steps[i], &m.in.Steps[i]
	m.in.Done++
	st.Status, st.Deadline, st.Ended, st.Done, st.Error = StepSucceeded, time.Time{}, m.now, m.in.Done, ""
	detail := typ
	if note != "" {
		detail += " (" + note + ")"
	}
	m.log(s.Name, "succeeded", detail)
	m.effect("step", s.Name, m.now.Sub(st.Started))
	if m.in.Status != StatusRunning {
		if m.in.Status.Final() || m.in.Status == StatusParked {
			m.in.Status = StatusCompensating
		}
		m.advanceComp()
		return
	}
	for _, x := range m.in.Steps {
		if x.Status != StepSucceeded {
			m.dispatch()
			return
		}
	}
	m.in.Status = StatusCompleted
	m.log("", "completed", "")
	m.effect("completed", "", 0)
	if c := m.def.OnCompleted; c != nil {
		m.final(*c, "completed")
	}
}

func (m *machine) final(c Command, what string) {
	if m.in.FinalSent {
		return
	}
	m.in.FinalSent = true
	e := &event.Event{
		ID: m.in.ID + "/" + what, Source: "/herald/saga/" + m.def.Name, Type: c.Type, Kind: event.KindCommand,
		PartitionKey: m.in.ID, CorrelationID: m.in.ID, CausationID: m.causeID, Time: m.now, Data: m.in.Input,
		Extensions: map[string]string{ExtSagaID: m.in.ID},
	}
	if len(m.in.Input) > 0 {
		e.DataContentType = "application/json"
	}
	m.outs = append(m.outs, out{topic: c.Topic, ev: e})
	m.log("", "command sent", fmt.Sprintf("%s to %s", c.Type, c.Topic))
}

// failForward stops the forward path and starts compensating.
func (m *machine) failForward(reason string) {
	m.in.Status, m.in.Reason = StatusCompensating, reason
	m.log("", "compensating", reason)
	m.effect("failed", "", 0)
	for i := range m.in.Steps {
		if m.in.Steps[i].Status == StepPending {
			m.in.Steps[i].Status = StepSkipped
		}
	}
	m.advanceComp()
}

// advanceComp moves compensation on: it waits for steps still running,
// then compensates succeeded steps one at a time, latest first.
func (m *machine) advanceComp() {
	for {
		best := -1
		for i, st := range m.in.Steps {
			switch st.Status {
			case StepRunning, StepCompensating:
				return // wait for its reply or deadline
			case StepParked:
				if m.in.Status != StatusParked {
					m.in.Status = StatusParked
					m.log(st.Name, "parked", "waiting for an operator: retry the step or fix the participant")
					m.effect("parked", st.Name, 0)
				}
				return
			case StepSucceeded:
				if best < 0 || st.Done > m.in.Steps[best].Done {
					best = i
				}
			}
		}
		if best < 0 {
			break
		}
		if m.def.Steps[best].Compensation == nil {
			st := &m.in.Steps[best]
			st.Status, st.Ended = StepCompensated, m.now
			m.log(st.Name, "compensated", "nothing to undo")
			continue
		}
		m.sendComp(best)
		return
	}
	if m.in.Status == StatusCompensated {
		return
	}
	m.in.Status = StatusCompensated
	m.log("", "compensated", m.in.Reason)
	m.effect("compensated", "", 0)
	if c := m.def.OnCompensated; c != nil {
		m.final(*c, "compensated")
	}
}

func (m *machine) compReply(i int, e *event.Event) {
	s, st := &m.def.Steps[i], &m.in.Steps[i]
	if s.Compensation == nil {
		m.ignore(s.Name, "unexpected reply type", e.Type+": the step has no compensation")
		return
	}
	c := s.Compensation
	success, failure := contains(c.Success, e.Type), contains(c.Failure, e.Type)
	if !success && !failure {
		m.ignore(s.Name, "unexpected reply type", e.Type)
		return
	}
	if st.Status != StepCompensating {
		m.ignore(s.Name, "duplicate reply ignored", fmt.Sprintf("%s: step is %s", e.Type, st.Status))
		return
	}
	if success {
		st.Status, st.Deadline, st.Ended, st.Error = StepCompensated, time.Time{}, m.now, ""
		m.log(s.Name, "compensated", e.Type)
		m.advanceComp()
		return
	}
	st.Error = e.Type
	p := c.Retry.withDefaults()
	if st.CompAttempts >= p.MaxAttempts {
		st.Status, st.Deadline = StepParked, time.Time{}
		m.log(s.Name, "compensation failed", fmt.Sprintf("%s, attempt %d of %d", e.Type, st.CompAttempts, p.MaxAttempts))
		m.advanceComp()
		return
	}
	wait := p.backoff(st.CompAttempts)
	st.Deadline = m.now.Add(wait)
	m.log(s.Name, "compensation failed", fmt.Sprintf("%s, attempt %d of %d; resending in %s", e.Type, st.CompAttempts, p.MaxAttempts, wait))
}

// nextDeadline is the earliest step deadline, or zero.
func (in *Instance) nextDeadline() time.Time {
	var d time.Time
	for _, st := range in.Steps {
		if !st.Deadline.IsZero() && (d.IsZero() || st.Deadline.Before(d)) {
			d = st.Deadline
		}
	}
	return d
}

// timers acts on every step whose deadline has passed.
func (m *machine) timers() {
	for i := range m.in.Steps {
		st := &m.in.Steps[i]
		if st.Deadline.IsZero() || st.Deadline.After(m.now) {
			continue
		}
		s := &m.def.Steps[i]
		switch st.Status {
		case StepRunning:
			p := s.Retry.withDefaults()
			if m.in.Status == StatusRunning && st.Attempts < p.MaxAttempts {
				m.log(s.Name, "timed out", fmt.Sprintf("no reply within %s; resending", timeoutOr(s.Timeout)))
				m.send(i)
				continue
			}
			st.Status, st.Deadline, st.Ended = StepTimedOut, time.Time{}, m.now
			st.Error = fmt.Sprintf("no reply after %d attempts", st.Attempts)
			m.log(s.Name, "timed out", st.Error)
			if m.in.Status == StatusRunning {
				m.failForward("step " + s.Name + " timed out")
			} else {
				m.advanceComp()
			}
		case StepCompensating:
			p := s.Compensation.Retry.withDefaults()
			if st.CompAttempts < p.MaxAttempts {
				m.sendComp(i)
				continue
			}
			st.Status, st.Deadline = StepParked, time.Time{}
			if st.Error == "" {
				st.Error = fmt.Sprintf("no compensation reply after %d attempts", st.CompAttempts)
			}
			m.log(s.Name, "compensation timed out", st.Error)
			m.advanceComp()
		default:
			st.Deadline = time.Time{}
		}
	}
}

// retry resumes a parked step's compensation (an operator's action).
func (m *machine) retry(step string) error {
	i := m.stepIndex(step)
	if i < 0 {
		return errorf(ErrNotFound, "saga %s has no step %q", m.in.ID, step)
	}
	if m.in.Steps[i].Status != StepParked {
		return errorf(ErrConflict, "step %q is %s, not parked", step, m.in.Steps[i].Status)
	}
	m.log(step, "retried by an operator", "")
	m.in.Steps[i].CompAttempts = 0
	m.in.Status = StatusCompensating
	m.sendComp(i)
	return nil
}

// abort compensates a running saga (an operator's action).
func (m *machine) abort(reason string) error {
	if m.in.Status != StatusRunning {
		return errorf(ErrConflict, "saga %s is %s, not running", m.in.ID, m.in.Status)
	}
	if reason == "" {
		reason = "no reason given"
	}
	m.failForward("aborted by an operator: " + reason)
	return nil
}
