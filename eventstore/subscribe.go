package eventstore

import (
	"context"
	"errors"
)

// SubscribeOptions start a catch-up subscription.
type SubscribeOptions struct {
	// Stream subscribes to one stream; "" subscribes to $all.
	Stream string
	// From is the first version (stream) or position ($all) delivered:
	// the client's checkpoint plus one. 0 starts at the beginning.
	From int64
	// Filter applies to $all subscriptions.
	Filter Filter
	// PageSize is the read size while catching up; 0 means 512.
	PageSize int
}

// Subscription delivers events in order from a starting point, first the
// history (catch-up), then new events as they are appended (live). It is
// not safe for concurrent use. The client's checkpoint is the last event's
// Version (stream) or Position ($all).
type Subscription struct {
	s    Store
	opts SubscribeOptions
	m    *Matcher
	next int64
	buf  []RecordedEvent
}

// Subscribe starts a catch-up subscription on s.
func Subscribe(s Store, opts SubscribeOptions) (*Subscription, error) {
	if opts.From < 0 {
		return nil, Invalid("from", "%d is negative", opts.From)
	}
	if opts.Stream != "" {
		if err := ValidateStreamName("stream", opts.Stream); err != nil {
			return nil, err
		}
	}
	m, err := opts.Filter.Compile()
	if err != nil {
		return nil, err
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 512
	}
	return &Subscription{s: s, opts: opts, m: m, next: opts.From}, nil
}

// Next returns the next event, waiting for one to be appended when caught
// up. It fails with ctx's error, ErrClosed, or ErrStreamDeleted when a
// subscribed stream is hard-deleted.
func (sub *Subscription) Next(ctx context.Context) (RecordedEvent, error) {
	for len(sub.buf) == 0 {
		if err := sub.fill(ctx); err != nil {
			return RecordedEvent{}, err
		}
	}
	ev := sub.buf[0]
	sub.buf = sub.buf[1:]
	return ev, nil
}

func (sub *Subscription) fill(ctx context.Context) error {
	if sub.opts.Stream == "" {
		head, err := sub.s.Head(ctx)
		if err != nil {
			return err
		}
		if sub.next >= head {
			return sub.s.WaitAll(ctx, head)
		}
		page, err := sub.s.ReadAll(ctx, ReadAllOptions{From: sub.next, Max: sub.opts.PageSize, Filter: sub.opts.Filter})
		if err != nil {
			return err
		}
		sub.buf = page.Events
		sub.next = page.Next
		return nil
	}
	head, err := sub.s.Head(ctx)
	if err != nil {
		return err
	}
	evs, err := sub.s.ReadStream(ctx, sub.opts.Stream, ReadStreamOptions{From: sub.next, Max: sub.opts.PageSize})
	if err != nil && !errors.Is(err, ErrStreamNotFound) {
		return err
	}
	if len(evs) > 0 {
		sub.buf = evs
		sub.next = evs[len(evs)-1].Version + 1
		return nil
	}
	// Caught up: wait for anything new in $all, then look again.
	return sub.s.WaitAll(ctx, head)
}
