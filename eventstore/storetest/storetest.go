// Package storetest is the conformance suite of eventstore.Store: every
// backend runs Run from its tests, so all of them keep one contract.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore"
)

// Harness opens stores for the suite.
type Harness struct {
	// Open returns a new, empty store, closed by t.Cleanup.
	Open func(t *testing.T) eventstore.Store
	// Reopen closes s and opens the same data again (nil skips nothing:
	// it is required).
	Reopen func(t *testing.T, s eventstore.Store) eventstore.Store
}

// Run runs every case, each on a fresh store.
func Run(t *testing.T, h Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness, s eventstore.Store)
	}{
		{"ExpectedVersion", testExpectedVersion},
		{"Idempotent", testIdempotent},
		{"MultiStreamAtomic", testMultiStream},
		{"ReadStream", testReadStream},
		{"ReadAll", testReadAll},
		{"ReadAllFilters", testReadAllFilters},
		{"Metadata", testMetadata},
		{"SoftDelete", testSoftDelete},
		{"HardDelete", testHardDelete},
		{"BadInput", testBadInput},
		{"ConcurrentWriters", testConcurrentWriters},
		{"SubscribeAll", testSubscribeAll},
		{"SubscribeStream", testSubscribeStream},
		{"Reopen", testReopen},
		{"Persistent", testPersistent},
		{"PersistentAllExcludesSystem", testPersistentAllExcludesSystem},
		{"GroupsRestart", testGroupsRestart},
		{"GroupsLease", testGroupsLease},
		{"StreamsAndTimeTravel", testStreamsAndTimeTravel},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, h, h.Open(t))
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ev(typ, data string) eventstore.EventData {
	return eventstore.EventData{ID: eventstore.NewID(), Type: typ, Data: []byte(data)}
}

func evs(n int, typ string) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = ev(typ, fmt.Sprintf(`{"n":%d}`, i))
	}
	return out
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, exp eventstore.ExpectedVersion, e ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	r, err := s.Append(ctxT(t), stream, exp, e...)
	if err != nil {
		t.Fatalf("append %s (expected %v): %v", stream, exp, err)
	}
	return r
}

func wantWrong(t *testing.T, err error, actual int64) {
	t.Helper()
	var we *eventstore.WrongExpectedVersionError
	if !errors.As(err, &we) || !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
		t.Fatalf("got %v, want a WrongExpectedVersionError", err)
	}
	if we.Actual != actual {
		t.Fatalf("conflict reports actual %d, want %d (%v)", we.Actual, actual, err)
	}
}

func readAllStream(t *testing.T, s eventstore.Store, stream string) []eventstore.RecordedEvent {
	t.Helper()
	got, err := s.ReadStream(ctxT(t), stream, eventstore.ReadStreamOptions{Max: 100000})
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return got
}

func versions(es []eventstore.RecordedEvent) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Version
	}
	return out
}

func eqInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testExpectedVersion(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	_, err := s.Append(ctx, "acct-1", eventstore.StreamExists, ev("A", "{}"))
	wantWrong(t, err, -1)
	_, err = s.Append(ctx, "acct-1", eventstore.Exact(0), ev("A", "{}"))
	wantWrong(t, err, -1)
	r := mustAppend(t, s, "acct-1", eventstore.NoStream, ev("A", "{}"), ev("B", "{}"))
	if r.Version != 1 || r.Stream != "acct-1" {
		t.Fatalf("first append result %+v, want version 1", r)
	}
	_, err = s.Append(ctx, "acct-1", eventstore.NoStream, ev("A", "{}"))
	wantWrong(t, err, 1)
	_, err = s.Append(ctx, "acct-1", eventstore.Exact(0), ev("A", "{}"))
	wantWrong(t, err, 1)
	if !strings.Contains(err.Error(), "expected 0") || !strings.Contains(err.Error(), "actual 1") {
		t.Fatalf("conflict message %q does not name both versions", err)
	}
	r2 := mustAppend(t, s, "acct-1", eventstore.Exact(1), ev("C", "{}"))
	if r2.Version != 2 || r2.Position <= r.Position {
		t.Fatalf("exact append %+v after %+v", r2, r)
	}
	mustAppend(t, s, "acct-1", eventstore.StreamExists, ev("D", "{}"))
	r4 := mustAppend(t, s, "acct-1", eventstore.Any, ev("E", "{}"))
	if r4.Version != 4 {
		t.Fatalf("any append version %d, want 4", r4.Version)
	}
	mustAppend(t, s, "acct-2", eventstore.Any, ev("A", "{}"))
	info, err := s.StreamInfo(ctx, "acct-1")
	if err != nil || info.Version != 4 {
		t.Fatalf("info %+v %v", info, err)
	}
	info, err = s.StreamInfo(ctx, "never")
	if err != nil || info.Version != -1 {
		t.Fatalf("info of unknown stream %+v %v", info, err)
	}
	if got := versions(readAllStream(t, s, "acct-1")); !eqInts(got, []int64{0, 1, 2, 3, 4}) {
		t.Fatalf("versions %v", got)
	}
}

func testIdempotent(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	batch := evs(3, "T")
	r1 := mustAppend(t, s, "idem", eventstore.NoStream, batch...)
	r2, err := s.Append(ctx, "idem", eventstore.NoStream, batch...)
	if err != nil || r2 != r1 {
		t.Fatalf("retry with no-stream: %+v %v, want %+v", r2, err, r1)
	}
	more := evs(2, "U")
	r3 := mustAppend(t, s, "idem", eventstore.Exact(2), more...)
	// Retrying the exact append after others wrote more still succeeds.
	mustAppend(t, s, "idem", eventstore.Exact(4), ev("V", "{}"))
	r4, err := s.Append(ctx, "idem", eventstore.Exact(2), more...)
	if err != nil || r4 != r3 {
		t.Fatalf("retry with exact 2: %+v %v, want %+v", r4, err, r3)
	}
	// Any: retrying the tail.
	tail := evs(2, "W")
	r5 := mustAppend(t, s, "idem", eventstore.Any, tail...)
	r6, err := s.Append(ctx, "idem", eventstore.Any, tail...)
	if err != nil || r6 != r5 {
		t.Fatalf("retry with any: %+v %v, want %+v", r6, err, r5)
	}
	if got := readAllStream(t, s, "idem"); len(got) != 8 {
		t.Fatalf("stream has %d events after retries, want 8", len(got))
	}
	// Same ids at a different position is a conflict, not a retry.
	_, err = s.Append(ctx, "idem", eventstore.Exact(3), more...)
	wantWrong(t, err, 7)
	// A retry of a multi-stream append.
	ma := []eventstore.StreamAppend{
		{Stream: "idem-a", Expected: eventstore.NoStream, Events: evs(2, "X")},
		{Stream: "idem-b", Expected: eventstore.NoStream, Events: evs(1, "Y")},
	}
	m1, err := s.AppendMulti(ctx, ma)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := s.AppendMulti(ctx, ma)
	if err != nil || m2[0] != m1[0] || m2[1] != m1[1] {
		t.Fatalf("multi retry %+v %v, want %+v", m2, err, m1)
	}
	head, _ := s.Head(ctx)
	page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{Max: 1000})
	if err != nil || len(page.Events) != 11 {
		t.Fatalf("$all has %d events (head %d), want 11: %v", len(page.Events), head, err)
	}
}

func testMultiStream(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	mustAppend(t, s, "order-1", eventstore.NoStream, ev("Created", "{}"))
	res, err := s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: "order-1", Expected: eventstore.Exact(0), Events: evs(2, "Line")},
		{Stream: "stock-1", Expected: eventstore.NoStream, Events: evs(1, "Reserved")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Version != 2 || res[1].Version != 0 || res[0].Stream != "order-1" || res[1].Stream != "stock-1" {
		t.Fatalf("results %+v", res)
	}
	// One stream's conflict fails all.
	_, err = s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: "order-1", Expected: eventstore.Exact(2), Events: evs(1, "Line")},
		{Stream: "stock-1", Expected: eventstore.Exact(5), Events: evs(1, "Reserved")},
		{Stream: "stock-2", Expected: eventstore.NoStream, Events: evs(1, "Reserved")},
	})
	wantWrong(t, err, 0)
	// One oversized event fails all, naming its path.
	big := ev("Line", strings.Repeat("x", eventstore.DefaultMaxEventBytes+1))
	_, err = s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: "order-1", Expected: eventstore.Exact(2), Events: evs(1, "Line")},
		{Stream: "stock-2", Expected: eventstore.NoStream, Events: []eventstore.EventData{ev("A", "{}"), big}},
	})
	var ie *eventstore.InvalidError
	if !errors.As(err, &ie) || ie.Field != "appends[1].events[1].data" || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized event: %v", err)
	}
	if got := len(readAllStream(t, s, "order-1")); got != 3 {
		t.Fatalf("order-1 has %d events after failed multi-appends, want 3", got)
	}
	if got := len(readAllStream(t, s, "stock-1")); got != 1 {
		t.Fatalf("stock-1 has %d events, want 1", got)
	}
	if _, err := s.ReadStream(ctx, "stock-2", eventstore.ReadStreamOptions{}); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("stock-2 after failed appends: %v", err)
	}
	// The multi-stream append is contiguous in $all.
	page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{})
	if err != nil || len(page.Events) != 4 {
		t.Fatalf("$all %d events %v", len(page.Events), err)
	}
	streams := []string{}
	for _, e := range page.Events {
		streams = append(streams, e.Stream)
	}
	if strings.Join(streams, ",") != "order-1,order-1,order-1,stock-1" {
		t.Fatalf("$all order %v", streams)
	}
	// A stream twice in one append is refused.
	_, err = s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: "x-1", Expected: eventstore.Any, Events: evs(1, "A")},
		{Stream: "x-1", Expected: eventstore.Any, Events: evs(1, "A")},
	})
	if !errors.Is(err, eventstore.ErrInvalid) {
		t.Fatalf("duplicate stream: %v", err)
	}
}

func testReadStream(t *testing.T, s0 Harness, s eventstore.Store) {
	ctx := ctxT(t)
	before := time.Now().Add(-time.Second)
	in := evs(10, "Ev")
	in[3].Metadata = []byte(`{"m":1}`)
	mustAppend(t, s, "rs", eventstore.NoStream, in[:4]...)
	mustAppend(t, s, "other", eventstore.NoStream, ev("O", "{}"))
	mustAppend(t, s, "rs", eventstore.Exact(3), in[4:]...)
	all := readAllStream(t, s, "rs")
	if len(all) != 10 {
		t.Fatalf("%d events", len(all))
	}
	for i, e := range all {
		if e.Version != int64(i) || e.ID != in[i].ID || e.Type != "Ev" || string(e.Data) != string(in[i].Data) || e.Stream != "rs" {
			t.Fatalf("event %d: %+v, want %+v", i, e, in[i])
		}
		if e.Time.Before(before) || e.Time.After(time.Now().Add(time.Second)) {
			t.Fatalf("event time %v", e.Time)
		}
		if i > 0 && e.Position <= all[i-1].Position {
			t.Fatalf("positions not increasing: %d after %d", e.Position, all[i-1].Position)
		}
	}
	if string(all[3].Metadata) != `{"m":1}` {
		t.Fatalf("metadata %q", all[3].Metadata)
	}
	cases := []struct {
		opts eventstore.ReadStreamOptions
		want []int64
	}{
		{eventstore.ReadStreamOptions{From: 3, Max: 4}, []int64{3, 4, 5, 6}},
		{eventstore.ReadStreamOptions{From: 8, Max: 4}, []int64{8, 9}},
		{eventstore.ReadStreamOptions{From: 10}, []int64{}},
		{eventstore.ReadStreamOptions{From: eventstore.End, Backwards: true, Max: 3}, []int64{9, 8, 7}},
		{eventstore.ReadStreamOptions{From: 2, Backwards: true}, []int64{2, 1, 0}},
		{eventstore.ReadStreamOptions{From: 50, Backwards: true, Max: 2}, []int64{9, 8}},
	}
	for _, c := range cases {
		got, err := s.ReadStream(ctx, "rs", c.opts)
		if err != nil {
			t.Fatalf("%+v: %v", c.opts, err)
		}
		if !eqInts(versions(got), c.want) {
			t.Fatalf("%+v: versions %v, want %v", c.opts, versions(got), c.want)
		}
	}
	if _, err := s.ReadStream(ctx, "missing", eventstore.ReadStreamOptions{}); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("missing stream: %v", err)
	}
}

func testReadAll(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	var want []string
	for i := 0; i < 30; i++ {
		stream := fmt.Sprintf("s-%d", i%4)
		e := ev("T", "{}")
		mustAppend(t, s, stream, eventstore.Any, e)
		want = append(want, e.ID)
	}
	// Forwards, in pages.
	var got []string
	var last int64 = -1
	from := int64(0)
	for {
		page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{From: from, Max: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			if e.Position <= last {
				t.Fatalf("positions not increasing")
			}
			last = e.Position
			got = append(got, e.ID)
		}
		if len(page.Events) == 0 {
			if !page.IsEnd {
				t.Fatalf("empty page not at the end: %+v", page)
			}
			break
		}
		from = page.Next
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("forwards read differs from append order")
	}
	head, err := s.Head(ctx)
	if err != nil || head <= last {
		t.Fatalf("head %d after last position %d: %v", head, last, err)
	}
	// Backwards, in pages.
	got = got[:0]
	from = eventstore.End
	for i := 0; i < 100; i++ {
		page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{From: from, Backwards: true, Max: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			got = append(got, e.ID)
		}
		if page.IsEnd || len(page.Events) == 0 {
			break
		}
		from = page.Next
	}
	if len(got) != len(want) {
		t.Fatalf("backwards read %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[len(want)-1-i] {
			t.Fatalf("backwards order differs at %d", i)
		}
	}
	// Backwards from a position.
	page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{Max: 100})
	if err != nil {
		t.Fatal(err)
	}
	mid := page.Events[10].Position
	back, err := s.ReadAll(ctx, eventstore.ReadAllOptions{From: mid, Backwards: true, Max: 3})
	if err != nil || len(back.Events) != 3 || back.Events[0].Position != mid || back.Events[2].ID != page.Events[8].ID {
		t.Fatalf("backwards from %d: %+v %v", mid, back, err)
	}
	fwd, err := s.ReadAll(ctx, eventstore.ReadAllOptions{From: mid, Max: 2})
	if err != nil || len(fwd.Events) != 2 || fwd.Events[0].Position != mid {
		t.Fatalf("forwards from %d: %+v %v", mid, fwd, err)
	}
}

func testReadAllFilters(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	mustAppend(t, s, "user-1", eventstore.Any, ev("UserRegistered", "{}"), ev("UserEmailChanged", "{}"))
	mustAppend(t, s, "order-1", eventstore.Any, ev("OrderPlaced", "{}"))
	mustAppend(t, s, "user-2", eventstore.Any, ev("UserRegistered", "{}"), ev("UserPasswordChanged", "{}"))
	mustAppend(t, s, "order-2", eventstore.Any, ev("OrderShipped.v2", "{}"))
	// The store's own kinds of record, as persistent groups write them.
	mustAppend(t, s, "sys-1", eventstore.Any, ev("$checkpoint", "{}"))
	mustAppend(t, s, eventstore.GroupsLeaseStream, eventstore.Any, ev(eventstore.GroupsLeaseType, "{}"))
	for _, c := range []struct {
		f    eventstore.Filter
		want string
	}{
		{eventstore.Category("user"), "user-1/UserRegistered user-1/UserEmailChanged user-2/UserRegistered user-2/UserPasswordChanged"},
		{eventstore.Filter{StreamPrefix: "order-"}, "order-1/OrderPlaced order-2/OrderShipped.v2"},
		{eventstore.Filter{TypePrefix: "UserReg"}, "user-1/UserRegistered user-2/UserRegistered"},
		{eventstore.Filter{TypeRegex: `^User(Email|Password)Changed$`}, "user-1/UserEmailChanged user-2/UserPasswordChanged"},
		{eventstore.Filter{TypeRegex: `\.v2$`}, "order-2/OrderShipped.v2"},
		{eventstore.EventType("UserRegistered"), "user-1/UserRegistered user-2/UserRegistered"},
		{eventstore.Filter{StreamPrefix: "user-2", TypePrefix: "UserReg"}, "user-2/UserRegistered"},
		{eventstore.Filter{StreamPrefix: "nope"}, ""},
		{eventstore.Filter{StreamPrefix: "sys-"}, "sys-1/$checkpoint"},
		{eventstore.Filter{StreamPrefix: "sys-", ExcludeSystem: true}, ""},
		{eventstore.Filter{StreamPrefix: "persistent-"}, "persistent-groups-lease/GroupsLease"},
		{eventstore.Filter{ExcludeSystem: true}, "user-1/UserRegistered user-1/UserEmailChanged order-1/OrderPlaced user-2/UserRegistered user-2/UserPasswordChanged order-2/OrderShipped.v2"},
	} {
		for _, back := range []bool{false, true} {
			from := int64(0)
			if back {
				from = eventstore.End
			}
			page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{From: from, Backwards: back, Filter: c.f})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range page.Events {
				got = append(got, e.Stream+"/"+e.Type)
			}
			if back {
				for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
					got[i], got[j] = got[j], got[i]
				}
			}
			if strings.Join(got, " ") != c.want {
				t.Fatalf("filter %+v backwards=%v: %q, want %q", c.f, back, strings.Join(got, " "), c.want)
			}
		}
	}
	// Filtered paging with Max 1 visits every match once.
	from, n := int64(0), 0
	for i := 0; i < 20; i++ {
		page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{From: from, Max: 1, Filter: eventstore.Category("user")})
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Events)
		if page.IsEnd && len(page.Events) == 0 {
			break
		}
		from = page.Next
	}
	if n != 4 {
		t.Fatalf("paged filtered read found %d, want 4", n)
	}
	_, err := s.ReadAll(ctx, eventstore.ReadAllOptions{Filter: eventstore.Filter{TypeRegex: "("}})
	var ie *eventstore.InvalidError
	if !errors.As(err, &ie) || ie.Field != "filter.typeRegex" {
		t.Fatalf("bad regex: %v", err)
	}
}

func testMetadata(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	before := time.Now()
	mustAppend(t, s, "md", eventstore.NoStream, evs(10, "E")...)
	after := time.Now()
	if err := s.SetMetadata(ctx, "md", eventstore.StreamMetadata{MaxCount: 3}); err != nil {
		t.Fatal(err)
	}
	if got := versions(readAllStream(t, s, "md")); !eqInts(got, []int64{7, 8, 9}) {
		t.Fatalf("max count 3: %v", got)
	}
	got, _ := s.ReadStream(ctx, "md", eventstore.ReadStreamOptions{From: eventstore.End, Backwards: true, Max: 100})
	if !eqInts(versions(got), []int64{9, 8, 7}) {
		t.Fatalf("max count backwards: %v", versions(got))
	}
	if err := s.SetMetadata(ctx, "md", eventstore.StreamMetadata{TruncateBefore: 5}); err != nil {
		t.Fatal(err)
	}
	if got := versions(readAllStream(t, s, "md")); !eqInts(got, []int64{5, 6, 7, 8, 9}) {
		t.Fatalf("truncate before 5: %v", got)
	}
	info, err := s.StreamInfo(ctx, "md")
	if err != nil || info.Metadata.TruncateBefore != 5 || info.Version != 9 {
		t.Fatalf("info %+v %v", info, err)
	}
	// A max age just over the events' age: on a slow machine they may be
	// older than any fixed age by now.
	maxAge := time.Since(before) + 300*time.Millisecond
	if err := s.SetMetadata(ctx, "md", eventstore.StreamMetadata{MaxAge: maxAge}); err != nil {
		t.Fatal(err)
	}
	if got := readAllStream(t, s, "md"); len(got) != 10 {
		t.Fatalf("max age %v before expiry: %d events", maxAge, len(got))
	}
	time.Sleep(maxAge - time.Since(after) + 50*time.Millisecond)
	mustAppend(t, s, "md", eventstore.Exact(9), ev("Fresh", "{}"))
	if got := versions(readAllStream(t, s, "md")); !eqInts(got, []int64{10}) {
		t.Fatalf("max age after expiry: %v", got)
	}
	// Hidden events stay in $all until scavenged.
	page, _ := s.ReadAll(ctx, eventstore.ReadAllOptions{})
	if len(page.Events) != 11 {
		t.Fatalf("$all has %d events, want 11", len(page.Events))
	}
	if err := s.SetMetadata(ctx, "md", eventstore.StreamMetadata{MaxCount: -1}); !errors.Is(err, eventstore.ErrInvalid) {
		t.Fatalf("negative max count: %v", err)
	}
	// Metadata survives a reopen.
	if err := s.SetMetadata(ctx, "md", eventstore.StreamMetadata{MaxCount: 2}); err != nil {
		t.Fatal(err)
	}
	s = h.Reopen(t, s)
	if got := versions(readAllStream(t, s, "md")); !eqInts(got, []int64{9, 10}) {
		t.Fatalf("max count after reopen: %v", got)
	}
}

func testSoftDelete(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	mustAppend(t, s, "sd", eventstore.NoStream, evs(3, "E")...)
	err := s.Delete(ctx, "sd", eventstore.Exact(1), false)
	wantWrong(t, err, 2)
	if err := s.Delete(ctx, "sd", eventstore.Exact(2), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadStream(ctx, "sd", eventstore.ReadStreamOptions{}); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("read after soft delete: %v", err)
	}
	info, _ := s.StreamInfo(ctx, "sd")
	if !info.Deleted || info.Tombstoned {
		t.Fatalf("info %+v", info)
	}
	// Written again: versions continue, the old events stay hidden.
	_, err = s.Append(ctx, "sd", eventstore.StreamExists, ev("New", "{}"))
	wantWrong(t, err, -1)
	r := mustAppend(t, s, "sd", eventstore.NoStream, ev("New", "{}"))
	if r.Version != 3 {
		t.Fatalf("version after recreate %d, want 3", r.Version)
	}
	got := readAllStream(t, s, "sd")
	if len(got) != 1 || got[0].Type != "New" || got[0].Version != 3 {
		t.Fatalf("recreated stream reads %+v", got)
	}
	s = h.Reopen(t, s)
	got = readAllStream(t, s, "sd")
	if len(got) != 1 || got[0].Version != 3 {
		t.Fatalf("after reopen: %+v", got)
	}
	if err := s.Delete(ctx, "nothing-here", eventstore.Any, false); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("soft delete of a missing stream: %v", err)
	}
}

func testHardDelete(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	mustAppend(t, s, "hd", eventstore.NoStream, evs(2, "E")...)
	if err := s.Delete(ctx, "hd", eventstore.Any, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, err := s.Append(ctx, "hd", eventstore.Any, ev("E", "{}"))
		if !errors.Is(err, eventstore.ErrStreamDeleted) || !strings.Contains(err.Error(), "hard-deleted") {
			t.Fatalf("append to tombstoned stream: %v", err)
		}
		_, err = s.AppendMulti(ctx, []eventstore.StreamAppend{
			{Stream: "ok-stream", Expected: eventstore.Any, Events: evs(1, "E")},
			{Stream: "hd", Expected: eventstore.Any, Events: evs(1, "E")},
		})
		if !errors.Is(err, eventstore.ErrStreamDeleted) {
			t.Fatalf("multi append touching tombstoned stream: %v", err)
		}
		if _, err := s.ReadStream(ctx, "hd", eventstore.ReadStreamOptions{}); !errors.Is(err, eventstore.ErrStreamDeleted) {
			t.Fatalf("read tombstoned: %v", err)
		}
		if err := s.Delete(ctx, "hd", eventstore.Any, false); !errors.Is(err, eventstore.ErrStreamDeleted) {
			t.Fatalf("delete tombstoned: %v", err)
		}
		if err := s.SetMetadata(ctx, "hd", eventstore.StreamMetadata{MaxCount: 1}); !errors.Is(err, eventstore.ErrStreamDeleted) {
			t.Fatalf("metadata on tombstoned: %v", err)
		}
		info, _ := s.StreamInfo(ctx, "hd")
		if !info.Tombstoned {
			t.Fatalf("info %+v", info)
		}
		s = h.Reopen(t, s) // the tombstone is durable
	}
	if _, err := s.ReadStream(ctx, "ok-stream", eventstore.ReadStreamOptions{}); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("the failed multi-append wrote ok-stream: %v", err)
	}
}

func testBadInput(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	for _, c := range []struct {
		stream string
		exp    eventstore.ExpectedVersion
		events []eventstore.EventData
		field  string
	}{
		{"", eventstore.Any, evs(1, "E"), "stream"},
		{"$system", eventstore.Any, evs(1, "E"), "stream"},
		{strings.Repeat("s", 300), eventstore.Any, evs(1, "E"), "stream"},
		{"ok", eventstore.ExpectedVersion(-3), evs(1, "E"), "expectedVersion"},
		{"ok", eventstore.Any, nil, "events"},
		{"ok", eventstore.Any, []eventstore.EventData{{ID: "", Type: "E"}}, "events[0].id"},
		{"ok", eventstore.Any, []eventstore.EventData{{ID: "x", Type: ""}}, "events[0].type"},
		{"ok", eventstore.Any, []eventstore.EventData{{ID: "x", Type: "E"}, {ID: "x", Type: "E"}}, "events[1].id"},
	} {
		_, err := s.Append(ctx, c.stream, c.exp, c.events...)
		var ie *eventstore.InvalidError
		if !errors.As(err, &ie) || ie.Field != c.field {
			t.Fatalf("append %q %v: %v, want invalid %s", c.stream, c.exp, err, c.field)
		}
	}
	if _, err := s.ReadStream(ctx, "ok", eventstore.ReadStreamOptions{From: -5}); !errors.Is(err, eventstore.ErrInvalid) {
		t.Fatalf("read from -5: %v", err)
	}
	if _, err := s.ReadAll(ctx, eventstore.ReadAllOptions{From: -1}); !errors.Is(err, eventstore.ErrInvalid) {
		t.Fatalf("read $all forwards from -1: %v", err)
	}
	if _, err := s.ReadStream(ctx, "ok", eventstore.ReadStreamOptions{}); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("nothing was written: %v", err)
	}
}

func testConcurrentWriters(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	const writers, rounds = 8, 15
	// Every writer tries to append version v for each v; exactly one wins.
	var mu sync.Mutex
	wins := map[int64][]int{}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := int64(0); v < rounds; v++ {
				exp := eventstore.NoStream
				if v > 0 {
					exp = eventstore.Exact(v - 1)
				}
				// Wait until the previous version exists so every writer
				// races for every version.
				for {
					info, err := s.StreamInfo(ctx, "race")
					if err != nil {
						t.Error(err)
						return
					}
					if info.Version >= v-1 {
						break
					}
					time.Sleep(time.Millisecond)
				}
				_, err := s.Append(ctx, "race", exp, ev("W", fmt.Sprint(w)))
				if err == nil {
					mu.Lock()
					wins[v] = append(wins[v], w)
					mu.Unlock()
				} else if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for v := int64(0); v < rounds; v++ {
		if len(wins[v]) != 1 {
			t.Fatalf("version %d won by %v, want exactly one writer", v, wins[v])
		}
	}
	if got := readAllStream(t, s, "race"); len(got) != rounds {
		t.Fatalf("%d events, want %d", len(got), rounds)
	}
}

func testSubscribeAll(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	for i := 0; i < 5; i++ {
		mustAppend(t, s, fmt.Sprintf("sub-%d", i%2), eventstore.Any, ev("Old", "{}"))
	}
	mustAppend(t, s, "noise-1", eventstore.Any, ev("Noise", "{}"))
	sub, err := eventstore.Subscribe(s, eventstore.SubscribeOptions{Filter: eventstore.Category("sub"), PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	var got []eventstore.RecordedEvent
	for i := 0; i < 5; i++ {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	// Live: events appended after catching up arrive, in order.
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 5; i++ {
			time.Sleep(5 * time.Millisecond)
			if _, err := s.Append(ctx, fmt.Sprintf("sub-%d", i%2), eventstore.Any, ev("New", "{}")); err != nil {
				done <- err
				return
			}
			if _, err := s.Append(ctx, "noise-1", eventstore.Any, ev("Noise", "{}")); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < 5; i++ {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.Type != "New" || !strings.HasPrefix(e.Stream, "sub-") {
			t.Fatalf("live event %+v", e)
		}
		got = append(got, e)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Position <= got[i-1].Position {
			t.Fatalf("out of order at %d", i)
		}
	}
	// Resume from a checkpoint: the event after it comes next.
	sub2, _ := eventstore.Subscribe(s, eventstore.SubscribeOptions{From: got[6].Position + 1, Filter: eventstore.Category("sub")})
	e, err := sub2.Next(ctx)
	if err != nil || e.ID != got[7].ID {
		t.Fatalf("resumed at %+v %v, want %s", e, err, got[7].ID)
	}
	// A cancelled wait returns the context's error.
	sub3, _ := eventstore.Subscribe(s, eventstore.SubscribeOptions{From: got[9].Position + 1, Filter: eventstore.Category("sub")})
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := sub3.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("idle subscription: %v", err)
	}
}

func testSubscribeStream(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	mustAppend(t, s, "one", eventstore.NoStream, evs(3, "E")...)
	sub, err := eventstore.Subscribe(s, eventstore.SubscribeOptions{Stream: "one", From: 1})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		s.Append(ctx, "two", eventstore.Any, ev("E", "{}"))
		s.Append(ctx, "one", eventstore.Exact(2), evs(2, "Live")...)
	}()
	var vs []int64
	for i := 0; i < 4; i++ {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.Stream != "one" {
			t.Fatalf("event of %s", e.Stream)
		}
		vs = append(vs, e.Version)
	}
	if !eqInts(vs, []int64{1, 2, 3, 4}) {
		t.Fatalf("versions %v", vs)
	}
}

func testReopen(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	mustAppend(t, s, "r-1", eventstore.NoStream, evs(5, "E")...)
	mustAppend(t, s, "r-2", eventstore.NoStream, evs(2, "E")...)
	before, _ := s.ReadAll(ctx, eventstore.ReadAllOptions{})
	s = h.Reopen(t, s)
	after, err := s.ReadAll(ctx, eventstore.ReadAllOptions{})
	if err != nil || len(after.Events) != len(before.Events) {
		t.Fatalf("after reopen %d events %v, want %d", len(after.Events), err, len(before.Events))
	}
	for i := range after.Events {
		a, b := after.Events[i], before.Events[i]
		if a.ID != b.ID || a.Position != b.Position || a.Version != b.Version || !a.Time.Equal(b.Time) {
			t.Fatalf("event %d differs after reopen: %+v vs %+v", i, a, b)
		}
	}
	_, err = s.Append(ctx, "r-1", eventstore.Exact(3), ev("E", "{}"))
	wantWrong(t, err, 4)
	mustAppend(t, s, "r-1", eventstore.Exact(4), ev("E", "{}"))
}

func errorsIsNotFound(err error) bool { return errors.Is(err, eventstore.ErrStreamNotFound) }

func testStreamsAndTimeTravel(t *testing.T, h Harness, s eventstore.Store) {
	ctx := ctxT(t)
	for _, name := range []string{"b", "a", "c", "d"} {
		mustAppend(t, s, name, eventstore.NoStream, evs(3, "E")...)
	}
	if err := s.Delete(ctx, "c", eventstore.Any, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "d", eventstore.Any, true); err != nil {
		t.Fatal(err)
	}
	names, err := s.Streams(ctx, "", 0)
	if err != nil || strings.Join(names, ",") != "a,b" {
		t.Fatalf("streams %v %v", names, err)
	}
	names, err = s.Streams(ctx, "a", 1)
	if err != nil || strings.Join(names, ",") != "b" {
		t.Fatalf("streams after a: %v %v", names, err)
	}
	// Time travel: the stream as it was at a version, and at a time.
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	mustAppend(t, s, "a", eventstore.Exact(2), evs(2, "Later")...)
	got, err := eventstore.ReadStreamAsOf(ctx, s, "a", 1, time.Time{}, 0)
	if err != nil || !eqInts(versions(got), []int64{0, 1}) {
		t.Fatalf("as of version 1: %v %v", versions(got), err)
	}
	got, err = eventstore.ReadStreamAsOf(ctx, s, "a", -1, mid, 0)
	if err != nil || !eqInts(versions(got), []int64{0, 1, 2}) {
		t.Fatalf("as of %v: %v %v", mid, versions(got), err)
	}
	got, err = eventstore.ReadStreamAsOf(ctx, s, "a", -1, time.Time{}, 0)
	if err != nil || len(got) != 5 {
		t.Fatalf("unbounded: %v %v", versions(got), err)
	}
}
