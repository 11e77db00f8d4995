package srload

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRunChecksEveryAnswer: right answers are counted, with both clients;
// a wrong body, a wrong status and a closed keep-alive are errors.
func TestRunChecksEveryAnswer(t *testing.T) {
	big := strings.Repeat("x", 100<<10) // over the reader's buffer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		switch q.URL.Path {
		case "/a":
			w.Write([]byte("alpha"))
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write([]byte(big))
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("c"))
		default:
			http.Error(w, "nope", http.StatusNotFound)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	ok := []Request{{"/a", []byte("alpha")}, {"/big", []byte(big)}}
	for _, cfg := range []Config{
		{Client: Raw, Conns: 2, Pipeline: 8, Lookups: 320},
		{Client: NetHTTP, Conns: 2, Pipeline: 1, Lookups: 100},
		{Client: Raw, Conns: 1, Pipeline: 4, Duration: 200 * time.Millisecond},
	} {
		cfg.Addr, cfg.Requests = addr, ok
		res, err := Run(ctx, cfg)
		if err != nil || res.Lookups < cfg.Lookups || res.Lookups == 0 || res.PerSecond() <= 0 {
			t.Fatalf("%s client, %d conns, pipeline %d: %+v, %v", cfg.Client, cfg.Conns, cfg.Pipeline, res, err)
		}
	}
	for _, c := range []struct {
		reqs []Request
		want string
	}{
		{[]Request{{"/a", []byte("alpha")}, {"/a", []byte("alphA")}}, ErrBody.Error()},
		{[]Request{{"/big", []byte(big[1:] + "y")}}, ErrBody.Error()},
		{[]Request{{"/missing", nil}}, "status HTTP/1.1 404 Not Found: nope"},
		{[]Request{{"/close", []byte("c")}}, "closed the keep-alive"},
	} {
		for _, client := range []string{Raw, NetHTTP} {
			if client == NetHTTP && c.want == "closed the keep-alive" {
				continue // net/http's client reconnects, as it should
			}
			_, err := Run(ctx, Config{Addr: addr, Requests: c.reqs, Client: client, Duration: 5 * time.Second})
			if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(c.want, "status HTTP/1.1 ")[:10]) {
				t.Fatalf("%s %v: %v, want %q", client, c.reqs[len(c.reqs)-1].Target, err, c.want)
			}
			if c.want == ErrBody.Error() && !errors.Is(err, ErrBody) {
				t.Fatalf("%s: %v is not ErrBody", client, err)
			}
		}
	}
	if _, err := Run(ctx, Config{Addr: addr, Requests: ok, Client: NetHTTP, Pipeline: 2, Lookups: 1}); err == nil {
		t.Fatal("net/http with pipeline 2 accepted")
	}
}
