package kafka

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/commitlog/batch"
)

func TestProduceConsumeRoundTrip(t *testing.T) {
	env := newEnv(t, testOpts{})
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	}
	for _, cc := range codecs {
		t.Run(cc.name, func(t *testing.T) {
			topic := "rt-" + cc.name
			env.createTopic(t, topic, 3, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			prod := env.client(t, kgo.ProducerBatchCompression(cc.codec), kgo.DefaultProduceTopic(topic))
			const n = 60
			var recs []*kgo.Record
			for i := range n {
				recs = append(recs, &kgo.Record{
					Key:     []byte(fmt.Sprintf("key-%d", i%7)),
					Value:   []byte(fmt.Sprintf("value-%d-%s", i, cc.name)),
					Headers: []kgo.RecordHeader{{Key: "h", Value: []byte(fmt.Sprint(i))}},
				})
			}
			if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			parts := map[int32]bool{}
			for _, r := range recs {
				parts[r.Partition] = true
			}
			if len(parts) < 2 {
				t.Fatalf("records went to %d partitions; want several", len(parts))
			}
			cons := env.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			got := map[string]*kgo.Record{}
			for len(got) < n {
				fs := cons.PollFetches(ctx)
				if err := ctx.Err(); err != nil {
					t.Fatalf("consumed %d of %d: %v", len(got), n, err)
				}
				fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
				fs.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = r })
			}
			for i, want := range recs {
				r := got[string(want.Value)]
				if r == nil {
					t.Fatalf("record %d (%s) not consumed", i, want.Value)
				}
				if string(r.Key) != string(want.Key) || r.Partition != want.Partition || r.Offset != want.Offset {
					t.Errorf("record %d: key %q partition %d offset %d; want %q %d %d", i, r.Key, r.Partition, r.Offset, want.Key, want.Partition, want.Offset)
				}
				if len(r.Headers) != 1 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != fmt.Sprint(i) {
					t.Errorf("record %d: headers %v", i, r.Headers)
				}
				if r.ProducerID < 0 {
					t.Errorf("record %d: producer id %d; kgo is idempotent by default", i, r.ProducerID)
				}
			}
		})
	}
}

func TestIdempotentDuplicateAcknowledgedWithOriginalOffset(t *testing.T) {
	env := newEnv(t, testOpts{})
	env.createTopic(t, "idem", 1, nil)
	rc := dialRaw(t, env.addr)
	pid := rc.do(&kmsg.InitProducerIDRequest{Version: 4, TransactionTimeoutMillis: 60000, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
	if pid.ErrorCode != 0 || pid.ProducerID < 0 {
		t.Fatalf("InitProducerID: code %d id %d", pid.ErrorCode, pid.ProducerID)
	}
	opts := batch.BuildOptions{Producer: true, ProducerID: pid.ProducerID, ProducerEpoch: pid.ProducerEpoch}
	b0 := encodeBatch(t, opts, "a", "b")
	opts.BaseSequence = 2
	b1 := encodeBatch(t, opts, "c")
	for i, step := range []struct {
		b    []byte
		want int64
	}{{b0, 0}, {b1, 2}, {b1, 2}, {b0, 0}} {
		resp := rc.do(produceReq(9, -1, map[string]map[int32][]byte{"idem": {0: step.b}})).(*kmsg.ProduceResponse)
		p := partitionResults(resp)["idem"][0]
		if p.ErrorCode != 0 || p.BaseOffset != step.want {
			t.Fatalf("step %d: code %d base offset %d; want 0 and %d", i, p.ErrorCode, p.BaseOffset, step.want)
		}
	}
	// A gap in the sequence is refused.
	opts.BaseSequence = 9
	resp := rc.do(produceReq(9, -1, map[string]map[int32][]byte{"idem": {0: encodeBatch(t, opts, "x")}})).(*kmsg.ProduceResponse)
	if code := partitionResults(resp)["idem"][0].ErrorCode; code != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("gap: code %d, want OUT_OF_ORDER_SEQUENCE_NUMBER", code)
	}
	if _, hwm, _ := env.b.Offsets("idem", 0); hwm != 3 {
		t.Fatalf("high-water mark %d, want 3: duplicates were stored", hwm)
	}
}

func TestProduceUnknownTopic(t *testing.T) {
	env := newEnv(t, testOpts{})
	rc := dialRaw(t, env.addr)
	resp := rc.do(produceReq(7, 1, map[string]map[int32][]byte{"missing": {0: encodeBatch(t, batch.BuildOptions{}, "v")}})).(*kmsg.ProduceResponse)
	if code := partitionResults(resp)["missing"][0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("code %d, want UNKNOWN_TOPIC_OR_PARTITION", code)
	}

	// The same through kgo, which gives up after its unknown-topic retries.
	cl := env.client(t, kgo.UnknownTopicRetries(1))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := cl.ProduceSync(ctx, &kgo.Record{Topic: "missing", Value: []byte("v")}).FirstErr()
	if !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("kgo produce: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
}

func TestProduceMessageTooLargeLeavesOtherPartitions(t *testing.T) {
	env := newEnv(t, testOpts{})
	env.createTopic(t, "small", 2, map[string]string{"max.message.bytes": "1024"})
	env.createTopic(t, "other", 1, nil)
	big := string(make([]byte, 2000))
	rc := dialRaw(t, env.addr)
	resp := rc.do(produceReq(9, -1, map[string]map[int32][]byte{
		"small": {0: encodeBatch(t, batch.BuildOptions{}, "fits"), 1: encodeBatch(t, batch.BuildOptions{}, big)},
		"other": {0: encodeBatch(t, batch.BuildOptions{}, big)},
	})).(*kmsg.ProduceResponse)
	res := partitionResults(resp)
	if p := res["small"][0]; p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Errorf("small/0: code %d offset %d, want success at 0", p.ErrorCode, p.BaseOffset)
	}
	if p := res["small"][1]; p.ErrorCode != kerr.MessageTooLarge.Code || p.BaseOffset != -1 {
		t.Errorf("small/1: code %d offset %d, want MESSAGE_TOO_LARGE", p.ErrorCode, p.BaseOffset)
	}
	if p := res["other"][0]; p.ErrorCode != 0 {
		t.Errorf("other/0: code %d, want success", p.ErrorCode)
	}
	if _, hwm, _ := env.b.Offsets("small", 1); hwm != 0 {
		t.Errorf("small/1 high-water mark %d, want 0", hwm)
	}
}

func TestProduceCorruptBatch(t *testing.T) {
	env := newEnv(t, testOpts{})
	env.createTopic(t, "crc", 1, nil)
	b := encodeBatch(t, batch.BuildOptions{}, "one", "two")
	b[len(b)-1] ^= 0xff // in the CRC-covered records
	rc := dialRaw(t, env.addr)
	resp := rc.do(produceReq(9, -1, map[string]map[int32][]byte{"crc": {0: b}})).(*kmsg.ProduceResponse)
	if code := partitionResults(resp)["crc"][0].ErrorCode; code != kerr.CorruptMessage.Code {
		t.Fatalf("code %d, want CORRUPT_MESSAGE", code)
	}
	b = encodeBatch(t, batch.BuildOptions{}, "one")
	b[17] ^= 0x01 // the CRC itself
	resp = rc.do(produceReq(9, 1, map[string]map[int32][]byte{"crc": {0: b}})).(*kmsg.ProduceResponse)
	if code := partitionResults(resp)["crc"][0].ErrorCode; code != kerr.CorruptMessage.Code {
		t.Fatalf("flipped CRC byte: code %d, want CORRUPT_MESSAGE", code)
	}
	if _, hwm, _ := env.b.Offsets("crc", 0); hwm != 0 {
		t.Fatalf("high-water mark %d: a corrupt batch was stored", hwm)
	}
}

func TestProduceAcksZeroSendsNoResponse(t *testing.T) {
	env := newEnv(t, testOpts{})
	env.createTopic(t, "acks0", 1, nil)
	rc := dialRaw(t, env.addr)
	rc.send(produceReq(9, 0, map[string]map[int32][]byte{"acks0": {0: encodeBatch(t, batch.BuildOptions{}, "v")}}))
	// The next response read is the metadata's.
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 9
	if resp := rc.do(req).(*kmsg.MetadataResponse); len(resp.Brokers) != 1 {
		t.Fatalf("metadata brokers %v", resp.Brokers)
	}
	waitFor(t, 5*time.Second, "the acks=0 record", func() bool { _, hwm, _ := env.b.Offsets("acks0", 0); return hwm == 1 })
}

func TestFetchLongPollWakesOnProduce(t *testing.T) {
	env := newEnv(t, testOpts{})
	env.createTopic(t, "poll", 4, nil)
	rc := dialRaw(t, env.addr)
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.SessionEpoch = 11, 10000, 1, 1<<20, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "poll"
	for p := range int32(4) {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = p, 0, 1<<20
		rt.Partitions = append(rt.Partitions, fp)
	}
	req.Topics = append(req.Topics, rt)
	start := time.Now()
	corr := rc.send(req)
	time.Sleep(200 * time.Millisecond)
	produced := time.Now()
	if _, err := env.b.Produce(context.Background(), "poll", 2, encodeBatch(t, batch.BuildOptions{}, "wake"), -1); err != nil {
		t.Fatal(err)
	}
	resp := rc.recv(req, corr).(*kmsg.FetchResponse)
	if took := time.Since(produced); took > 2*time.Second {
		t.Fatalf("fetch answered %v after the produce; MaxWait is 10s", took)
	}
	if time.Since(start) < 150*time.Millisecond {
		t.Fatalf("fetch returned before anything was produced")
	}
	var got int
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 {
			t.Errorf("partition %d: code %d", p.Partition, p.ErrorCode)
		}
		if len(p.RecordBatches) > 0 {
			got++
			if p.Partition != 2 || p.HighWatermark != 1 || p.LastStableOffset != 1 || p.LogStartOffset != 0 {
				t.Errorf("partition %d: hwm %d lso %d start %d", p.Partition, p.HighWatermark, p.LastStableOffset, p.LogStartOffset)
			}
		}
	}
	if got != 1 {
		t.Fatalf("%d partitions with records, want 1", got)
	}

	// MaxWait passes without data: an empty answer after about MaxWait.
	req.MaxWaitMillis = 300
	req.Topics[0].Partitions[2].FetchOffset = 1
	start = time.Now()
	resp = rc.do(req).(*kmsg.FetchResponse)
	if took := time.Since(start); took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("empty fetch took %v, want about 300ms", took)
	}
	for _, p := range resp.Topics[0].Partitions {
		if len(p.RecordBatches) > 0 {
			t.Fatalf("partition %d has records", p.Partition)
		}
	}
}

func TestFetchOffsetOutOfRangeAndTopicIDs(t *testing.T) {
	env := newEnv(t, testOpts{})
	env.createTopic(t, "oor", 1, nil)
	if _, err := env.b.Produce(context.Background(), "oor", 0, encodeBatch(t, batch.BuildOptions{}, "a", "b"), -1); err != nil {
		t.Fatal(err)
	}
	info, _ := env.b.Topic("oor")
	rc := dialRaw(t, env.addr)
	fetch := func(version int16, offset int64, id [16]byte) kmsg.FetchResponseTopicPartition {
		req := kmsg.NewPtrFetchRequest()
		req.Version, req.MaxWaitMillis, req.MaxBytes, req.SessionEpoch = version, 100, 1<<20, -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = "oor", id
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.FetchOffset, fp.PartitionMaxBytes = offset, 1<<20
		rt.Partitions = append(rt.Partitions, fp)
		req.Topics = append(req.Topics, rt)
		resp := rc.do(req).(*kmsg.FetchResponse)
		return resp.Topics[0].Partitions[0]
	}
	if p := fetch(11, 5, [16]byte{}); p.ErrorCode != kerr.OffsetOutOfRange.Code || p.HighWatermark != 2 {
		t.Errorf("offset 5: code %d hwm %d", p.ErrorCode, p.HighWatermark)
	}
	// A partition without records carries empty records, never null: the
	// records field is not nullable for sarama's decoder before v12.
	for _, v := range []int16{4, 10, 11, 12} {
		for _, off := range []int64{2, 5} {
			if p := fetch(v, off, [16]byte{}); p.RecordBatches == nil {
				t.Errorf("v%d offset %d: null records, want empty", v, off)
			}
		}
	}
	if p := fetch(13, 0, info.ID); p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
		t.Errorf("v13 by topic id: code %d, %d bytes", p.ErrorCode, len(p.RecordBatches))
	}
	if p := fetch(13, 0, [16]byte{1}); p.ErrorCode != kerr.UnknownTopicID.Code {
		t.Errorf("v13 unknown id: code %d", p.ErrorCode)
	}
	// A fetch session id the server never gave out.
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.SessionID, req.SessionEpoch = 12, 77, 3
	if resp := rc.do(req).(*kmsg.FetchResponse); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Errorf("unknown session: code %d", resp.ErrorCode)
	}
}

func TestListOffsets(t *testing.T) {
	env := newEnv(t, testOpts{})
	env.createTopic(t, "lo", 1, nil)
	adm := env.admin(t)
	cl := env.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 3 {
		r := &kgo.Record{Topic: "lo", Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(i) * time.Second)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	start, err := adm.ListStartOffsets(ctx, "lo")
	if err != nil {
		t.Fatal(err)
	}
	end, err := adm.ListEndOffsets(ctx, "lo")
	if err != nil {
		t.Fatal(err)
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, base.Add(500*time.Millisecond).UnixMilli(), "lo")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := start.Lookup("lo", 0)
	e, _ := end.Lookup("lo", 0)
	a, _ := after.Lookup("lo", 0)
	if s.Offset != 0 || e.Offset != 3 || a.Offset != 1 {
		t.Fatalf("start %d end %d after %d; want 0 3 1", s.Offset, e.Offset, a.Offset)
	}
	if a.Timestamp != base.Add(time.Second).UnixMilli() {
		t.Fatalf("timestamp %d, want %d", a.Timestamp, base.Add(time.Second).UnixMilli())
	}
	// v0's old-style offsets.
	rc := dialRaw(t, env.addr)
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 0
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "lo"
	p := kmsg.NewListOffsetsRequestTopicPartition()
	p.Timestamp, p.MaxNumOffsets = -1, 1
	rt.Partitions = append(rt.Partitions, p)
	req.Topics = append(req.Topics, rt)
	resp := rc.do(req).(*kmsg.ListOffsetsResponse)
	if got := resp.Topics[0].Partitions[0].OldStyleOffsets; len(got) != 1 || got[0] != 3 {
		t.Fatalf("v0 offsets %v, want [3]", got)
	}
}
