package kafka

import (
	"net"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog/batch"
)

// FuzzRequest feeds arbitrary frame bodies to the request path: it may
// refuse them (closing the connection) but must never panic, not even in
// a way the per-request recover would hide.
func FuzzRequest(f *testing.F) {
	seed := func(req kmsg.Request) {
		buf := kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz")).AppendRequest(nil, req, 1)
		f.Add(buf[4:])
	}
	for _, v := range []int16{0, 3, 4} {
		seed(&kmsg.ApiVersionsRequest{Version: v})
	}
	md := kmsg.NewPtrMetadataRequest()
	for _, v := range []int16{0, 1, 9, 12} {
		md.Version = v
		seed(md)
	}
	b, _ := batch.Encode(nil, batch.BuildOptions{}, []batch.Rec{{Value: []byte("v")}})
	seed(produceReq(9, 1, map[string]map[int32][]byte{"fuzz": {0: b}}))
	seed(produceReq(3, -1, map[string]map[int32][]byte{"fuzz": {0: b, 7: b}}))
	fr := kmsg.NewPtrFetchRequest()
	fr.Version, fr.MaxWaitMillis, fr.MinBytes, fr.MaxBytes = 12, 5, 1, 100
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "fuzz"
	ft.Partitions = []kmsg.FetchRequestTopicPartition{kmsg.NewFetchRequestTopicPartition()}
	fr.Topics = append(fr.Topics, ft)
	seed(fr)
	ct := kmsg.NewPtrCreateTopicsRequest()
	ct.Version = 5
	ctt := kmsg.NewCreateTopicsRequestTopic()
	ctt.Topic, ctt.NumPartitions, ctt.ReplicationFactor = "made", 2, 1
	ct.Topics = append(ct.Topics, ctt)
	seed(ct)
	for _, req := range []kmsg.Request{
		kmsg.NewPtrListOffsetsRequest(), kmsg.NewPtrOffsetCommitRequest(), kmsg.NewPtrOffsetFetchRequest(),
		kmsg.NewPtrFindCoordinatorRequest(), kmsg.NewPtrJoinGroupRequest(), kmsg.NewPtrDescribeConfigsRequest(),
		kmsg.NewPtrIncrementalAlterConfigsRequest(), kmsg.NewPtrDeleteTopicsRequest(), kmsg.NewPtrDescribeClusterRequest(),
	} {
		seed(req)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 18, 0, 99, 0, 0, 0, 1, 0xff, 0xff})
	f.Add([]byte{0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0xff, 0xff})
	f.Add([]byte{0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff})

	bk, err := broker.Open(broker.Config{DataDir: f.TempDir(), AutoCreateTopics: true, Logger: testLogger(f)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { bk.Close() })
	if err := bk.CreateTopic(f.Context(), "fuzz", 2, nil); err != nil {
		f.Fatal(err)
	}
	s := New(Config{Broker: bk, Logger: testLogger(f)})
	s.maxWait = 10 * time.Millisecond
	f.Cleanup(func() { s.Close() })

	f.Fuzz(func(t *testing.T, body []byte) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		c := s.newConn(a)
		r := &reply{done: make(chan struct{})}
		c.handleFrame(body, r)
		c.wg.Wait()
		c.cancel()
		var m dto.Metric
		s.m.errors.WithLabelValues("panic").Write(&m)
		if m.GetCounter().GetValue() > 0 {
			t.Fatalf("a handler panicked")
		}
	})
}
