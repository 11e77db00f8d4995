package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/rules/pattern"
)

// ReplayExtension is the CloudEvents extension that marks a replayed
// event with its replay's name. The dispatcher routes such an event only
// to the rules its replay names, and archives never take it again.
const ReplayExtension = "heraldreplay"

// Archive keeps a bus's events (those matching EventPattern, or all) in
// its own topic for RetentionDays (0: forever), for replays.
type Archive struct {
	Name          string          `json:"name"`
	Bus           string          `json:"bus"`
	EventPattern  json.RawMessage `json:"event_pattern,omitempty"`
	RetentionDays int             `json:"retention_days,omitempty"`
	Topic         string          `json:"topic"`
	Created       time.Time       `json:"created,omitzero"`
}

// Replay states.
const (
	ReplayStarting   = "STARTING"
	ReplayRunning    = "RUNNING"
	ReplayCancelling = "CANCELLING"
	ReplayCompleted  = "COMPLETED"
	ReplayCancelled  = "CANCELLED"
	ReplayFailed     = "FAILED"
)

// Replay re-sends an archive's events with event times in [Start, End)
// into the archive's bus, in event-time order, only to the named Rules.
type Replay struct {
	Name    string    `json:"name"`
	Archive string    `json:"archive"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Rules   []string  `json:"rules"`
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	// LastReplayed is the event time of the last event re-sent.
	LastReplayed time.Time `json:"last_replayed,omitzero"`
	// LastOffset is the archive offset of the last event re-sent (-1
	// before the first): with LastReplayed, where a resumed replay goes
	// on, as events are re-sent in (event time, archive offset) order.
	LastOffset int64 `json:"last_offset"`
	Replayed   int64 `json:"replayed"`
	// Resumed counts the restarts the replay continued across.
	Resumed int       `json:"resumed,omitempty"`
	Total   int64     `json:"total"`
	Started time.Time `json:"started,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
}

func (r *Replay) terminal() bool {
	return r.State == ReplayCompleted || r.State == ReplayCancelled || r.State == ReplayFailed
}

type archiveState struct {
	a      Archive
	all    bool
	worker *targetWorker
}

// Where a replay runs.
//
// A replay runs on the engine that owns partition 0 of its bus in the
// bus's consumer group: the partition its events are sent to. So it runs
// on one engine at a time, whichever engine started it; every engine
// follows the replay definitions, so each shows every replay's state; and
// when the partition moves (an engine stopped, crashed or joined), the
// engine giving it up stores the replay's progress before the partition
// can be assigned again (handOffReplays, from OnRevoked), and the next
// owner resumes from it, having read the definitions up to their end
// first. A crash stores nothing: the next owner resumes from the
// progress stored last (at most replayStoreInterval old), and sends the
// events since again (at least once).
type replayState struct {
	mu     sync.Mutex
	r      Replay // this engine's view: its run's state, else the stored one
	stored Replay // the newest stored definition the follower has read
	rules  map[string]bool
	cancel context.CancelFunc
	// running: a run on this engine, which closes exited when it ends;
	// handoff tells it to store its progress and stop without a final
	// state (another engine goes on).
	running bool
	exited  chan struct{}
	handoff atomic.Bool
}

func newReplayState(r Replay) *replayState {
	rs := &replayState{r: r, stored: r, rules: map[string]bool{}, cancel: func() {}}
	for _, n := range r.Rules {
		rs.rules[n] = true
	}
	return rs
}

// runOwnedReplays starts the runs of bs's unfinished replays, if this
// engine owns the bus's partition 0.
func (e *Engine) runOwnedReplays(bs *busState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		return
	}
	for _, rs := range e.mu.replays {
		e.runIfOwnerLocked(rs)
	}
}

// runIfOwnerLocked starts a run of rs on this engine if it is unfinished,
// not running here, and its bus's partition 0 is this engine's.
func (e *Engine) runIfOwnerLocked(rs *replayState) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	as := e.mu.archives[rs.r.Archive]
	if rs.running || rs.r.terminal() || as == nil || e.mu.closed || e.ctx.Err() != nil {
		return
	}
	bs := e.mu.buses[as.a.Bus]
	if bs == nil || !bs.ownsReplays() {
		return
	}
	rctx, cancel := context.WithCancel(e.ctx)
	rs.running, rs.cancel, rs.exited = true, cancel, make(chan struct{})
	rs.handoff.Store(false)
	bs.runs.Store(rs.r.Name, rs)
	e.wg.Add(1)
	go e.runReplay(rctx, bs, as.a, rs)
}

// handOffReplays stops the runs of bs's replays on this engine, each
// storing its progress, and waits for them: another engine is to resume
// them.
func (e *Engine) handOffReplays(bs *busState) {
	bs.runs.Range(func(_, v any) bool {
		rs := v.(*replayState)
		rs.mu.Lock()
		running, exited := rs.running, rs.exited
		if running {
			rs.handoff.Store(true)
			rs.cancel()
		}
		rs.mu.Unlock()
		if running {
			<-exited
		}
		return true
	})
}

// applyReplayLocked takes a stored replay definition (another engine's, or
// this one's own) into the engine's view, cancels this engine's run if
// another engine asked, and starts a run if this engine is the owner.
func (e *Engine) applyReplayLocked(key string, val []byte) {
	if val == nil {
		return
	}
	var rp Replay
	if err := json.Unmarshal(val, &rp); err != nil {
		e.log.Error("stored replay definition", "key", key, "err", err)
		return
	}
	rs := e.mu.replays[rp.Name]
	if rs == nil {
		rs = newReplayState(rp)
		e.mu.replays[rp.Name] = rs
		e.replaySets.Store(rp.Name, rs.rules)
	}
	rs.mu.Lock()
	rs.stored = rp
	if rs.running {
		// The run's state is the truth; only a cancel from another
		// engine changes it.
		if rp.State == ReplayCancelling && !rs.r.terminal() {
			rs.r.State = ReplayCancelling
			rs.cancel()
		}
		rs.mu.Unlock()
		return
	}
	// The follower also reads this engine's own progress writes, some
	// after its run has stored newer ones (or ended): within one start
	// of the replay, the view never goes back (a cancel excepted, which
	// may come from an engine whose view lags).
	if rp.Started.Equal(rs.r.Started) && (rs.r.terminal() || (rp.State != ReplayCancelling && rp.Replayed < rs.r.Replayed)) {
		rs.mu.Unlock()
		return
	}
	rs.r = rp
	rs.rules = newReplayState(rp).rules // a new start may name other rules
	e.replaySets.Store(rp.Name, rs.rules)
	rs.mu.Unlock()
	e.runIfOwnerLocked(rs)
}

// awaitDefinitions waits until the follower has applied every definition
// stored before the call.
func (e *Engine) awaitDefinitions(ctx context.Context) error {
	_, end, err := e.cfg.Log.Offsets(ctx, DefinitionsTopic, 0)
	if err != nil {
		return err
	}
	for e.followed.Load() < end {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func archiveTopic(name string) string { return "__herald_archive." + name }

// archiveMachine is the bus's archives' patterns (archives without a
// pattern take every event).
func archiveRuleName(name string) string { return "archive:" + name }

// CreateArchive creates an archive of a bus.
func (e *Engine) CreateArchive(ctx context.Context, a Archive) (Archive, error) {
	if err := validName("name", a.Name); err != nil {
		return Archive{}, err
	}
	if a.Bus == "" {
		a.Bus = DefaultBus
	}
	if a.RetentionDays < 0 || a.RetentionDays > 36500 {
		return Archive{}, httpjson.Invalid("retention_days", "retention_days %d must be between 0 (forever) and 36500", a.RetentionDays)
	}
	var p *pattern.Pattern
	if len(a.EventPattern) > 0 && string(a.EventPattern) != "null" {
		var err error
		if p, err = pattern.Compile(a.EventPattern); err != nil {
			if pe, ok := err.(*pattern.Error); ok {
				return Archive{}, httpjson.Invalid("event_pattern", "event_pattern %s: %s", pe.Path, pe.Reason)
			}
			return Archive{}, httpjson.Invalid("event_pattern", "%v", err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	bs, ok := e.mu.buses[a.Bus]
	if !ok {
		return Archive{}, httpjson.Errorf(httpjson.CodeNotFound, "bus", "bus %q does not exist", a.Bus)
	}
	if _, ok := e.mu.archives[a.Name]; ok {
		return Archive{}, fmt.Errorf("archive %q: %w", a.Name, ErrExists)
	}
	a.Topic = archiveTopic(a.Name)
	a.Created = time.Now().UTC()
	cfg := map[string]string{"retention.ms": "-1"}
	if a.RetentionDays > 0 {
		cfg["retention.ms"] = strconv.FormatInt(int64(a.RetentionDays)*24*3600*1000, 10)
	}
	if err := e.cfg.Log.CreateTopic(ctx, a.Topic, 1, cfg); err != nil && !errors.Is(err, eventlog.ErrTopicExists) {
		return Archive{}, fmt.Errorf("rules: create archive topic: %w", err)
	}
	if err := e.putDefinition(ctx, "archive/"+a.Name, a); err != nil {
		return Archive{}, err
	}
	e.installArchiveLocked(bs, a, p)
	return a, nil
}

func (e *Engine) installArchiveLocked(bs *busState, a Archive, p *pattern.Pattern) {
	w := e.newTargetWorker(bs.bus.Name, archiveRuleName(a.Name), "archive")
	w.setConfig(Target{ID: "archive", Topic: a.Topic}, nil)
	as := &archiveState{a: a, all: p == nil, worker: w}
	e.mu.archives[a.Name] = as
	bs.mu.Lock()
	bs.archives[a.Name] = as
	bs.mu.Unlock()
	if p != nil {
		bs.archiveMachine.Add(a.Name, p)
	}
}

// DeleteArchive deletes an archive and its topic.
func (e *Engine) DeleteArchive(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	as, ok := e.mu.archives[name]
	if !ok {
		return fmt.Errorf("archive %q: %w", name, ErrNotFound)
	}
	for _, rs := range e.mu.replays {
		rs.mu.Lock()
		busy := rs.r.Archive == name && !rs.r.terminal()
		rs.mu.Unlock()
		if busy {
			return fmt.Errorf("archive %q has a running replay: %w", name, ErrInUse)
		}
	}
	if err := e.putDefinition(ctx, "archive/"+name, nil); err != nil {
		return err
	}
	if bs := e.mu.buses[as.a.Bus]; bs != nil {
		bs.archiveMachine.Remove(name)
		bs.mu.Lock()
		delete(bs.archives, name)
		bs.mu.Unlock()
	}
	as.worker.stop(true)
	delete(e.mu.archives, name)
	if err := e.cfg.Log.DeleteTopic(ctx, as.a.Topic); err != nil && !errors.Is(err, eventlog.ErrUnknownTopic) {
		return fmt.Errorf("rules: delete archive topic: %w", err)
	}
	return nil
}

// Archives lists the archives, sorted by name.
func (e *Engine) Archives() []Archive {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []Archive{}
	for _, a := range e.mu.archives {
		out = append(out, a.a)
	}
	slices.SortFunc(out, func(a, b Archive) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ArchiveByName returns an archive.
func (e *Engine) ArchiveByName(name string) (Archive, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, ok := e.mu.archives[name]
	if !ok {
		return Archive{}, fmt.Errorf("archive %q: %w", name, ErrNotFound)
	}
	return a.a, nil
}

// StartReplay validates and starts a replay.
func (e *Engine) StartReplay(ctx context.Context, r Replay) (Replay, error) {
	if err := validName("name", r.Name); err != nil {
		return Replay{}, err
	}
	if r.Start.IsZero() || r.End.IsZero() || !r.Start.Before(r.End) {
		return Replay{}, httpjson.Invalid("end", "start and end are required and start must be before end")
	}
	if r.End.After(time.Now().Add(time.Minute)) {
		return Replay{}, httpjson.Invalid("end", "end %s is in the future", r.End.Format(time.RFC3339))
	}
	if len(r.Rules) == 0 {
		return Replay{}, httpjson.Invalid("rules", "name at least one rule to replay to")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	as, ok := e.mu.archives[r.Archive]
	if !ok {
		return Replay{}, httpjson.Errorf(httpjson.CodeNotFound, "archive", "archive %q does not exist", r.Archive)
	}
	if old, ok := e.mu.replays[r.Name]; ok {
		old.mu.Lock()
		busy := !old.r.terminal()
		old.mu.Unlock()
		if busy {
			return Replay{}, fmt.Errorf("replay %q is running: %w", r.Name, ErrExists)
		}
	}
	bs := e.mu.buses[as.a.Bus]
	bs.mu.RLock()
	for i, n := range r.Rules {
		if _, ok := bs.rules[n]; !ok {
			bs.mu.RUnlock()
			return Replay{}, httpjson.Errorf(httpjson.CodeNotFound, "rules["+strconv.Itoa(i)+"]", "rule %q is not on bus %q", n, as.a.Bus)
		}
	}
	bs.mu.RUnlock()
	r.State, r.Reason, r.Replayed, r.Total, r.LastReplayed, r.LastOffset, r.Resumed = ReplayStarting, "", 0, 0, time.Time{}, -1, 0
	r.Started, r.Ended = time.Now().UTC(), time.Time{}
	if err := e.putDefinition(ctx, "replay/"+r.Name, r); err != nil {
		return Replay{}, err
	}
	rs := newReplayState(r)
	e.mu.replays[r.Name] = rs
	e.replaySets.Store(r.Name, rs.rules)
	// Here if this engine owns the bus's partition 0; else its owner
	// starts it on reading the definition.
	e.runIfOwnerLocked(rs)
	return r, nil
}

// replay is the state of the replay name.
func (e *Engine) replay(name string) (*replayState, error) {
	e.mu.Lock()
	rs, ok := e.mu.replays[name]
	e.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("replay %q: %w", name, ErrNotFound)
	}
	return rs, nil
}

// CancelReplay asks a running replay to stop.
func (e *Engine) CancelReplay(ctx context.Context, name string) (Replay, error) {
	rs, err := e.replay(name)
	if err != nil {
		return Replay{}, err
	}
	rs.mu.Lock()
	if rs.r.terminal() {
		defer rs.mu.Unlock()
		return rs.r, httpjson.Errorf(httpjson.CodeFailedPrecondition, "name", "replay %q is %s", name, rs.r.State)
	}
	rs.r.State = ReplayCancelling
	r := rs.r
	if rs.running {
		rs.cancel()
		rs.mu.Unlock()
		return r, nil
	}
	rs.mu.Unlock()
	// It runs on another engine (or none yet): the engine that runs it
	// cancels it on reading this.
	if err := e.putDefinition(ctx, "replay/"+name, r); err != nil {
		return Replay{}, err
	}
	return r, nil
}

// ReplayByName returns a replay's state and progress.
func (e *Engine) ReplayByName(name string) (Replay, error) {
	rs, err := e.replay(name)
	if err != nil {
		return Replay{}, err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.r, nil
}

// Replays lists replays, sorted by name.
func (e *Engine) Replays() []Replay {
	e.mu.Lock()
	var rss []*replayState
	for _, rs := range e.mu.replays {
		rss = append(rss, rs)
	}
	e.mu.Unlock()
	out := []Replay{}
	for _, rs := range rss {
		rs.mu.Lock()
		out = append(out, rs.r)
		rs.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Replay) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// replayRules returns the rule set of a replay (nil if unknown).
func (e *Engine) replayRules(name string) map[string]bool {
	v, ok := e.replaySets.Load(name)
	if !ok {
		return nil
	}
	return v.(map[string]bool)
}

type archived struct {
	t   time.Time
	off int64
}

func eventTime(r *eventlog.Record) time.Time {
	for _, h := range r.Headers {
		if h.Key == event.HeaderTime {
			if t, err := time.Parse(time.RFC3339Nano, string(h.Value)); err == nil {
				return t
			}
		}
	}
	return r.Timestamp
}

func (e *Engine) runReplay(ctx context.Context, bs *busState, a Archive, rs *replayState) {
	defer e.wg.Done()
	defer func() {
		rs.mu.Lock()
		bs.runs.Delete(rs.r.Name)
		rs.running = false
		close(rs.exited)
		rs.mu.Unlock()
	}()
	set := func(f func(r *Replay)) Replay {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		f(&rs.r)
		return rs.r
	}
	store := func(r Replay) {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.putDefinition(sctx, "replay/"+r.Name, r); err != nil {
			e.log.Error("store replay state", "replay", r.Name, "err", err)
		}
	}
	finish := func(state, reason string) {
		store(set(func(r *Replay) { r.State, r.Reason, r.Ended = state, reason, time.Now().UTC() }))
	}
	// stopped: the engine is stopping (Close, or a crash in tests). The
	// replay stays running in its stored state, with its progress, and
	// the next start resumes it.
	stopped := func() bool {
		if e.ctx.Err() == nil && !rs.handoff.Load() {
			return false
		}
		store(set(func(r *Replay) {}))
		return true
	}
	// The progress a previous owner stored may still be on its way to
	// this engine's follower: read the definitions to their end, then go
	// on from the newest stored state. Stopped before that, store
	// nothing (this engine's view may be older than what is stored).
	if err := e.awaitDefinitions(ctx); err != nil {
		if ctx.Err() != nil && e.ctx.Err() == nil && !rs.handoff.Load() {
			finish(ReplayCancelled, "")
		} else if ctx.Err() == nil {
			finish(ReplayFailed, fmt.Sprintf("read definitions: %v", err))
		}
		return
	}
	r0 := set(func(r *Replay) {
		cancelling := r.State == ReplayCancelling
		*r = rs.stored
		if cancelling {
			r.State = ReplayCancelling
		}
		if r.State == ReplayRunning {
			r.Resumed++
			e.log.Info("resuming replay", "replay", r.Name, "replayed", r.Replayed, "last_replayed", r.LastReplayed)
		}
	})
	switch {
	case r0.terminal():
		return // finished meanwhile, on the engine that ran it
	case r0.State == ReplayCancelling:
		finish(ReplayCancelled, "")
		return
	}
	start, end, err := e.cfg.Log.Offsets(ctx, a.Topic, 0)
	if err != nil {
		finish(ReplayFailed, err.Error())
		return
	}
	// Index the archive's events in the window by event time: times and
	// offsets only, so a large archive costs 16 bytes an event.
	var idx []archived
	for off := start; off < end && ctx.Err() == nil; {
		recs, err := e.cfg.Log.Read(ctx, a.Topic, 0, off, eventlog.ReadOptions{MaxBytes: 4 << 20})
		if err != nil {
			if ctx.Err() == nil {
				finish(ReplayFailed, err.Error())
				return
			}
			break
		}
		if len(recs) == 0 {
			break
		}
		for i := range recs {
			off = recs[i].Offset + 1
			if t := eventTime(&recs[i]); !t.Before(r0.Start) && t.Before(r0.End) {
				idx = append(idx, archived{t, recs[i].Offset})
			}
		}
	}
	// Offsets ascend within a time, so (time, offset) orders the events:
	// a resumed replay skips what its stored progress says was sent.
	slices.SortStableFunc(idx, func(x, y archived) int { return x.t.Compare(y.t) })
	skip := 0
	if r0.LastOffset >= 0 && !r0.LastReplayed.IsZero() {
		skip, _ = slices.BinarySearchFunc(idx, r0, func(x archived, r Replay) int {
			if c := x.t.Compare(r.LastReplayed); c != 0 {
				return c
			}
			if x.off <= r.LastOffset {
				return -1
			}
			return 1
		})
	}
	if ctx.Err() == nil {
		// Stored at once, so that every engine shows it running.
		store(set(func(r *Replay) { r.State, r.Total = ReplayRunning, r.Replayed+int64(len(idx)-skip) }))
	}
	lastStore := time.Now()
	for n, x := range idx[skip:] {
		if ctx.Err() != nil {
			break
		}
		if testReplayStep != nil {
			testReplayStep(ctx, n)
		}
		recs, err := e.cfg.Log.Read(ctx, a.Topic, 0, x.off, eventlog.ReadOptions{MaxBytes: 1})
		if err != nil || len(recs) == 0 || recs[0].Offset != x.off {
			if ctx.Err() != nil {
				break
			}
			if err == nil || errors.Is(err, eventlog.ErrOffsetOutOfRange) {
				continue // gone with the archive's retention
			}
			finish(ReplayFailed, fmt.Sprintf("read archive: %v", err))
			return
		}
		ev, err := decodeRecord(&recs[0])
		if err != nil {
			continue
		}
		if ev.Extensions == nil {
			ev.Extensions = map[string]string{}
		}
		ev.Extensions[ReplayExtension] = rs.r.Name
		// All into partition 0, so that the bus's dispatcher sees them
		// in event-time order (a key's partition would interleave them
		// with other partitions' dispatch).
		if _, err := e.cfg.Log.Append(ctx, bs.bus.Topic, 0, []eventlog.Record{toRecord(ev)}); err != nil {
			if ctx.Err() != nil {
				break
			}
			finish(ReplayFailed, fmt.Sprintf("publish to bus: %v", err))
			return
		}
		r := set(func(r *Replay) { r.Replayed++; r.LastReplayed, r.LastOffset = x.t, x.off })
		// Progress is stored now and then: after a crash the events
		// sent since are sent again (at least once), none is skipped.
		if time.Since(lastStore) >= replayStoreInterval {
			store(r)
			lastStore = time.Now()
		}
	}
	if ctx.Err() != nil {
		if stopped() {
			return
		}
		finish(ReplayCancelled, "")
		return
	}
	finish(ReplayCompleted, "")
}

// replayStoreInterval is how often a running replay stores its progress.
const replayStoreInterval = 200 * time.Millisecond

// testReplayStep, when set (by tests, before engines start), is called
// before the n-th event a replay run sends.
var testReplayStep func(ctx context.Context, n int)
