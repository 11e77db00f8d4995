package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCloudEventsSDK sends with the CloudEvents Go SDK in every HTTP
// content mode it has (binary, structured, batch) and receives with it:
// over HTTP (the batch format) and over Kafka (records read with
// franz-go, decoded by the SDK's binding machinery with the Kafka
// binding's ce_ prefix).
func TestCloudEventsSDK(t *testing.T) {
	e := newEnv(t)
	e.createTopic("sdk", 1, nil)
	ctx := context.Background()
	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(e.url + "/v1/topics/sdk/events"))
	if err != nil {
		t.Fatal(err)
	}
	mk := func(id string, data any) cloudevents.Event {
		ev := cloudevents.NewEvent()
		ev.SetID(id)
		ev.SetSource("/sdk/test")
		ev.SetType("com.example.sdk")
		ev.SetSubject("subj " + id)
		ev.SetTime(time.Date(2026, 4, 5, 6, 7, 8, 9000, time.UTC))
		ev.SetExtension("tenant", "acme")
		ev.SetExtension("attempt", 3)
		if err := ev.SetData(cloudevents.ApplicationJSON, data); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	sent := []cloudevents.Event{mk("bin-1", map[string]int{"n": 1}), mk("str-1", map[string]int{"n": 2})}
	if res := c.Send(ctx, sent[0]); !cloudevents.IsACK(res) {
		t.Fatalf("binary send: %v", res)
	}
	if res := c.Send(cloudevents.WithEncodingStructured(ctx), sent[1]); !cloudevents.IsACK(res) {
		t.Fatalf("structured send: %v", res)
	}
	// A text event, in binary mode: data is the body, untouched.
	txt := mk("bin-2", nil)
	txt.SetData("text/plain", "héllo wörld")
	sent = append(sent, txt)
	if res := c.Send(ctx, txt); !cloudevents.IsACK(res) {
		t.Fatalf("binary text send: %v", res)
	}
	batch := []cloudevents.Event{mk("bat-1", []int{1}), mk("bat-2", "two")}
	req, err := cehttp.NewHTTPRequestFromEvents(ctx, e.url+"/v1/topics/sdk/events", batch)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("batch send: %d", resp.StatusCode)
	}
	sent = append(sent, batch...)
	// A repeat is acknowledged (deduplicated), not stored.
	if res := c.Send(ctx, sent[0]); !cloudevents.IsACK(res) {
		t.Fatalf("repeat send: %v", res)
	}

	check := func(how string, got []cloudevents.Event) {
		t.Helper()
		if len(got) != len(sent) {
			t.Fatalf("%s: %d events, want %d", how, len(got), len(sent))
		}
		for i := range sent {
			w, g := sent[i], got[i]
			if err := g.Validate(); err != nil {
				t.Errorf("%s %d: invalid: %v", how, i, err)
			}
			if g.ID() != w.ID() || g.Source() != w.Source() || g.Type() != w.Type() || g.Subject() != w.Subject() ||
				!g.Time().Equal(w.Time()) || g.DataContentType() != w.DataContentType() || !bytes.Equal(g.Data(), w.Data()) {
				t.Errorf("%s %d:\n got %v\nwant %v", how, i, g, w)
			}
			if g.Extensions()["tenant"] != "acme" {
				t.Errorf("%s %d: extensions %v", how, i, g.Extensions())
			}
		}
	}

	// Receive over HTTP with the SDK (batch format).
	hreq, _ := http.NewRequest("GET", e.url+"/v1/topics/sdk/events?limit=100", nil)
	hreq.Header.Set("Accept", "application/cloudevents-batch+json")
	resp, err = http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cehttp.NewEventsFromHTTPResponse(resp)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	check("HTTP", got)

	// Receive over Kafka: franz-go reads the records; the SDK decodes them.
	recs := consumeAll(t, e, "sdk", len(sent))
	var fromKafka []cloudevents.Event
	for _, r := range recs {
		ev, err := binding.ToEvent(ctx, kafkaMessage{r})
		if err != nil {
			t.Fatalf("SDK cannot read record %d: %v (headers %v)", r.Offset, err, headerMap(r))
		}
		fromKafka = append(fromKafka, *ev)
	}
	check("Kafka", fromKafka)
}

// kafkaSpecs are CloudEvents attributes as the Kafka binding names its
// headers.
var kafkaSpecs = spec.WithPrefix("ce_")

// kafkaMessage adapts a franz-go record to the SDK's binding.MessageReader,
// in the Kafka protocol binding's two modes.
type kafkaMessage struct{ r *kgo.Record }

func (m kafkaMessage) header(k string) string {
	for _, h := range m.r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

func (m kafkaMessage) ReadEncoding() binding.Encoding {
	switch {
	case m.header("ce_specversion") != "":
		return binding.EncodingBinary
	case strings.HasPrefix(m.header("content-type"), "application/cloudevents+json"):
		return binding.EncodingStructured
	}
	return binding.EncodingUnknown
}

func (m kafkaMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	if m.ReadEncoding() != binding.EncodingStructured {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, format.JSON, bytes.NewReader(m.r.Value))
}

func (m kafkaMessage) ReadBinary(ctx context.Context, w binding.BinaryWriter) error {
	v := kafkaSpecs.Version(m.header("ce_specversion"))
	if v == nil {
		return binding.ErrNotBinary
	}
	for _, h := range m.r.Headers {
		switch {
		case h.Key == "content-type":
			if err := w.SetAttribute(v.AttributeFromKind(spec.DataContentType), string(h.Value)); err != nil {
				return err
			}
		case strings.HasPrefix(h.Key, "ce_"):
			if a := v.Attribute(h.Key); a != nil {
				if err := w.SetAttribute(a, string(h.Value)); err != nil {
					return err
				}
			} else if err := w.SetExtension(strings.TrimPrefix(h.Key, "ce_"), string(h.Value)); err != nil {
				return err
			}
		}
	}
	if len(m.r.Value) > 0 {
		return w.SetData(bytes.NewReader(m.r.Value))
	}
	return nil
}

func (m kafkaMessage) GetAttribute(k spec.Kind) (spec.Attribute, interface{}) {
	v := kafkaSpecs.Version(m.header("ce_specversion"))
	if v == nil {
		return nil, nil
	}
	a := v.AttributeFromKind(k)
	if a == nil {
		return nil, nil
	}
	name := a.PrefixedName()
	if k == spec.DataContentType {
		name = "content-type"
	}
	if s := m.header(name); s != "" {
		return a, s
	}
	return a, nil
}

func (m kafkaMessage) GetExtension(name string) interface{} {
	if s := m.header("ce_" + name); s != "" {
		return s
	}
	return nil
}
