package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// GroupsStream holds the definitions of the persistent subscription groups
// a Groups hosts. Each event is one change:
//
//	GroupDefined  {"v":1,"group","stream","filter":{...},"from","maxRetries","ackTimeoutMs","maxInFlight"}
//	GroupRemoved  {"v":1,"group"}
//
// and the set of groups is the fold of the stream in order: the last
// GroupDefined of a name not followed by a GroupRemoved of it. Frozen: the
// stream name, the two event types and the body version 1.
const GroupsStream = "persistent-groups"

// Event types of GroupsStream.
const (
	GroupDefinedType = "GroupDefined"
	GroupRemovedType = "GroupRemoved"
)

// ErrGroupNotFound: no group of that name is hosted.
var ErrGroupNotFound = errors.New("subscription group not found")

// ErrGroupExists: a group of that name runs with another definition.
var ErrGroupExists = errors.New("subscription group exists with another definition")

// GroupDefinition is what a persistent subscription group is: the part of
// a PersistentConfig that is saved in the store and survives restarts.
// Zero values take PersistentConfig's defaults.
type GroupDefinition struct {
	Group       string
	Stream      string
	Filter      Filter
	From        int64
	MaxRetries  int
	AckTimeout  time.Duration
	MaxInFlight int
}

// Equal reports whether two definitions describe the same group.
func (d GroupDefinition) Equal(o GroupDefinition) bool {
	return d.Group == o.Group && d.Stream == o.Stream && d.From == o.From && d.MaxRetries == o.MaxRetries &&
		d.AckTimeout == o.AckTimeout && d.MaxInFlight == o.MaxInFlight &&
		d.Filter.StreamPrefix == o.Filter.StreamPrefix && d.Filter.TypePrefix == o.Filter.TypePrefix &&
		d.Filter.TypeRegex == o.Filter.TypeRegex && slices.Equal(d.Filter.Types, o.Filter.Types)
}

// Validate checks a definition, naming the field at fault.
func (d GroupDefinition) Validate() error {
	switch {
	case d.Group == "":
		return Invalid("group", "is empty")
	case ValidateStreamName("group", "persistent."+d.Group) != nil:
		return Invalid("group", "%q is not a valid group name", d.Group)
	case d.MaxRetries < 0:
		return Invalid("maxRetries", "is %d, want >= 0", d.MaxRetries)
	case d.AckTimeout < 0:
		return Invalid("ackTimeout", "is %v, want >= 0", d.AckTimeout)
	case d.MaxInFlight < 0 || d.MaxInFlight > MaxGroupInFlight:
		return Invalid("maxInFlight", "is %d, want 0 to %d", d.MaxInFlight, MaxGroupInFlight)
	}
	if d.Stream != "" {
		if err := ValidateStreamName("stream", d.Stream); err != nil {
			return err
		}
	}
	if _, err := CheckReadAll(ReadAllOptions{Filter: d.Filter}); err != nil {
		return err
	}
	return nil
}

// MaxGroupInFlight bounds a group's MaxInFlight.
const MaxGroupInFlight = 10000

type groupBody struct {
	V            int        `json:"v"`
	Group        string     `json:"group"`
	Stream       string     `json:"stream,omitempty"`
	Filter       filterBody `json:"filter,omitzero"`
	From         int64      `json:"from,omitempty"`
	MaxRetries   int        `json:"maxRetries,omitempty"`
	AckTimeoutMs int64      `json:"ackTimeoutMs,omitempty"`
	MaxInFlight  int        `json:"maxInFlight,omitempty"`
}

type filterBody struct {
	StreamPrefix string   `json:"streamPrefix,omitempty"`
	TypePrefix   string   `json:"typePrefix,omitempty"`
	TypeRegex    string   `json:"typeRegex,omitempty"`
	Types        []string `json:"types,omitempty"`
}

func (d GroupDefinition) body() groupBody {
	return groupBody{V: 1, Group: d.Group, Stream: d.Stream, From: d.From, MaxRetries: d.MaxRetries,
		AckTimeoutMs: d.AckTimeout.Milliseconds(), MaxInFlight: d.MaxInFlight,
		Filter: filterBody{d.Filter.StreamPrefix, d.Filter.TypePrefix, d.Filter.TypeRegex, d.Filter.Types}}
}

func (b groupBody) definition() GroupDefinition {
	return GroupDefinition{Group: b.Group, Stream: b.Stream, From: b.From, MaxRetries: b.MaxRetries,
		AckTimeout: time.Duration(b.AckTimeoutMs) * time.Millisecond, MaxInFlight: b.MaxInFlight,
		Filter: Filter{b.Filter.StreamPrefix, b.Filter.TypePrefix, b.Filter.TypeRegex, b.Filter.Types}}
}

// GroupsConfig configures a Groups.
type GroupsConfig struct {
	Logger *slog.Logger
	// Registerer receives each group's metrics (labelled by group); nil
	// registers nowhere.
	Registerer prometheus.Registerer
	// CheckpointInterval of every group; 0 means PersistentConfig's default.
	CheckpointInterval time.Duration
}

// Groups hosts persistent subscription groups and keeps their definitions
// in the store (GroupsStream), so that OpenGroups after a restart runs
// every group that was defined and not removed, each from its saved
// checkpoint. One Groups should host a store's groups: two hosting the
// same group compete for its checkpoint. Safe for concurrent use.
type Groups struct {
	s   Store
	cfg GroupsConfig

	mu     sync.Mutex
	m      map[string]*hostedGroup
	closed bool
}

type hostedGroup struct {
	def GroupDefinition
	p   *Persistent // nil if it failed to start
	err error
}

// OpenGroups reads the saved definitions and starts every group. A group
// that fails to start is logged and reported by Get (defining it again
// retries); an error reading the definitions fails OpenGroups.
func OpenGroups(ctx context.Context, s Store, cfg GroupsConfig) (*Groups, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	defs, err := loadGroups(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("subscription groups: %w", err)
	}
	g := &Groups{s: s, cfg: cfg, m: map[string]*hostedGroup{}}
	for _, d := range defs {
		p, err := g.start(ctx, d)
		if err != nil {
			cfg.Logger.Error("subscription group did not start", "group", d.Group, "err", err)
		}
		g.m[d.Group] = &hostedGroup{def: d, p: p, err: err}
	}
	if len(defs) > 0 {
		cfg.Logger.Info("subscription groups restored", "groups", len(defs))
	}
	return g, nil
}

// loadGroups folds GroupsStream into the definitions by name.
func loadGroups(ctx context.Context, s Store) (map[string]GroupDefinition, error) {
	defs := map[string]GroupDefinition{}
	for from := int64(0); ; {
		evs, err := s.ReadStream(ctx, GroupsStream, ReadStreamOptions{From: from, Max: DefaultMax})
		if errors.Is(err, ErrStreamNotFound) {
			return defs, nil
		}
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			var b groupBody
			if err := json.Unmarshal(ev.Data, &b); err != nil || b.V != 1 || b.Group == "" {
				return nil, fmt.Errorf("%s version %d: not a group definition (type %s, body version %d): %v", GroupsStream, ev.Version, ev.Type, b.V, err)
			}
			switch ev.Type {
			case GroupDefinedType:
				defs[b.Group] = b.definition()
			case GroupRemovedType:
				delete(defs, b.Group)
			default:
				return nil, fmt.Errorf("%s version %d: unknown event type %q", GroupsStream, ev.Version, ev.Type)
			}
			from = ev.Version + 1
		}
		if len(evs) < DefaultMax {
			return defs, nil
		}
	}
}

func (g *Groups) start(ctx context.Context, d GroupDefinition) (*Persistent, error) {
	return NewPersistent(ctx, g.s, PersistentConfig{
		Group: d.Group, Stream: d.Stream, Filter: d.Filter, From: d.From, MaxRetries: d.MaxRetries,
		AckTimeout: d.AckTimeout, MaxInFlight: d.MaxInFlight, CheckpointInterval: g.cfg.CheckpointInterval,
		Logger: g.cfg.Logger, Registerer: g.cfg.Registerer,
	})
}

func (g *Groups) save(ctx context.Context, typ string, b groupBody) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	_, err = g.s.Append(ctx, GroupsStream, Any, EventData{ID: NewID(), Type: typ, Data: data})
	return err
}

// Define starts the group d describes and saves its definition, or, if a
// group of that name runs with the same definition already, returns it
// (created false). A group of that name with another definition is
// ErrGroupExists: remove it first. The definition is saved before Define
// returns, so the group runs again after a restart.
func (g *Groups) Define(ctx context.Context, d GroupDefinition) (p *Persistent, created bool, err error) {
	if err := d.Validate(); err != nil {
		return nil, false, err
	}
	d.Filter.Types = slices.Clone(d.Filter.Types)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, false, ErrClosed
	}
	if h := g.m[d.Group]; h != nil {
		if !h.def.Equal(d) {
			return nil, false, fmt.Errorf("group %q: %w: remove it first", d.Group, ErrGroupExists)
		}
		if h.p != nil {
			return h.p, false, nil
		}
		// Saved but failed to start: try again.
		if h.p, h.err = g.start(ctx, d); h.err != nil {
			return nil, false, h.err
		}
		return h.p, true, nil
	}
	p, err = g.start(ctx, d)
	if err != nil {
		return nil, false, err
	}
	if err := g.save(ctx, GroupDefinedType, d.body()); err != nil {
		p.Close()
		return nil, false, fmt.Errorf("group %q: save definition: %w", d.Group, err)
	}
	g.m[d.Group] = &hostedGroup{def: d, p: p}
	return p, true, nil
}

// Get returns a running group and its definition: ErrGroupNotFound if none
// is defined, or the error that kept a restored group from starting.
func (g *Groups) Get(name string) (*Persistent, GroupDefinition, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	h := g.m[name]
	switch {
	case g.closed:
		return nil, GroupDefinition{}, ErrClosed
	case h == nil:
		return nil, GroupDefinition{}, fmt.Errorf("group %q: %w", name, ErrGroupNotFound)
	case h.p == nil:
		return nil, h.def, fmt.Errorf("group %q did not start: %w", name, h.err)
	}
	return h.p, h.def, nil
}

// List returns the definitions of the hosted groups, sorted by name.
func (g *Groups) List() []GroupDefinition {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]GroupDefinition, 0, len(g.m))
	for _, h := range g.m {
		out = append(out, h.def)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

// Remove stops a group and removes its definition, so it does not run
// again after a restart. Its checkpoint and parked events stay in the
// store: defining the group again resumes from them.
func (g *Groups) Remove(ctx context.Context, name string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	h := g.m[name]
	if h == nil {
		return fmt.Errorf("group %q: %w", name, ErrGroupNotFound)
	}
	if err := g.save(ctx, GroupRemovedType, groupBody{V: 1, Group: name}); err != nil {
		return fmt.Errorf("group %q: save removal: %w", name, err)
	}
	delete(g.m, name)
	if h.p != nil {
		return h.p.Close()
	}
	return nil
}

// Close stops every group, saving their checkpoints; their definitions
// stay, for the next OpenGroups.
func (g *Groups) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	m := g.m
	g.m = map[string]*hostedGroup{}
	g.mu.Unlock()
	var errs []error
	for _, h := range m {
		if h.p != nil {
			errs = append(errs, h.p.Close())
		}
	}
	return errors.Join(errs...)
}
