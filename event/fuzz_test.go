package event

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode feeds Decode arbitrary headers. It must never panic, every
// error must wrap ErrMalformed, and whatever it accepts must re-encode and
// decode to the same event.
func FuzzDecode(f *testing.F) {
	m, _ := Encode(full())
	f.Add(join(m.Headers), m.Key, m.Value)
	f.Add([]byte("ce_specversion\x001.0\x00ce_id\x00x\x00ce_source\x00s\x00ce_type\x00t"), []byte(nil), []byte(nil))
	f.Add([]byte("ce_specversion\x001.0\x00ce_time\x009999-12-31T23:59:59.999999999+14:00"), []byte("k"), []byte("v"))
	f.Add([]byte("ce_aggregateversion\x00-9223372036854775808\x00ce_kind\x00command"), []byte{}, []byte{0xff})
	f.Add([]byte("ce_\x00\x00ce_traceparent\x0000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, hs, key, value []byte) {
		parts := bytes.Split(hs, []byte{0})
		var headers []Header
		for i := 0; i+1 < len(parts); i += 2 {
			headers = append(headers, Header{Key: string(parts[i]), Value: parts[i+1]})
		}
		e, err := Decode(Message{Key: key, Value: value, Headers: headers})
		if err != nil {
			if !isMalformed(err) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		m, err := Encode(e)
		if err != nil {
			t.Fatalf("decoded event does not encode: %v (%+v)", err, e)
		}
		again, err := Decode(m)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !again.Time.Equal(e.Time) {
			t.Fatalf("time changed: %v -> %v", e.Time, again.Time)
		}
		again.Time = e.Time
		if len(again.Data) == 0 && len(e.Data) == 0 {
			again.Data, e.Data = nil, nil
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", e, again)
		}
	})
}

func join(hs []Header) []byte {
	var b []byte
	for i, h := range hs {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(append(append(b, h.Key...), 0), h.Value...)
	}
	return b
}

func isMalformed(err error) bool { return errors.Is(err, ErrMalformed) }
