package kafka

import (
	"bytes"
	"encoding/binary"
	"io"
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
		c := s.newConn(a, false)
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

// FuzzSASLFrames feeds a connection of a listener that requires SASL a
// sequence of frames (each a 2-byte length and its bytes): requests, or
// bare tokens after a SaslHandshake v0. It must never panic, and a
// connection may only end up authenticated when a frame carried alice's
// password: SCRAM proofs are beyond the fuzzer, PLAIN is not.
func FuzzSASLFrames(f *testing.F) {
	frames := func(bodies ...[]byte) []byte {
		var out []byte
		for _, b := range bodies {
			out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
			out = append(out, b...)
		}
		return out
	}
	req := func(r kmsg.Request, corr int32) []byte {
		return kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz")).AppendRequest(nil, r, corr)[4:]
	}
	hs := func(v int16, mech string) []byte {
		r := kmsg.NewPtrSASLHandshakeRequest()
		r.Version, r.Mechanism = v, mech
		return req(r, 1)
	}
	authn := func(v int16, b string) []byte {
		r := kmsg.NewPtrSASLAuthenticateRequest()
		r.Version, r.SASLAuthBytes = v, []byte(b)
		return req(r, 2)
	}
	md := req(kmsg.NewPtrMetadataRequest(), 3)
	f.Add(frames(hs(1, "PLAIN"), authn(2, "\x00alice\x00s3cret"), md))
	f.Add(frames(hs(1, "PLAIN"), authn(0, "\x00alice\x00wrong"), md))
	f.Add(frames(hs(0, "PLAIN"), []byte("\x00alice\x00s3cret"), md))
	f.Add(frames(hs(0, "SCRAM-SHA-256"), []byte("n,,n=alice,r=abcdefgh"), []byte("c=biws,r=abcdefgh,p=AAAA")))
	f.Add(frames(hs(1, "SCRAM-SHA-512"), authn(1, "n,,n=alice,r=x"), authn(1, "c=biws,r=x,p=")))
	f.Add(frames(md))
	f.Add(frames(authn(1, "x"), hs(1, "PLAIN")))

	bk, err := broker.Open(broker.Config{DataDir: f.TempDir(), Logger: testLogger(f)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { bk.Close() })
	_, store := usersFile(f, "alice", "s3cret")
	s := New(Config{Broker: bk, Logger: testLogger(f), Auth: store, FailedAuthDelay: -1})
	f.Cleanup(func() { s.Close() })

	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go io.Copy(io.Discard, b)
		c := s.newConn(a, false)
		sawPassword := false
		for len(in) >= 2 && !c.sasl.closing {
			n := int(binary.BigEndian.Uint16(in))
			in = in[2:]
			if n > len(in) {
				n = len(in)
			}
			body := in[:n]
			in = in[n:]
			sawPassword = sawPassword || bytes.Contains(body, []byte("s3cret"))
			r := &reply{done: make(chan struct{})}
			var ok bool
			if c.sasl.raw {
				ok = c.rawSASL(body, r)
			} else {
				ok = c.handleFrame(body, r)
			}
			if !ok {
				break
			}
		}
		c.wg.Wait()
		c.cancel()
		if c.sasl.authed && (c.sasl.user != "alice" || !sawPassword) {
			t.Fatalf("authenticated as %q without the password", c.sasl.user)
		}
		var m dto.Metric
		s.m.errors.WithLabelValues("panic").Write(&m)
		if m.GetCounter().GetValue() > 0 {
			t.Fatalf("a handler panicked")
		}
	})
}
