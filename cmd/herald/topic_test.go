package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func describeTopic(t *testing.T, s *cliServer, name string) topicDescription {
	t.Helper()
	var d topicDescription
	if err := json.Unmarshal([]byte(s.ok(t, "", "topic", "describe", name, "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func configOf(d topicDescription, name string) topicConfig {
	for _, c := range d.Configs {
		if c.Name == name {
			return c
		}
	}
	return topicConfig{}
}

func TestTopicCreate(t *testing.T) {
	s := startCLITestServer(t)
	if out := s.ok(t, "", "topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000",
		"--config", "cleanup.policy=compact,delete"); out != "created topic orders (3 partitions)\n" {
		t.Errorf("create printed %q", out)
	}
	s.fails(t, exitConflict, `herald: topic create: topic "orders" already exists`+"\n", "", "topic", "create", "orders")
	if out := s.ok(t, "", "topic", "create", "orders", "--if-not-exists", "-o", "json"); !strings.Contains(out, `"created": false`) ||
		!strings.Contains(out, `"partitions": 3`) {
		t.Errorf("--if-not-exists -o json printed %s", out)
	}
	// The server's default partition count, and a create-only config.
	s.ok(t, "", "topic", "create", "audit", "--config", "herald.durability=interval=50ms")

	d := describeTopic(t, s, "orders")
	if len(d.Partitions) != 3 || d.Internal {
		t.Errorf("describe: %+v", d)
	}
	if c := configOf(d, "retention.ms"); c.Value == nil || *c.Value != "3600000" || c.Source != "topic" {
		t.Errorf("retention.ms: %+v", c)
	}
	if c := configOf(d, "cleanup.policy"); c.Value == nil || *c.Value != "compact,delete" {
		t.Errorf("cleanup.policy (a list with a comma): %+v", c)
	}
	if c := configOf(d, "segment.ms"); c.Source != "default" {
		t.Errorf("segment.ms: %+v", c)
	}
	a := describeTopic(t, s, "audit")
	if len(a.Partitions) != 1 || *configOf(a, "herald.durability").Value != "interval=50ms" {
		t.Errorf("audit: %+v", a)
	}

	s.fails(t, exitUsage, `herald: topic create: topic "bad name!"`, "", "topic", "create", "bad name!")
}

func TestTopicListDescribe(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "b", "--partitions", "2")
	s.ok(t, "", "topic", "create", "a")
	s.ok(t, "", "topic", "create", "__herald_test_state") // a service's state topic
	// The coordinators' internal topics exist once they run.
	out := s.ok(t, "", "topic", "list")
	if want := "NAME  PARTITIONS\na     1\nb     2\n"; out != want {
		t.Errorf("topic list:\n%s\nwant:\n%s", out, want)
	}
	var all []topicListEntry
	if err := json.Unmarshal([]byte(s.ok(t, "", "topic", "list", "--all", "-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 || all[0] != (topicListEntry{"__consumer_offsets", 1, true}) || all[1] != (topicListEntry{"__herald_test_state", 1, true}) ||
		all[2] != (topicListEntry{"__transaction_state", 1, true}) || all[3] != (topicListEntry{"a", 1, false}) {
		t.Errorf("topic list --all -o json: %+v", all)
	}
	if out := s.ok(t, "", "topic", "list", "--all"); !strings.Contains(out, "INTERNAL") || !strings.Contains(out, "__consumer_offsets") {
		t.Errorf("topic list --all:\n%s", out)
	}

	s.ok(t, "a\nb\nc\n", "produce", "b", "--partition", "1", "-q")
	out = s.ok(t, "", "topic", "describe", "b")
	for _, want := range []string{"Topic:       b\n", "PARTITION  START-OFFSET  END-OFFSET\n0          0             0\n1          0             3\n",
		"CONFIG", "retention.ms", "SOURCE"} {
		if !strings.Contains(out, want) {
			t.Errorf("topic describe lacks %q:\n%s", want, out)
		}
	}
	d := describeTopic(t, s, "b")
	if d.Partitions[1] != (partitionOffsets{1, 0, 3}) || d.ID == "" {
		t.Errorf("describe -o json: %+v", d)
	}
	s.fails(t, exitNotFound, `herald: topic describe: topic "nope" not found`+"\n", "", "topic", "describe", "nope")
}

func TestTopicAlter(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "t", "--partitions", "2", "--config", "segment.ms=3600000")

	out := s.ok(t, "", "topic", "alter", "t", "--set", "retention.ms=1000", "--delete", "segment.ms", "--partitions", "4")
	if want := "topic t: set retention.ms=1000\ntopic t: segment.ms back to its default\ntopic t: now 4 partitions\n"; out != want {
		t.Errorf("alter printed %q, want %q", out, want)
	}
	d := describeTopic(t, s, "t")
	if len(d.Partitions) != 4 || *configOf(d, "retention.ms").Value != "1000" || configOf(d, "segment.ms").Source != "default" {
		t.Errorf("after alter: %+v", d)
	}

	// A bad value changes nothing, not even the valid parts.
	s.fails(t, exitUsage, `herald: topic alter: topic "t": invalid config`, "",
		"topic", "alter", "t", "--set", "retention.ms=2000", "--set", "max.message.bytes=many", "--partitions", "6")
	s.fails(t, exitUsage, `herald: topic alter: topic "t"`, "", "topic", "alter", "t", "--set", "retention.ms=2000", "--partitions", "3")
	d = describeTopic(t, s, "t")
	if len(d.Partitions) != 4 || *configOf(d, "retention.ms").Value != "1000" {
		t.Errorf("a refused alter changed the topic: %+v", d)
	}
	s.fails(t, exitUsage, "herald: topic alter: --delete retention.ms: retention.ms is also given to --set", "",
		"topic", "alter", "t", "--set", "retention.ms=1", "--delete", "retention.ms")
	s.fails(t, exitUsage, "invalid config", "", "topic", "alter", "t", "--set", "herald.durability=memory")
	s.fails(t, exitNotFound, `herald: topic alter: topic "nope" not found`, "", "topic", "alter", "nope", "--set", "retention.ms=1")
	s.fails(t, exitNotFound, `herald: topic alter: topic "nope" not found`, "", "topic", "alter", "nope", "--partitions", "3")

	out = s.ok(t, "", "topic", "alter", "t", "--set", "retention.ms=5000", "-o", "json")
	var res struct {
		Topic   string            `json:"topic"`
		Set     map[string]string `json:"set"`
		Deleted []string          `json:"deleted"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Set["retention.ms"] != "5000" || res.Deleted == nil {
		t.Errorf("alter -o json: %s (%v)", out, err)
	}
}

func TestTopicDelete(t *testing.T) {
	s := startCLITestServer(t)
	for _, n := range []string{"a", "b", "c"} {
		s.ok(t, "", "topic", "create", n)
	}
	if out := s.ok(t, "", "topic", "delete", "a"); out != "deleted topic a\n" {
		t.Errorf("delete printed %q", out)
	}
	s.fails(t, exitNotFound, `herald: topic delete: topic "a" not found`+"\n", "", "topic", "delete", "a")
	if out := s.ok(t, "", "topic", "delete", "a", "b", "--if-exists", "-o", "json"); !strings.Contains(out, `"topic": "a",
    "deleted": false`) || !strings.Contains(out, `"topic": "b",
    "deleted": true`) {
		t.Errorf("delete --if-exists -o json:\n%s", out)
	}
	// Every name is tried; each failure is reported.
	r := s.fails(t, exitNotFound, "herald: topic delete: 2 of 3 topics failed", "", "topic", "delete", "x", "c", "y")
	if !strings.Contains(r.stderr, `herald: topic delete: topic "x" not found`) || !strings.Contains(r.stderr, `topic "y" not found`) ||
		r.stdout != "deleted topic c\n" {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	if out := s.ok(t, "", "topic", "list"); out != "NAME  PARTITIONS\n" {
		t.Errorf("topics left: %q", out)
	}
}
