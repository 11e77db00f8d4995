package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/logctx"
)

// Config configures an API. Broker is required; the rest have defaults.
type Config struct {
	// Broker holds the topics. The API does not close it.
	Broker *broker.Broker
	// Groups is the consumer-group coordinator; without it the /v1/groups
	// routes answer 503.
	Groups *groups.Coordinator
	// Logger logs one line per request (default slog.Default()). Lines
	// logged with a request's context carry its request_id and
	// correlation_id (the X-Correlation-Id or ce-correlationid header), as
	// package logctx describes; services mounted with Handle get that
	// context too.
	Logger *slog.Logger
	// Registerer takes the API's metrics; nil registers none.
	Registerer prometheus.Registerer

	// MaxPublishBytes caps a publish request's body (default 8 MiB).
	MaxPublishBytes int64
	// MaxBodyBytes caps every other request body (default 1 MiB).
	MaxBodyBytes int64
	// MaxReadEvents caps a read's limit (default 1,000).
	MaxReadEvents int
	// MaxReadBytes caps the record bytes one read gathers (default 8 MiB).
	MaxReadBytes int
	// MaxPageSize caps pageSize on lists (default 1,000).
	MaxPageSize int
	// MaxReadWait caps a read's wait parameter (default 30 s).
	MaxReadWait time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxPublishBytes <= 0 {
		c.MaxPublishBytes = 8 << 20
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxReadEvents <= 0 {
		c.MaxReadEvents = 1000
	}
	if c.MaxReadBytes <= 0 {
		c.MaxReadBytes = 8 << 20
	}
	if c.MaxPageSize <= 0 {
		c.MaxPageSize = 1000
	}
	if c.MaxReadWait <= 0 {
		c.MaxReadWait = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.Broker == nil {
		errs = append(errs, errors.New("httpapi: Config.Broker is nil"))
	}
	for _, l := range []struct {
		name string
		v    int64
	}{{"MaxPublishBytes", c.MaxPublishBytes}, {"MaxBodyBytes", c.MaxBodyBytes}, {"MaxReadEvents", int64(c.MaxReadEvents)},
		{"MaxReadBytes", int64(c.MaxReadBytes)}, {"MaxPageSize", int64(c.MaxPageSize)}, {"MaxReadWait", int64(c.MaxReadWait)}} {
		if l.v < 0 {
			errs = append(errs, fmt.Errorf("httpapi: Config.%s %d is negative (0 means the default)", l.name, l.v))
		}
	}
	return errors.Join(errs...)
}

// API is Herald's HTTP JSON API v1. It is an http.Handler serving every
// route under /v1/; other services mount theirs with Handle. Safe for
// concurrent use.
type API struct {
	cfg   Config
	b     *broker.Broker
	g     *groups.Coordinator
	log   *slog.Logger
	mux   *http.ServeMux
	m     *metrics
	dedup *dedupIndex
	rr    roundRobin

	mu struct {
		sync.Mutex
		routes []string // patterns registered, in order
		doc    []byte   // OpenAPI with AddOpenAPI's fragments; nil: OpenAPI
	}
}

// New returns an API over cfg.Broker and cfg.Groups with its own routes
// registered.
func New(cfg Config) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	a := &API{cfg: cfg, b: cfg.Broker, g: cfg.Groups, log: slog.New(logctx.NewHandler(cfg.Logger.Handler())), mux: http.NewServeMux()}
	a.m = newMetrics()
	if err := a.m.register(cfg.Registerer); err != nil {
		return nil, err
	}
	a.dedup = newDedupIndex(cfg.Broker, cfg.Now, cfg.Logger)
	a.routes()
	// NB: "/" (any method, any path) is the fallback. It has the lowest
	// precedence, so it only runs for paths no pattern matches, or for
	// methods no pattern for the path allows: notFound tells them apart.
	a.mux.HandleFunc("/", a.notFound)
	return a, nil
}

func (a *API) routes() {
	a.handle("GET /v1/openapi.json", a.openAPI)

	a.handle("GET /v1/topics", a.listTopics)
	a.handle("POST /v1/topics", a.createTopic)
	a.handle("GET /v1/topics/{topic}", a.describeTopic)
	a.handle("PATCH /v1/topics/{topic}", a.alterTopic)
	a.handle("DELETE /v1/topics/{topic}", a.deleteTopic)
	a.handle("POST /v1/topics/{topic}/events", a.publish)
	a.handle("GET /v1/topics/{topic}/events", a.read)
	a.handle("GET /v1/topics/{topic}/deadletters", a.readDeadLetters)
	a.handle("POST /v1/topics/{topic}/deadletters:redrive", a.redrive)
	a.handle("GET /v1/topics/{topic}/deadletters:summary", a.summarizeDeadLetters)

	a.handle("GET /v1/groups", a.listGroups)
	a.handle("GET /v1/groups/{group}", a.describeGroup)
	a.handle("DELETE /v1/groups/{group}", a.deleteGroup)
	a.handle("POST /v1/groups/{group}/offsets:reset", a.resetGroup)
}

// handlerFunc is a route: it returns an error (sent in the error shape)
// or writes its response itself.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (a *API) handle(pattern string, h handlerFunc) {
	a.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	}))
}

// Handle mounts h on the API's mux under a Go 1.22 pattern ("METHOD
// /v1/path/{wildcard}"); it panics on a pattern that conflicts, as
// http.ServeMux does. Requests to h go through the API's request id,
// logging and metrics, and unknown paths and methods nearby get the error
// shape. Mounted services should use internal/httpjson for their bodies
// and errors, and document their routes in openapi.json.
func (a *API) Handle(pattern string, h http.Handler) {
	a.mux.Handle(pattern, h)
	a.mu.Lock()
	a.mu.routes = append(a.mu.routes, pattern)
	a.mu.Unlock()
}

// Routes returns the patterns registered, own and mounted.
func (a *API) Routes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.mu.routes)
}

// methods tried when telling 404 from 405.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range methods {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pat := a.mux.Handler(r2); pat != "/" && pat != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		a.writeError(w, r, httpjson.Errorf(httpjson.CodeMethodNotAllowed, "", "method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	a.writeError(w, r, httpjson.Errorf(httpjson.CodeNotFound, "", "no route %s %s (the API is under /v1/; see /v1/openapi.json)", r.Method, r.URL.Path))
}

// writeError sends err in the error shape, after mapping broker and group
// errors, and logs internal errors.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	err = mapError(err)
	var e *httpjson.Error
	if !errors.As(err, &e) || e.Code == httpjson.CodeInternal {
		a.log.ErrorContext(r.Context(), "http request failed", "method", r.Method, "path", r.URL.Path, "request_id", w.Header().Get("X-Request-Id"), "err", err)
	}
	httpjson.WriteError(w, err)
}

// mapError turns the broker's and coordinator's sentinel errors into API
// errors; an *httpjson.Error passes through.
func mapError(err error) error {
	var e *httpjson.Error
	if errors.As(err, &e) {
		return err
	}
	code := ""
	switch {
	case errors.Is(err, broker.ErrUnknownTopic), errors.Is(err, groups.ErrUnknownTopic):
		code = httpjson.CodeNotFound
	case errors.Is(err, broker.ErrTopicExists):
		code = httpjson.CodeAlreadyExists
	case errors.Is(err, broker.ErrInvalidTopic), errors.Is(err, broker.ErrInvalidPartitions),
		errors.Is(err, broker.ErrInvalidConfig), errors.Is(err, broker.ErrInvalidRequest),
		errors.Is(err, broker.ErrPolicyViolation), errors.Is(err, broker.ErrInvalidRecord),
		errors.Is(err, groups.ErrInvalidGroupID):
		code = httpjson.CodeInvalidArgument
	case errors.Is(err, broker.ErrMessageTooLarge):
		code = httpjson.CodePayloadTooLarge
	case errors.Is(err, broker.ErrOffsetOutOfRange):
		code = httpjson.CodeInvalidArgument
	case errors.Is(err, groups.ErrGroupIDNotFound):
		code = httpjson.CodeNotFound
	case errors.Is(err, groups.ErrNonEmptyGroup):
		code = httpjson.CodeFailedPrecondition
	case errors.Is(err, broker.ErrClosed), errors.Is(err, groups.ErrClosed):
		code = httpjson.CodeUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = httpjson.CodeDeadlineExceeded
	default:
		return err
	}
	return &httpjson.Error{Code: code, Message: err.Error()}
}

// ServeHTTP serves the API: it sets X-Request-Id (echoing the client's or
// making one), routes, and records the request in the metrics and the log.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > 128 || !printableASCII(id) {
		id = newRequestID()
	}
	w.Header().Set("X-Request-Id", id)
	// Lines logged with the request's context carry its ids (logctx).
	corr := r.Header.Get("X-Correlation-Id")
	if corr == "" {
		corr = r.Header.Get("Ce-Correlationid") // CloudEvents binary mode
	}
	if len(corr) > 128 || !printableASCII(corr) {
		corr = ""
	}
	orig := r
	r = r.WithContext(logctx.With(r.Context(), id, corr))
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	a.mux.ServeHTTP(sw, r)
	orig.Pattern = r.Pattern // as the mux leaves it on the request it serves, for wrapping handlers
	route := r.Pattern
	if route == "" || route == "/" {
		route = "unmatched"
	}
	d := time.Since(start)
	a.m.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
	a.m.latency.WithLabelValues(route).Observe(d.Seconds())
	// Successes at debug (an access log at publish rates costs more than
	// the publish), refusals at info, failures at warn.
	lvl := slog.LevelDebug
	switch {
	case sw.status >= 500:
		lvl = slog.LevelWarn
	case sw.status >= 400:
		lvl = slog.LevelInfo
	}
	a.log.Log(r.Context(), lvl, "http request", "request_id", id, "method", r.Method, "path", r.URL.Path,
		"route", route, "status", sw.status, "bytes", sw.bytes, "duration", d, "remote", r.RemoteAddr)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status and counts the bytes written.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush keeps the writer an http.Flusher for streaming routes (server-sent
// events); a writer that cannot flush ignores it.
func (w *statusWriter) Flush() {
	w.wrote = true
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Close unregisters the API's metrics. It does not close the broker.
func (a *API) Close() error {
	a.m.unregister(a.cfg.Registerer)
	return nil
}

// invalid is a shorthand for handlers.
func invalid(field, format string, args ...any) error {
	return httpjson.Invalid(field, format, args...)
}

func notFoundf(field, format string, args ...any) error {
	return httpjson.Errorf(httpjson.CodeNotFound, field, format, args...)
}
