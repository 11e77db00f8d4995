package subscription

import (
	"bytes"
	"encoding/json"
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
