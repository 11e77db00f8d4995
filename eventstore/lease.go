package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// Hosting.
//
// Persistent groups must run in one process: two hosting a group would
// both deliver its events and save competing checkpoints. A store that
// only one process can open (the embedded store holds its directory's
// lock) needs nothing more. On a shared store (PostgreSQL, or a Herald
// server over HTTP) the Groups of several processes take a lease, kept in
// the store itself so that any backend can hold it: the newest event of
// GroupsLeaseStream names the host and when its lease ends. A process
// appends its lease with the stream's exact version, so two cannot take
// it at once; the host renews it every third of LeaseTTL; the others
// stand by, answer with a *NotHostError naming the host, and take over
// once the lease has lapsed (the host died) or was released (it closed).
// A host that cannot renew stops its groups before its lease can lapse,
// and one that finds its lease taken stops them at once, without saving
// checkpoints: the new host resumes from the last saved one, so a
// takeover sends some events again and loses none. Clocks must agree to
// well within a third of LeaseTTL.

// GroupsLeaseStream holds the hosting lease of a shared store's groups:
//
//	GroupsLease {"v":1,"owner","token","expiresMs"}
//
// Frozen: the stream name, the event type and the body version 1.
const GroupsLeaseStream = "persistent-groups-lease"

// GroupsLeaseType is the event type of GroupsLeaseStream.
const GroupsLeaseType = "GroupsLease"

// DefaultGroupsLeaseTTL is GroupsConfig.LeaseTTL's default on a shared
// store.
const DefaultGroupsLeaseTTL = 10 * time.Second

// ErrNotHost: another process hosts the store's groups.
var ErrNotHost = errors.New("subscription groups are hosted by another process")

// NotHostError is what a standing-by Groups answers: who hosts the groups,
// and until when its lease runs unless renewed.
type NotHostError struct {
	Owner string
	Until time.Time
}

func (e *NotHostError) Error() string {
	if e.Owner == "" {
		return "subscription groups are hosted by another process; this one stands by to take over"
	}
	return fmt.Sprintf("subscription groups are hosted by %s (lease until %s); this process stands by to take over",
		e.Owner, e.Until.UTC().Format(time.RFC3339Nano))
}

// Is matches ErrNotHost.
func (e *NotHostError) Is(target error) bool { return target == ErrNotHost }

type leaseBody struct {
	V         int    `json:"v"`
	Owner     string `json:"owner"`
	Token     string `json:"token"`
	ExpiresMs int64  `json:"expiresMs"`
}

// lease is one Groups' side of the hosting lease.
type lease struct {
	s     Store
	ttl   time.Duration
	owner string
	token string // this Groups'; the owner name may repeat after a restart

	// Owned by the lease loop (and OpenGroups, before it starts).
	version int64     // the stream version of our newest lease event
	expires time.Time // when that lease ends
}

func defaultOwner() string {
	h, err := os.Hostname()
	if err != nil {
		h = "unknown-host"
	}
	return fmt.Sprintf("%s:%d", h, os.Getpid())
}

// current reads the newest lease event: version -1 if there is none.
func (l *lease) current(ctx context.Context) (leaseBody, int64, error) {
	evs, err := l.s.ReadStream(ctx, GroupsLeaseStream, ReadStreamOptions{From: End, Backwards: true, Max: 1})
	if errors.Is(err, ErrStreamNotFound) || (err == nil && len(evs) == 0) {
		return leaseBody{}, -1, nil
	}
	if err != nil {
		return leaseBody{}, 0, err
	}
	var b leaseBody
	if err := json.Unmarshal(evs[0].Data, &b); err != nil || b.V != 1 || evs[0].Type != GroupsLeaseType {
		return leaseBody{}, 0, fmt.Errorf("%s version %d: not a lease (type %s, body version %d): %v", GroupsLeaseStream, evs[0].Version, evs[0].Type, b.V, err)
	}
	return b, evs[0].Version, nil
}

// write appends a lease ending at expires after version v (-1: none).
func (l *lease) write(ctx context.Context, v int64, expires time.Time) (int64, error) {
	data, _ := json.Marshal(leaseBody{V: 1, Owner: l.owner, Token: l.token, ExpiresMs: expires.UnixMilli()})
	exp := Exact(v)
	if v < 0 {
		exp = NoStream
	}
	r, err := l.s.Append(ctx, GroupsLeaseStream, exp, EventData{ID: NewID(), Type: GroupsLeaseType, Data: data})
	if err != nil {
		return 0, err
	}
	if v < 0 {
		// Only the newest lease matters. NB: if this fails, the stream
		// keeps every lease event, which costs space and nothing else.
		_ = l.s.SetMetadata(ctx, GroupsLeaseStream, StreamMetadata{MaxCount: 1})
	}
	return r.Version, nil
}

// acquire takes the lease if it is free (none, lapsed or released) and
// reports the holder if it is not. Losing a race to another process is
// not an error: the holder is then read on the next try.
func (l *lease) acquire(ctx context.Context) (held bool, holder *NotHostError, err error) {
	cur, v, err := l.current(ctx)
	if err != nil {
		return false, nil, err
	}
	now := time.Now()
	if v >= 0 && cur.Token != l.token && cur.ExpiresMs > now.UnixMilli() {
		return false, &NotHostError{Owner: cur.Owner, Until: time.UnixMilli(cur.ExpiresMs)}, nil
	}
	expires := now.Add(l.ttl)
	nv, err := l.write(ctx, v, expires)
	if errors.Is(err, ErrWrongExpectedVersion) {
		return false, &NotHostError{}, nil
	}
	if err != nil {
		return false, nil, err
	}
	l.version, l.expires = nv, expires
	return true, nil, nil
}

// renew extends the lease held; ErrWrongExpectedVersion means another
// process took it.
func (l *lease) renew(ctx context.Context) error {
	expires := time.Now().Add(l.ttl)
	nv, err := l.write(ctx, l.version, expires)
	if err != nil {
		return err
	}
	l.version, l.expires = nv, expires
	return nil
}

// release ends the lease held now, so that a standby takes over without
// waiting for it to lapse.
func (l *lease) release(ctx context.Context) error {
	_, err := l.write(ctx, l.version, time.UnixMilli(0))
	return err
}
