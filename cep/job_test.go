package cep

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCEPJobErrorTopic feeds a job records that are not events and events
// without the pattern's key or time field among real logins: each goes to
// the error topic with a header naming the reason and is counted, and the
// logins around them still match.
func TestCEPJobErrorTopic(t *testing.T) {
	brokers, cl := withLogins(t, 1)

	p, err := ParseJSON([]byte(fraudJSON("Fraud")))
	if err != nil {
		t.Fatal(err)
	}
	p.TimeField = "data.at"
	metrics := prometheus.NewRegistry()
	j, err := NewJob(JobConfig{Name: "errs", Brokers: []string{brokers}, Pattern: p, Input: "logins", Output: "alerts",
		KgoOptions: testKgo, Logger: slog.New(slog.DiscardHandler), Registerer: metrics})
	if err != nil {
		t.Fatal(err)
	}
	// Logins whose data carries the user and the time.
	at := func(r *kgo.Record, d time.Duration) *kgo.Record {
		r.Value = []byte(strings.Replace(string(r.Value), "}", `,"at":"`+base.Add(d).Format(time.RFC3339Nano)+`"}`, 1))
		return r
	}
	noUser := login("nouser", "LoginFailed", "x", time.Second)
	noUser.Value = []byte(`{"who":"x"}`)
	noTime := login("notime", "LoginFailed", "mallory", time.Second) // no data.at
	produce(t, cl,
		at(login("m1", "LoginFailed", "mallory", 0), 0),
		&kgo.Record{Topic: "logins", Key: []byte("k"), Value: []byte("not an event")},
		at(login("m2", "LoginFailed", "mallory", time.Minute), time.Minute),
		at(noUser, time.Minute),
		noTime,
		at(login("m3", "LoginFailed", "mallory", 2*time.Minute), 2*time.Minute),
		at(login("m4", "LoginSuccess", "mallory", 3*time.Minute), 3*time.Minute),
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	alerts := readUntil(t, brokers, "alerts", 30*time.Second, func(a []alert) bool { return len(a) >= 1 })
	if len(alerts) != 1 || matchIDs(alerts[0].match) != "m1 m2 m3 m4" {
		t.Fatalf("alerts: %d (%v), want m1 m2 m3 m4", len(alerts), alerts)
	}
	rc, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("errs.errors"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []string
	for deadline := time.Now().Add(20 * time.Second); len(got) < 3 && time.Now().Before(deadline); {
		pctx, pcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := rc.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			why := ""
			for _, h := range r.Headers {
				if h.Key == "herald-error" {
					why = string(h.Value)
				}
			}
			got = append(got, string(r.Value)+" | "+why)
		})
	}
	if len(got) != 3 {
		t.Fatalf("error topic: %d records %q, want 3", len(got), got)
	}
	for i, want := range []struct{ value, why string }{
		{"not an event", "not a CloudEvents record"},
		{`"who":"x"`, `key field "data.user" is missing`},
		{`"mallory"`, "data.at"},
	} {
		value, why, _ := strings.Cut(got[i], " | ")
		if !strings.Contains(value, want.value) || why == "" || !strings.Contains(why, want.why) {
			t.Errorf("error record %d: %q, want its value to hold %q and header herald-error to say %q", i, got[i], want.value, want.why)
		}
	}
	// Checkpoints are incremental: the state topic holds the partitions
	// (keys) the transactions changed and a global record, no snapshot.
	sc, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("errs.state"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	stateKeys := map[string]bool{}
	for deadline := time.Now().Add(10 * time.Second); !stateKeys["errs/k/mallory"] && time.Now().Before(deadline); {
		pctx, pcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		sc.PollFetches(pctx).EachRecord(func(r *kgo.Record) { stateKeys[string(r.Key)] = true })
		pcancel()
	}
	for k := range stateKeys {
		if k != "errs/g" && !strings.HasPrefix(k, "errs/k/") {
			t.Errorf("state record %q: neither a key's nor the global one", k)
		}
	}
	if !stateKeys["errs/g"] || !stateKeys["errs/k/mallory"] {
		t.Errorf("state records %v: want errs/g and errs/k/mallory", stateKeys)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, _ := counterValue(t, metrics, "herald_cep_invalid_events_total")
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald_cep_invalid_events_total = %v, want 3", n)
		}
	}
}

// counterValue returns the value of the counter named name (false when
// it is not exported).
func counterValue(t *testing.T, g prometheus.Gatherer, name string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue(), true
		}
	}
	return 0, false
}
