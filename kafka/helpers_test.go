package kafka

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/auth"
	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/commitlog/batch"
)

type testOpts struct {
	autoCreate bool
	groups     bool
	auth       *auth.Store // SASL required
	mechs      []string    // SASL mechanisms (default all)
	tls        *tls.Config // the listener is TLS
}

type testEnv struct {
	addr string
	b    *broker.Broker
	s    *Server
	g    *groups.Coordinator
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("KAFKA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newEnv(t testing.TB, o testOpts) *testEnv {
	t.Helper()
	b, err := broker.Open(broker.Config{DataDir: t.TempDir(), AutoCreateTopics: o.autoCreate, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{b: b}
	cfg := Config{Broker: b, Logger: testLogger(t), Auth: o.auth, SASLMechanisms: o.mechs, TLS: o.tls}
	if o.groups {
		g, err := groups.New(context.Background(), groups.Config{
			Store:  &memStore{},
			Logger: testLogger(t),
			TopicExists: func(topic string, p int32) bool {
				_, _, err := b.Offsets(topic, p)
				return err == nil
			},
		})
		if err != nil {
			b.Close()
			t.Fatalf("groups.New: %v", err)
		}
		env.g, cfg.Groups = g, g
	}
	env.s = New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- env.s.Serve(ln) }()
	t.Cleanup(func() {
		if err := env.s.Close(); err != nil {
			t.Errorf("Server.Close: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		if env.g != nil {
			env.g.Close()
		}
		if err := b.Close(); err != nil {
			t.Errorf("broker.Close: %v", err)
		}
	})
	return env
}

// client returns a kgo client for the server, closed with the test.
func (e *testEnv) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.addr), kgo.FetchMaxWait(500 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (e *testEnv) admin(t testing.TB) *kadm.Client {
	return kadm.NewClient(e.client(t))
}

func (e *testEnv) createTopic(t testing.TB, name string, parts int, configs map[string]string) {
	t.Helper()
	if err := e.b.CreateTopic(context.Background(), name, parts, configs); err != nil {
		t.Fatal(err)
	}
}

// memStore is an in-memory groups.Store.
type memStore struct {
	mu   sync.Mutex
	recs []groups.KV
}

func (s *memStore) Append(ctx context.Context, recs []groups.KV) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, recs...)
	return nil
}

func (s *memStore) Replay(ctx context.Context, fn func(groups.KV) error) error {
	s.mu.Lock()
	recs := append([]groups.KV(nil), s.recs...)
	s.mu.Unlock()
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// rawConn speaks the protocol by hand, for what clients never send.
type rawConn struct {
	t    testing.TB
	nc   net.Conn
	corr int32
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}

func (r *rawConn) writeFrame(body []byte) {
	r.t.Helper()
	buf := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := r.nc.Write(append(buf, body...)); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) readFrame() ([]byte, error) {
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sz [4]byte
	if _, err := io.ReadFull(r.nc, sz[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(sz[:]))
	_, err := io.ReadFull(r.nc, b)
	return b, err
}

// send writes a request and returns its correlation id.
func (r *rawConn) send(req kmsg.Request) int32 {
	r.t.Helper()
	r.corr++
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw"))
	buf := f.AppendRequest(nil, req, r.corr)
	if _, err := r.nc.Write(buf); err != nil {
		r.t.Fatal(err)
	}
	return r.corr
}

// recv reads the response to req.
func (r *rawConn) recv(req kmsg.Request, corr int32) kmsg.Response {
	r.t.Helper()
	b, err := r.readFrame()
	if err != nil {
		r.t.Fatalf("read response: %v", err)
	}
	if got := int32(binary.BigEndian.Uint32(b)); got != corr {
		r.t.Fatalf("correlation id %d, want %d", got, corr)
	}
	b = b[4:]
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() && req.Key() != 18 {
		b = b[1:]
	}
	if err := resp.ReadFrom(b); err != nil {
		r.t.Fatalf("parse %T: %v", resp, err)
	}
	return resp
}

func (r *rawConn) do(req kmsg.Request) kmsg.Response {
	r.t.Helper()
	return r.recv(req, r.send(req))
}

// expectClosed checks that the server closes the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	n, err := r.nc.Read(b[:])
	if err == nil || n > 0 {
		r.t.Fatalf("connection still open (read %d bytes, err %v)", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("connection not closed: %v", err)
	}
}

// encodeBatch builds one record batch of values.
func encodeBatch(t testing.TB, opts batch.BuildOptions, values ...string) []byte {
	t.Helper()
	var recs []batch.Rec
	now := time.Now().UnixMilli()
	for _, v := range values {
		recs = append(recs, batch.Rec{Timestamp: now, Value: []byte(v)})
	}
	b, err := batch.Encode(nil, opts, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func produceReq(version int16, acks int16, parts map[string]map[int32][]byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = version, acks, 10000
	for topic, ps := range parts {
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		for p, recs := range ps {
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition, rp.Records = p, recs
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	return req
}

// partitionResults flattens a produce response.
func partitionResults(resp *kmsg.ProduceResponse) map[string]map[int32]kmsg.ProduceResponseTopicPartition {
	out := map[string]map[int32]kmsg.ProduceResponseTopicPartition{}
	for _, t := range resp.Topics {
		out[t.Topic] = map[int32]kmsg.ProduceResponseTopicPartition{}
		for _, p := range t.Partitions {
			out[t.Topic][p.Partition] = p
		}
	}
	return out
}

func waitFor(t testing.TB, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
