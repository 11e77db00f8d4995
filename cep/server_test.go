package cep

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/httpapi/openapitest"
	"github.com/heraldhq/herald/server"
)

// fraudJSON is the seed's fraud pattern as a server-side definition.
func fraudJSON(name string) string {
	return `{"name":"` + name + `","type":"FraudAlert","key":"data.user","within":"10m","skip":"skip_past_last_event",
	 "steps":[{"name":"failures","match":{"type":["LoginFailed"]},"min":3,"max":3},
	          {"name":"success","match":{"type":["LoginSuccess"]},"contiguity":"strict"}]}`
}

var testKgo = []kgo.Opt{kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100 * time.Millisecond),
	kgo.RebalanceTimeout(2 * time.Second)}

func startServer(t testing.TB, dir string) *server.Server {
	t.Helper()
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: dir},
		Groups: groups.Config{MinSessionTimeout: 100 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// withLogins starts a server with a topic "logins" of parts partitions
// and returns its address and a client, both closed when the test ends.
func withLogins(t *testing.T, parts int32) (string, *kgo.Client) {
	t.Helper()
	srv := startServer(t, t.TempDir())
	t.Cleanup(func() { srv.Close() })
	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	createTopic(t, cl, "logins", parts)
	return srv.KafkaAddr(), cl
}

func newRegistry(t *testing.T, brokers string) *Registry {
	return newRegistryMetrics(t, brokers, nil)
}

func newRegistryMetrics(t *testing.T, brokers string, pr prometheus.Registerer) *Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, err := NewRegistry(ctx, RegistryConfig{Brokers: []string{brokers}, KgoOptions: testKgo, Logger: slog.New(slog.DiscardHandler), Registerer: pr})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// apiServer serves reg's routes, every response checked against the
// served OpenAPI document with this package's fragment.
func apiServer(t *testing.T, reg *Registry) *httptest.Server {
	t.Helper()
	doc, err := httpapi.MergeOpenAPI(httpapi.OpenAPI, OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Routes(mux, reg)
	srv := httptest.NewServer(openapitest.Handler(t, doc, mux))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func createTopic(t *testing.T, cl *kgo.Client, topic string, parts int32) {
	t.Helper()
	resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), parts, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
}

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func login(id, typ, user string, at time.Duration) *kgo.Record {
	e := event.New("/auth", typ)
	e.ID, e.Time, e.PartitionKey = id, base.Add(at), user
	e.DataContentType = "application/json"
	e.Data = fmt.Appendf(nil, `{"user":%q}`, user)
	m, err := event.Encode(e)
	if err != nil {
		panic(err)
	}
	r := &kgo.Record{Topic: "logins", Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return r
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// alert is a match event read back from an output topic.
type alert struct {
	ev    *event.Event
	match Match
}

// readUntil reads topic (read committed) from the start until done says
// enough or the deadline passes, and returns what it read.
func readUntil(t *testing.T, brokers, topic string, wait time.Duration, done func([]alert) bool) []alert {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []alert
	deadline := time.Now().Add(wait)
	for !done(out) && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			hs := make([]event.Header, len(r.Headers))
			for i, h := range r.Headers {
				hs[i] = event.Header{Key: h.Key, Value: h.Value}
			}
			e, err := event.Decode(event.Message{Key: r.Key, Value: r.Value, Headers: hs})
			if err != nil {
				t.Fatalf("%s offset %d: not an event: %v", topic, r.Offset, err)
			}
			a := alert{ev: e}
			if err := json.Unmarshal(e.Data, &a.match); err != nil {
				t.Fatalf("%s offset %d: data: %v", topic, r.Offset, err)
			}
			out = append(out, a)
		})
	}
	return out
}

func matchIDs(m Match) string {
	var ids []string
	for _, e := range m.Events {
		ids = append(ids, e.ID)
	}
	return strings.Join(ids, " ")
}

// TestCEPServerFraud registers the seed's fraud pattern over HTTP on a real
// server, produces logins with decoys and reads the FraudAlert (its
// causation listing the matched events) from the output topic and the
// timed-out partial match from the side topic.
func TestCEPServerFraud(t *testing.T) {
	brokers, cl := withLogins(t, 3)
	metrics := prometheus.NewRegistry()
	reg := newRegistryMetrics(t, brokers, metrics)
	defer reg.Close()
	api := apiServer(t, reg)

	def := func(name, input, output, side string) string {
		b, _ := json.Marshal(map[string]any{"pattern": json.RawMessage(fraudJSON(name)), "input": input, "output": output, "timeout_topic": side})
		return string(b)
	}
	code, body := call(t, "POST", api.URL+"/v1/cep/patterns", def("Fraud", "logins", "fraud.alerts", "fraud.timeouts"))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var info Info
	if err := json.Unmarshal(body, &info); err != nil || info.Name != "Fraud" || info.Status != "running" || info.Output != "fraud.alerts" {
		t.Fatalf("create: %s (%v)", body, err)
	}
	// Bad input: a clear error naming the field.
	for _, c := range []struct {
		body, field string
		code        int
	}{
		{def("Fraud", "logins", "other", ""), "pattern.name", http.StatusConflict},
		{def("F2", "nosuchtopic", "out", ""), "input", http.StatusBadRequest},
		{def("F3", "logins", "", ""), "output", http.StatusBadRequest},
		{def("F4", "logins", "logins", ""), "output", http.StatusBadRequest},
		{def("F5", "logins", "o", "logins"), "timeout_topic", http.StatusBadRequest},
		{def("bad name!", "logins", "o", ""), "pattern.name", http.StatusBadRequest},
		{`{"pattern":{"name":"x","steps":[]},"input":"logins","output":"o"}`, "pattern", http.StatusBadRequest},
		{`{"input":"logins","output":"o"}`, "pattern", http.StatusBadRequest},
		{`{"pattern":"name: [","input":"logins","output":"o"}`, "pattern", http.StatusBadRequest},
		{`{"pattern":"name: Y\nwithin: soon\nsteps: [{name: a}]","input":"logins","output":"o"}`, "pattern", http.StatusBadRequest},
	} {
		code, body := call(t, "POST", api.URL+"/v1/cep/patterns", c.body)
		var e struct {
			Error struct{ Code, Message, Field string }
		}
		_ = json.Unmarshal(body, &e)
		if code != c.code || e.Error.Field != c.field {
			t.Errorf("POST %s: %d %s; want %d naming %q", c.body, code, body, c.code, c.field)
		}
	}
	// YAML, as a string.
	yb, _ := json.Marshal(map[string]any{"input": "logins", "output": "y.alerts",
		"pattern": "name: FraudY\nkey: data.user\nwithin: 10m\nsteps:\n  - {name: f, match: {type: [LoginFailed]}, min: 3, max: 3}\n  - {name: s, match: {type: [LoginSuccess]}}\n"})
	if code, body := call(t, "POST", api.URL+"/v1/cep/patterns", string(yb)); code != http.StatusCreated || !bytes.Contains(body, []byte(`"within":"10m0s"`)) {
		t.Fatalf("create from YAML: %d %s", code, body)
	}
	if code, body := call(t, "DELETE", api.URL+"/v1/cep/patterns/FraudY", ""); code != http.StatusNoContent {
		t.Fatalf("delete FraudY: %d %s", code, body)
	}
	if code, body := call(t, "GET", api.URL+"/v1/cep/patterns/nope", ""); code != http.StatusNotFound {
		t.Errorf("GET unknown: %d %s", code, body)
	}
	if code, body := call(t, "DELETE", api.URL+"/v1/cep/patterns/nope", ""); code != http.StatusNotFound {
		t.Errorf("DELETE unknown: %d %s", code, body)
	}

	const min = time.Minute
	produce(t, cl,
		login("m1", "LoginFailed", "mallory", 0), login("b1", "LoginFailed", "bob", 5*time.Second),
		login("c1", "LoginFailed", "carol", 10*time.Second),
		login("m2", "LoginFailed", "mallory", 1*min), login("c2", "LoginFailed", "carol", 1*min),
		login("b2", "LoginFailed", "bob", 1*min), login("b3", "LoginSuccess", "bob", 2*min), // two failures only
		login("m3", "LoginFailed", "mallory", 2*min), login("c3", "LoginFailed", "carol", 2*min),
		login("m4", "LoginSuccess", "mallory", 3*min),
		login("c4", "LoginSuccess", "carol", 20*min), // too late
		login("m5", "LoginSuccess", "mallory", 21*min),
	)
	alerts := readUntil(t, brokers, "fraud.alerts", 30*time.Second, func(a []alert) bool { return len(a) >= 1 })
	if len(alerts) != 1 {
		t.Fatalf("alerts: %d, want 1", len(alerts))
	}
	a := alerts[0]
	if a.ev.Type != "FraudAlert" || a.ev.CausationID != "m4" || a.ev.PartitionKey != "mallory" ||
		matchIDs(a.match) != "m1 m2 m3 m4" || a.match.Key != `mallory` {
		t.Fatalf("alert: type %q causation %q key %q match %+v", a.ev.Type, a.ev.CausationID, a.ev.PartitionKey, a.match)
	}
	// No second alert (decoys), checked after the late events were processed.
	timeouts := readUntil(t, brokers, "fraud.timeouts", 30*time.Second, func(a []alert) bool {
		return slices.ContainsFunc(a, func(x alert) bool { return matchIDs(x.match) == "c1 c2 c3" })
	})
	if !slices.ContainsFunc(timeouts, func(x alert) bool { return matchIDs(x.match) == "c1 c2 c3" }) {
		t.Fatalf("timeouts %d: carol's three failures not among them", len(timeouts))
	}
	for _, x := range timeouts {
		if !x.match.Timeout || x.ev.Type != "FraudAlertTimedOut" {
			t.Errorf("timeout event %q: timeout %v", x.ev.Type, x.match.Timeout)
		}
	}
	if alerts := readUntil(t, brokers, "fraud.alerts", 2*time.Second, func([]alert) bool { return false }); len(alerts) != 1 {
		t.Fatalf("alerts after the decoys: %d, want 1", len(alerts))
	}

	matchesMetric := func() (float64, bool) {
		mfs, err := metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "herald_cep_matches_total" {
				return mf.GetMetric()[0].GetCounter().GetValue(), true
			}
		}
		return 0, false
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, ok := matchesMetric(); ok && n == 1 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("herald_cep_matches_total: %v (exported: %v), want 1", n, ok)
		}
	}

	code, body = call(t, "GET", api.URL+"/v1/cep/patterns", "")
	var list struct{ Patterns []Info }
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || len(list.Patterns) != 1 || list.Patterns[0].Name != "Fraud" {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := call(t, "GET", api.URL+"/v1/cep/patterns/Fraud", ""); code != 200 || !bytes.Contains(body, []byte(`"running"`)) {
		t.Fatalf("get: %d %s", code, body)
	}
	if code, body := call(t, "DELETE", api.URL+"/v1/cep/patterns/Fraud", ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, _ := call(t, "GET", api.URL+"/v1/cep/patterns/Fraud", ""); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
	if _, ok := matchesMetric(); ok {
		t.Error("a deleted pattern's metrics are still exported")
	}
}

// TestCEPAddRemoveWhileFlowing adds two patterns and removes one while
// logins flow: each sees every fraud whose events follow its creation,
// exactly once, and the removed one writes nothing after its removal.
func TestCEPAddRemoveWhileFlowing(t *testing.T) {
	brokers, cl := withLogins(t, 2)
	reg := newRegistry(t, brokers)
	defer reg.Close()

	// The producer: user i fails three times then succeeds, one user after
	// the other, users interleaved in pairs.
	var produced atomic.Int64 // users whose four events are all acknowledged
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			u := fmt.Sprintf("u%04d", i)
			at := time.Duration(i) * time.Minute
			recs := []*kgo.Record{login(u+"-1", "LoginFailed", u, at), login(u+"-2", "LoginFailed", u, at+time.Second),
				login(u+"-3", "LoginFailed", u, at+2*time.Second), login(u+"-4", "LoginSuccess", u, at+3*time.Second)}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				done <- err
				return
			}
			produced.Store(int64(i + 1))
			time.Sleep(2 * time.Millisecond)
		}
	}()
	ctx := context.Background()
	// create returns the first user whose events all follow the creation
	// (it started after Create returned) and the last user done before
	// Create started (an earlier one must never alert); a user in between
	// may alert once or not at all.
	create := func(name, out string) (first, before int64) {
		n0 := produced.Load()
		if _, err := reg.Create(ctx, Definition{Pattern: json.RawMessage(fraudJSON(name)), Input: "logins", Output: out}); err != nil {
			t.Fatal(err)
		}
		return produced.Load() + 1, n0
	}
	waitFor := func(n int64) {
		for produced.Load() < n {
			time.Sleep(10 * time.Millisecond)
		}
	}
	firstA, beforeA := create("A", "a.alerts")
	waitFor(firstA + 40)
	firstB, beforeB := create("B", "b.alerts")
	waitFor(firstB + 40)
	// A keeps running while B starts: it alerts every user up to here.
	readUntil(t, brokers, "a.alerts", 60*time.Second, func(a []alert) bool { return hasAll(a, firstA, firstB+40) })
	if err := reg.Delete(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	stopA := produced.Load()
	waitFor(stopA + 40)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	last := produced.Load()

	users := func(as []alert) map[string]int {
		m := map[string]int{}
		for _, a := range as {
			m[a.match.Key]++
		}
		return m
	}
	// B: every user from firstB to the last, exactly once.
	b := readUntil(t, brokers, "b.alerts", 60*time.Second, func(a []alert) bool { return hasAll(a, firstB, last) })
	got := users(b)
	for i := firstB; i < last; i++ {
		if u := fmt.Sprintf("u%04d", i); got[u] != 1 {
			t.Errorf("B: user %s alerted %d times, want 1", u, got[u])
		}
	}
	for u, n := range got {
		var i int64
		fmt.Sscanf(u, "u%d", &i)
		if n != 1 || i < beforeB {
			t.Errorf("B: user %s alerted %d times (B created after user %d)", u, n, beforeB)
		}
	}
	// A: every user from firstA until well before its removal, once each,
	// and nothing after its removal.
	a := readUntil(t, brokers, "a.alerts", 2*time.Second, func([]alert) bool { return false })
	got = users(a)
	for i := firstA; i < firstB+40; i++ {
		if u := fmt.Sprintf("u%04d", i); got[u] != 1 {
			t.Errorf("A: user %s alerted %d times, want 1", u, got[u])
		}
	}
	for u, n := range got {
		var i int64
		fmt.Sscanf(u, "u%d", &i)
		if n != 1 || i < beforeA || i > stopA {
			t.Errorf("A: user %s alerted %d times (A created after user %d, removed at %d)", u, n, beforeA, stopA)
		}
	}
	if names := reg.List(); len(names) != 1 || names[0].Name != "B" {
		t.Errorf("list: %+v, want B only", names)
	}
}

// hasAll reports whether as alerts every user from (inclusive) to to.
func hasAll(as []alert, from, to int64) bool {
	seen := map[string]bool{}
	for _, a := range as {
		seen[a.match.Key] = true
	}
	for i := from; i < to; i++ {
		if !seen[fmt.Sprintf("u%04d", i)] {
			return false
		}
	}
	return true
}

// TestCEPRestartResumes stops the registry and the server between a
// user's failures and success: after the restart the pattern runs again
// from its committed state and the alert lists all four events.
func TestCEPRestartResumes(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	brokers := srv.KafkaAddr()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	createTopic(t, cl, "logins", 1)
	reg := newRegistry(t, brokers)
	ctx := context.Background()
	info, err := reg.Create(ctx, Definition{Pattern: json.RawMessage(fraudJSON("Fraud")), Input: "logins", Output: "fraud.alerts"})
	if err != nil {
		t.Fatal(err)
	}
	produce(t, cl, login("m1", "LoginFailed", "mallory", 0), login("m2", "LoginFailed", "mallory", time.Minute),
		login("m3", "LoginFailed", "mallory", 2*time.Minute))
	// Wait until the job committed past the three failures.
	group := "herald-cep-" + jobName("Fraud", info.Created)
	adm := kadm.NewClient(cl)
	for deadline := time.Now().Add(30 * time.Second); ; {
		offs, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			if o, ok := offs.Lookup("logins", 0); ok && o.At == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job did not commit the three failures: %v %v", offs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	reg.Close()
	cl.Close()
	srv.Close()

	srv = startServer(t, dir)
	defer srv.Close()
	brokers = srv.KafkaAddr()
	cl, err = kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reg = newRegistry(t, brokers)
	defer reg.Close()
	if l := reg.List(); len(l) != 1 || l[0].Name != "Fraud" || !l[0].Created.Equal(info.Created) {
		t.Fatalf("after restart: %+v", l)
	}
	produce(t, cl, login("m4", "LoginSuccess", "mallory", 3*time.Minute))
	alerts := readUntil(t, brokers, "fraud.alerts", 30*time.Second, func(a []alert) bool { return len(a) >= 1 })
	if len(alerts) != 1 || matchIDs(alerts[0].match) != "m1 m2 m3 m4" || alerts[0].ev.CausationID != "m4" {
		t.Fatalf("alerts after restart: %d %+v", len(alerts), alerts)
	}
}

// TestCEPRetryAfterFailure: a pattern whose job cannot run (its input
// topic is gone after a restart) reports failed with the reason, and runs
// once the topic is back.
func TestCEPRetryAfterFailure(t *testing.T) {
	brokers, cl := withLogins(t, 1)
	ctx := context.Background()
	open := func() *Registry {
		reg, err := NewRegistry(ctx, RegistryConfig{Brokers: []string{brokers}, KgoOptions: testKgo, Logger: slog.New(slog.DiscardHandler),
			RetryBackoff: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return reg
	}
	reg := open()
	if _, err := reg.Create(ctx, Definition{Pattern: json.RawMessage(fraudJSON("Fraud")), Input: "logins", Output: "alerts"}); err != nil {
		t.Fatal(err)
	}
	reg.Close()
	if _, err := kadm.NewClient(cl).DeleteTopic(ctx, "logins"); err != nil {
		t.Fatal(err)
	}
	reg = open()
	defer reg.Close()
	status := func(want string) Info {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			info, err := reg.Get("Fraud")
			if err != nil {
				t.Fatal(err)
			}
			if info.Status == want {
				return info
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %q (%s), want %q", info.Status, info.Error, want)
			}
		}
	}
	if info := status("failed"); !strings.Contains(info.Error, `input topic "logins" does not exist`) {
		t.Fatalf("failed with %q", info.Error)
	}
	createTopic(t, cl, "logins", 1)
	produce(t, cl, login("m1", "LoginFailed", "mallory", 0), login("m2", "LoginFailed", "mallory", time.Minute),
		login("m3", "LoginFailed", "mallory", 2*time.Minute), login("m4", "LoginSuccess", "mallory", 3*time.Minute))
	alerts := readUntil(t, brokers, "alerts", 30*time.Second, func(a []alert) bool { return len(a) >= 1 })
	if len(alerts) != 1 || matchIDs(alerts[0].match) != "m1 m2 m3 m4" {
		t.Fatalf("alerts after the topic came back: %d", len(alerts))
	}
	status("running")
}
