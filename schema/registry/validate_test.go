package registry_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/schema"
	"github.com/heraldhq/herald/schema/registry"
	"github.com/heraldhq/herald/server"
)

const eventJSON = `{"title":"Event","type":"object","properties":{
	"id":{"type":"string"},"age":{"type":"integer","minimum":0}},"required":["id"]}`

const pbSchema = `syntax = "proto3";
package shop;
message Order { string id = 1; int64 cents = 2; }
message Refund { string order_id = 1; repeated string reasons = 2; }`

func mustRegister(t testing.TB, reg *registry.Registry, subject string, req registry.RegisterRequest) int {
	t.Helper()
	id, err := reg.Register(context.Background(), subject, req)
	if err != nil {
		t.Fatalf("register %s: %v", subject, err)
	}
	return id
}

func avroBytes(t testing.TB, id int, schemaText string, v any) []byte {
	t.Helper()
	b, err := avro.Marshal(avro.MustParse(schemaText), v)
	if err != nil {
		t.Fatal(err)
	}
	return append(schema.AppendHeader(nil, id, nil), b...)
}

type user struct {
	ID    int64   `avro:"id"`
	Name  string  `avro:"name"`
	Email *string `avro:"email"`
}

// TestValidateRecord checks the broker hook record by record: wire format,
// ids, subjects under each naming strategy, and each type's payload check
// naming the field at fault.
func TestValidateRecord(t *testing.T) {
	e := open(t, t.TempDir())
	reg := e.reg
	avroID := mustRegister(t, reg, "users-value", registry.RegisterRequest{Schema: userV2})
	mustRegister(t, reg, "com.example.User", registry.RegisterRequest{Schema: userV2})
	mustRegister(t, reg, "users-com.example.User", registry.RegisterRequest{Schema: userV2})
	mustRegister(t, reg, "users-key", registry.RegisterRequest{Schema: `"long"`})
	keyID := mustRegister(t, reg, "users-key", registry.RegisterRequest{Schema: `"long"`})
	jsonID := mustRegister(t, reg, "events-value", registry.RegisterRequest{Schema: eventJSON, SchemaType: "JSON"})
	pbID := mustRegister(t, reg, "orders-value", registry.RegisterRequest{Schema: pbSchema, SchemaType: "PROTOBUF"})

	mail := "a@example.com"
	good := avroBytes(t, avroID, userV2, user{ID: 1, Name: "ada", Email: &mail})
	truncated := good[:len(good)-3]
	badUnion := avroBytes(t, avroID, userV2, user{ID: 1, Name: "ada"})
	badUnion[len(badUnion)-1] = 8 // union index 4 of a 2-branch union
	longKey := avroBytes(t, keyID, `"long"`, int64(42))

	var order []byte
	order = protowire.AppendTag(order, 1, protowire.BytesType)
	order = protowire.AppendString(order, "o-1")
	order = protowire.AppendTag(order, 2, protowire.VarintType)
	order = protowire.AppendVarint(order, 1999)
	var refund []byte
	refund = protowire.AppendTag(refund, 2, protowire.BytesType)
	refund = protowire.AppendString(refund, "late")
	var badOrder []byte
	badOrder = protowire.AppendTag(badOrder, 2, protowire.BytesType) // cents as bytes
	badOrder = protowire.AppendString(badOrder, "x")
	pb := func(idx []int, body []byte) []byte { return append(schema.AppendHeader(nil, pbID, idx), body...) }
	js := func(doc string) []byte { return append(schema.AppendHeader(nil, jsonID, nil), doc...) }

	value := broker.SchemaRule{Value: true, Strategy: "topic"}
	cases := []struct {
		name    string
		topic   string
		rule    broker.SchemaRule
		rec     batch.Record
		wantErr string // "" for valid
	}{
		{"avro ok", "users", value, batch.Record{Value: good}, ""},
		{"avro tombstone", "users", value, batch.Record{Value: nil}, ""},
		{"avro truncated", "users", value, batch.Record{Value: truncated}, "value: schema 1: field /email: length"},
		{"avro bad union branch", "users", value, batch.Record{Value: badUnion}, "field /email: union branch 4"},
		{"avro trailing bytes", "users", value, batch.Record{Value: append(good[:len(good):len(good)], 0)}, "1 bytes after the datum"},
		{"unknown id", "users", value, batch.Record{Value: schema.AppendHeader(nil, 999, nil)}, "schema id 999 is not registered"},
		{"bad magic", "users", value, batch.Record{Value: []byte{1, 0, 0, 0, 1, 2}}, "magic byte 1"},
		{"too short", "users", value, batch.Record{Value: []byte{0, 0}}, "need at least 5"},
		{"not the topic's subject", "orders", value, batch.Record{Value: good}, `subject "orders-value"`},
		{"record strategy", "anything", broker.SchemaRule{Value: true, Strategy: "record"}, batch.Record{Value: good}, ""},
		{"topic-record strategy", "users", broker.SchemaRule{Value: true, Strategy: "topic-record"}, batch.Record{Value: good}, ""},
		{"topic-record strategy, other topic", "orders", broker.SchemaRule{Value: true, Strategy: "topic-record"}, batch.Record{Value: good}, `"orders-com.example.User"`},
		{"key ok", "users", broker.SchemaRule{Key: true, Strategy: "topic"}, batch.Record{Key: longKey, Value: []byte("anything")}, ""},
		{"key not in wire format", "users", broker.SchemaRule{Key: true, Strategy: "topic"}, batch.Record{Key: []byte("k1"), Value: good}, "key: "},
		{"value rule ignores key", "users", value, batch.Record{Key: []byte("k1"), Value: good}, ""},
		{"json ok", "events", value, batch.Record{Value: js(`{"id":"e1","age":3}`)}, ""},
		{"json wrong type", "events", value, batch.Record{Value: js(`{"id":"e1","age":"old"}`)}, "field /age"},
		{"json below minimum", "events", value, batch.Record{Value: js(`{"id":"e1","age":-1}`)}, "field /age"},
		{"json missing required", "events", value, batch.Record{Value: js(`{"age":1}`)}, "id"},
		{"json not json", "events", value, batch.Record{Value: js(`{"id":`)}, "not JSON"},
		{"json record strategy uses title", "x", broker.SchemaRule{Value: true, Strategy: "record"}, batch.Record{Value: js(`{"id":"e"}`)}, `subject "Event"`},
		{"protobuf first message", "orders", value, batch.Record{Value: pb([]int{0}, order)}, ""},
		{"protobuf second message", "orders", value, batch.Record{Value: pb([]int{1}, refund)}, ""},
		{"protobuf wrong wire type", "orders", value, batch.Record{Value: pb([]int{0}, badOrder)}, "Order.cents"},
		{"protobuf message index out of range", "orders", value, batch.Record{Value: pb([]int{5}, order)}, "message index 5"},
		{"protobuf record strategy", "x", broker.SchemaRule{Value: true, Strategy: "record"}, batch.Record{Value: pb([]int{1}, refund)}, `subject "shop.Refund"`},
		{"cloudevents dataschema by id", "events", value, batch.Record{Value: []byte(`{"id":"e1"}`),
			Headers: []batch.RecordHeader{{Key: []byte("ce_dataschema"), Value: []byte("http://registry:8081/schemas/ids/" + itoa(jsonID))}}}, ""},
		{"cloudevents dataschema by subject", "events", value, batch.Record{Value: []byte(`{"id":"e1","age":"x"}`),
			Headers: []batch.RecordHeader{{Key: []byte("ce_dataschema"), Value: []byte("https://h/registry/subjects/events-value/versions/latest")}}}, "field /age"},
		{"cloudevents dataschema unknown", "events", value, batch.Record{Value: []byte(`{"id":"e1"}`),
			Headers: []batch.RecordHeader{{Key: []byte("ce_dataschema"), Value: []byte("urn:nothing")}}}, "ce_dataschema"},
	}
	v := reg.Validator()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := v.ValidateRecord(c.topic, c.rule, &c.rec)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case c.wantErr != "" && err == nil:
				t.Fatalf("want an error with %q, got valid", c.wantErr)
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Fatalf("error %q lacks %q", err, c.wantErr)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// validatingServer starts a Herald server whose broker validates with a
// registry on its own _schemas topic, as herald serve wires it.
func validatingServer(t testing.TB) (*server.Server, *registry.Registry, *prometheus.Registry) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	promReg := prometheus.NewRegistry()
	hook := &registry.Hook{}
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: t.TempDir(), Validator: hook}, Logger: logger, Registerer: promReg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	l, err := embedded.New(embedded.Config{Broker: srv.Broker, Groups: srv.Groups})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(context.Background(), registry.Config{Log: l, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	hook.Set(reg)
	return srv, reg, promReg
}

// TestValidationOnProduce sends one Kafka produce request with a good
// batch for partition 0 and a batch with one bad record for partition 1:
// partition 0 is stored, partition 1 is refused with INVALID_RECORD, the
// bad record's index and a message naming the field, and the topic's
// schema_validation_errors_total counts it.
func TestValidationOnProduce(t *testing.T) {
	srv, reg, promReg := validatingServer(t)
	ctx := context.Background()
	if err := srv.Broker.CreateTopic(ctx, "users", 2, map[string]string{broker.CfgSchemaValidation: "value"}); err != nil {
		t.Fatal(err)
	}
	id := mustRegister(t, reg, "users-value", registry.RegisterRequest{Schema: userV2})
	mail := "a@example.com"
	good := avroBytes(t, id, userV2, user{ID: 1, Name: "ada", Email: &mail})
	bad := avroBytes(t, id, userV2, user{ID: 2, Name: "bob"})
	bad[len(bad)-1] = 8

	enc := func(vals ...[]byte) []byte {
		var recs []batch.Rec
		for _, v := range vals {
			recs = append(recs, batch.Rec{Timestamp: 1, Value: v})
		}
		b, err := batch.Encode(nil, batch.BuildOptions{}, recs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "users"
	for p, recs := range [][]byte{enc(good, good), enc(good, bad, good)} {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = int32(p), recs
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	ps := resp.Topics[0].Partitions
	if ps[0].ErrorCode != 0 || ps[0].BaseOffset != 0 {
		t.Fatalf("partition 0: error %d, base offset %d", ps[0].ErrorCode, ps[0].BaseOffset)
	}
	if ps[1].ErrorCode != kerr.InvalidRecord.Code || ps[1].ErrorMessage == nil || !strings.Contains(*ps[1].ErrorMessage, "field /email") {
		t.Fatalf("partition 1: error %d %v", ps[1].ErrorCode, deref(ps[1].ErrorMessage))
	}
	if len(ps[1].ErrorRecords) != 1 || ps[1].ErrorRecords[0].RelativeOffset != 1 || !strings.Contains(deref(ps[1].ErrorRecords[0].ErrorMessage), "union branch") {
		t.Fatalf("partition 1 record errors: %+v", ps[1].ErrorRecords)
	}
	if hw, _ := srv.Broker.HighWatermark("users", 0); hw != 2 {
		t.Fatalf("partition 0 high-water mark %d, want 2", hw)
	}
	if hw, _ := srv.Broker.HighWatermark("users", 1); hw != 0 {
		t.Fatalf("partition 1 high-water mark %d, want 0 (nothing of the refused batch stored)", hw)
	}
	if n := testutil.ToFloat64(mustCounter(t, promReg, "users")); n != 1 {
		t.Fatalf("schema_validation_errors_total{topic=users} = %v, want 1", n)
	}
	// A franz-go producer with good records goes through; a topic without
	// the config is not checked.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "users", Partition: 1, Value: good}).FirstErr(); err != nil {
		t.Fatalf("produce a valid record: %v", err)
	}
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: "users", Value: []byte("plain text")}).FirstErr()
	if err == nil || !strings.Contains(err.Error(), "INVALID_RECORD") {
		t.Fatalf("produce plain text to a validated topic: %v", err)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func mustCounter(t *testing.T, g prometheus.Gatherer, topic string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "herald_schema_validation_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "topic" && l.GetValue() == topic {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("no herald_schema_validation_errors_total{topic=%q}", topic)
	return nil
}

var valueRule = broker.SchemaRule{Value: true, Strategy: "topic"}

func batchRecord(value []byte) batch.Record { return batch.Record{Value: value} }
