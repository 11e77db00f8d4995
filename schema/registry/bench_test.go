package registry_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/internal/srload"
	"github.com/heraldhq/herald/schema"
	"github.com/heraldhq/herald/schema/registry"
)

const eventAvro = `{"type":"record","name":"Event","namespace":"bench","fields":[
	{"name":"id","type":"long"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
	{"name":"kind","type":{"type":"enum","name":"Kind","symbols":["CREATED","UPDATED","DELETED"]}},
	{"name":"source","type":"string"},{"name":"tags","type":{"type":"array","items":"string"}},
	{"name":"amount","type":["null","double"]},{"name":"body","type":"string"}]}`

type benchEvent struct {
	ID     int64    `avro:"id"`
	TS     int64    `avro:"ts"`
	Kind   string   `avro:"kind"`
	Source string   `avro:"source"`
	Tags   []string `avro:"tags"`
	Amount *float64 `avro:"amount"`
	Body   string   `avro:"body"`
}

// kibRecord is a wire-format Avro record of 1024 bytes.
func kibRecord(tb testing.TB, id int) []byte {
	amt := 12.5
	ev := benchEvent{ID: 7, TS: 1_700_000_000_000, Kind: "UPDATED", Source: "orders-service",
		Tags: []string{"eu", "priority", "web"}, Amount: &amt}
	short := len(avroBytes(tb, id, eventAvro, ev))
	ev.Body = strings.Repeat("x", 1023-short) // its length varint grows from 1 byte to 2
	b := avroBytes(tb, id, eventAvro, ev)
	if len(b) != 1024 {
		tb.Fatalf("record is %d bytes", len(b))
	}
	return b
}

// BenchmarkProduceValidation appends 1 KiB Avro records in batches of
// 100 to a memory-durability topic (so storage costs least and validation
// weighs most), with and without herald.schema.validation=value.
func BenchmarkProduceValidation(b *testing.B) {
	srv, reg, _ := validatingServer(b)
	ctx := context.Background()
	id := mustRegister(b, reg, "on-value", registry.RegisterRequest{Schema: eventAvro})
	rec := kibRecord(b, id)
	recs := make([]batch.Rec, 100)
	for i := range recs {
		recs[i] = batch.Rec{Timestamp: 1, Value: rec}
	}
	raw, err := batch.Encode(nil, batch.BuildOptions{}, recs)
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"none", "value"} {
		topic := map[string]string{"none": "off", "value": "on"}[mode]
		if err := srv.Broker.CreateTopic(ctx, topic, 1, map[string]string{
			broker.CfgSchemaValidation: mode, broker.CfgDurability: "memory", broker.CfgRetentionBytes: "67108864",
		}); err != nil {
			b.Fatal(err)
		}
		b.Run("path=broker/validation="+mode, func(b *testing.B) {
			b.SetBytes(int64(len(recs) * len(rec)))
			buf := make([]byte, len(raw))
			cpu0 := cpuSeconds()
			for b.Loop() {
				copy(buf, raw) // the broker stamps the batch in place
				if _, err := srv.Broker.Produce(ctx, topic, 0, buf, broker.AcksLeader); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.N*len(recs))/(cpuSeconds()-cpu0), "records/cpu-s")
		})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr()), kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	for _, mode := range []string{"none", "value"} {
		topic := map[string]string{"none": "off", "value": "on"}[mode]
		b.Run("path=kafka/validation="+mode, func(b *testing.B) {
			b.SetBytes(int64(len(rec)))
			var wg sync.WaitGroup
			var failed error
			var mu sync.Mutex
			cpu0 := cpuSeconds()
			for b.Loop() {
				wg.Add(1)
				cl.Produce(ctx, &kgo.Record{Topic: topic, Value: rec}, func(_ *kgo.Record, err error) {
					if err != nil {
						mu.Lock()
						failed = err
						mu.Unlock()
					}
					wg.Done()
				})
			}
			wg.Wait()
			if failed != nil {
				b.Fatal(failed)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.N)/(cpuSeconds()-cpu0), "records/cpu-s")
		})
	}
}

// BenchmarkLookup fetches schemas by id (and subject versions) over HTTP
// keep-alive connections from a server in this process: the registry's
// own Server (server=fast) or net/http serving Registry.Handler
// (server=nethttp, as on the main HTTP port under /registry). The load
// generator is internal/srload: raw TCP with requests pipelined
// pipeline deep, or net/http's client (client=nethttp, one request in
// flight per connection). Every body is checked. cpu-us/lookup is the
// whole process (server and load generator together).
func BenchmarkLookup(b *testing.B) {
	e := open(b, b.TempDir())
	for i := range 50 {
		mustRegister(b, e.reg, fmt.Sprintf("s%d-value", i), registry.RegisterRequest{Schema: fmt.Sprintf(`{"type":"record","name":"R%d","fields":[{"name":"a","type":"long"}]}`, i)})
	}
	fastLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fs := e.reg.NewServer(registry.ServerConfig{})
	go fs.Serve(fastLn)
	defer fs.Close()
	hs := httptest.NewServer(e.reg.Handler())
	defer hs.Close()
	addrs := map[string]string{"fast": fastLn.Addr().String(), "nethttp": strings.TrimPrefix(hs.URL, "http://")}
	ctx := context.Background()
	for _, c := range []struct {
		server, client, kind string
		conns, pipeline      int
	}{
		{"fast", srload.Raw, srload.KindID, 2, 32},
		{"fast", srload.Raw, srload.KindVersion, 2, 32},
		{"fast", srload.Raw, srload.KindID, 8, 1},
		{"fast", srload.NetHTTP, srload.KindID, 8, 1},
		{"nethttp", srload.Raw, srload.KindID, 2, 32},
		{"nethttp", srload.NetHTTP, srload.KindID, 8, 1},
	} {
		client := strings.ReplaceAll(c.client, "/", "")
		b.Run(fmt.Sprintf("server=%s/client=%s/kind=%s/conns=%d/pipeline=%d", c.server, client, c.kind, c.conns, c.pipeline), func(b *testing.B) {
			reqs, err := srload.Discover(ctx, "http://"+addrs[c.server], []string{c.kind}, 50)
			if err != nil {
				b.Fatal(err)
			}
			cpu0 := srload.SelfCPU()
			b.ResetTimer()
			res, err := srload.Run(ctx, srload.Config{Addr: addrs[c.server], Requests: reqs, Conns: c.conns, Pipeline: c.pipeline,
				Client: c.client, Lookups: uint64(b.N)})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.PerSecond(), "lookups/s")
			b.ReportMetric(float64((srload.SelfCPU()-cpu0).Nanoseconds())/1e3/float64(res.Lookups), "cpu-us/lookup")
		})
	}
}

// cpuSeconds is the CPU time (user + system) this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkValidateRecord is the hook alone on one 1 KiB Avro record, and
// the Avro check alone.
func BenchmarkValidateRecord(b *testing.B) {
	e := open(b, b.TempDir())
	id := mustRegister(b, e.reg, "on-value", registry.RegisterRequest{Schema: eventAvro})
	rec := batch.Record{Value: kibRecord(b, id)}
	v := e.reg.Validator()
	rule := broker.SchemaRule{Value: true, Strategy: "topic"}
	b.Run("hook", func(b *testing.B) {
		for b.Loop() {
			if err := v.ValidateRecord("on", rule, &rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	s, _ := e.reg.SchemaByID(id)
	as := s.(*schema.AvroSchema)
	b.Run("avro-only", func(b *testing.B) {
		for b.Loop() {
			if err := as.ValidateBinary(rec.Value[5:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
