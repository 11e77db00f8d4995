package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/auth"
	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/broker/txn"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("kafka: server closed")

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	// Broker holds the topics; required.
	Broker *broker.Broker
	// Groups coordinates consumer groups; nil answers every group request
	// with COORDINATOR_NOT_AVAILABLE.
	Groups *groups.Coordinator
	// Txns coordinates transactions; nil refuses transactional producers
	// (FindCoordinator for a transaction, InitProducerId with a
	// transactional id) as before transactions were supported.
	Txns *txn.Coordinator
	// AdvertisedHost and AdvertisedPort are what Metadata and
	// FindCoordinator tell clients to connect to (default: the local
	// address the client connected to).
	AdvertisedHost string
	AdvertisedPort int32
	// NodeID is this broker's id (default 0).
	NodeID int32
	// ClusterID is reported by Metadata and DescribeCluster (default
	// "herald").
	ClusterID string
	Logger    *slog.Logger
	// Registerer receives metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// MaxRequestBytes bounds one request frame (default 100 MiB); a larger
	// frame closes the connection.
	MaxRequestBytes int
	// MaxInflightRequestBytes bounds the bytes of request frames the
	// server holds at once, across connections (Kafka's
	// queued.max.request.bytes; default 64 MiB, <0: unbounded). A
	// connection whose next frame does not fit waits before reading it, so
	// producers with many requests in flight are slowed instead of growing
	// the server's memory.
	MaxInflightRequestBytes int64
	// CopyFetches makes fetch responses carry copies of the records read
	// into memory, as for memory topics, instead of sending them from the
	// segment files with sendfile. For comparison and diagnosis; slower.
	CopyFetches bool
	// IdleTimeout closes a connection that sends nothing for that long
	// (default 10 minutes, Kafka's connections.max.idle.ms; <0: never).
	IdleTimeout time.Duration
	// TracerProvider, when set, gets a server span for each partition of
	// each Produce request (tracing.go); nil makes none and costs nothing.
	TracerProvider trace.TracerProvider
	// Auth, when set, makes every connection authenticate with SASL
	// before anything but ApiVersions (sasl.go); nil: no authentication,
	// and SaslHandshake is not advertised.
	Auth *auth.Store
	// SASLMechanisms are the mechanisms offered when Auth is set (default
	// all of auth.Mechanisms).
	SASLMechanisms []string
	// FailedAuthDelay holds back the answer to a failed authentication,
	// and the close after it, slowing password guessing (Kafka's
	// connection.failed.authentication.delay.ms; default 100ms, <0: none).
	FailedAuthDelay time.Duration
	// TLS, when set, makes every listener speak TLS (see auth.ServerTLS).
	// Fetches then copy records through TLS instead of using sendfile.
	TLS *tls.Config
}

func (c *Config) setDefaults() {
	if c.ClusterID == "" {
		c.ClusterID = "herald"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 100 << 20
	}
	if c.MaxInflightRequestBytes == 0 {
		c.MaxInflightRequestBytes = 64 << 20
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.FailedAuthDelay == 0 {
		c.FailedAuthDelay = 100 * time.Millisecond
	}
	if c.Auth != nil && len(c.SASLMechanisms) == 0 {
		c.SASLMechanisms = auth.Mechanisms
	}
}

// Server speaks the Kafka protocol over a Broker. It is safe for
// concurrent use; Close stops it and waits for every connection.
type Server struct {
	cfg    Config
	b      *broker.Broker
	g      *groups.Coordinator
	t      *txn.Coordinator
	logger *slog.Logger
	m      *metrics
	tracer trace.Tracer // nil: no spans

	// inflight bounds held request bytes; nil: unbounded.
	inflight *byteBudget

	// maxWait caps a fetch's long poll (tests lower it).
	maxWait time.Duration

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu struct {
		sync.Mutex
		listeners map[net.Listener]struct{}
		conns     map[*conn]struct{}
		closed    bool
	}
	wg sync.WaitGroup
}

// New returns a Server; it serves nothing until Serve. It panics if
// cfg.Broker is nil, and if the metrics cannot be registered.
func New(cfg Config) *Server {
	if cfg.Broker == nil {
		panic("kafka: Config.Broker is nil")
	}
	cfg.setDefaults()
	s := &Server{cfg: cfg, b: cfg.Broker, g: cfg.Groups, t: cfg.Txns, logger: cfg.Logger, maxWait: 5 * time.Minute}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.MaxInflightRequestBytes > 0 {
		s.inflight = newByteBudget(cfg.MaxInflightRequestBytes)
	}
	s.mu.listeners = map[net.Listener]struct{}{}
	s.mu.conns = map[*conn]struct{}{}
	s.m = newMetrics()
	if cfg.TracerProvider != nil {
		s.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	if cfg.Registerer != nil {
		if err := s.m.register(cfg.Registerer); err != nil {
			panic(fmt.Sprintf("kafka: register metrics: %v", err))
		}
	}
	return s
}

// Serve accepts connections on ln until Close, which makes it return
// ErrServerClosed. Serve may be called for several listeners. It closes
// ln when it returns.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTrusted is Serve for a listener only this process can reach
// (internal/inproc): its connections need neither TLS nor authentication.
func (s *Server) ServeTrusted(ln net.Listener) error { return s.serve(ln, true) }

// TrustedUser is the user of connections on a trusted listener.
const TrustedUser = "herald-internal"

func (s *Server) serve(ln net.Listener, trusted bool) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if s.cfg.TLS != nil && !trusted {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.mu.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.mu.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger.Warn("kafka: accept failed; retrying", "err", err, "in", delay)
				select {
				case <-time.After(delay):
				case <-s.ctx.Done():
					return ErrServerClosed
				}
				continue
			}
			return fmt.Errorf("kafka: accept: %w", err)
		}
		delay = 0
		c := s.newConn(nc, trusted)
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.mu.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.mu.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close closes the listeners and every connection, and returns once their
// goroutines have exited. Requests in progress are canceled.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.mu.closed = true
	s.cancel()
	var errs []error
	for ln := range s.mu.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for c := range s.mu.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.cfg.Registerer != nil {
		s.m.unregister(s.cfg.Registerer)
	}
	return errors.Join(errs...)
}
