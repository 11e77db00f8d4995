package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/rules"
	"github.com/heraldhq/herald/saga"
	"github.com/heraldhq/herald/schema/registry"
	"github.com/heraldhq/herald/server"
	"github.com/heraldhq/herald/subscription"
)

// sysEnv is herald serve's assembly with the system events wired as
// runServe wires them: every component's OnEvent hook feeds one
// rules.SystemQueue that publishes on the rules engine's system bus.
type sysEnv struct {
	srv  *server.Server
	elog eventlog.Log
	sreg *registry.Registry
	api  *servedAPI
	hs   *httptest.Server
	sysq *rules.SystemQueue
}

func startSysEnv(t *testing.T) *sysEnv {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	e := &sysEnv{sysq: rules.NewSystemQueue(rules.SystemQueueConfig{Logger: logger, Registerer: reg})}
	hook := &registry.Hook{}
	data := t.TempDir()
	var err error
	e.srv, err = server.Start(ctx, server.Config{
		Broker: broker.Config{DataDir: data, Validator: hook, OnEvent: e.sysq.Hook()},
		Groups: groups.Config{OnEvent: e.sysq.Hook(), MinSessionTimeout: 100 * time.Millisecond},
		Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.srv.Close() })
	e.elog, err = embedded.New(embedded.Config{Broker: e.srv.Broker, Groups: e.srv.Groups, ClientID: "herald-serve"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.elog.Close() })
	e.sreg, err = openRegistry(ctx, e.elog, hook, logger, reg, e.sysq.Hook())
	if err != nil {
		t.Fatal(err)
	}
	e.api, err = buildAPI(ctx, e.srv, e.elog, e.sreg, apiConfig{
		Data: data, Durability: commitlog.Durability{}, Logger: logger, Registerer: reg, SystemEvents: e.sysq,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.api.Close(); err != nil {
			t.Errorf("closing the API's services: %v", err)
		}
	})
	e.hs = httptest.NewServer(e.api.API)
	t.Cleanup(e.hs.Close)
	return e
}

// do sends a JSON request to the /v1 API and fails unless it gets want.
func (e *sysEnv) do(t *testing.T, method, path string, body any, want int) {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, e.hs.URL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, out.String())
	}
}

// rule creates a rule on the system bus matching pattern with a topic
// target, and returns the target topic.
func (e *sysEnv) rule(t *testing.T, name, pattern string) string {
	t.Helper()
	target := "sys-" + name
	if err := e.srv.Broker.CreateTopic(context.Background(), target, 1, nil); err != nil {
		t.Fatal(err)
	}
	e.do(t, "POST", "/v1/rules", map[string]any{
		"name": name, "bus": rules.SystemBus, "event_pattern": json.RawMessage(pattern),
		"targets": []map[string]any{{"id": "t", "topic": target}},
	}, http.StatusCreated)
	return target
}

// next waits for the next event on topic's partition 0 after *off.
func (e *sysEnv) next(t *testing.T, topic string, off *int64) *event.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		recs, err := e.elog.Read(ctx, topic, 0, *off, eventlog.ReadOptions{})
		cancel()
		if err != nil && ctx.Err() == nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		if len(recs) > 0 {
			r := recs[0]
			*off = r.Offset + 1
			msg := event.Message{Key: r.Key, Value: r.Value}
			for _, h := range r.Headers {
				msg.Headers = append(msg.Headers, event.Header{Key: h.Key, Value: h.Value})
			}
			ev, err := event.Decode(msg)
			if err != nil {
				t.Fatalf("decode the event on %s: %v", topic, err)
			}
			return ev
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no event on %s within 30s", topic)
	return nil
}

// expect checks an event's source, type and subject and decodes its data.
func expect(t *testing.T, ev *event.Event, source, typ, subject string, data any) {
	t.Helper()
	if ev.Source != source || ev.Type != typ || ev.Subject != subject {
		t.Fatalf("event source %q type %q subject %q, want %q %q %q", ev.Source, ev.Type, ev.Subject, source, typ, subject)
	}
	if ev.DataContentType != "application/json" {
		t.Fatalf("datacontenttype %q", ev.DataContentType)
	}
	if err := json.Unmarshal(ev.Data, data); err != nil {
		t.Fatalf("data %s: %v", ev.Data, err)
	}
}

func kafkaClient(t *testing.T, e *sysEnv, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.srv.KafkaAddr())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestSystemEventsTopics: a topic created over the Kafka protocol and
// one deleted over HTTP each reach a rule on herald-system.
func TestSystemEventsTopics(t *testing.T) {
	e := startSysEnv(t)
	created := e.rule(t, "topic-created", `{"source":["herald/broker"],"type":["herald.topic.created"],"subject":[{"prefix":"orders"}]}`)
	deleted := e.rule(t, "topic-deleted", `{"source":["herald/broker"],"type":["herald.topic.deleted"]}`)

	ctx := context.Background()
	resp, err := kadm.NewClient(kafkaClient(t, e)).CreateTopics(ctx, 3, 1, map[string]*string{"retention.ms": kadm.StringPtr("60000")}, "orders")
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	var off int64
	var tc broker.TopicEvent
	expect(t, e.next(t, created, &off), "herald/broker", "herald.topic.created", "orders", &tc)
	if tc.Topic != "orders" || tc.Partitions != 3 || tc.Configs["retention.ms"] != "60000" {
		t.Fatalf("topic created data %+v", tc)
	}

	e.do(t, "DELETE", "/v1/topics/orders", nil, http.StatusNoContent)
	off = 0
	var td broker.TopicEvent
	expect(t, e.next(t, deleted, &off), "herald/broker", "herald.topic.deleted", "orders", &td)
	if td.Topic != "orders" || td.Partitions != 3 {
		t.Fatalf("topic deleted data %+v", td)
	}
}

// TestSystemEventsSchemaRegistered: each new version of a subject
// reaches a rule, in order; registering the same schema again (no new
// version) does not.
func TestSystemEventsSchemaRegistered(t *testing.T) {
	e := startSysEnv(t)
	target := e.rule(t, "schema", `{"source":["herald/registry"],"type":["herald.schema.registered"]}`)
	ctx := context.Background()
	s1 := `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}`
	s2 := `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"total","type":"double","default":0}]}`
	id1, err := e.sreg.Register(ctx, "orders-value", registry.RegisterRequest{Schema: s1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sreg.Register(ctx, "orders-value", registry.RegisterRequest{Schema: s1}); err != nil {
		t.Fatal(err)
	}
	id2, err := e.sreg.Register(ctx, "orders-value", registry.RegisterRequest{Schema: s2})
	if err != nil {
		t.Fatal(err)
	}
	var off int64
	for i, want := range []registry.RegisteredEvent{
		{Subject: "orders-value", Version: 1, ID: id1, SchemaType: "AVRO"},
		{Subject: "orders-value", Version: 2, ID: id2, SchemaType: "AVRO"},
	} {
		var got registry.RegisteredEvent
		expect(t, e.next(t, target, &off), "herald/registry", "herald.schema.registered", "orders-value", &got)
		if got != want {
			t.Fatalf("event %d: %+v, want %+v", i, got, want)
		}
	}
}

// TestSystemEventsGroupRebalanced: a Kafka consumer joining a group
// completes a rebalance that reaches a rule with its generation,
// protocol and members.
func TestSystemEventsGroupRebalanced(t *testing.T) {
	e := startSysEnv(t)
	target := e.rule(t, "group", `{"source":["herald/groups"],"type":["herald.group.rebalanced"],"subject":["sys-g"]}`)
	if err := e.srv.Broker.CreateTopic(context.Background(), "g-in", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl := kafkaClient(t, e, kgo.ConsumerGroup("sys-g"), kgo.ConsumeTopics("g-in"),
		kgo.Balancers(kgo.RoundRobinBalancer()), kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100*time.Millisecond))
	pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	cl.PollFetches(pctx) // joins the group
	cancel()
	var off int64
	var got groups.RebalanceEvent
	expect(t, e.next(t, target, &off), "herald/groups", "herald.group.rebalanced", "sys-g", &got)
	if got.Group != "sys-g" || got.Generation < 1 || got.ProtocolType != "consumer" || got.Protocol != "roundrobin" ||
		len(got.Members) != 1 || got.Leader != got.Members[0] {
		t.Fatalf("rebalance data %+v", got)
	}
}

// TestSystemEventsSubscriptionDeadLettered: a message nacked up to the
// subscription's maximum delivery attempts goes to the dead-letter topic
// and its event reaches a rule.
func TestSystemEventsSubscriptionDeadLettered(t *testing.T) {
	e := startSysEnv(t)
	target := e.rule(t, "dlq", `{"source":["herald/subscriptions"],"type":["herald.subscription.deadlettered"]}`)
	ctx := context.Background()
	for _, tp := range []string{"work", "work-dlq"} {
		if err := e.srv.Broker.CreateTopic(ctx, tp, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	subs := e.api.Subs
	if _, err := subs.Create(ctx, "workers", subscription.Subscription{Topic: "work",
		DeadLetterPolicy: &subscription.DeadLetterPolicy{DeadLetterTopic: "work-dlq", MaxDeliveryAttempts: 5}}); err != nil {
		t.Fatal(err)
	}
	poison := event.New("shop", "com.example.poison")
	m, err := event.Encode(poison)
	if err != nil {
		t.Fatal(err)
	}
	rec := eventlog.Record{Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		rec.Headers = append(rec.Headers, eventlog.Header{Key: h.Key, Value: h.Value})
	}
	if _, err := eventlog.NewProducer(e.elog).Append(ctx, "work", rec); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 5; attempt++ {
		got, err := subs.Pull(ctx, "workers", 1, 10*time.Second)
		if err != nil || len(got) != 1 {
			t.Fatalf("attempt %d: pulled %d messages, err %v", attempt, len(got), err)
		}
		if _, err := subs.ModifyAckDeadline(ctx, "workers", []string{got[0].AckID}, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Pub/Sub semantics: the message is dead-lettered when a pull finds
	// it out of attempts.
	if got, err := subs.Pull(ctx, "workers", 1, 200*time.Millisecond); err != nil || len(got) != 0 {
		t.Fatalf("pulled %d messages after the last attempt, err %v", len(got), err)
	}
	var off int64
	var got subscription.DeadLetteredEvent
	expect(t, e.next(t, target, &off), "herald/subscriptions", "herald.subscription.deadlettered", "workers", &got)
	want := subscription.DeadLetteredEvent{Subscription: "workers", Topic: "work", Partition: 0, Offset: 0,
		DeadLetterTopic: "work-dlq", Attempts: 5, EventID: poison.ID, EventSource: "shop", EventType: "com.example.poison"}
	if got != want {
		t.Fatalf("dead-lettered data %+v, want %+v", got, want)
	}
}

// TestSystemEventsSagas: a saga whose step succeeds completes and one
// whose step fails is compensated; each outcome reaches its rule.
func TestSystemEventsSagas(t *testing.T) {
	e := startSysEnv(t)
	completed := e.rule(t, "saga-completed", `{"source":["herald/sagas"],"type":["herald.saga.completed"]}`)
	compensated := e.rule(t, "saga-compensated", `{"source":["herald/sagas"],"type":["herald.saga.compensated"]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.srv.Broker.CreateTopic(ctx, "sys.work", 1, nil); err != nil {
		t.Fatal(err)
	}
	// The participant: "ok-" sagas succeed, others fail.
	cl := kafkaClient(t, e, kgo.ConsumeTopics("sys.work"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	go func() {
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				msg := event.Message{Key: r.Key, Value: r.Value}
				for _, h := range r.Headers {
					msg.Headers = append(msg.Headers, event.Header{Key: h.Key, Value: h.Value})
				}
				cmd, err := event.Decode(msg)
				if err != nil {
					return
				}
				typ := "WorkFailed"
				if strings.HasPrefix(cmd.Extensions[saga.ExtSagaID], "ok-") {
					typ = "WorkDone"
				}
				out, err := event.Encode(saga.Reply(cmd, "/test", typ, nil))
				if err != nil {
					return
				}
				kr := &kgo.Record{Topic: saga.ReplyTopic(cmd), Key: out.Key, Value: out.Value}
				for _, h := range out.Headers {
					kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
				}
				cl.ProduceSync(ctx, kr)
			})
		}
	}()
	def := &saga.Definition{Name: "work", Steps: []saga.Step{{Name: "work",
		Command: saga.Command{Type: "DoWork", Topic: "sys.work"}, Success: []string{"WorkDone"}, Failure: []string{"WorkFailed"},
		Timeout: saga.Duration(10 * time.Second)}}}
	if _, err := e.api.Sagas.Register(ctx, def); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ok-1", "bad-1"} {
		if err := e.api.Sagas.StartSaga(ctx, "work", id, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ topic, typ, id string }{
		{completed, "herald.saga.completed", "ok-1"}, {compensated, "herald.saga.compensated", "bad-1"},
	} {
		var off int64
		var got saga.FinishedEvent
		expect(t, e.next(t, c.topic, &off), "herald/sagas", c.typ, c.id, &got)
		wantStatus := saga.StatusCompleted
		if c.id == "bad-1" {
			wantStatus = saga.StatusCompensated
		}
		if got.ID != c.id || got.Definition != "work" || got.Version != 1 || got.Status != wantStatus || got.Ended.Before(got.Created) {
			t.Fatalf("%s data %+v", c.typ, got)
		}
	}
	// Each outcome is emitted once.
	time.Sleep(300 * time.Millisecond)
	for _, tp := range []string{completed, compensated} {
		_, end, err := e.elog.Offsets(context.Background(), tp, 0)
		if err != nil || end != 1 {
			t.Fatalf("%s holds %d events (err %v), want 1", tp, end, err)
		}
	}

}
