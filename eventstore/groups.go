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
		d.Filter.TypeRegex == o.Filter.TypeRegex && slices.Equal(d.Filter.Types, o.Filter.Types) &&
		d.Filter.ExcludeSystem == o.Filter.ExcludeSystem
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
	StreamPrefix  string   `json:"streamPrefix,omitempty"`
	TypePrefix    string   `json:"typePrefix,omitempty"`
	TypeRegex     string   `json:"typeRegex,omitempty"`
	Types         []string `json:"types,omitempty"`
	ExcludeSystem bool     `json:"excludeSystem,omitempty"`
}

func (d GroupDefinition) body() groupBody {
	return groupBody{V: 1, Group: d.Group, Stream: d.Stream, From: d.From, MaxRetries: d.MaxRetries,
		AckTimeoutMs: d.AckTimeout.Milliseconds(), MaxInFlight: d.MaxInFlight,
		Filter: filterBody{d.Filter.StreamPrefix, d.Filter.TypePrefix, d.Filter.TypeRegex, d.Filter.Types, d.Filter.ExcludeSystem}}
}

func (b groupBody) definition() GroupDefinition {
	return GroupDefinition{Group: b.Group, Stream: b.Stream, From: b.From, MaxRetries: b.MaxRetries,
		AckTimeout: time.Duration(b.AckTimeoutMs) * time.Millisecond, MaxInFlight: b.MaxInFlight,
		Filter: Filter{b.Filter.StreamPrefix, b.Filter.TypePrefix, b.Filter.TypeRegex, b.Filter.Types, b.Filter.ExcludeSystem}}
}

// GroupsConfig configures a Groups.
type GroupsConfig struct {
	Logger *slog.Logger
	// Registerer receives each group's metrics (labelled by group); nil
	// registers nowhere.
	Registerer prometheus.Registerer
	// CheckpointInterval of every group; 0 means PersistentConfig's default.
	CheckpointInterval time.Duration
	// LeaseTTL is the hosting lease's length (see GroupsLeaseStream): 0
	// means DefaultGroupsLeaseTTL on a shared store and no lease on one a
	// single process owns (the embedded store); negative means no lease
	// (the caller makes sure one process hosts); positive forces one.
	LeaseTTL time.Duration
	// Owner names this process in the lease; default host name:pid.
	Owner string
}

// Groups hosts persistent subscription groups and keeps their definitions
// in the store (GroupsStream), so that OpenGroups after a restart runs
// every group that was defined and not removed, each from its saved
// checkpoint. On a store that several processes share, one Groups hosts
// the groups at a time and the others stand by (see GroupsLeaseStream).
// Safe for concurrent use.
type Groups struct {
	s     Store
	cfg   GroupsConfig
	lease *lease // nil: no lease, always hosting
	stop  chan struct{}
	wg    sync.WaitGroup
	gauge prometheus.Collector // herald_persistent_groups_hosting, if registered

	mu      sync.Mutex
	m       map[string]*hostedGroup
	hosting bool
	holder  *NotHostError // who hosts, while standing by
	closed  bool
}

type hostedGroup struct {
	def GroupDefinition
	p   *Persistent // nil if it failed to start
	err error
}

// OpenGroups reads the saved definitions and starts every group, or, if
// another process holds the hosting lease, stands by to take over. A
// group that fails to start is logged and reported by Get (defining it
// again retries); an error reading the definitions or the lease fails
// OpenGroups.
func OpenGroups(ctx context.Context, s Store, cfg GroupsConfig) (*Groups, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Owner == "" {
		cfg.Owner = defaultOwner()
	}
	ttl := cfg.LeaseTTL
	if ex, ok := s.(interface{ Exclusive() bool }); ttl == 0 && ok && ex.Exclusive() {
		ttl = -1
	} else if ttl == 0 {
		ttl = DefaultGroupsLeaseTTL
	}
	g := &Groups{s: s, cfg: cfg, m: map[string]*hostedGroup{}, stop: make(chan struct{})}
	if ttl < 0 {
		if err := g.host(ctx); err != nil {
			return nil, fmt.Errorf("subscription groups: %w", err)
		}
		g.registerGauge()
		return g, nil
	}
	g.lease = &lease{s: s, ttl: ttl, owner: cfg.Owner, token: NewID()}
	held, holder, err := g.lease.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscription groups: lease: %w", err)
	}
	if held {
		if err := g.host(ctx); err != nil {
			_ = g.lease.release(ctx)
			return nil, fmt.Errorf("subscription groups: %w", err)
		}
	} else {
		g.holder = holder
		cfg.Logger.Info("subscription groups are hosted elsewhere; standing by", "host", holder.Owner, "until", holder.Until)
	}
	g.registerGauge()
	g.wg.Add(1)
	go g.leaseLoop()
	return g, nil
}

// registerGauge registers herald_persistent_groups_hosting.
func (g *Groups) registerGauge() {
	if g.cfg.Registerer == nil {
		return
	}
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_persistent_groups_hosting",
		Help: "1 while this process hosts the store's persistent subscription groups, 0 while it stands by."},
		func() float64 {
			if hosting, _ := g.Hosting(); hosting {
				return 1
			}
			return 0
		})
	if err := g.cfg.Registerer.Register(gauge); err != nil {
		g.cfg.Logger.Warn("subscription groups: hosting gauge not registered", "err", err)
		return
	}
	g.gauge = gauge
}

// host loads the saved definitions and starts every group.
func (g *Groups) host(ctx context.Context) error {
	defs, err := loadGroups(ctx, g.s)
	if err != nil {
		return err
	}
	m := map[string]*hostedGroup{}
	for _, d := range defs {
		p, err := g.start(ctx, d)
		if err != nil {
			g.cfg.Logger.Error("subscription group did not start", "group", d.Group, "err", err)
		}
		m[d.Group] = &hostedGroup{def: d, p: p, err: err}
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		for _, h := range m {
			if h.p != nil {
				h.p.close(false)
			}
		}
		return ErrClosed
	}
	g.m, g.hosting, g.holder = m, true, nil
	g.mu.Unlock()
	if len(defs) > 0 {
		g.cfg.Logger.Info("subscription groups restored", "groups", len(defs))
	}
	return nil
}

// standBy stops every group without saving checkpoints: another process
// hosts them now, or may soon.
func (g *Groups) standBy(holder *NotHostError, why string) {
	g.mu.Lock()
	m := g.m
	g.m, g.hosting, g.holder = map[string]*hostedGroup{}, false, holder
	g.mu.Unlock()
	g.cfg.Logger.Warn("subscription groups stopped; standing by", "reason", why, "groups", len(m))
	for _, h := range m {
		if h.p != nil {
			h.p.close(false)
		}
	}
}

// leaseLoop renews the lease while hosting and tries to take it while
// standing by, every third of its length.
func (g *Groups) leaseLoop() {
	defer g.wg.Done()
	l := g.lease
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		g.mu.Lock()
		hosting := g.hosting
		g.mu.Unlock()
		if hosting {
			err := l.renew(ctx)
			switch {
			case errors.Is(err, ErrWrongExpectedVersion):
				g.standBy(&NotHostError{}, "another process took the lease")
			case err != nil && time.Now().After(l.expires.Add(-l.ttl/3)):
				// Stop before the lease can lapse and another process
				// start the groups.
				g.standBy(&NotHostError{}, fmt.Sprintf("cannot renew the lease: %v", err))
			case err != nil:
				g.cfg.Logger.Warn("subscription groups: lease renewal failed; retrying", "err", err, "lease until", l.expires)
			}
		} else {
			held, holder, err := l.acquire(ctx)
			switch {
			case err != nil:
				g.cfg.Logger.Warn("subscription groups: cannot read the lease", "err", err)
			case held:
				g.cfg.Logger.Info("subscription groups: took the lease; hosting", "owner", l.owner)
				if err := g.host(ctx); err != nil && !errors.Is(err, ErrClosed) {
					g.cfg.Logger.Error("subscription groups: cannot start after taking the lease; releasing it", "err", err)
					_ = l.release(ctx)
				}
			default:
				g.mu.Lock()
				g.holder = holder
				g.mu.Unlock()
			}
		}
		cancel()
	}
}

// Hosting reports whether this Groups runs the groups; if not, the error
// names the host.
func (g *Groups) Hosting() (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hosting, g.notHostLocked()
}

// notHostLocked is the error for a request to a standing-by Groups, or nil.
func (g *Groups) notHostLocked() error {
	if g.hosting {
		return nil
	}
	if g.holder == nil {
		return &NotHostError{}
	}
	h := *g.holder
	return &h
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
	if err := g.notHostLocked(); err != nil {
		return nil, false, err
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
	case !g.hosting:
		return nil, GroupDefinition{}, g.notHostLocked()
	case h == nil:
		return nil, GroupDefinition{}, fmt.Errorf("group %q: %w", name, ErrGroupNotFound)
	case h.p == nil:
		return nil, h.def, fmt.Errorf("group %q did not start: %w", name, h.err)
	}
	return h.p, h.def, nil
}

// List returns the definitions of the hosted groups, sorted by name
// (none while standing by).
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
	if err := g.notHostLocked(); err != nil {
		return err
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

// Close stops every group, saving their checkpoints, and releases the
// lease, so that a standing-by process takes over at once; the
// definitions stay, for the next OpenGroups.
func (g *Groups) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	close(g.stop)
	g.wg.Wait()
	if g.gauge != nil {
		g.cfg.Registerer.Unregister(g.gauge)
	}
	g.mu.Lock()
	m, hosting := g.m, g.hosting
	g.m, g.hosting = map[string]*hostedGroup{}, false
	g.mu.Unlock()
	var errs []error
	for _, h := range m {
		if h.p != nil {
			errs = append(errs, h.p.Close())
		}
	}
	if g.lease != nil && hosting {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.lease.release(ctx); err != nil && !errors.Is(err, ErrWrongExpectedVersion) {
			errs = append(errs, fmt.Errorf("release the groups lease: %w", err))
		}
	}
	return errors.Join(errs...)
}
