package event

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func full() *Event {
	return &Event{
		ID: "e1", Source: "/orders", Type: "order.placed", Subject: "o-42",
		Time:            time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC),
		DataContentType: "application/json", Data: []byte(`{"n":1}`),
		Kind: KindCommand, PartitionKey: "o-42", CorrelationID: "c1", CausationID: "p1",
		TraceParent: tp, AggregateID: "order-42", AggregateVersion: 7,
		Extensions: map[string]string{"tenant": "acme", "dataschema": "s1", "empty": ""},
	}
}

func TestRoundTrip(t *testing.T) {
	for name, e := range map[string]*Event{
		"full":    full(),
		"minimal": {ID: "x", Source: "s", Type: "t"},
		"zonedtime": {ID: "x", Source: "s", Type: "t",
			Time: time.Date(2026, 1, 1, 1, 0, 0, 0, time.FixedZone("x", 3600))},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(m)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Time.Equal(e.Time) {
				t.Fatalf("time %v, want %v", got.Time, e.Time)
			}
			want := e.Clone()
			want.Time, got.Time = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	m, err := Encode(full())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range m.Headers {
		got[h.Key] = string(h.Value)
	}
	want := map[string]string{
		"ce_specversion": "1.0", "ce_id": "e1", "ce_source": "/orders", "ce_type": "order.placed",
		"ce_time": "2026-03-01T12:00:00.123456789Z", "ce_subject": "o-42", "content-type": "application/json",
		"ce_kind": "command", "ce_correlationid": "c1", "ce_causationid": "p1", "ce_traceparent": tp,
		"ce_aggregateid": "order-42", "ce_aggregateversion": "7", "ce_tenant": "acme", "ce_dataschema": "s1",
		"ce_empty": "",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("headers\n got %v\nwant %v", got, want)
	}
	if string(m.Key) != "o-42" || string(m.Value) != `{"n":1}` {
		t.Fatalf("key %q value %q", m.Key, m.Value)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Event)
		field string
	}{
		{"no id", func(e *Event) { e.ID = "" }, "id"},
		{"no source", func(e *Event) { e.Source = "" }, "source"},
		{"bad source", func(e *Event) { e.Source = "http://[::1" }, "source"},
		{"no type", func(e *Event) { e.Type = "" }, "type"},
		{"kind", func(e *Event) { e.Kind = 9 }, "kind"},
		{"traceparent", func(e *Event) { e.TraceParent = "00-xyz" }, "traceparent"},
		{"negative version", func(e *Event) { e.AggregateVersion = -1 }, "aggregateversion"},
		{"version without id", func(e *Event) { e.AggregateID = "" }, "aggregateversion"},
		{"ext name", func(e *Event) { e.Extensions["Bad_Name"] = "x" }, "Bad_Name"},
		{"ext reserved", func(e *Event) { e.Extensions["traceparent"] = "x" }, "traceparent"},
		{"control char", func(e *Event) { e.Subject = "a\nb" }, "subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := full()
			tc.edit(e)
			err := e.Validate()
			var fe *FieldError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Validate = %v, want a FieldError on %s", err, tc.field)
			}
			if _, err := Encode(e); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode = %v", err)
			}
		})
	}
	// All problems are reported at once.
	err := (&Event{}).Validate()
	for _, f := range []string{"id", "source", "type"} {
		if !strings.Contains(err.Error(), f+": required") {
			t.Errorf("%v lacks %s", err, f)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	base := func() []Header {
		m, _ := Encode(&Event{ID: "x", Source: "s", Type: "t"})
		return m.Headers
	}
	for _, tc := range []struct {
		name    string
		headers []Header
		want    string
	}{
		{"no specversion", []Header{{HeaderID, []byte("x")}, {HeaderSource, []byte("s")}, {HeaderType, []byte("t")}}, "ce_specversion: missing"},
		{"spec 0.3", append(base()[1:], Header{HeaderSpecVersion, []byte("0.3")}), "CloudEvents 1.0"},
		{"repeated", append(base(), Header{HeaderID, []byte("y")}), "ce_id: repeated"},
		{"time", append(base(), Header{HeaderTime, []byte("yesterday")}), "want RFC 3339"},
		{"kind", append(base()[:4], Header{HeaderKind, []byte("query")}), "want event or command"},
		{"version", append(base(), Header{HeaderAggregateVersion, []byte("v1")}, Header{HeaderAggregateID, []byte("a")}), "base-10"},
		{"ext name", append(base(), Header{"ce_UPPER", []byte("x")}), "UPPER: extension name"},
		{"missing id", base()[:1], "id: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(Message{Headers: tc.headers})
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
	// Transport headers are ignored.
	e, err := Decode(Message{Headers: append(base(), Header{"traceparent", []byte("junk")}, Header{"x-retry", nil})})
	if err != nil || e.Extensions != nil {
		t.Fatalf("Decode with transport headers = %+v, %v", e, err)
	}
}

func TestNewFrom(t *testing.T) {
	root := New("/a", "started")
	root.TraceParent = tp
	child := NewFrom(root, "/b", "continued")
	if child.CorrelationID != root.ID || child.CausationID != root.ID || child.TraceParent != tp {
		t.Fatalf("child of a root: %+v", child)
	}
	grand := NewFrom(child, "/c", "done")
	if grand.CorrelationID != root.ID || grand.CausationID != child.ID {
		t.Fatalf("grandchild: %+v", grand)
	}
	if child.ID == root.ID || len(child.ID) != 36 || child.Time.IsZero() {
		t.Fatalf("fresh id/time: %+v", child)
	}
	own := &Event{TraceParent: "00-11111111111111111111111111111111-2222222222222222-00"}
	own.CausedBy(root)
	if own.TraceParent == tp {
		t.Fatal("CausedBy overwrote an explicit traceparent")
	}
}

func TestTraceParent(t *testing.T) {
	p, err := ParseTraceParent(tp)
	if err != nil || p.String() != tp || !p.Sampled() {
		t.Fatalf("%v %v", p, err)
	}
	if _, err := ParseTraceParent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"); err != nil {
		t.Fatalf("future version: %v", err)
	}
	for _, s := range []string{
		"", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		tp + "-x",
	} {
		if _, err := ParseTraceParent(s); err == nil {
			t.Errorf("ParseTraceParent(%q) accepted", s)
		}
	}
}
