package subscription

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadPushResponse: status, keep-alive and body handling of the push
// connection's response reader, each followed by a second response that
// must be read intact when the connection is kept.
func TestReadPushResponse(t *testing.T) {
	for _, c := range []struct {
		name, in string
		status   int
		keep     bool
		err      bool
	}{
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", 204, true, false},
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, true, false},
		{"chunked", "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nTrailer: 1\r\n\r\n", 500, true, false},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 200, false, false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, false, false},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 200, true, false},
		{"until EOF", "HTTP/1.1 200 OK\r\n\r\nbody", 200, false, false},
		{"100 continue", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 201, true, false},
		{"no reason", "HTTP/1.1 202\r\nContent-Length: 0\r\n\r\n", 202, true, false},
		{"big body", "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 200, false, false},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", 0, false, true},
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n", 0, false, true},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, false, true},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0, false, true},
		{"gzip encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, false, true},
		{"truncated", "HTTP/1.1 200 OK\r\nContent-Len", 0, false, true},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 9999\r\n\r\nabc", 0, false, true},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, false, true},
		{"header too long", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 70000) + "\r\n\r\n", 0, false, true},
	} {
		next := "HTTP/1.1 299 Next\r\nContent-Length: 0\r\n\r\n"
		br := bufio.NewReaderSize(strings.NewReader(c.in+next), 4096)
		status, keep, err := readPushResponse(br)
		if (err != nil) != c.err || status != c.status || keep != c.keep {
			t.Errorf("%s: status %d keep %v err %v; want %d %v error %v", c.name, status, keep, err, c.status, c.keep, c.err)
			continue
		}
		if keep {
			if st, _, err := readPushResponse(br); st != 299 || err != nil {
				t.Errorf("%s: the next response read as %d %v", c.name, st, err)
			}
		}
	}
}

// FuzzReadPushResponse: any bytes from an endpoint give a response or an
// error, never a panic, and a kept connection is left at a response
// boundary or at the end.
func FuzzReadPushResponse(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.0 500 x\r\nConnection: keep-alive\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(b), 4096)
		for range 10 {
			status, keep, err := readPushResponse(br)
			if err != nil {
				return
			}
			if status < 100 || status > 999 {
				t.Fatalf("status %d", status)
			}
			if !keep {
				return
			}
		}
	})
}

// TestPushConn: against a real net/http server the connection is reused
// for every request, carries the headers and body, and survives the
// server closing it while idle (the request is sent again on a new one).
func TestPushConn(t *testing.T) {
	var conns atomic.Int64
	var got atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got.Store(fmt.Sprintf("%s %s %s %s", r.Method, r.URL.RequestURI(), r.Header.Get("Ce-Id"), body))
		if r.Header.Get("X-Fail") != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, strings.Repeat("x", 10000)) // chunked
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pc := newPushConn(ctx, srv.URL+"/hook?x=1")
	defer pc.close()
	post := func(fail bool, id string) int {
		h := http.Header{"Ce-Id": {id}}
		if fail {
			h.Set("X-Fail", "1")
		}
		st, err := pc.post(time.Now().Add(5*time.Second), h, []byte("data-"+id))
		if err != nil {
			t.Fatalf("post %s: %v", id, err)
		}
		if want := "POST /hook?x=1 " + id + " data-" + id; got.Load() != want {
			t.Fatalf("server saw %q, want %q", got.Load(), want)
		}
		return st
	}
	for i := range 20 {
		if st := post(i%3 == 0, fmt.Sprint(i)); st != map[bool]int{true: 503, false: 204}[i%3 == 0] {
			t.Fatalf("request %d: status %d", i, st)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 20 requests, want 1", n)
	}
	srv.CloseClientConnections() // as an idle timeout would
	if st := post(false, "after-close"); st != 204 {
		t.Fatalf("after the server closed the connection: %d", st)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	// Framing headers from the subscription's attributes are not sent.
	st, err := pc.post(time.Now().Add(5*time.Second), http.Header{"Content-Length": {"999"}, "Host": {"evil"}, "Transfer-Encoding": {"chunked"}, "Ce-Id": {"framed"}}, []byte("data-framed"))
	if err != nil || st != 204 || got.Load() != "POST /hook?x=1 framed data-framed" {
		t.Fatalf("with framing headers: %d %v, server saw %q", st, err, got.Load())
	}
	// A header that would split the request is refused, not sent.
	if _, err := pc.post(time.Now().Add(time.Second), http.Header{"X": {"a\r\nEvil: 1"}}, nil); err == nil {
		t.Fatal("a header value with CRLF was sent")
	}
	if newPushConn(ctx, "https://example.com/") != nil {
		t.Fatal("a push connection for https")
	}
	// A hanging endpoint: the deadline ends the request, and so does the
	// subscription's end.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	hc := newPushConn(ctx, hang.URL)
	start := time.Now()
	if _, err := hc.post(time.Now().Add(200*time.Millisecond), http.Header{}, nil); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("hanging endpoint: %v after %v", err, time.Since(start))
	}
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	start = time.Now()
	if _, err := hc.post(time.Now().Add(time.Minute), http.Header{}, nil); err == nil || time.Since(start) > 30*time.Second {
		t.Fatalf("hanging endpoint after cancel: %v after %v", err, time.Since(start))
	}
	hc.close()
	// A post on a kept-alive connection after the subscription stopped
	// fails at once and sends nothing: the stop's deadline must not be
	// undone by the request's own (once, a push that raced the stop hung
	// until its ack deadline).
	ctx2, cancel2 := context.WithCancel(context.Background())
	pc2 := newPushConn(ctx2, srv.URL+"/hook?x=1")
	defer pc2.close()
	if st, err := pc2.post(time.Now().Add(5*time.Second), http.Header{"Ce-Id": {"kept"}}, nil); err != nil || st != 204 {
		t.Fatalf("first post: %d %v", st, err)
	}
	cancel2()
	time.Sleep(10 * time.Millisecond) // the stop's AfterFunc has run
	start = time.Now()
	if _, err := pc2.post(time.Now().Add(time.Minute), http.Header{"Ce-Id": {"after-stop"}}, nil); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("post after the stop: %v after %v", err, time.Since(start))
	}
	if got.Load() == "POST /hook?x=1 after-stop " {
		t.Fatal("a request went out after the subscription stopped")
	}
}

// TestPushHTTPS: an https endpoint gets its pushes through Go's HTTP
// client (here Config.HTTPClient, trusting the test server), with the same
// headers and signature.
func TestPushHTTPS(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	var mu sync.Mutex
	var secret string
	got, bad := map[string]bool{}, 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if !Verify(secret, r.Header.Get(HeaderSignature), body, time.Now(), time.Minute) || r.Header.Get("ce-specversion") != "1.0" {
			bad++
		}
		got[r.Header.Get(HeaderMessageID)] = true
	}))
	defer srv.Close()
	e.closeManager(false)
	m, err := Open(context.Background(), Config{Log: e.log, Logger: quietLogger(), HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mu.Lock()
	sub, err := m.Create(context.Background(), "p", Subscription{Topic: "t", PushConfig: &PushConfig{PushEndpoint: srv.URL + "/hook"}})
	if err != nil {
		mu.Unlock()
		t.Fatal(err)
	}
	secret = sub.PushConfig.SigningSecret
	mu.Unlock()
	e.publish("t", "E", "s", make([]string, 20)...)
	waitFor(t, "20 pushes over https", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 20
	})
	mu.Lock()
	defer mu.Unlock()
	if bad != 0 {
		t.Fatalf("%d pushes with a bad signature or headers", bad)
	}
}

// TestSigner: the push workers' reused signer gives Sign's value, again and
// again.
func TestSigner(t *testing.T) {
	sg := newSigner("secret")
	for i, body := range []string{"", "a", strings.Repeat("x", 5000), "a"} {
		at := time.Unix(1700000000+int64(i), 0)
		if got, want := sg.sign(at, []byte(body)), Sign("secret", at, []byte(body)); got != want {
			t.Fatalf("sign %d = %q, want %q", i, got, want)
		}
	}
}
