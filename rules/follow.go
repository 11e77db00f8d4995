package rules

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/rules/pattern"
)

// follow applies the definitions other engines on the log store while
// this one runs (buses, rules, archives and replays), reading the
// definitions topic from offset from on. Its own writes are skipped (by
// offset; replays excepted, see applyReplay), and so is a definition
// already in force (same Updated time, or already present or absent).
func (e *Engine) follow(from int64) {
	defer e.wg.Done()
	off := from
	for e.ctx.Err() == nil {
		recs, err := e.cfg.Log.Read(e.ctx, DefinitionsTopic, 0, off, eventlog.ReadOptions{Wait: 500 * time.Millisecond})
		if err != nil {
			if e.ctx.Err() != nil {
				return
			}
			if errors.Is(err, eventlog.ErrOffsetOutOfRange) {
				// Compaction can only remove superseded records: from the
				// start, everything still in force is seen again.
				if start, _, err2 := e.cfg.Log.Offsets(e.ctx, DefinitionsTopic, 0); err2 == nil && off < start {
					off = start
					continue
				}
			}
			e.log.Warn("follow definitions", "offset", off, "err", err)
			select {
			case <-e.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for i := range recs {
			off = recs[i].Offset + 1
			e.applyDefinition(&recs[i])
		}
		e.followed.Store(off)
	}
}

// applyDefinition brings the engine in line with one stored definition.
func (e *Engine) applyDefinition(r *eventlog.Record) {
	k := string(r.Key)
	e.mu.Lock()
	defer e.mu.Unlock()
	// NB: after taking e.mu: bus, rule and archive definitions are
	// stored under it, and their offsets noted before it is released.
	e.ownMu.Lock()
	_, mine := e.own[r.Offset]
	delete(e.own, r.Offset)
	e.ownMu.Unlock()
	if mine || e.mu.closed {
		return
	}
	switch {
	case strings.HasPrefix(k, "replay/"):
		e.applyReplayLocked(k, r.Value)
	case strings.HasPrefix(k, "bus/"):
		name := strings.TrimPrefix(k, "bus/")
		bs := e.mu.buses[name]
		if r.Value == nil {
			if bs == nil || name == DefaultBus || name == SystemBus {
				return
			}
			bs.mu.RLock()
			inUse := len(bs.rules) > 0 || len(bs.archives) > 0
			bs.mu.RUnlock()
			if inUse {
				e.log.Warn("another engine deleted a bus this one still has rules or archives on; kept", "bus", name)
				return
			}
			bs.stopAndWait()
			bs.leave()
			delete(e.mu.buses, name)
			return
		}
		if bs != nil {
			return
		}
		var b Bus
		if err := json.Unmarshal(r.Value, &b); err != nil {
			e.log.Error("stored bus definition", "key", k, "err", err)
			return
		}
		if err := e.startBusLocked(e.ctx, b, true); err != nil {
			e.log.Error("start a bus another engine created", "bus", b.Name, "err", err)
		}
	case strings.HasPrefix(k, "rule/"):
		bus, name, ok := strings.Cut(strings.TrimPrefix(k, "rule/"), "/")
		bs := e.mu.buses[bus]
		if !ok || bs == nil {
			return
		}
		bs.mu.RLock()
		old := bs.rules[name]
		bs.mu.RUnlock()
		if r.Value == nil {
			if old == nil {
				return
			}
			bs.machine.Remove(name)
			bs.mu.Lock()
			delete(bs.rules, name)
			e.uninstallTargetsLocked(old, nil)
			bs.mu.Unlock()
			return
		}
		var rl Rule
		if err := json.Unmarshal(r.Value, &rl); err != nil {
			e.log.Error("stored rule definition", "key", k, "err", err)
			return
		}
		if old != nil && old.c.Updated.Equal(rl.Updated) {
			return // in force already (this engine's own write)
		}
		c, err := validate(rl)
		if err != nil {
			e.log.Error("stored rule no longer valid; skipped", "rule", k, "err", err)
			return
		}
		e.installRule(bs, c)
	case strings.HasPrefix(k, "archive/"):
		name := strings.TrimPrefix(k, "archive/")
		as := e.mu.archives[name]
		if r.Value == nil {
			if as == nil {
				return
			}
			if bs := e.mu.buses[as.a.Bus]; bs != nil {
				bs.archiveMachine.Remove(name)
				bs.mu.Lock()
				delete(bs.archives, name)
				bs.mu.Unlock()
			}
			as.worker.stop(true)
			delete(e.mu.archives, name)
			return
		}
		if as != nil {
			return
		}
		var a Archive
		if err := json.Unmarshal(r.Value, &a); err != nil {
			e.log.Error("stored archive definition", "key", k, "err", err)
			return
		}
		bs := e.mu.buses[a.Bus]
		if bs == nil {
			return
		}
		var p *pattern.Pattern
		if len(a.EventPattern) > 0 && string(a.EventPattern) != "null" {
			var err error
			if p, err = pattern.Compile(a.EventPattern); err != nil {
				e.log.Error("stored archive pattern no longer valid; skipped", "archive", k, "err", err)
				return
			}
		}
		e.installArchiveLocked(bs, a, p)
	}
}
