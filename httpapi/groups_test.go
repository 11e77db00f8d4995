package httpapi

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestGroups(t *testing.T) {
	e := newEnv(t)
	e.createTopic("g", 2, nil)
	var b strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, `{"value":%d,"partition":%d},`, i, i%2)
	}
	e.publish("g", "application/json", `{"records":[`+strings.TrimSuffix(b.String(), ",")+`]}`, nil)

	// A real consumer group reads 10 records and commits, then a second
	// stays joined.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.srv.KafkaAddr()), kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("g"),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for n < 10 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d", n)
		}
		n += fs.NumRecords()
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}

	// Active: listed, described with members; no reset, no delete.
	var list struct{ Groups []groupSummary }
	e.must(e.do("GET", "/v1/groups", nil, nil), 200, &list)
	if len(list.Groups) != 1 || list.Groups[0].Group != "billing" || list.Groups[0].ProtocolType != "consumer" {
		t.Errorf("list: %+v", list)
	}
	var d groupDescription
	e.must(e.do("GET", "/v1/groups/billing", nil, nil), 200, &d)
	if len(d.Members) != 1 || d.TotalLag != 0 || len(d.Offsets) != 2 || d.Offsets[0].CommittedOffset != 5 || d.Offsets[1].EndOffset != 5 {
		t.Errorf("describe active: %+v", d)
	}
	expectError(t, e.doJSON("POST", "/v1/groups/billing/offsets:reset", map[string]any{"to": "earliest", "allTopics": true}), 412, "group", "active members")
	expectError(t, e.do("DELETE", "/v1/groups/billing", nil, nil), 412, "group", "active members")
	cl.Close() // leaves the group

	e.publish("g", "application/json", `{"records":[{"value":1,"partition":0},{"value":2,"partition":0}]}`, nil)
	e.must(e.do("GET", "/v1/groups/billing", nil, nil), 200, &d)
	if d.State != "Empty" || len(d.Members) != 0 || d.TotalLag != 2 || d.Offsets[0].Lag != 2 {
		t.Errorf("describe after leaving: %+v", d)
	}

	// Reset: a dry run changes nothing; then to earliest on partition 0,
	// then shift back from the current offsets, then by time.
	type resetOut struct {
		Executed   bool
		Partitions []resetPartition
	}
	var r resetOut
	e.must(e.doJSON("POST", "/v1/groups/billing/offsets:reset", map[string]any{"to": "earliest", "allTopics": true, "dryRun": true}), 200, &r)
	if r.Executed || len(r.Partitions) != 2 || r.Partitions[0].New != 0 || *r.Partitions[0].Current != 5 || r.Partitions[0].LagAfter != 7 {
		t.Errorf("dry run: %+v", r)
	}
	e.must(e.do("GET", "/v1/groups/billing", nil, nil), 200, &d)
	if d.Offsets[0].CommittedOffset != 5 {
		t.Errorf("a dry run moved the offset to %d", d.Offsets[0].CommittedOffset)
	}
	e.must(e.doJSON("POST", "/v1/groups/billing/offsets:reset", map[string]any{"to": "earliest", "topics": []map[string]any{{"topic": "g", "partitions": []int{0}}}}), 200, &r)
	e.must(e.do("GET", "/v1/groups/billing", nil, nil), 200, &d)
	if !r.Executed || len(r.Partitions) != 1 || d.Offsets[0].CommittedOffset != 0 || d.Offsets[1].CommittedOffset != 5 {
		t.Errorf("reset partition 0: %+v then %+v", r, d.Offsets)
	}
	e.must(e.doJSON("POST", "/v1/groups/billing/offsets:reset", map[string]any{"to": "shift", "shiftBy": -2, "allTopics": true}), 200, &r)
	e.must(e.do("GET", "/v1/groups/billing", nil, nil), 200, &d)
	if d.Offsets[0].CommittedOffset != 0 || d.Offsets[1].CommittedOffset != 3 {
		t.Errorf("shift -2 (clamped at the start): %+v", d.Offsets)
	}
	e.must(e.doJSON("POST", "/v1/groups/billing/offsets:reset", map[string]any{"to": "offset", "offset": 100, "topics": []map[string]any{{"topic": "g"}}}), 200, &r)
	if r.Partitions[0].New != 7 || r.Partitions[1].New != 5 {
		t.Errorf("to offset 100 (clamped at the end): %+v", r)
	}
	e.must(e.doJSON("POST", "/v1/groups/billing/offsets:reset", map[string]any{"to": "time", "time": time.Now().Add(time.Hour).Format(time.RFC3339), "allTopics": true}), 200, &r)
	if r.Partitions[0].New != 7 || r.Partitions[0].LagAfter != 0 {
		t.Errorf("to a future time: %+v", r)
	}
	e.must(e.doJSON("POST", "/v1/groups/billing/offsets:reset", map[string]any{"to": "time", "time": "2000-01-01T00:00:00Z", "allTopics": true}), 200, &r)
	if r.Partitions[0].New != 0 || r.Partitions[1].New != 0 {
		t.Errorf("to a past time: %+v", r)
	}

	// Pagination over groups; delete.
	for _, g := range []string{"a", "b"} {
		e.must(e.doJSON("POST", "/v1/groups/"+g+"/offsets:reset", map[string]any{"to": "latest", "topics": []map[string]any{{"topic": "g"}}}), 200, nil)
	}
	var page struct {
		Groups        []groupSummary
		NextPageToken string
	}
	e.must(e.do("GET", "/v1/groups?pageSize=2", nil, nil), 200, &page)
	if len(page.Groups) != 2 || page.Groups[0].Group != "a" || page.NextPageToken == "" {
		t.Errorf("page 1: %+v", page)
	}
	token := page.NextPageToken
	page.NextPageToken = ""
	e.must(e.do("GET", "/v1/groups?pageSize=2&pageToken="+token, nil, nil), 200, &page)
	if len(page.Groups) != 1 || page.Groups[0].Group != "billing" || page.NextPageToken != "" {
		t.Errorf("page 2: %+v", page)
	}
	e.must(e.do("DELETE", "/v1/groups/billing", nil, nil), 204, nil)
	expectError(t, e.do("GET", "/v1/groups/billing", nil, nil), 404, "group")
}

func TestGroupsWithoutCoordinator(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Groups = nil })
	for _, path := range []string{"/v1/groups", "/v1/groups/g"} {
		expectError(t, e.do("GET", path, nil, nil), 503, "", "no group coordinator")
	}
	expectError(t, e.do("GET", "/v1/groups/"+strings.Repeat("x", 300), nil, nil), 503, "", "")
	e.createTopic("t", 1, nil)
	expectError(t, e.doJSON("POST", "/v1/topics/t/deadletters:redrive", map[string]any{}), 503, "", "no group coordinator")
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Broker is nil") {
		t.Errorf("no broker: %v", err)
	}
	e := newEnv(t)
	if _, err := New(Config{Broker: e.srv.Broker, MaxPublishBytes: -1, MaxReadWait: -1}); err == nil ||
		!strings.Contains(err.Error(), "MaxPublishBytes -1") || !strings.Contains(err.Error(), "MaxReadWait") {
		t.Errorf("negative limits: %v", err)
	}
}
