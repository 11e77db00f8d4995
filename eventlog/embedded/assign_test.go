package embedded

import (
	"fmt"
	"testing"

	"github.com/heraldhq/herald/broker/groups"
)

func TestRangeAssign(t *testing.T) {
	members := []groups.Member{
		{MemberID: "c", Metadata: encodeSubscription([]string{"a", "b"})},
		{MemberID: "a", Metadata: encodeSubscription([]string{"a"})},
		{MemberID: "b", Metadata: encodeSubscription([]string{"a", "b"})},
		{MemberID: "bad", Metadata: []byte{0xff}},
	}
	parts := map[string]int{"a": 4, "b": 3}
	got := rangeAssign(members, func(t string) int { return parts[t] })
	want := map[string]string{
		"a":   "[{a 0} {a 1}]",
		"b":   "[{a 2} {b 0} {b 1}]",
		"c":   "[{a 3} {b 2}]",
		"bad": "[]",
	}
	for id, w := range want {
		if g := fmt.Sprint(got[id]); g != w {
			t.Errorf("member %s got %s, want %s", id, g, w)
		}
		back, err := decodeAssignment(encodeAssignment(got[id]))
		if err != nil || fmt.Sprint(back) != fmt.Sprint(got[id]) {
			t.Errorf("assignment of %s does not round-trip: %v, %v", id, back, err)
		}
	}
}
