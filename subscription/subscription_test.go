package subscription

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPullAck(t *testing.T) {
	e := newEnv(t)
	e.topic("orders", 2)
	e.publish("orders", "Before", "s", "x") // before the subscription: not delivered
	e.create("s1", map[string]any{"topic": "orders"})
	e.publish("orders", "OrderCreated", "orders/eu", "a", "b", "c", "d", "", "")
	got := e.pullN("s1", 6)
	for _, r := range got {
		if r.DeliveryAttempt != 1 || r.AckID == "" || r.Message.MessageID == "" || r.Message.PublishTime.IsZero() {
			t.Errorf("received %+v", r)
		}
		if r.Message.Attributes["type"] != "OrderCreated" || r.Message.Attributes["source"] != "orders/eu" || r.Message.Attributes["specversion"] != "1.0" {
			t.Errorf("attributes %v", r.Message.Attributes)
		}
		if !strings.HasPrefix(string(r.Message.Data), "OrderCreated-") {
			t.Errorf("data %q", r.Message.Data)
		}
	}
	var sub Subscription
	e.do("GET", "/v1/subscriptions/s1", nil, &sub)
	if sub.Stats == nil || sub.Stats.Backlog != 6 || sub.Stats.Outstanding != 6 || sub.AckDeadlineSeconds != 10 {
		t.Fatalf("describe: %+v %+v", sub, sub.Stats)
	}
	if inv := e.ack("s1", ackIDs(got)...); len(inv) != 0 {
		t.Fatalf("invalid acks: %v", inv)
	}
	if inv := e.ack("s1", got[0].AckID); len(inv) != 1 {
		t.Fatalf("a second ack of one message was accepted: %v", inv)
	}
	if more := e.pull("s1", 10, true); len(more) != 0 {
		t.Fatalf("pulled after acking everything: %v", datas(more))
	}
	e.do("GET", "/v1/subscriptions/s1", nil, &sub)
	if sub.Stats.Backlog != 0 || sub.Stats.Acked != 6 || sub.Stats.Delivered != 6 {
		t.Fatalf("stats after ack: %+v", sub.Stats)
	}
}

// TestPullCallerGone: a pull whose caller goes away before the delivery
// attempts are durable hands nothing out, and what it claimed is
// deliverable again at once with the attempt not counted (not held until
// the ack deadline: a stopping push subscription once lost messages so).
func TestPullCallerGone(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	e.create("s", map[string]any{"topic": "t", "ackDeadlineSeconds": 600})
	const n = 50
	e.publish("t", "E", "s", make([]string, n)...)
	s, err := e.m.get("s")
	if err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	handed, failed := 0, 0
	var ids []string
	for deadline := time.Now().Add(10 * time.Second); handed+failed < 20 && time.Now().Before(deadline); {
		// Already cancelled: the wait for the journal usually fails (when
		// the write is quicker, the messages are handed out as normal).
		out, _, _, err := s.pullOnce(gone, 2)
		switch {
		case err != nil:
			failed++
		case len(out) > 0:
			handed++
			ids = append(ids, ackIDs(out)...)
		default:
			time.Sleep(10 * time.Millisecond) // not fetched yet
		}
	}
	if failed == 0 {
		t.Fatal("no pull with a cancelled context failed; the test proves nothing")
	}
	if len(ids) > 0 {
		if inv := e.ack("s", ids...); len(inv) != 0 {
			t.Fatalf("invalid acks: %v", inv)
		}
	}
	rest := e.pullN("s", n-len(ids))
	for _, r := range rest {
		if r.DeliveryAttempt != 1 {
			t.Fatalf("after %d failed pulls: message %s comes with attempt %d", failed, r.Message.MessageID, r.DeliveryAttempt)
		}
	}
	t.Logf("%d pulls failed, %d handed out %d messages; the other %d came back", failed, handed, len(ids), len(rest))
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	e.create("ok", map[string]any{"topic": "t"})
	cases := []struct {
		name, method, path string
		body               any
		status             int
		field, msg         string
	}{
		{"malformed JSON", "PUT", "/v1/subscriptions/x", `{"topic":`, 400, "", "truncated JSON"},
		{"unknown field", "PUT", "/v1/subscriptions/x", `{"topic":"t","colour":1}`, 400, "colour", "unknown field"},
		{"filter syntax", "PUT", "/v1/subscriptions/x", map[string]any{"topic": "t", "filter": `attributes.a = "x" AND`}, 400, "filter", "at position 22"},
		{"ack deadline 9", "PUT", "/v1/subscriptions/x", map[string]any{"topic": "t", "ackDeadlineSeconds": 9}, 400, "ackDeadlineSeconds", "9 is out of range: want 10 to 600"},
		{"ack deadline 601", "PUT", "/v1/subscriptions/x", map[string]any{"topic": "t", "ackDeadlineSeconds": 601}, 400, "ackDeadlineSeconds", "out of range"},
		{"attempts 4", "PUT", "/v1/subscriptions/x", map[string]any{"topic": "t", "deadLetterPolicy": map[string]any{"deadLetterTopic": "t2", "maxDeliveryAttempts": 4}}, 400, "deadLetterPolicy.maxDeliveryAttempts", "want 5 to 100"},
		{"backoff", "PUT", "/v1/subscriptions/x", map[string]any{"topic": "t", "retryPolicy": map[string]any{"minimumBackoff": "20s", "maximumBackoff": "10s"}}, 400, "retryPolicy.maximumBackoff", "shorter than minimumBackoff"},
		{"push url", "PUT", "/v1/subscriptions/x", map[string]any{"topic": "t", "pushConfig": map[string]any{"pushEndpoint": "ftp://x"}}, 400, "pushConfig.pushEndpoint", "not an http"},
		{"bad name", "PUT", "/v1/subscriptions/a%20b", map[string]any{"topic": "t"}, 400, "name", "character ' '"},
		{"no topic", "PUT", "/v1/subscriptions/x", map[string]any{"topic": "nope"}, 404, "topic", `topic "nope" not found`},
		{"exists", "PUT", "/v1/subscriptions/ok", map[string]any{"topic": "t"}, 409, "name", "already exists"},
		{"unknown sub", "GET", "/v1/subscriptions/nope", nil, 404, "", `subscription "nope" not found`},
		{"pull 0", "POST", "/v1/subscriptions/ok:pull", map[string]any{"maxMessages": 0}, 400, "maxMessages", "out of range"},
		{"pull malformed", "POST", "/v1/subscriptions/ok:pull", `{maxMessages:1}`, 400, "", "malformed JSON"},
		{"ack malformed id", "POST", "/v1/subscriptions/ok:acknowledge", map[string]any{"ackIds": []string{"garbage"}}, 400, "ackIds[0]", "not an ack id"},
		{"ack escaped malformed id", "POST", "/v1/subscriptions/ok:acknowledge", `{"ackIds":["00000000-0-0-1","\u0067arbage"]}`, 400, "ackIds[1]", `"garbage" is not an ack id`},
		{"ack not a list", "POST", "/v1/subscriptions/ok:acknowledge", `{"ackIds":"00000000-0-0-1"}`, 400, "ackIds", "want a JSON []string"},
		{"ack trailing data", "POST", "/v1/subscriptions/ok:acknowledge", `{"ackIds":["00000000-0-0-1"]} {}`, 400, "", "after the JSON value"},
		{"ack big body", "POST", "/v1/subscriptions/ok:acknowledge", `{"ackIds":["` + strings.Repeat("x", 5<<20) + `"]}`, 413, "", "larger than the limit"},
		{"ack none", "POST", "/v1/subscriptions/ok:acknowledge", map[string]any{"ackIds": []string{}}, 400, "ackIds", "at least one"},
		{"modack range", "POST", "/v1/subscriptions/ok:modifyAckDeadline", map[string]any{"ackIds": []string{"00000000-0-0-1"}, "ackDeadlineSeconds": 601}, 400, "ackDeadlineSeconds", "out of range"},
		{"modack missing", "POST", "/v1/subscriptions/ok:modifyAckDeadline", map[string]any{"ackIds": []string{"00000000-0-0-1"}}, 400, "ackDeadlineSeconds", "required"},
		{"seek time", "POST", "/v1/subscriptions/ok:seek", map[string]any{"time": "yesterday"}, 400, "time", "not an RFC 3339"},
		{"seek snapshot", "POST", "/v1/subscriptions/ok:seek", map[string]any{"snapshot": "nope"}, 404, "snapshot", "not found"},
		{"bad action", "POST", "/v1/subscriptions/ok:explode", map[string]any{}, 404, "", "unknown action"},
		{"page size", "GET", "/v1/subscriptions?pageSize=0", nil, 400, "pageSize", "want 1 to 1000"},
		{"big body", "POST", "/v1/subscriptions/ok:pull", `{"maxMessages":1,"x":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "", "larger than the limit"},
	}
	for _, tc := range cases {
		var ae apiError
		st := e.do(tc.method, tc.path, tc.body, &ae)
		if st != tc.status || ae.Error.Field != tc.field || !strings.Contains(ae.Error.Message, tc.msg) {
			t.Errorf("%s: got %d field %q %q, want %d field %q containing %q", tc.name, st, ae.Error.Field, ae.Error.Message, tc.status, tc.field, tc.msg)
		}
	}
	// Unknown and stale ack ids are reported, never accepted.
	if inv := e.ack("ok", "00000000-0-5-1"); !slices.Equal(inv, []string{"00000000-0-5-1"}) {
		t.Errorf("unknown ack id: invalid %v", inv)
	}
	// An ack id spelled with JSON escapes (encoding/json's path) is the same id.
	e.publish("t", "A", "s", "")
	rs := e.pullN("ok", 1)
	escaped := `{ "ackIds" : [ "` + strings.Replace(rs[0].AckID, "-", `\u002d`, 1) + `", "00000000-0-5-1" ] }`
	var ar ackResponse
	if st := e.do("POST", "/v1/subscriptions/ok:acknowledge", escaped, &ar); st != 200 || !slices.Equal(ar.InvalidAckIDs, []string{"00000000-0-5-1"}) {
		t.Errorf("escaped ack: %d, invalid %v", st, ar.InvalidAckIDs)
	}
	if inv := e.ack("ok", rs[0].AckID); !slices.Equal(inv, []string{rs[0].AckID}) {
		t.Errorf("acking an acknowledged message again: invalid %v, want the id", inv)
	}
}

func TestFilterAutoAck(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	e.create("f", map[string]any{"topic": "t", "filter": `attributes.type = "OrderCreated" AND hasPrefix(attributes.source, "orders/")`})
	e.publish("t", "OrderCreated", "orders/eu", "", "")
	e.publish("t", "OrderCreated", "billing/eu", "", "")
	e.publish("t", "OrderShipped", "orders/eu", "")
	e.publish("t", "OrderCreated", "orders/us", "")
	got := e.pullN("f", 3)
	for _, r := range got {
		if r.Message.Attributes["type"] != "OrderCreated" || !strings.HasPrefix(r.Message.Attributes["source"], "orders/") {
			t.Errorf("filter let through %v", r.Message.Attributes)
		}
	}
	if more := e.pull("f", 10, true); len(more) != 0 {
		t.Fatalf("more messages: %v", more)
	}
	e.ack("f", ackIDs(got)...)
	var sub Subscription
	e.do("GET", "/v1/subscriptions/f", nil, &sub)
	if sub.Stats.Backlog != 0 || sub.Stats.Filtered != 3 {
		t.Fatalf("stats: %+v (non-matching events must be acknowledged)", sub.Stats)
	}
}

func TestNackDeadlineAndRetry(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	e.create("s", map[string]any{"topic": "t"})
	e.publish("t", "A", "s", "")
	r1 := e.pullN("s", 1)[0]
	// Nack without a retry policy: at once, attempt 2; the old id is stale
	// for modifyAckDeadline.
	if inv := e.modack("s", 0, r1.AckID); len(inv) != 0 {
		t.Fatal(inv)
	}
	r2 := e.pullN("s", 1)[0]
	if r2.DeliveryAttempt != 2 || r2.Message.MessageID != r1.Message.MessageID {
		t.Fatalf("redelivery %+v", r2)
	}
	// A short deadline expires and redelivers.
	// NB: deadlines and backoffs run from when the server took the
	// modifyAckDeadline, which is after start and before the call returns.
	start := time.Now()
	e.modack("s", 1, r2.AckID)
	r3 := e.pullN("s", 1)[0]
	if r3.DeliveryAttempt != 3 || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("expiry redelivery after %v: %+v", time.Since(start), r3)
	}
	// At-least-once: an earlier delivery's ack id still acks the message
	// (once).
	if inv := e.ack("s", r1.AckID); len(inv) != 0 {
		t.Fatalf("ack with an older id: %v", inv)
	}
	if inv := e.ack("s", r3.AckID); len(inv) != 1 {
		t.Fatalf("second ack accepted: %v", inv)
	}

	// A retry policy spaces redeliveries.
	e.create("r", map[string]any{"topic": "t", "retryPolicy": map[string]any{"minimumBackoff": "1s", "maximumBackoff": "2s"}})
	e.publish("t", "B", "s", "")
	m := e.pullN("r", 1)[0]
	start = time.Now()
	e.modack("r", 0, m.AckID)
	if got := e.pull("r", 1, true); len(got) != 0 {
		t.Fatal("redelivered before the minimum backoff")
	}
	m = e.pullN("r", 1)[0]
	if d := time.Since(start); d < 900*time.Millisecond || m.DeliveryAttempt != 2 {
		t.Fatalf("redelivered after %v, attempt %d", d, m.DeliveryAttempt)
	}
	start = time.Now()
	e.modack("r", 0, m.AckID)
	m = e.pullN("r", 1)[0]
	if d := time.Since(start); d < 1900*time.Millisecond || m.DeliveryAttempt != 3 {
		t.Fatalf("second backoff %v (want 2s), attempt %d", d, m.DeliveryAttempt)
	}
}

func TestDeadLetter(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	e.topic("dlq", 1)
	e.create("d", map[string]any{"topic": "t", "deadLetterPolicy": map[string]any{"deadLetterTopic": "dlq", "maxDeliveryAttempts": 5}})
	e.publish("t", "Poison", "s", "")
	for i := 1; i <= 5; i++ {
		r := e.pullN("d", 1)[0]
		if r.DeliveryAttempt != i {
			t.Fatalf("attempt %d, want %d", r.DeliveryAttempt, i)
		}
		e.modack("d", 0, r.AckID)
	}
	if got := e.pull("d", 1, true); len(got) != 0 {
		t.Fatalf("delivered after max attempts: %+v", got)
	}
	waitFor(t, "the dead letter", 5*time.Second, func() bool { return len(readAll(t, e, "dlq")) > 0 })
	recs := readAll(t, e, "dlq")
	if len(recs) != 1 || string(recs[0].Value) != "Poison-0" {
		t.Fatalf("dead-letter topic: %+v", recs)
	}
	hs := map[string]string{}
	for _, h := range recs[0].Headers {
		hs[h.Key] = string(h.Value)
	}
	if hs["herald_subscription"] != "d" || hs["ce_type"] != "Poison" || hs["herald_delivery_attempts"] != "5" {
		t.Errorf("dead letter headers %v", hs)
	}
	var sub Subscription
	e.do("GET", "/v1/subscriptions/d", nil, &sub)
	if sub.Stats.DeadLettered != 1 || sub.Stats.Backlog != 0 || sub.Stats.Redeliveries != 4 {
		t.Fatalf("stats %+v", sub.Stats)
	}
}

func TestOrderingKeys(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	e.create("o", map[string]any{"topic": "t", "enableMessageOrdering": true})
	e.publish("t", "E", "s", "A", "B", "A", "A", "B", "")
	// One outstanding message per key; unkeyed ones flow.
	got := e.pullN("o", 3)
	if d := datas(got); !slices.Equal(d, []string{"E-0", "E-1", "E-5"}) {
		t.Fatalf("first pull %v, want E-0 (A) E-1 (B) E-5 (no key)", d)
	}
	if more := e.pull("o", 10, true); len(more) != 0 {
		t.Fatalf("second message of a key while the first is out: %v", datas(more))
	}
	// Nack A's head: it comes back before A's later events; B keeps flowing.
	e.modack("o", 0, got[0].AckID)
	e.ack("o", got[1].AckID, got[2].AckID)
	got = e.pullN("o", 2)
	if d := datas(got); !slices.Equal(d, []string{"E-0", "E-4"}) {
		t.Fatalf("after nack %v, want E-0 again and B's E-4", d)
	}
	if got[0].Message.OrderingKey != "A" || got[0].DeliveryAttempt != 2 {
		t.Fatalf("%+v", got[0])
	}
	e.ack("o", ackIDs(got)...)
	for _, want := range []string{"E-2", "E-3"} {
		r := e.pullN("o", 1)
		if string(r[0].Message.Data) != want {
			t.Fatalf("got %s, want %s", r[0].Message.Data, want)
		}
		if more := e.pull("o", 10, true); len(more) != 0 {
			t.Fatalf("extra %v", datas(more))
		}
		e.ack("o", r[0].AckID)
	}
}

func TestExactlyOnce(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	e.create("x", map[string]any{"topic": "t", "enableExactlyOnceDelivery": true})
	e.publish("t", "E", "s", "")
	r1 := e.pullN("x", 1)[0]
	e.modack("x", 0, r1.AckID)
	r2 := e.pullN("x", 1)[0]
	if inv := e.ack("x", r1.AckID); len(inv) != 1 {
		t.Fatalf("the stale ack id was accepted: %v", inv)
	}
	if inv := e.ack("x", r2.AckID); len(inv) != 0 {
		t.Fatalf("the latest ack id was refused: %v", inv)
	}
	if inv := e.ack("x", r2.AckID); len(inv) != 1 {
		t.Fatalf("acked twice: %v", inv)
	}
	if more := e.pull("x", 1, true); len(more) != 0 {
		t.Fatalf("redelivered after ack: %v", more)
	}
}

func TestSeekAndSnapshot(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 2)
	e.create("s", map[string]any{"topic": "t"})
	before := time.Now().Add(-time.Second)
	e.publish("t", "E", "s", "a", "b", "c", "d", "e", "f")
	got := e.pullN("s", 6)
	e.ack("s", ackIDs(got)...)
	// Seek back: everything after the time is unacked again.
	if st := e.do("POST", "/v1/subscriptions/s:seek", map[string]any{"time": before.Format(time.RFC3339Nano)}, nil); st != 200 {
		t.Fatal(st)
	}
	if inv := e.ack("s", got[0].AckID); len(inv) != 1 {
		t.Fatal("an ack id from before the seek was accepted")
	}
	again := e.pullN("s", 6)
	slices.Sort(datas(again))
	// Ack two, snapshot, ack the rest, seek to the snapshot: four return.
	e.ack("s", again[0].AckID, again[1].AckID)
	var sn Snapshot
	if st := e.do("PUT", "/v1/snapshots/snap1", map[string]any{"subscription": "s"}, &sn); st != 200 || sn.Topic != "t" {
		t.Fatalf("create snapshot: %d %+v", st, sn)
	}
	e.ack("s", ackIDs(again[2:])...)
	if st := e.do("POST", "/v1/subscriptions/s:seek", map[string]any{"snapshot": "snap1"}, nil); st != 200 {
		t.Fatal(st)
	}
	back := e.pullN("s", 4)
	want := datas(again[2:])
	gotD := datas(back)
	slices.Sort(want)
	slices.Sort(gotD)
	if !slices.Equal(gotD, want) {
		t.Fatalf("after seek to snapshot %v, want %v", gotD, want)
	}
	e.ack("s", ackIDs(back)...)
	// Seek to the future: everything acked.
	e.publish("t", "F", "s", "x")
	e.do("POST", "/v1/subscriptions/s:seek", map[string]any{"time": time.Now().Add(time.Hour).Format(time.RFC3339)}, nil)
	if more := e.pull("s", 10, true); len(more) != 0 {
		t.Fatalf("after seek to the future: %v", datas(more))
	}
	var list struct{ Snapshots []Snapshot }
	e.do("GET", "/v1/snapshots", nil, &list)
	if len(list.Snapshots) != 1 {
		t.Fatalf("snapshots %+v", list)
	}
	if st := e.do("DELETE", "/v1/snapshots/snap1", nil, nil); st != 200 {
		t.Fatal(st)
	}
}

func TestListPagination(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	for _, n := range []string{"c", "a", "b", "e", "d"} {
		e.create(n, map[string]any{"topic": "t"})
	}
	var names []string
	token := ""
	for pages := 0; pages < 10; pages++ {
		var resp struct {
			Subscriptions []Subscription
			NextPageToken string
		}
		e.do("GET", "/v1/subscriptions?pageSize=2&pageToken="+token, nil, &resp)
		for _, s := range resp.Subscriptions {
			names = append(names, s.Name)
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if !slices.Equal(names, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("listed %v", names)
	}
	if st := e.do("DELETE", "/v1/subscriptions/c", nil, nil); st != 200 {
		t.Fatal(st)
	}
	if st := e.do("GET", "/v1/subscriptions/c", nil, nil); st != 404 {
		t.Fatalf("deleted subscription: %d", st)
	}
}

// TestHeapCompaction: acked messages' deadline items do not pile up in the
// heap until their deadline.
func TestHeapCompaction(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	e.create("s", map[string]any{"topic": "t", "ackDeadlineSeconds": 600})
	s, _ := e.m.get("s")
	fill(t, e, "t", 1, 80_000, 16)
	for got := 0; got < 80_000; {
		rs, err := e.m.Pull(t.Context(), "s", 1000, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Acknowledge(t.Context(), "s", ackIDs(rs)); err != nil {
			t.Fatal(err)
		}
		got += len(rs)
	}
	s.mu.Lock()
	n := len(s.mu.heap)
	s.mu.Unlock()
	if n > 70_000 {
		t.Fatalf("%d heap items after everything was acked", n)
	}
}
