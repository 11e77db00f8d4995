// Package lineage indexes events by their correlation and causation ids as
// they are written, and answers where an event came from and what it caused
// (GET /v1/lineage/{eventId}) and the whole flow of a correlation id in order,
// with the time between steps (GET /v1/flows/{correlationId}).
//
// The index is derived from the topics, never a second truth: an Indexer
// follows every topic's partitions through an eventlog.Log, decodes each
// record as a CloudEvent (either Kafka binding mode; other records are
// skipped) and keeps, in memory, for each event its id, source, type,
// subject, place (topic, partition, offset), time, correlation and causation
// ids. With Config.Dir the index is also kept in a file (persist.go) that a
// restart reads, going on with the topics from where the file ends; without
// it (or with a lost or damaged file) the indexer reads the topics from
// their start. Either way the index is whole again once the indexer has
// caught up (Indexer.CaughtUp). Memory is
// about 330 bytes an event with 20-character ids (BenchmarkFlow); events
// leave the index only with the server (a deleted topic's events stay until
// a restart). Answers are read from memory: a flow of 100 events takes
// 16 µs with 10 million events indexed.
package lineage

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Entry is one indexed event.
type Entry struct {
	ID            string    `json:"id"`
	Source        string    `json:"source"`
	Type          string    `json:"type"`
	Subject       string    `json:"subject,omitempty"`
	Topic         string    `json:"topic"`
	Partition     int32     `json:"partition"`
	Offset        int64     `json:"offset"`
	Time          time.Time `json:"time"`
	CorrelationID string    `json:"correlationId,omitempty"`
	CausationID   string    `json:"causationId,omitempty"`
}

// Index holds the entries by id, by causation id and by correlation id.
// It is safe for concurrent use.
type Index struct {
	mu       sync.RWMutex
	byID     map[string]*Entry
	children map[string][]*Entry // by causation id
	flows    map[string][]*Entry // by correlation id
	names    map[string]string   // interned sources, types and topics
}

// maxNames bounds the interned strings: sources, types and topics repeat
// across events; past the bound (a source per event, say) they are kept as
// they come.
const maxNames = 100000

func (x *Index) intern(s string) string {
	if v, ok := x.names[s]; ok {
		return v
	}
	if len(x.names) < maxNames {
		x.names[s] = s
	}
	return s
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byID: map[string]*Entry{}, children: map[string][]*Entry{}, flows: map[string][]*Entry{}, names: map[string]string{}}
}

// Add indexes e. An id seen before is ignored (a redelivered or redriven
// copy): the first write of an event is its place in the flow.
func (x *Index) Add(e Entry) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.byID[e.ID]; ok || e.ID == "" {
		return false
	}
	e.Source, e.Type, e.Topic = x.intern(e.Source), x.intern(e.Type), x.intern(e.Topic)
	p := &e
	x.byID[e.ID] = p
	if e.CausationID != "" {
		x.children[e.CausationID] = append(x.children[e.CausationID], p)
	}
	if e.CorrelationID != "" {
		x.flows[e.CorrelationID] = append(x.flows[e.CorrelationID], p)
	}
	return true
}

// each calls f for every entry, under the read lock (f must not call
// back into the index).
func (x *Index) each(f func(*Entry)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, e := range x.byID {
		f(e)
	}
}

// Len is the number of events indexed.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byID)
}

// Node is an event in a lineage: the entry (or, for an id that events name
// as their cause but that was not indexed, only the id and Missing), and how
// far it is from the event asked about.
type Node struct {
	Entry
	Missing bool `json:"missing,omitempty"`
	// Depth is the number of causation steps from the event asked about:
	// negative for ancestors, positive for descendants.
	Depth int `json:"depth"`
}

// Edge is "From caused To".
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Lineage is an event with its ancestors (the causation chain up to the
// first event, nearest last) and descendants (breadth first).
type Lineage struct {
	Event       Node   `json:"event"`
	Ancestors   []Node `json:"ancestors"`
	Descendants []Node `json:"descendants"`
	Edges       []Edge `json:"edges"`
	// Truncated says the descendants were cut at the limit.
	Truncated bool `json:"truncated,omitempty"`
}

// Lineage returns id's lineage, with at most limit descendants; false when
// no event has that id and none names it as its cause.
func (x *Index) Lineage(id string, limit int) (Lineage, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.byID[id]
	if !ok && len(x.children[id]) == 0 {
		return Lineage{}, false
	}
	node := func(id string, e *Entry, depth int) Node {
		if e == nil {
			return Node{Entry: Entry{ID: id}, Missing: true, Depth: depth}
		}
		return Node{Entry: *e, Depth: depth}
	}
	l := Lineage{Event: node(id, e, 0), Ancestors: []Node{}, Descendants: []Node{}, Edges: []Edge{}}
	seen := map[string]bool{id: true}
	// Up the causation chain.
	for cur, depth := e, -1; cur != nil && cur.CausationID != "" && !seen[cur.CausationID]; depth-- {
		parent := x.byID[cur.CausationID]
		seen[cur.CausationID] = true
		l.Ancestors = append(l.Ancestors, node(cur.CausationID, parent, depth))
		l.Edges = append(l.Edges, Edge{From: cur.CausationID, To: cur.ID})
		cur = parent
	}
	slices.Reverse(l.Ancestors)
	// Down, breadth first.
	queue := []Node{l.Event}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, c := range x.children[n.ID] {
			if seen[c.ID] {
				continue
			}
			if len(l.Descendants) >= limit {
				l.Truncated = true
				return l, true
			}
			seen[c.ID] = true
			cn := node(c.ID, c, n.Depth+1)
			l.Descendants = append(l.Descendants, cn)
			l.Edges = append(l.Edges, Edge{From: n.ID, To: c.ID})
			queue = append(queue, cn)
		}
	}
	return l, true
}

// Step is an event of a flow with the time since the flow's first event
// and since the step before.
type Step struct {
	Entry
	SinceStartMs    int64 `json:"sinceStartMs"`
	SincePreviousMs int64 `json:"sincePreviousMs"`
}

// Flow is every event of a correlation id, in time order.
type Flow struct {
	CorrelationID string `json:"correlationId"`
	Events        []Step `json:"events"`
	Edges         []Edge `json:"edges"`
	DurationMs    int64  `json:"durationMs"`
	Truncated     bool   `json:"truncated,omitempty"`
}

// Flow returns the events of correlation id corr (and the event whose id is
// corr, which starts a flow its descendants name by its id), at most limit;
// false when there are none.
func (x *Index) Flow(corr string, limit int) (Flow, bool) {
	x.mu.RLock()
	members := slices.Clone(x.flows[corr])
	if root, ok := x.byID[corr]; ok && root.CorrelationID != corr {
		members = append(members, root)
	}
	x.mu.RUnlock()
	if len(members) == 0 {
		return Flow{}, false
	}
	slices.SortStableFunc(members, func(a, b *Entry) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	f := Flow{CorrelationID: corr, Events: make([]Step, 0, min(len(members), limit)), Edges: []Edge{}}
	if len(members) > limit {
		members, f.Truncated = members[:limit], true
	}
	in := make(map[string]bool, len(members))
	for _, m := range members {
		in[m.ID] = true
	}
	start := members[0].Time
	for i, m := range members {
		s := Step{Entry: *m, SinceStartMs: m.Time.Sub(start).Milliseconds()}
		if i > 0 {
			s.SincePreviousMs = m.Time.Sub(members[i-1].Time).Milliseconds()
		}
		f.Events = append(f.Events, s)
		if m.CausationID != "" && in[m.CausationID] {
			f.Edges = append(f.Edges, Edge{From: m.CausationID, To: m.ID})
		}
	}
	f.DurationMs = members[len(members)-1].Time.Sub(start).Milliseconds()
	return f, true
}
