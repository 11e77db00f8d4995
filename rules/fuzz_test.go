package rules

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzParseSchedule: no schedule text crashes the parser, and an accepted
// schedule always yields a next time after now or none.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"rate(5 minutes)", "rate(1 hour)", "cron(0 12 * * ? *)", "cron(0/15 9-17 ? * MON-FRI *)",
		"cron(0 0 L * ? 2027)", "cron(30 6 1 JAN,JUL ? 2027-2028)", "cron(* * * * *)", "rate()", "cron(0 0 29 2 ? 2100)"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseSchedule(s)
		if err != nil {
			return
		}
		if n := sc.Next(now, now); !n.IsZero() && !n.After(now) {
			t.Fatalf("%s: next %v is not after %v", s, n, now)
		}
	})
}

// FuzzTransformer: no input transformer crashes compile or apply, and a
// JSON template renders JSON when every value exists.
func FuzzTransformer(f *testing.F) {
	f.Add(`{"id":"<id>","n":<n>,"e":<herald.event>}`, "$.data.id", "$.data.n", `{"data":{"id":"x","n":1}}`)
	f.Add(`text <id> and <n>`, "$.a[0]", "$['b']", `{"a":[1],"b":"q"}`)
	f.Add(`"<id>"`, "$", "$.x.y", `[]`)
	f.Fuzz(func(t *testing.T, tmpl, p1, p2, doc string) {
		tr, err := compileTransformer(&InputTransformer{InputPaths: map[string]string{"id": p1, "n": p2}, InputTemplate: tmpl}, "t")
		if err != nil {
			return
		}
		out := tr.apply([]byte(doc), "rule")
		if !tr.text && json.Valid([]byte(doc)) {
			var v any
			_ = json.Unmarshal([]byte(doc), &v)
			_, ok1 := tr.paths["id"].eval(v)
			_, ok2 := tr.paths["n"].eval(v)
			if ok1 && ok2 && !json.Valid(out) {
				t.Fatalf("template %q on %s rendered invalid JSON %q", tmpl, doc, out)
			}
		}
	})
}
