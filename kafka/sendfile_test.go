package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog/batch"
)

// serveOn starts a second Kafka listener on env's broker with cfg changed
// by mod, closed with the test.
func (e *testEnv) serveOn(t testing.TB, mod func(*Config)) (string, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{Broker: e.b, Logger: testLogger(t), Registerer: reg}
	mod(&cfg)
	s := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return ln.Addr().String(), reg
}

// sendfileBytes reads herald_kafka_sendfile_bytes_total from reg.
func sendfileBytes(t testing.TB, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "herald_kafka_sendfile_bytes_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no herald_kafka_sendfile_bytes_total metric")
	return 0
}

// randomBatch encodes n records of size random bytes.
func randomBatch(t testing.TB, n, size int) []byte {
	t.Helper()
	recs := make([]batch.Rec, n)
	now := time.Now().UnixMilli()
	for i := range recs {
		v := make([]byte, size)
		rand.Read(v)
		recs[i] = batch.Rec{Timestamp: now, Key: []byte(fmt.Sprint(i)), Value: v}
	}
	b, err := batch.Encode(nil, batch.BuildOptions{}, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFetchSendfileMatchesCopy sends the same fetch requests, of many
// shapes (versions 4 to 16, offsets at, inside and past batches, at the
// high-water mark and beyond it, partition and response byte limits from
// one byte up, several topics and partitions at once, memory and disk
// topics, both isolation levels), to a listener that sends records from
// the segment files and to one that copies them (CopyFetches), and demands
// byte-identical responses.
func TestFetchSendfileMatchesCopy(t *testing.T) {
	env := newEnv(t, testOpts{})
	ctx := context.Background()
	env.createTopic(t, "disk", 3, map[string]string{broker.CfgSegmentBytes: "200000"})
	env.createTopic(t, "mem", 1, map[string]string{broker.CfgDurability: "memory"})
	produce := func(topic string, p int32, raw []byte) {
		t.Helper()
		if _, err := env.b.Produce(ctx, topic, p, raw, broker.AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 60; i++ {
		produce("disk", 0, randomBatch(t, 20, 1000)) // ~20 KiB: above minSpanBytes
		if i%3 == 0 {
			produce("disk", 0, randomBatch(t, 1+i%4, 100))
		}
	}
	for i := 0; i < 400; i++ {
		produce("disk", 1, randomBatch(t, 1, 200+i))
	}
	for i := 0; i < 20; i++ {
		produce("mem", 0, randomBatch(t, 10, 3000))
	}
	// disk/2 stays empty.
	sendAddr, sendSrv := env.serveOn(t, func(*Config) {})
	copyAddr, _ := env.serveOn(t, func(c *Config) { c.CopyFetches = true })
	a, b := dialRaw(t, sendAddr), dialRaw(t, copyAddr)

	ids := map[string][16]byte{}
	hwms := map[string]int64{}
	for _, name := range []string{"disk", "mem"} {
		info, err := env.b.Topic(name)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = info.ID
		parts, _ := env.b.Partitions(name)
		for _, p := range parts {
			hwms[fmt.Sprintf("%s/%d", name, p.Partition)] = p.HighWatermark
		}
	}
	rng := mrand.New(mrand.NewPCG(7, 11))
	pick := func(key string) int64 {
		hwm := hwms[key]
		switch rng.IntN(8) {
		case 0:
			return 0
		case 1:
			return hwm
		case 2:
			return hwm + 1 + int64(rng.IntN(3)) // out of range
		default:
			return rng.Int64N(hwm + 1)
		}
	}
	limits := []int32{1, 100, 5000, 16 << 10, 30000, 100000, 1 << 20}
	versions := []int16{4, 5, 7, 11, 12, 13, 15, 16}
	var recordBytes int
	for n := 0; n < 400; n++ {
		req := kmsg.NewPtrFetchRequest()
		req.Version = versions[rng.IntN(len(versions))]
		req.ReplicaID, req.MaxWaitMillis, req.MinBytes = -1, 0, 0
		req.MaxBytes = limits[rng.IntN(len(limits))]
		if rng.IntN(2) == 0 {
			req.MaxBytes = 50 << 20
		}
		req.IsolationLevel = int8(rng.IntN(2))
		for _, name := range []string{"disk", "mem"} {
			if name == "mem" && rng.IntN(2) == 0 {
				continue
			}
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = name, ids[name]
			nparts := 3
			if name == "mem" {
				nparts = 1
			}
			for p := 0; p < nparts; p++ {
				if nparts > 1 && rng.IntN(4) == 0 {
					continue
				}
				rp := kmsg.NewFetchRequestTopicPartition()
				rp.Partition = int32(p)
				rp.FetchOffset = pick(fmt.Sprintf("%s/%d", name, p))
				rp.PartitionMaxBytes = limits[rng.IntN(len(limits))]
				rt.Partitions = append(rt.Partitions, rp)
			}
			if len(rt.Partitions) > 0 {
				req.Topics = append(req.Topics, rt)
			}
		}
		ca, cb := a.send(req), b.send(req)
		if ca != cb {
			t.Fatalf("correlation ids %d and %d", ca, cb)
		}
		ra, err := a.readFrame()
		if err != nil {
			t.Fatalf("request %d (v%d) to the sendfile listener: %v", n, req.Version, err)
		}
		rb, err := b.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ra, rb) {
			t.Fatalf("request %d (v%d, isolation %d, max bytes %d, %+v): responses differ: %d bytes sent from files, %d copied",
				n, req.Version, req.IsolationLevel, req.MaxBytes, req.Topics, len(ra), len(rb))
		}
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.Version = req.Version
		body := ra[4:]
		if resp.IsFlexible() {
			body = body[1:]
		}
		if err := resp.ReadFrom(body); err != nil {
			t.Fatalf("response %d does not parse: %v", n, err)
		}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				recordBytes += len(rp.RecordBatches)
			}
		}
	}
	sent := sendfileBytes(t, sendSrv)
	t.Logf("%d record bytes in the responses, %.0f sent with sendfile", recordBytes, sent)
	if sent < float64(recordBytes)/4 {
		t.Fatalf("only %.0f of %d record bytes were sent from files: the sendfile path was hardly tested", sent, recordBytes)
	}
}

// TestFetchSendfileFranzGo consumes a topic of 1 KiB records across
// segments with franz-go, from a listener that sends records from the
// segment files, and checks every record arrives once, in order, intact
// (kgo verifies each batch's CRC).
func TestFetchSendfileFranzGo(t *testing.T) {
	env := newEnv(t, testOpts{})
	env.createTopic(t, "big", 4, map[string]string{broker.CfgSegmentBytes: "1000000"})
	cl := env.client(t, kgo.DefaultProduceTopic("big"), kgo.ProducerBatchMaxBytes(256<<10), kgo.ProducerLinger(5*time.Millisecond))
	const n = 20000
	ctx := context.Background()
	var wg sync.WaitGroup
	var perr error
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		v := make([]byte, 1024)
		rand.Read(v)
		copy(v, fmt.Sprintf("%08d", i))
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 97)), Value: v}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				perr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if perr != nil {
		t.Fatal(perr)
	}
	sendAddr, sendSrv := env.serveOn(t, func(*Config) {})
	cons, err := kgo.NewClient(kgo.SeedBrokers(sendAddr), kgo.ConsumeTopics("big"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := make(map[string]bool, n)
	next := map[int32]int64{}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for len(seen) < n {
		fs := cons.PollFetches(cctx)
		if err := cctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", len(seen), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != next[r.Partition] {
				t.Fatalf("partition %d: offset %d, want %d", r.Partition, r.Offset, next[r.Partition])
			}
			next[r.Partition]++
			id := string(r.Value[:8])
			if seen[id] {
				t.Fatalf("record %s twice", id)
			}
			seen[id] = true
		})
	}
	if sent := sendfileBytes(t, sendSrv); sent < float64(n*1024)/2 {
		t.Fatalf("%.0f bytes sent with sendfile for %d KiB of records", sent, n)
	}
}

// TestFetchSendfileWhileSegmentsRemoved removes the segment files a fetch
// response is about to send (retention in one case, deleting the topic in
// the other) between the fetch finding them and the writer sending them,
// and checks the client still receives exactly the bytes that were found.
func TestFetchSendfileWhileSegmentsRemoved(t *testing.T) {
	for _, how := range []string{"retention", "delete topic"} {
		t.Run(how, func(t *testing.T) {
			b, err := broker.Open(broker.Config{DataDir: t.TempDir(), Logger: testLogger(t), CleanInterval: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			env := &testEnv{b: b}
			t.Cleanup(func() { b.Close() })
			ctx := context.Background()
			env.createTopic(t, "r", 1, map[string]string{broker.CfgSegmentBytes: "100000"})
			for i := 0; i < 30; i++ {
				if _, err := b.Produce(ctx, "r", 0, randomBatch(t, 20, 1000), broker.AcksAll); err != nil {
					t.Fatal(err)
				}
			}
			sendAddr, sendReg := env.serveOn(t, func(*Config) {})
			copyAddr, _ := env.serveOn(t, func(c *Config) { c.CopyFetches = true })
			req := kmsg.NewPtrFetchRequest()
			req.Version, req.ReplicaID, req.MaxBytes = 11, -1, 1<<20
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic = "r"
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.PartitionMaxBytes = 1 << 20
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			c := dialRaw(t, copyAddr)
			c.send(req)
			want, err := c.readFrame()
			if err != nil {
				t.Fatal(err)
			}

			removed := make(chan struct{})
			hook := func() {
				defer close(removed)
				switch how {
				case "retention":
					set := "1"
					if err := b.AlterConfigs(ctx, "r", map[string]*string{broker.CfgRetentionBytes: &set}, false); err != nil {
						t.Error(err)
						return
					}
					deadline := time.Now().Add(10 * time.Second)
					for {
						if parts, err := b.Partitions("r"); err == nil && parts[0].StartOffset > 0 {
							return
						}
						if time.Now().After(deadline) {
							t.Error("retention did not remove the first segment")
							return
						}
						time.Sleep(5 * time.Millisecond)
					}
				default:
					if err := b.DeleteTopic(ctx, "r"); err != nil {
						t.Error(err)
					}
				}
			}
			testHookSendSpans.Store(&hook)
			t.Cleanup(func() { testHookSendSpans.Store(nil) })
			s := dialRaw(t, sendAddr)
			s.send(req)
			got, err := s.readFrame()
			if err != nil {
				t.Fatal(err)
			}
			<-removed
			testHookSendSpans.Store(nil)
			if !bytes.Equal(got, want) {
				t.Fatalf("response of %d bytes; want the %d bytes found before the files were removed", len(got), len(want))
			}
			// NB: the writer counts the bytes after the write returns, which
			// may be after the client has read them.
			waitFor(t, 5*time.Second, "the response counted as sent from the segment files", func() bool {
				return sendfileBytes(t, sendReg) > 0
			})
		})
	}
}

// TestFetchSendfileMatchesCopyTransactions is the byte-identity check for
// read_committed fetches over transactions: committed and aborted
// transactions of large batches, and one left open (the last stable
// offset below the high-water mark), read at random offsets and limits
// from both listeners.
func TestFetchSendfileMatchesCopyTransactions(t *testing.T) {
	e := newTxnEnv(t)
	ctx := context.Background()
	if err := e.b.CreateTopic(ctx, "tx", 2, nil); err != nil {
		t.Fatal(err)
	}
	produce := func(cl *kgo.Client, n int) {
		t.Helper()
		for j := 0; j < n; j++ {
			v := make([]byte, 1024)
			rand.Read(v)
			cl.Produce(ctx, &kgo.Record{Partition: int32(j % 2), Value: v}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cl := e.client(kgo.TransactionalID("sendfile"), kgo.DefaultProduceTopic("tx"), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(20*time.Millisecond))
	for i := 0; i < 9; i++ {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		produce(cl, 80)
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(i%3 != 0)); err != nil {
			t.Fatal(err)
		}
	}
	open := e.client(kgo.TransactionalID("left-open"), kgo.DefaultProduceTopic("tx"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(open, 40)
	produce(cl, 0)

	env := &testEnv{b: e.b}
	sendAddr, sendReg := env.serveOn(t, func(*Config) {})
	copyAddr, _ := env.serveOn(t, func(c *Config) { c.CopyFetches = true })
	a, b := dialRaw(t, sendAddr), dialRaw(t, copyAddr)
	parts, err := e.b.Partitions("tx")
	if err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(3, 5))
	limits := []int32{1, 20000, 100000, 1 << 20}
	aborted := 0
	for n := 0; n < 200; n++ {
		req := kmsg.NewPtrFetchRequest()
		req.Version, req.ReplicaID, req.MaxBytes = int16(4+rng.IntN(8)), -1, 50<<20
		if rng.IntN(4) > 0 {
			req.IsolationLevel = 1 // read_committed, mostly
		}
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "tx"
		for _, p := range parts {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset = p.Partition, rng.Int64N(p.HighWatermark+1)
			rp.PartitionMaxBytes = limits[rng.IntN(len(limits))]
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		a.send(req)
		b.send(req)
		ra, err := a.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ra, rb) {
			t.Fatalf("request %d (v%d, isolation %d, %+v): responses differ: %d bytes sent from files, %d copied", n, req.Version, req.IsolationLevel, req.Topics, len(ra), len(rb))
		}
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.Version = req.Version
		if err := resp.ReadFrom(ra[4:]); err != nil {
			t.Fatal(err)
		}
		for _, rp := range resp.Topics[0].Partitions {
			aborted += len(rp.AbortedTransactions)
			if req.IsolationLevel == 1 && rp.LastStableOffset >= rp.HighWatermark {
				t.Fatalf("partition %d: last stable offset %d, high-water mark %d: no transaction left open", rp.Partition, rp.LastStableOffset, rp.HighWatermark)
			}
		}
	}
	if aborted == 0 {
		t.Fatal("no response listed an aborted transaction")
	}
	waitFor(t, 5*time.Second, "bytes counted as sent from the segment files", func() bool {
		return sendfileBytes(t, sendReg) > 0
	})
}
