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
