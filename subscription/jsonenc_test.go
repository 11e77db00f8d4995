package subscription

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// TestAppendPullResponse: the hand-written encoder writes what
// encoding/json writes.
func TestAppendPullResponse(t *testing.T) {
	rs := []Received{
		{AckID: "0000abcd-1-2-3", DeliveryAttempt: 3, Message: Message{
			Data: []byte("hello\x00\xff"), Attributes: map[string]string{"b": "x\"y\\z\n\t\r\x01", "a": "é\u2028\xff<&>"},
			MessageID: "1-2", PublishTime: time.Date(2026, 1, 2, 3, 4, 5, 6000000, time.UTC), OrderingKey: "k",
		}},
		{AckID: "x", DeliveryAttempt: 1, Message: Message{Data: []byte{}, MessageID: "0-0", PublishTime: time.Unix(0, 0).UTC()}},
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	enc.Encode(struct {
		ReceivedMessages []Received `json:"receivedMessages"`
	}{rs})
	if got := appendPullResponse(nil, rs); !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got\n%s\nwant\n%s", got, want.Bytes())
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("plain")
	f.Add("\x00\"\\\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		var back string
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want, _ := json.Marshal(s)
		var w string
		json.Unmarshal(want, &w)
		if back != w {
			t.Fatalf("%q round-trips to %q, want %q", s, back, w)
		}
	})
}

func TestAckID(t *testing.T) {
	for _, c := range []struct {
		inc     uint32
		p       int
		off     int64
		attempt uint16
		want    string
	}{{0, 0, 0, 1, "00000000-0-0-1"}, {0xabc, 3, 1 << 40, 65535, "00000abc-3-1099511627776-65535"}, {0xffffffff, 1, 7, 2, "ffffffff-1-7-2"}} {
		got := ackID(c.inc, c.p, c.off, c.attempt)
		if got != c.want {
			t.Errorf("ackID = %q, want %q", got, c.want)
		}
		inc, p, off, a, ok := parseAckID(got)
		if !ok || inc != c.inc || p != c.p || off != c.off || a != c.attempt {
			t.Errorf("parseAckID(%q) = %x %d %d %d %v", got, inc, p, off, a, ok)
		}
	}
}

func TestParseAckIDRejects(t *testing.T) {
	for _, id := range []string{"", "0000000-0-0-1", "000000000-0-0-1", "0000000g-0-0-1", "00000000-0-0", "00000000-0-0-1-", "00000000--0-1",
		"00000000-32768-0-1", "00000000-0-281474976710656-1", "00000000-0-0-65536", "00000000-+1-0-1", "00000000-0-0-1x", "00000000-0-0- 1"} {
		if _, _, _, _, ok := parseAckID(id); ok {
			t.Errorf("parseAckID(%q) accepted it", id)
		}
	}
	if inc, p, off, a, ok := parseAckID("ABCDEF01-32767-281474976710655-65535"); !ok || inc != 0xabcdef01 || p != 32767 || off != 1<<48-1 || a != 65535 {
		t.Errorf("parseAckID of the largest id = %x %d %d %d %v", inc, p, off, a, ok)
	}
}

// FuzzScanAckIDs: the ack body's fast path agrees with encoding/json on
// every input it accepts.
func FuzzScanAckIDs(f *testing.F) {
	for _, s := range []string{`{"ackIds":["a","b"]}`, ` { "ackIds" : [ ] } `, `{"ackIds":["a\"b"]}`, `{"ackIds":["a"]}x`,
		`{"ackIds":["a",]}`, `{"ackIds":["é"]}`, `{"ackids":["a"]}`, `{"ackIds":["a"],"x":1}`, `{"ackIds":[1]}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, ok := scanAckIDs(b, nil)
		if !ok {
			return
		}
		var req struct {
			AckIDs []string `json:"ackIds"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			t.Fatalf("fast path accepted %q; encoding/json: %v", b, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			t.Fatalf("fast path accepted %q with trailing data", b)
		}
		if len(ids) != len(req.AckIDs) {
			t.Fatalf("%q: %d ids, encoding/json %d", b, len(ids), len(req.AckIDs))
		}
		for i := range ids {
			if string(ids[i]) != req.AckIDs[i] {
				t.Fatalf("%q: id %d is %q, encoding/json %q", b, i, ids[i], req.AckIDs[i])
			}
		}
	})
}
