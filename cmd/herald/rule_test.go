package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/rules"
)

type ruleRun struct {
	stdout, stderr string
	code           int
}

func runRule(t *testing.T, args ...string) ruleRun {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(args)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(""))
	err := root.ExecuteContext(context.Background())
	if err != nil {
		errb.WriteString("herald: " + err.Error() + "\n")
	}
	return ruleRun{out.String(), errb.String(), exitCodeOf(err)}
}

func TestRuleTestCommand(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "p.json")
	os.WriteFile(pf, []byte(`{"source":["shop"],"detail":{"total":[{"numeric":[">",100]}]}}`), 0o644)
	cases := []struct {
		pattern, event string
		code           int
		out            string
	}{
		{"@" + pf, `{"source":"shop","data":{"total":150}}`, 0, "match\n  matched: source = \"shop\""},
		{"@" + pf, `{"source":"shop","data":{"total":50}}`, 1, "no match\n  data.total: value 50 does not match data.total numeric > 100"},
		{"@" + pf, `{"source":"shop"}`, 1, "data.total: field is missing"},
		{`{"a":[{"prefix":3}]}`, `{}`, 2, ""},
		{`{"a":["x"]}`, `{"a":`, 2, ""},
		{"@" + filepath.Join(dir, "missing.json"), `{}`, 2, ""},
	}
	for _, c := range cases {
		r := runRule(t, "rule", "test", "--pattern", c.pattern, "--event", c.event)
		if r.code != c.code || !strings.Contains(r.stdout, c.out) {
			t.Errorf("rule test %s %s: exit %d stdout %q stderr %q; want exit %d and %q", c.pattern, c.event, r.code, r.stdout, r.stderr, c.code, c.out)
		}
	}
	r := runRule(t, "rule", "test", "--pattern", `{"a":[{"prefix":3}]}`, "--event", "{}")
	if !strings.Contains(r.stderr, "$.a[0].prefix") {
		t.Errorf("invalid pattern error does not name the path: %q", r.stderr)
	}
	if r := runRule(t, "rule", "test", "-q", "--pattern", `{"a":["x"]}`, "--event", `{"a":"x"}`); r.code != 0 || r.stdout != "" {
		t.Errorf("quiet match: %+v", r)
	}
	if r := runRule(t, "rule", "test", "--pattern", `{"a":["x"]}`); r.code != 2 {
		t.Errorf("missing --event: %+v", r)
	}
}

func TestRuleCRUDCommands(t *testing.T) {
	b, err := broker.Open(broker.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	store, _ := b.GroupStore()
	g, err := groups.New(context.Background(), groups.Config{Store: store, TopicExists: b.PartitionExists, HighWatermark: b.HighWatermark})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := embedded.New(embedded.Config{Broker: b, Groups: g})
	defer func() { l.Close(); g.Close(); b.Close() }()
	e, err := rules.New(rules.Config{Log: l})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	mux := http.NewServeMux()
	e.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	api := []string{"--http", srv.URL}
	run := func(args ...string) ruleRun { return runRule(t, append(append([]string{"rule"}, args...), api...)...) }

	if r := run("create", "big", "--pattern", `{"source":["shop"]}`, "--target", "a=out", "--target", "h=https://example.com/h", "--dead-letter-topic", "dlq"); r.code != 0 || !strings.Contains(r.stdout, `rule "big" created`) {
		t.Fatalf("create: %+v", r)
	}
	if r := run("create", "big", "--pattern", `{"source":["shop"]}`, "--target", "a=out"); r.code != 4 {
		t.Fatalf("duplicate create: %+v", r)
	}
	if r := run("create", "bad", "--pattern", `{"source":[{"wildcard":"a**"}]}`, "--target", "a=out"); r.code != 2 || !strings.Contains(r.stderr, "$.source[0].wildcard") {
		t.Fatalf("bad create: %+v", r)
	}
	if r := run("create", "tick", "--schedule", "rate(5 minutes)", "--target", "a=out", "--disabled"); r.code != 0 {
		t.Fatalf("schedule create: %+v", r)
	}
	r := run("list")
	if r.code != 0 || !strings.Contains(r.stdout, "big") || !strings.Contains(r.stdout, "rate(5 minutes)") || !strings.Contains(r.stdout, "DISABLED") {
		t.Fatalf("list: %+v", r)
	}
	r = run("describe", "big")
	if r.code != 0 || !strings.Contains(r.stdout, "https://example.com/h") || !strings.Contains(r.stdout, "dlq") {
		t.Fatalf("describe: %+v", r)
	}
	if r := run("describe", "nope"); r.code != 3 {
		t.Fatalf("describe missing: %+v", r)
	}
	if r := run("disable", "big"); r.code != 0 || !strings.Contains(r.stdout, "DISABLED") {
		t.Fatalf("disable: %+v", r)
	}
	if r := run("enable", "big"); r.code != 0 {
		t.Fatalf("enable: %+v", r)
	}
	if r := run("delete", "big", "tick"); r.code != 0 {
		t.Fatalf("delete: %+v", r)
	}
	if r := run("delete", "big"); r.code != 3 {
		t.Fatalf("delete missing: %+v", r)
	}
	if r := run("delete", "--if-exists", "big"); r.code != 0 {
		t.Fatalf("delete --if-exists: %+v", r)
	}

	// Archives and replays.
	cli := func(args ...string) ruleRun { return runRule(t, append(args, api...)...) }
	if r := run("create", "r1", "--pattern", `{"source":["shop"]}`, "--target", "a=out"); r.code != 0 {
		t.Fatalf("create r1: %+v", r)
	}
	if r := cli("archive", "create", "keep", "--retention-days", "3"); r.code != 0 || !strings.Contains(r.stdout, `archive "keep" created`) {
		t.Fatalf("archive create: %+v", r)
	}
	if r := cli("archive", "create", "bad", "--pattern", `{"a":[]}`); r.code != 2 || !strings.Contains(r.stderr, "$.a") {
		t.Fatalf("archive create bad: %+v", r)
	}
	if r := cli("archive", "list"); r.code != 0 || !strings.Contains(r.stdout, "keep") || !strings.Contains(r.stdout, "3d") {
		t.Fatalf("archive list: %+v", r)
	}
	for i := 0; i < 5; i++ {
		ev := event.New("shop", "order")
		ev.Time = time.Now().Add(-time.Duration(10-i) * time.Minute)
		if err := e.Publish(context.Background(), rules.DefaultBus, ev); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, end, _ := l.Offsets(context.Background(), "__herald_archive.keep", 0)
		if end == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive has %d events", end)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r = cli("replay", "start", "again", "--archive", "keep", "--from", "-1h", "--to", "now", "--rule", "r1", "--wait")
	if r.code != 0 || !strings.Contains(r.stdout, "COMPLETED, 5 of 5 events") {
		t.Fatalf("replay start --wait: %+v", r)
	}
	if r := cli("replay", "status", "again"); r.code != 0 || !strings.Contains(r.stdout, "COMPLETED") {
		t.Fatalf("replay status: %+v", r)
	}
	if r := cli("replay", "cancel", "again"); r.code != 4 {
		t.Fatalf("cancel completed replay: %+v", r)
	}
	if r := cli("replay", "start", "x", "--archive", "keep", "--from", "yesterday", "--to", "now", "--rule", "r1"); r.code != 2 {
		t.Fatalf("bad --from: %+v", r)
	}
	if r := cli("replay", "status", "nope"); r.code != 3 {
		t.Fatalf("missing replay: %+v", r)
	}
	if r := cli("archive", "delete", "keep"); r.code != 0 {
		t.Fatalf("archive delete: %+v", r)
	}
}
