package registry_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/schema"
	"github.com/heraldhq/herald/schema/registry"
)

// fastEnv is a registry served three ways: net/http with the general
// handler only (the reference), net/http with Handler (fast path first,
// as under /registry), and the registry's own Server.
type fastEnv struct {
	*env
	general, handler, fast string // addresses
	fs                     *registry.Server
}

func openFast(t *testing.T, cfg registry.ServerConfig) *fastEnv {
	t.Helper()
	e := &fastEnv{env: open(t, t.TempDir())}
	g := httptest.NewServer(e.reg.GeneralHandler())
	t.Cleanup(g.Close)
	h := httptest.NewServer(e.reg.Handler())
	t.Cleanup(h.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.fs = e.reg.NewServer(cfg)
	served := make(chan error, 1)
	go func() { served <- e.fs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.fs.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	e.general, e.handler, e.fast = strings.TrimPrefix(g.URL, "http://"), strings.TrimPrefix(h.URL, "http://"), ln.Addr().String()
	return e
}

var dateRE = regexp.MustCompile(`(?m)^Date: [^\r]*\r$`)

// readRaw reads one response and returns its bytes, the Date value
// blanked.
func readRaw(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	n := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return sb.String(), err
		}
		sb.WriteString(line)
		if line == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return sb.String(), err
	}
	sb.Write(body)
	return dateRE.ReplaceAllString(sb.String(), "Date: -\r"), nil
}

// rawGet sends GET target on a new connection and returns the raw
// response.
func rawGet(t *testing.T, addr, target string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: registry\r\nUser-Agent: test\r\n\r\n", target)
	resp, err := readRaw(bufio.NewReader(c))
	if err != nil {
		t.Fatalf("GET %s on %s: %v (read %q)", target, addr, err, resp)
	}
	return resp
}

// populate registers what the fast path must get right: several types,
// references, a context-style subject name, soft-deleted versions and
// subjects, and a permanently deleted subject whose id still answers.
func populate(t *testing.T, reg *registry.Registry) {
	t.Helper()
	ctx := context.Background()
	mustRegister(t, reg, "orders-value", registry.RegisterRequest{Schema: userV1})
	mustRegister(t, reg, "orders-value", registry.RegisterRequest{Schema: userV2})
	mustRegister(t, reg, "com.acme.Order-value", registry.RegisterRequest{SchemaType: "JSON",
		Schema: `{"type":"object","properties":{"id":{"type":"string","format":"uuid"},"note":{"type":"string"}},"required":["id"]}`})
	mustRegister(t, reg, ":.ctx:money", registry.RegisterRequest{SchemaType: "PROTOBUF",
		Schema: "syntax = \"proto3\";\npackage shop;\nmessage Money { string currency = 1; int64 units = 2; }\n"})
	mustRegister(t, reg, "payments-value", registry.RegisterRequest{SchemaType: "PROTOBUF",
		Schema:     "syntax = \"proto3\";\npackage shop;\nimport \"shop/money.proto\";\nmessage Payment { string id = 1; Money total = 2; }\n",
		References: []schema.Reference{{Name: "shop/money.proto", Subject: ":.ctx:money", Version: 1}}})
	// Text that JSON escapes: quotes, <, >, & and non-ASCII.
	mustRegister(t, reg, "escapes-value", registry.RegisterRequest{Schema: `{"type":"record","name":"E","doc":"<a & b> \"ü\" \u2028","fields":[{"name":"a","type":"string"}]}`})
	mustRegister(t, reg, "half-value", registry.RegisterRequest{Schema: `"string"`})
	if err := reg.SetLevel(ctx, "half-value", schema.Level("NONE")); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, reg, "half-value", registry.RegisterRequest{Schema: `"long"`})
	if _, err := reg.DeleteVersion(ctx, "half-value", 2, false); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, reg, "gone-value", registry.RegisterRequest{Schema: `"bytes"`})
	if _, err := reg.DeleteSubject(ctx, "gone-value", false); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, reg, "perm-value", registry.RegisterRequest{Schema: `"double"`})
	if _, err := reg.DeleteSubject(ctx, "perm-value", false); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.DeleteSubject(ctx, "perm-value", true); err != nil {
		t.Fatal(err)
	}
}

// TestFastPathMatchesGeneral sends every kind of lookup, hits and misses,
// with the query parameters clients send and ones the fast path does not
// take, to the general handler, to Handler and to the Server, each on a
// new connection, and demands the same bytes (Date aside); and that the
// ones that should be fast-path hits were.
func TestFastPathMatchesGeneral(t *testing.T) {
	e := openFast(t, registry.ServerConfig{})
	populate(t, e.reg)

	var targets []string
	hits := map[string]bool{}
	add := func(hit bool, ts ...string) {
		for _, t := range ts {
			targets = append(targets, t)
			hits[t] = hit
		}
	}
	for id := 1; id <= 10; id++ {
		p := "/schemas/ids/" + strconv.Itoa(id)
		add(true, p, p+"/schema", p+"?fetchMaxId=false", p+"?subject=orders-value", p+"?fetchMaxId=false&subject=x",
			p+"?subject=orders-value&fetchMaxId=false", p+"?", "/schemas/ids/00"+strconv.Itoa(id))
		add(false, p+"?fetchMaxId=true", p+"/schema?format=serialized", p+"?format=resolved", p+"?fetchMaxId=False",
			p+"?fetchMaxId=false&fetchMaxId=true", p+"/", p+"/subjects", p+"/versions", p+"?subject=a;b", p+"?subject=a+b", p+"?x=1")
	}
	add(false, "/schemas/ids/11", "/schemas/ids/0", "/schemas/ids/-1", "/schemas/ids/abc", "/schemas/ids/",
		"/schemas/ids/99999999999", "/schemas/ids/+1", "/schemas/ids/1%30", "//schemas/ids/1", "/schemas/./ids/1", "/schemas/ids/1/../1")
	versions := map[string][]string{
		"orders-value": {"1", "2", "latest", "-1"}, "com.acme.Order-value": {"1", "latest"}, ":.ctx:money": {"1", "-1"},
		"payments-value": {"1"}, "escapes-value": {"1"}, "half-value": {"1", "latest", "-1"},
	}
	for s, vs := range versions {
		for _, v := range vs {
			p := "/subjects/" + s + "/versions/" + v
			add(true, p, p+"/schema", p+"?deleted=false", p+"?deleted=true", p+"/schema?deleted=true")
			add(false, p+"?deleted=1", p+"?fetchMaxId=false", p+"/referencedby", p+"?deleted=true&deleted=false")
		}
		add(false, "/subjects/"+s+"/versions/3", "/subjects/"+s+"/versions/0", "/subjects/"+s+"/versions/x",
			"/subjects/"+s+"/versions", "/subjects/"+s+"/versions/", "/subjects/"+s+"/versions/01/../1")
	}
	// Soft-deleted versions only with ?deleted=true.
	add(true, "/subjects/half-value/versions/2?deleted=true", "/subjects/gone-value/versions/1?deleted=true",
		"/subjects/gone-value/versions/latest?deleted=true", "/subjects/half-value/versions/2/schema?deleted=true")
	add(false, "/subjects/half-value/versions/2", "/subjects/half-value/versions/2/schema", "/subjects/gone-value/versions/1",
		"/subjects/gone-value/versions/latest", "/subjects/gone-value/versions/-1/schema", "/subjects/perm-value/versions/1",
		"/subjects/perm-value/versions/1?deleted=true", "/subjects/nope/versions/1", "/subjects/./versions/1", "/subjects/../versions/1",
		"/subjects//versions/1", "/subjects/orders%2Dvalue/versions/1", "/subjects/orders-value/versions/2147483648",
		"/subjects/orders-value/versions/+1", "/schemas", "/subjects", "/schemas/types", "/config", "/mode", "/",
		// Context-qualified forms: Herald has the default context only.
		"/contexts", "/contexts/./schemas/ids/1", "/contexts/.ctx/subjects/money/versions/1")
	add(true, "/schemas/ids/4?subject=:.ctx:money", "/subjects/:.ctx:money/versions/latest?deleted=false")

	for _, target := range targets {
		want := rawGet(t, e.general, target)
		if got := rawGet(t, e.handler, target); got != want {
			t.Errorf("GET %s: Handler answers\n%q\nthe general handler\n%q", target, got, want)
		}
		before := e.reg.FastHits()
		if got := rawGet(t, e.fast, target); got != want {
			t.Errorf("GET %s: Server answers\n%q\nthe general handler\n%q", target, got, want)
		}
		if hit := e.reg.FastHits() > before; hit != hits[target] {
			t.Errorf("GET %s: fast-path hit %v, want %v (response %.60q)", target, hit, hits[target], want)
		}
	}
	// The general handler's own answers to the parameters the fast path
	// takes: fetchMaxId=true adds maxId; the rest change nothing.
	if got := rawGet(t, e.general, "/schemas/ids/1?fetchMaxId=true"); !strings.HasSuffix(got, `,"maxId":10}`) {
		t.Errorf("fetchMaxId=true: %q", got)
	}
}

// TestServerPipelinedHandoff pipelines fast lookups, a registration and
// more lookups in one write: the answers come in order, the registration
// is made, the connection goes on under net/http.
func TestServerPipelinedHandoff(t *testing.T) {
	e := openFast(t, registry.ServerConfig{})
	populate(t, e.reg)
	c, err := net.Dial("tcp", e.fast)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	body := `{"schema":"\"int\""}`
	var req strings.Builder
	var want []string
	for _, target := range []string{"/schemas/ids/1", "/subjects/orders-value/versions/latest", "/schemas/ids/2/schema"} {
		fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: r\r\n\r\n", target)
		want = append(want, rawGet(t, e.general, target))
	}
	fmt.Fprintf(&req, "POST /subjects/new-value/versions HTTP/1.1\r\nHost: r\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
		registry.ContentType, len(body), body)
	fmt.Fprintf(&req, "GET /subjects/new-value/versions/1 HTTP/1.1\r\nHost: r\r\n\r\n")
	fmt.Fprintf(&req, "GET /schemas/ids/1 HTTP/1.1\r\nHost: r\r\n\r\n")
	hits0, hand0 := e.reg.FastHits(), e.reg.Handoffs()
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i, w := range want {
		got, err := readRaw(br)
		if err != nil || got != w {
			t.Fatalf("response %d: %q, %v; want %q", i+1, got, err, w)
		}
	}
	reg, err := readRaw(br)
	if err != nil || !strings.HasPrefix(reg, "HTTP/1.1 200 ") || !strings.HasSuffix(reg, `{"id":11}`) {
		t.Fatalf("registration: %q, %v", reg, err)
	}
	want = append(want, rawGet(t, e.general, "/subjects/new-value/versions/1"), rawGet(t, e.general, "/schemas/ids/1"))
	for i, w := range want[3:] {
		got, err := readRaw(br)
		if err != nil || got != w {
			t.Fatalf("response %d after the handoff: %q, %v; want %q", i+5, got, err, w)
		}
	}
	// Three fast answers on the Server, then net/http's Handler (whose
	// own fast path answered the last two).
	if hits, hand := e.reg.FastHits()-hits0, e.reg.Handoffs()-hand0; hits != 5 || hand != 1 {
		t.Fatalf("fast-path hits %d, handoffs %d; want 5 and 1", hits, hand)
	}
}

// TestFastPathInvalidation keeps one keep-alive connection on the fast
// path while the state changes under it: each change shows at once.
func TestFastPathInvalidation(t *testing.T) {
	e := openFast(t, registry.ServerConfig{})
	ctx := context.Background()
	c, err := net.Dial("tcp", e.fast)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	hits := e.reg.FastHits()
	// get asks on the kept connection and demands a fast-path hit with
	// the general handler's answer.
	get := func(target string) string {
		t.Helper()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: r\r\n\r\n", target)
		got, err := readRaw(br)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		if want := rawGet(t, e.general, target); got != want {
			t.Fatalf("GET %s: %q, want %q", target, got, want)
		}
		if n := e.reg.FastHits(); n != hits+1 {
			t.Fatalf("GET %s: not a fast-path hit", target)
		}
		hits++
		return got
	}
	mustRegister(t, e.reg, "inv-value", registry.RegisterRequest{Schema: userV1})
	if got := get("/subjects/inv-value/versions/latest"); !strings.Contains(got, `"version":1`) {
		t.Fatalf("latest after v1: %q", got)
	}
	mustRegister(t, e.reg, "inv-value", registry.RegisterRequest{Schema: userV2})
	if got := get("/subjects/inv-value/versions/latest"); !strings.Contains(got, `"version":2`) {
		t.Fatalf("latest after v2: %q", got)
	}
	get("/schemas/ids/2")
	if _, err := e.reg.DeleteVersion(ctx, "inv-value", 2, false); err != nil {
		t.Fatal(err)
	}
	if got := get("/subjects/inv-value/versions/latest"); !strings.Contains(got, `"version":1`) {
		t.Fatalf("latest after deleting v2: %q", got)
	}
	if got := get("/subjects/inv-value/versions/2?deleted=true"); !strings.Contains(got, `"deleted":true`) {
		t.Fatalf("soft-deleted v2 with deleted=true: %q", got)
	}
	if _, err := e.reg.DeleteVersion(ctx, "inv-value", 2, true); err != nil {
		t.Fatal(err)
	}
	// Gone for good: the general path answers 40402, on a connection of
	// its own (the kept one would be handed off).
	if got := rawGet(t, e.fast, "/subjects/inv-value/versions/2?deleted=true"); !strings.Contains(got, `"error_code":40402`) {
		t.Fatalf("permanently deleted v2: %q", got)
	}
	// Re-registered after the delete: version 2 again (the versions
	// left end at 1), the same id as before, a new rendering.
	mustRegister(t, e.reg, "inv-value", registry.RegisterRequest{Schema: userV2})
	if got := get("/subjects/inv-value/versions/latest"); !strings.Contains(got, `"version":2`) || !strings.Contains(got, `"id":2`) || strings.Contains(got, "deleted") {
		t.Fatalf("latest after re-registering: %q", got)
	}
}

// TestServerEdges: Connection: close is honoured (by net/http), a request
// that stalls half-way is cut off after ReadHeaderTimeout, a header over
// the fast path's buffer still gets net/http's answer, and Shutdown
// closes idle keep-alive connections.
func TestServerEdges(t *testing.T) {
	e := openFast(t, registry.ServerConfig{ReadHeaderTimeout: 300 * time.Millisecond})
	populate(t, e.reg)
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", e.fast)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}

	c, br := dial()
	fmt.Fprintf(c, "GET /schemas/ids/1 HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
	if got, err := readRaw(br); err != nil || !strings.Contains(got, "Connection: close\r\n") {
		t.Fatalf("Connection: close: %q, %v", got, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after Connection: close, read %v, want EOF", err)
	}

	c, br = dial()
	fmt.Fprintf(c, "GET /schemas/ids/1 HTTP/1.1\r\nHost: r\r\nX-Slow: ")
	start := time.Now()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("a stalled request got an answer")
	} else if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("a stalled request was cut off after %v, want about 300ms", el)
	}

	// The headers Confluent's Java client sends, "no body" included: a
	// fast-path hit.
	c, br = dial()
	hits := e.reg.FastHits()
	fmt.Fprintf(c, "GET /schemas/ids/1?fetchMaxId=false&subject=orders-value HTTP/1.1\r\nContent-Type: %s\r\n"+
		"Accept: application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json\r\n"+
		"User-Agent: Java/17.0.9\r\nHost: localhost:8081\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", registry.ContentType)
	if got, err := readRaw(br); err != nil || got != rawGet(t, e.general, "/schemas/ids/1") || e.reg.FastHits() != hits+1 {
		t.Fatalf("a Java client's lookup: %q, %v, fast-path hits %d", got, err, e.reg.FastHits()-hits)
	}

	c, br = dial()
	fmt.Fprintf(c, "GET /schemas/ids/1 HTTP/1.1\r\nHost: r\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 6000))
	if got, err := readRaw(br); err != nil || got != rawGet(t, e.general, "/schemas/ids/1") {
		t.Fatalf("a big header: %q, %v", got, err)
	}

	c, br = dial()
	fmt.Fprintf(c, "GET /schemas/ids/1 HTTP/1.1\r\nHost: r\r\n\r\n")
	if _, err := readRaw(br); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.fs.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an idle connection: %v", err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("an idle connection survived Shutdown")
	}
}

// TestServerWrap: with a wrapper (authentication, in herald serve), a
// lookup the fast path would answer goes through the wrapper: refused
// without the header it wants, answered with it.
func TestServerWrap(t *testing.T) {
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Let-In") != "yes" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	e := openFast(t, registry.ServerConfig{Wrap: wrap})
	populate(t, e.reg)
	if resp := rawGet(t, e.fast, "/subjects/orders-value/versions/latest"); !strings.HasPrefix(resp, "HTTP/1.1 401") {
		t.Fatalf("fast-path lookup without the header:\n%s", resp)
	}
	req, _ := http.NewRequest("GET", "http://"+e.fast+"/subjects/orders-value/versions/latest", nil)
	req.Header.Set("X-Let-In", "yes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"version":2`) {
		t.Fatalf("with the header: %d %s", resp.StatusCode, body)
	}
}
