package eventstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// Upcaster rewrites an event stored in an old shape into the current one
// on read, so stored events are never rewritten (schema evolution). The
// schema registry's upcasters plug in here.
type Upcaster interface {
	// Upcast returns ev in its current shape (ev itself if current).
	Upcast(ev RecordedEvent) (RecordedEvent, error)
}

// UpcasterFunc adapts a function.
type UpcasterFunc func(RecordedEvent) (RecordedEvent, error)

// Upcast implements Upcaster.
func (f UpcasterFunc) Upcast(ev RecordedEvent) (RecordedEvent, error) { return f(ev) }

// Upcasters maps an event type to the upcaster of that type. An upcaster may
// change the type (UserRegistered.v1 -> UserRegistered); the chain then
// continues with the new type's upcaster, at most 16 steps.
type Upcasters map[string]Upcaster

// Upcast implements Upcaster.
func (u Upcasters) Upcast(ev RecordedEvent) (RecordedEvent, error) {
	for i := 0; i < 16; i++ {
		up, ok := u[ev.Type]
		if !ok {
			return ev, nil
		}
		prev := ev.Type
		var err error
		ev, err = up.Upcast(ev)
		if err != nil {
			return ev, fmt.Errorf("upcast %s event %s of %s: %w", prev, ev.ID, ev.Stream, err)
		}
		if ev.Type == prev {
			return ev, nil
		}
	}
	return ev, fmt.Errorf("upcast event %s of %s: more than 16 steps (a cycle?)", ev.ID, ev.Stream)
}

// WithUpcaster returns s with u applied to every event it returns:
// ReadStream, ReadAll, and so everything built on them (Subscribe,
// persistent subscriptions, ReadStreamAsOf, the cqrs package's
// repositories and projections), so old event versions are read in the
// current shape everywhere. Appends, deletes and metadata pass through;
// stored events are never rewritten. ReadAll's filters match events as
// stored, before upcasting (an upcaster that renames a type should be
// filtered by the old name too). An event u fails on fails the read.
// The result is a Scavenger when s is.
func WithUpcaster(s Store, u Upcaster) Store {
	us := upcastStore{Store: s, u: u}
	if sc, ok := s.(Scavenger); ok {
		return upcastScavenger{us, sc}
	}
	return us
}

type upcastStore struct {
	Store
	u Upcaster
}

// Exclusive passes on the wrapped store's (see GroupsConfig.LeaseTTL).
func (s upcastStore) Exclusive() bool {
	ex, ok := s.Store.(interface{ Exclusive() bool })
	return ok && ex.Exclusive()
}

func (s upcastStore) ReadStream(ctx context.Context, stream string, opts ReadStreamOptions) ([]RecordedEvent, error) {
	evs, err := s.Store.ReadStream(ctx, stream, opts)
	if err != nil {
		return nil, err
	}
	return s.upcast(evs)
}

func (s upcastStore) ReadAll(ctx context.Context, opts ReadAllOptions) (AllPage, error) {
	page, err := s.Store.ReadAll(ctx, opts)
	if err != nil {
		return AllPage{}, err
	}
	page.Events, err = s.upcast(page.Events)
	return page, err
}

func (s upcastStore) upcast(evs []RecordedEvent) ([]RecordedEvent, error) {
	for i := range evs {
		var err error
		if evs[i], err = s.u.Upcast(evs[i]); err != nil {
			return nil, err
		}
	}
	return evs, nil
}

type upcastScavenger struct {
	upcastStore
	sc Scavenger
}

func (s upcastScavenger) Scavenge(ctx context.Context) (ScavengeReport, error) {
	return s.sc.Scavenge(ctx)
}

// SchemaCodec is what a schema/typed Codec[T] offers: decoding data of any
// registered version of its subject (running its upcasters) and encoding
// the current one, in the Confluent wire format (magic byte 0, a 4-byte
// big-endian schema id, the payload).
type SchemaCodec[T any] interface {
	ID() int
	Decode(ctx context.Context, data []byte) (T, error)
	Encode(v T) ([]byte, error)
}

// SchemaUpcaster returns an Upcaster for events whose data a schema/typed
// codec wrote: data written with an older schema version of the codec's
// subject is decoded (the codec's upcasters bring it to the current shape)
// and encoded again with the current schema, so readers find the current
// version's schema id and shape; data already at the current id is
// returned as is. Data not in the wire format is an error naming the
// event. Looking up an old schema id asks the registry once, bounded by
// 10 seconds. Put it in an Upcasters map under the event types the codec
// encodes.
func SchemaUpcaster[T any](c SchemaCodec[T]) Upcaster {
	return UpcasterFunc(func(ev RecordedEvent) (RecordedEvent, error) {
		if len(ev.Data) < 5 || ev.Data[0] != 0 {
			return ev, fmt.Errorf("event %s of %s (%s): data is not in the schema registry's wire format (magic byte 0 and a schema id)", ev.ID, ev.Stream, ev.Type)
		}
		if int(binary.BigEndian.Uint32(ev.Data[1:5])) == c.ID() {
			return ev, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		v, err := c.Decode(ctx, ev.Data)
		if err != nil {
			return ev, err
		}
		data, err := c.Encode(v)
		if err != nil {
			return ev, err
		}
		ev.Data = data
		return ev, nil
	})
}
