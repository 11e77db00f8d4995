package kafka

import (
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog/batch"
)

// BenchmarkProduceToFetch measures the server's share of end-to-end
// latency: a raw connection holds a long-poll fetch at the end of a
// partition while another produces one 1 KiB record (acks=1); the time is
// from sending the produce to reading the fetch response. No client
// library runs, so what is left is the listener, the broker and the
// kernel's loopback. Reports p50 and p99 in microseconds.
//
//	go test -run '^$' -bench ProduceToFetch -benchtime 5000x ./kafka/
func BenchmarkProduceToFetch(b *testing.B) {
	b.Run("durability=interval", func(b *testing.B) { benchProduceToFetch(b, "interval=10ms") })
	b.Run("durability=always", func(b *testing.B) { benchProduceToFetch(b, "always") })
}

func benchProduceToFetch(b *testing.B, durability string) {
	env := newEnv(b, testOpts{})
	env.createTopic(b, "lat", 1, map[string]string{broker.CfgDurability: durability})
	prod, cons := dialRaw(b, env.addr), dialRaw(b, env.addr)
	value := make([]byte, 1024)
	lat := make([]time.Duration, 0, b.N)
	next := int64(0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fr := kmsg.NewPtrFetchRequest()
		fr.Version, fr.ReplicaID, fr.MaxWaitMillis, fr.MinBytes, fr.MaxBytes = 11, -1, 5000, 1, 1<<20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = "lat"
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.FetchOffset, fp.PartitionMaxBytes = next, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
		fr.Topics = append(fr.Topics, ft)
		fcorr := cons.send(fr)
		// Let the fetch park on the partition before the record exists.
		time.Sleep(200 * time.Microsecond)
		raw, err := batch.Encode(nil, batch.BuildOptions{}, []batch.Rec{{Timestamp: time.Now().UnixMilli(), Value: value}})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		pcorr := prod.send(produceReq(9, 1, map[string]map[int32][]byte{"lat": {0: raw}}))
		resp := cons.recv(fr, fcorr).(*kmsg.FetchResponse)
		lat = append(lat, time.Since(start))
		prod.recv(produceReq(9, 1, nil), pcorr)
		if got := len(resp.Topics[0].Partitions[0].RecordBatches); got == 0 {
			b.Fatalf("fetch %d returned no records", i)
		}
		next++
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
