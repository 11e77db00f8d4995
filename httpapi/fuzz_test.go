package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/internal/httpjson"
)

// FuzzDecodeHTTP feeds the CloudEvents HTTP decoders (binary headers,
// structured, batch) arbitrary input. They must never panic; every error
// must be INVALID_ARGUMENT in the error shape; every event accepted must
// validate, survive the Kafka binding unchanged (what is stored is what
// was accepted), and render in the JSON event format that parses back
// (the read path never fails on what publish stored).
func FuzzDecodeHTTP(f *testing.F) {
	f.Add(uint8(0), []byte("Ce-Specversion\x001.0\x00Ce-Id\x001\x00Ce-Source\x00/s\x00Ce-Type\x00t\x00Content-Type\x00text/plain"), []byte("hi"))
	f.Add(uint8(0), []byte("Ce-Specversion\x001.0\x00Ce-Source\x00%2Fs%20x\x00Ce-Type\x00t\x00Ce-Time\x002026-01-02T03:04:05Z\x00Ce-Partitionkey\x00k"), []byte{})
	f.Add(uint8(0), []byte("Ce-Specversion\x001.0\x00Ce-Source\x00s\x00Ce-Type\x00%zz\x00Ce-Aggregateversion\x00x"), []byte{0xff})
	f.Add(uint8(1), []byte{}, []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":[1,2]},"ext":1,"b":true}`))
	f.Add(uint8(1), []byte{}, []byte(`{"specversion":"1.0","source":"s","type":"t","datacontenttype":"text/plain","data":"x","time":"2026-01-02T03:04:05.1+02:00"}`))
	f.Add(uint8(1), []byte{}, []byte(`{"specversion":"1.0","source":"s","type":"t","data_base64":"AAE=","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`))
	f.Add(uint8(1), []byte{}, []byte(`{"specversion":"1.0","source":"s","type":"t","data":null,"x":null,"kind":"command","aggregateid":"a","aggregateversion":"3"}`))
	f.Add(uint8(2), []byte{}, []byte(`[{"specversion":"1.0","source":"s","type":"t"},{"specversion":"1.0","id":"2","source":"s","type":"t","data":"q"}]`))
	f.Add(uint8(2), []byte{}, []byte(`[{},null,1]`))
	f.Fuzz(func(t *testing.T, mode uint8, hs, body []byte) {
		var evs []*event.Event
		var err error
		switch mode % 3 {
		case 0:
			h := http.Header{}
			parts := bytes.Split(hs, []byte{0})
			for i := 0; i+1 < len(parts); i += 2 {
				h[string(parts[i])] = append(h[string(parts[i])], string(parts[i+1]))
			}
			var e *event.Event
			if e, err = decodeBinary(h, body); err == nil {
				evs = append(evs, e)
			}
		case 1:
			var e *event.Event
			if e, err = decodeStructured(body); err == nil {
				evs = append(evs, e)
			}
		case 2:
			evs, err = decodeBatch(body)
		}
		if err != nil {
			var he *httpjson.Error
			if !errors.As(err, &he) || he.Code != httpjson.CodeInvalidArgument || he.Message == "" {
				t.Fatalf("error %#v is not INVALID_ARGUMENT", err)
			}
			return
		}
		if len(evs) == 0 {
			t.Fatal("no error and no events")
		}
		for _, e := range evs {
			if err := e.Validate(); err != nil {
				t.Fatalf("accepted an invalid event: %v", err)
			}
			m, err := event.Encode(e)
			if err != nil {
				t.Fatalf("accepted event does not encode: %v", err)
			}
			back, err := event.DecodeAny(m)
			if err != nil {
				t.Fatalf("stored event does not decode: %v", err)
			}
			if !reflect.DeepEqual(e, back) {
				t.Fatalf("Kafka binding changed the event:\n in %#v\nout %#v", e, back)
			}
			j, err := event.MarshalJSON(e)
			if err != nil {
				t.Fatalf("accepted event does not render as JSON: %v", err)
			}
			again, err := decodeStructured(j)
			if err != nil {
				t.Fatalf("rendered event %s does not parse: %v", j, err)
			}
			if again.ID != e.ID || again.Source != e.Source || again.Type != e.Type || !again.Time.Equal(e.Time) ||
				again.Subject != e.Subject || !reflect.DeepEqual(again.Extensions, e.Extensions) || again.PartitionKey != e.PartitionKey {
				t.Fatalf("JSON round trip changed attributes:\n in %#v\nout %#v", e, again)
			}
		}
	})
}

// FuzzReadItem feeds the read path arbitrary Kafka records (any client
// may produce them): it must never panic, and what it returns is either a
// CloudEvent that parses back or the raw form.
func FuzzReadItem(f *testing.F) {
	f.Add([]byte("ce_specversion\x001.0\x00ce_id\x001\x00ce_source\x00/s\x00ce_type\x00t\x00content-type\x00application/json"), []byte("k"), []byte(`{"a":1}`))
	f.Add([]byte("content-type\x00application/cloudevents+json"), []byte(nil), []byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","data":"x"}`))
	f.Add([]byte("ce_specversion\x001.0\x00ce_data\x00x"), []byte{0xff}, []byte{0xfe})
	f.Add([]byte("h\x00\xff"), []byte(nil), []byte(nil))
	f.Fuzz(func(t *testing.T, hs, key, value []byte) {
		rec := &batch.Record{Key: key, Value: value}
		parts := bytes.Split(hs, []byte{0})
		for i := 0; i+1 < len(parts); i += 2 {
			rec.Headers = append(rec.Headers, batch.RecordHeader{Key: parts[i], Value: parts[i+1]})
		}
		item := readItem(0, 7, 1700000000000, rec)
		switch {
		case item.Event != nil && item.Record != nil, item.Event == nil && item.Record == nil:
			t.Fatalf("want exactly one of event and record: %+v", item)
		case item.Event != nil:
			if _, err := decodeStructured(item.Event); err != nil {
				t.Fatalf("returned event %s does not parse: %v", item.Event, err)
			}
		}
		if _, err := json.Marshal(item); err != nil {
			t.Fatalf("item does not marshal: %v", err)
		}
	})
}
