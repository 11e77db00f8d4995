package subscription

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/httpapi/openapitest"
)

// env is a broker in a temporary directory, an embedded log over it, a
// Manager and its HTTP API on a test server.
type env struct {
	t    testing.TB
	dir  string
	b    *broker.Broker
	g    *groups.Coordinator
	log  eventlog.Log
	m    *Manager
	srv  *httptest.Server
	prod *eventlog.Producer
}

func quietLogger() *slog.Logger {
	if os.Getenv("HERALD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func newEnv(t testing.TB) *env {
	e := &env{t: t, dir: t.TempDir()}
	e.openLog()
	e.openManager()
	t.Cleanup(e.close)
	return e
}

func (e *env) openLog() {
	t := e.t
	var err error
	logger := quietLogger()
	e.b, err = broker.Open(broker.Config{DataDir: e.dir, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	store, err := e.b.GroupStore()
	if err != nil {
		t.Fatal(err)
	}
	e.g, err = groups.New(context.Background(), groups.Config{Store: store, Logger: logger, TopicExists: e.b.PartitionExists, HighWatermark: e.b.HighWatermark})
	if err != nil {
		t.Fatal(err)
	}
	e.log, err = embedded.New(embedded.Config{Broker: e.b, Groups: e.g})
	if err != nil {
		t.Fatal(err)
	}
	e.prod = eventlog.NewProducer(e.log)
}

func (e *env) openManager() {
	var err error
	e.m, err = Open(context.Background(), Config{Log: e.log, Logger: quietLogger(), CheckpointInterval: 200 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.m.Routes(mux)
	e.srv = httptest.NewServer(checkedAgainstOpenAPI(e.t, mux))
}

// checkedAgainstOpenAPI checks, in tests (not benchmarks), every response
// against the served document: httpapi's with this package's fragment.
// Streaming pulls pass through unchecked (the checker buffers a response
// whole) and so do requests no route matches (a bare ServeMux answers
// them in text; the served API in the error shape).
func checkedAgainstOpenAPI(t testing.TB, mux *http.ServeMux) http.Handler {
	if _, ok := t.(*testing.T); !ok {
		return mux
	}
	doc, err := httpapi.MergeOpenAPI(httpapi.OpenAPI, OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	checked := openapitest.Handler(t, doc, mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pat := mux.Handler(r); pat == "" || strings.HasSuffix(r.URL.Path, ":streamingPull") {
			mux.ServeHTTP(w, r)
			return
		}
		checked.ServeHTTP(w, r)
	})
}

// closeManager stops the manager cleanly (crash=false) or abandons it as a
// crash would: no final checkpoint, goroutines stopped.
func (e *env) closeManager(crash bool) {
	e.srv.Close()
	if crash {
		e.m.mu.Lock()
		e.m.mu.closed = true
		e.m.mu.Unlock()
		e.m.cancel()
		e.m.wg.Wait()
		for _, s := range e.m.list() {
			s.stop()
		}
		e.m.journal.close()
	} else if err := e.m.Close(); err != nil {
		e.t.Errorf("Manager.Close: %v", err)
	}
	e.m = nil
}

func (e *env) close() {
	if e.m != nil {
		e.closeManager(false)
	}
	e.log.Close()
	e.g.Close()
	if err := e.b.Close(); err != nil {
		e.t.Errorf("broker Close: %v", err)
	}
}

func (e *env) topic(name string, parts int) {
	if err := e.log.CreateTopic(context.Background(), name, parts, nil); err != nil {
		e.t.Fatal(err)
	}
}

// publish appends CloudEvents of type typ with the given keys (one event
// per key; "" for none) and data "<typ>-<i>".
func (e *env) publish(topic, typ, source string, keys ...string) {
	e.t.Helper()
	recs := make([]eventlog.Record, len(keys))
	for i, k := range keys {
		ev := event.New(source, typ)
		ev.PartitionKey = k
		ev.Data = []byte(fmt.Sprintf("%s-%d", typ, i))
		msg, err := event.Encode(ev)
		if err != nil {
			e.t.Fatal(err)
		}
		hs := make([]eventlog.Header, len(msg.Headers))
		for j, h := range msg.Headers {
			hs[j] = eventlog.Header{Key: h.Key, Value: h.Value}
		}
		recs[i] = eventlog.Record{Key: msg.Key, Value: msg.Value, Headers: hs}
	}
	if _, err := e.prod.Append(context.Background(), topic, recs...); err != nil {
		e.t.Fatal(err)
	}
}

// do sends a JSON request to the API and decodes the reply into out (if
// not nil); it returns the status.
func (e *env) do(method, path string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

type apiError struct {
	Error struct {
		Code, Message, Field string
	}
}

type pullResp struct {
	ReceivedMessages []Received `json:"receivedMessages"`
}

func (e *env) create(name string, def map[string]any) {
	e.t.Helper()
	var ae apiError
	if st := e.do("PUT", "/v1/subscriptions/"+name, def, &ae); st != 200 {
		e.t.Fatalf("create %s: %d %+v", name, st, ae)
	}
}

func (e *env) pull(name string, n int, immediate bool) []Received {
	e.t.Helper()
	var pr pullResp
	if st := e.do("POST", "/v1/subscriptions/"+name+":pull", map[string]any{"maxMessages": n, "returnImmediately": immediate}, &pr); st != 200 {
		e.t.Fatalf("pull %s: %d", name, st)
	}
	return pr.ReceivedMessages
}

// pullN pulls until it has n messages or 10 s pass.
func (e *env) pullN(name string, n int) []Received {
	e.t.Helper()
	var out []Received
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		out = append(out, e.pull(name, n-len(out), false)...)
	}
	if len(out) != n {
		e.t.Fatalf("pulled %d messages, want %d", len(out), n)
	}
	return out
}

func (e *env) ack(name string, ids ...string) []string {
	e.t.Helper()
	var r ackResponse
	if st := e.do("POST", "/v1/subscriptions/"+name+":acknowledge", map[string]any{"ackIds": ids}, &r); st != 200 {
		e.t.Fatalf("ack: %d", st)
	}
	return r.InvalidAckIDs
}

func (e *env) modack(name string, secs int, ids ...string) []string {
	e.t.Helper()
	var r ackResponse
	if st := e.do("POST", "/v1/subscriptions/"+name+":modifyAckDeadline", map[string]any{"ackIds": ids, "ackDeadlineSeconds": secs}, &r); st != 200 {
		e.t.Fatalf("modifyAckDeadline: %d", st)
	}
	return r.InvalidAckIDs
}

func ackIDs(rs []Received) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.AckID
	}
	return out
}

func datas(rs []Received) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r.Message.Data)
	}
	return out
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readAll(t testing.TB, e *env, topic string) []eventlog.Record {
	t.Helper()
	var out []eventlog.Record
	info, err := e.log.Topic(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := range info.Partitions {
		_, end, _ := e.log.Offsets(context.Background(), topic, int32(p))
		for off := int64(0); off < end; {
			recs, err := e.log.Read(context.Background(), topic, int32(p), off, eventlog.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, recs...)
			off = recs[len(recs)-1].Offset + 1
		}
	}
	return out
}
