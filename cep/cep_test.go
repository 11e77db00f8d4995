package cep

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
)

type rec struct {
	matches  []string
	timeouts []string
	invalid  []string
	all      []*Match
}

func ids(m *Match) string {
	var b []string
	for _, e := range m.Events {
		b = append(b, e.ID)
	}
	return strings.Join(b, " ")
}
func (r *rec) Match(m *Match)   { r.matches = append(r.matches, ids(m)); r.all = append(r.all, m) }
func (r *rec) Timeout(m *Match) { r.timeouts = append(r.timeouts, ids(m)) }
func (r *rec) Invalid(ev *event.Event, err error) {
	r.invalid = append(r.invalid, ev.ID+": "+err.Error())
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func mk(id, typ, user string, sec int) *event.Event {
	e := event.New("test", typ)
	e.ID = id
	e.Time = t0.Add(time.Duration(sec) * time.Second)
	e.Data = []byte(fmt.Sprintf(`{"user":%q,"v":%d}`, user, sec))
	return e
}

func typ(t string) json.RawMessage { return json.RawMessage(`{"type":["` + t + `"]}`) }

func runPattern(t *testing.T, p Pattern, evs []*event.Event) *rec {
	t.Helper()
	eng, err := NewEngine(p)
	if err != nil {
		t.Fatal(err)
	}
	var r rec
	for _, e := range evs {
		eng.Process(e, &r)
	}
	eng.Flush(&r)
	return &r
}

// TestFlinkContiguity is the example of Flink's CEP documentation: pattern
// "a b" over "a c b1 b2".
func TestFlinkContiguity(t *testing.T) {
	evs := []*event.Event{mk("a", "a", "u", 1), mk("c", "c", "u", 2), mk("b1", "b", "u", 3), mk("b2", "b", "u", 4)}
	for _, c := range []struct {
		cont Contiguity
		want []string
	}{
		{Strict, nil},
		{Relaxed, []string{"a b1"}},
		{Any, []string{"a b1", "a b2"}},
	} {
		p := Pattern{Name: "ab", Steps: []Step{{Name: "a", Match: typ("a")}, {Name: "b", Match: typ("b"), Contiguity: c.cont}}}
		r := runPattern(t, p, evs)
		if strings.Join(r.matches, "|") != strings.Join(c.want, "|") {
			t.Errorf("%v: matches %q, want %q", c.cont, r.matches, c.want)
		}
	}
}

func fraud() Pattern {
	return Pattern{
		Name: "Fraud", Type: "FraudAlert", Key: "data.user", Within: 10 * time.Minute, Skip: SkipPastLastEvent,
		Steps: []Step{
			{Name: "failures", Match: typ("LoginFailed"), Min: 3, Max: 3},
			{Name: "success", Match: typ("LoginSuccess"), Contiguity: Strict},
		},
	}
}

// TestFraudPattern is the seed's example: three LoginFailed then a
// LoginSuccess for one user within ten minutes raise a FraudAlert.
func TestFraudPattern(t *testing.T) {
	evs := []*event.Event{
		mk("m1", "LoginFailed", "mallory", 0),
		mk("a1", "LoginFailed", "alice", 1), // decoy: another user interleaved
		mk("m2", "LoginFailed", "mallory", 10),
		mk("a2", "LoginSuccess", "alice", 11),
		mk("m3", "LoginFailed", "mallory", 20),
		mk("m4", "LoginSuccess", "mallory", 30), // alert
		// bob: three failures, success too late (11 minutes after the first)
		mk("b1", "LoginFailed", "bob", 100), mk("b2", "LoginFailed", "bob", 110), mk("b3", "LoginFailed", "bob", 120),
		mk("b4", "LoginSuccess", "bob", 760),
		// carol: four failures then success: one alert, on the last three
		// (the success must come right after the third failure)
		mk("c1", "LoginFailed", "carol", 1000), mk("c2", "LoginFailed", "carol", 1001), mk("c3", "LoginFailed", "carol", 1002),
		mk("c4", "LoginFailed", "carol", 1003), mk("c5", "LoginSuccess", "carol", 1004),
		// dave: two failures only
		mk("d1", "LoginFailed", "dave", 2000), mk("d2", "LoginFailed", "dave", 2001), mk("d3", "LoginSuccess", "dave", 2002),
	}
	r := runPattern(t, fraud(), evs)
	want := []string{"m1 m2 m3 m4", "c2 c3 c4 c5"}
	if strings.Join(r.matches, "|") != strings.Join(want, "|") {
		t.Fatalf("matches %q, want %q", r.matches, want)
	}
	p := fraud()
	alert := r.all[0].Event(&p)
	if alert.Type != "FraudAlert" || alert.CausationID != "m4" || alert.PartitionKey != "mallory" {
		t.Fatalf("alert %+v", alert)
	}
	var body Match
	if err := json.Unmarshal(alert.Data, &body); err != nil || len(body.Events) != 4 || body.Events[0].ID != "m1" || body.Events[3].Step != "success" {
		t.Fatalf("alert data %s (%v)", alert.Data, err)
	}
}

func TestTimeoutsEmitted(t *testing.T) {
	p := fraud()
	p.EmitTimeouts = true
	r := runPattern(t, p, []*event.Event{mk("b1", "LoginFailed", "bob", 0), mk("b2", "LoginFailed", "bob", 700)})
	if len(r.timeouts) != 1 || r.timeouts[0] != "b1" {
		t.Fatalf("timeouts %q, want [b1]", r.timeouts)
	}
}

func TestQuantifiersAndNegation(t *testing.T) {
	evs := []*event.Event{mk("a", "a", "u", 1), mk("b1", "b", "u", 2), mk("b2", "b", "u", 3), mk("c", "c", "u", 4), mk("d", "d", "u", 5)}
	for _, c := range []struct {
		name  string
		steps []Step
		skip  Skip
		want  []string
	}{
		{"one or more", []Step{{Name: "a", Match: typ("a")}, {Name: "b", Match: typ("b"), Min: 1, Max: -1}}, NoSkip, []string{"a b1", "a b1 b2"}},
		{"skip past last", []Step{{Name: "a", Match: typ("a")}, {Name: "b", Match: typ("b"), Min: 1, Max: -1}}, SkipPastLastEvent, []string{"a b1"}},
		{"optional", []Step{{Name: "a", Match: typ("a")}, {Name: "x", Match: typ("x"), Min: 0, Max: 1}, {Name: "c", Match: typ("c")}}, NoSkip, []string{"a c"}},
		{"greedy", []Step{{Name: "a", Match: typ("a")}, {Name: "b", Match: json.RawMessage(`{"type":["b","c"]}`), Min: 1, Max: -1, Greedy: true}, {Name: "c", Match: typ("c")}}, NoSkip, []string{}},
		{"not greedy", []Step{{Name: "a", Match: typ("a")}, {Name: "b", Match: json.RawMessage(`{"type":["b","c"]}`), Min: 1, Max: -1}, {Name: "c", Match: typ("c")}}, NoSkip, []string{"a b1 b2 c", "a b1 c"}},
		{"not followed by", []Step{{Name: "a", Match: typ("a")}, {Name: "no", Match: typ("c"), Negation: NotFollowedBy}, {Name: "d", Match: typ("d")}}, NoSkip, []string{}},
		{"not followed by ok", []Step{{Name: "a", Match: typ("a")}, {Name: "no", Match: typ("x"), Negation: NotFollowedBy}, {Name: "d", Match: typ("d")}}, NoSkip, []string{"a d"}},
		{"not next", []Step{{Name: "a", Match: typ("a")}, {Name: "no", Match: typ("b"), Negation: NotNext}, {Name: "c", Match: typ("c")}}, NoSkip, []string{}},
		{"where", []Step{{Name: "b", Match: typ("b")}, {Name: "bb", Match: typ("b"), Where: []Compare{{Field: "data.v", Op: ">", Step: "b"}}}}, NoSkip, []string{"b1 b2"}},
		{"exactly 2 any", []Step{{Name: "x", Match: json.RawMessage(`{"type":[{"anything-but":"d"}]}`), Min: 2, Max: 2, Contiguity: Any}}, SkipToNext, []string{"a b1", "b1 b2", "b2 c"}},
	} {
		p := Pattern{Name: "p", Steps: c.steps, Skip: c.skip}
		r := runPattern(t, p, evs)
		if strings.Join(r.matches, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: matches %q, want %q", c.name, r.matches, c.want)
		}
	}
}

func TestPatternRefused(t *testing.T) {
	for _, c := range []struct {
		json, want string
	}{
		{`{"name":"x","steps":[{"name":"a","match":{"type":["a"]}},{"name":"n","match":{"type":["b"]},"negation":"not_followed_by"}]}`, "needs within"},
		{`{"name":"x","within":"1m","steps":[{"name":"a"},{"name":"n","negation":"not_next"}]}`, "cannot end with not_next"},
		{`{"name":"x","steps":[{"name":"a","match":{"type":"a"}}]}`, "steps[0].match"},
		{`{"name":"x","steps":[{"name":"a","contiguity":"loose"}]}`, "steps[0].contiguity"},
		{`{"name":"x","steps":[{"name":"a"},{"name":"b","where":[{"field":"data.v","op":">","step":"c"}]}]}`, `"c" is not an earlier step`},
		{`{"name":"x","steps":[{"name":"a","min":0,"max":2}]}`, "first step cannot be optional"},
		{`{"name":"x","within":"soon","steps":[{"name":"a"}]}`, "within"},
		{`{"name":"x","steps":[{"name":"a"}],"bogus":1}`, "bogus"},
	} {
		_, err := ParseJSON([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseJSON(%s) = %v, want an error containing %q", c.json, err, c.want)
		}
	}
	p, err := ParseJSON([]byte(`{"name":"fraud","key":"data.user","within":"10m","skip":"skip_past_last_event","steps":[{"name":"f","match":{"type":["LoginFailed"]},"min":3,"max":3},{"name":"s","match":{"type":["LoginSuccess"]},"contiguity":"any"}]}`))
	if err != nil || p.Within != 10*time.Minute || p.Skip != SkipPastLastEvent || p.Steps[1].Contiguity != Any {
		t.Fatalf("ParseJSON: %+v %v", p, err)
	}
	b, _ := json.Marshal(p)
	if p2, err := ParseJSON(b); err != nil || p2.Steps[0].Min != 3 {
		t.Fatalf("round trip %s: %v", b, err)
	}
}

func TestTrailingNegation(t *testing.T) {
	p := Pattern{Name: "abandoned", Key: "data.user", Within: time.Minute, Steps: []Step{
		{Name: "cart", Match: typ("CartAdded")}, {Name: "nopay", Match: typ("Paid"), Negation: NotFollowedBy}}}
	r := runPattern(t, p, []*event.Event{
		mk("u1", "CartAdded", "u", 0), mk("u2", "Paid", "u", 30), // paid in time: no match
		mk("v1", "CartAdded", "v", 0), mk("v2", "Paid", "v", 90), // paid too late: match
		mk("w1", "CartAdded", "w", 0), // never paid: match at flush
	})
	sort.Strings(r.matches)
	if strings.Join(r.matches, "|") != "v1|w1" {
		t.Fatalf("matches %q", r.matches)
	}
}
