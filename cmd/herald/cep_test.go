package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCEPTestCommand(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "fraud.json")
	os.WriteFile(pf, []byte(`{"name":"Fraud","type":"FraudAlert","key":"data.user","within":"10m","skip":"skip_past_last_event",
 "steps":[{"name":"failures","match":{"type":["LoginFailed"]},"min":3,"max":3},
          {"name":"success","match":{"type":["LoginSuccess"]},"contiguity":"strict"}]}`), 0o644)
	line := func(id, typ, user, tm string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"/auth","type":"` + typ + `","time":"2026-01-01T00:` + tm + `Z","datacontenttype":"application/json","data":{"user":"` + user + `"}}`
	}
	evs := strings.Join([]string{
		line("1", "LoginFailed", "eve", "00:00"), line("2", "LoginFailed", "bob", "00:01"),
		line("3", "LoginFailed", "eve", "00:02"), line("4", "LoginFailed", "eve", "00:03"),
		line("5", "LoginSuccess", "eve", "00:04"), line("6", "LoginSuccess", "bob", "00:05"),
	}, "\n")
	ef := filepath.Join(dir, "events.jsonl")
	os.WriteFile(ef, []byte(evs), 0o644)
	r := runRule(t, "cep", "test", "--pattern", "@"+pf, "--events", "@"+ef)
	if r.code != 0 || r.stdout != "match key=\"eve\" failures=1 failures=3 failures=4 success=5\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runRule(t, "cep", "test", "--pattern", "@"+pf, "--events", "@"+ef, "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"type":"FraudAlert"`) || !strings.Contains(r.stdout, `"causationid":"5"`) {
		t.Fatalf("json: exit %d stdout %q", r.code, r.stdout)
	}
	if r := runRule(t, "cep", "test", "--pattern", "@"+pf, "--events", line("1", "LoginFailed", "eve", "00:00")); r.code != 1 {
		t.Fatalf("no match: exit %d", r.code)
	}
	if r := runRule(t, "cep", "test", "--pattern", `{"name":"x","steps":[{"name":"a"},{"name":"n","negation":"not_followed_by"}]}`, "--events", "[]"); r.code != 2 || !strings.Contains(r.stderr, "needs within") {
		t.Fatalf("bad pattern: exit %d stderr %q", r.code, r.stderr)
	}
}
