// Package server wires Herald's parts into one running server: the broker
// on its data directory, the consumer-group and transaction coordinators on
// their internal topics, and the Kafka listener. `herald serve` adds HTTP on
// top; tests, benchmarks and examples start the same server in-process.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/broker/txn"
	"github.com/heraldhq/herald/internal/inproc"
	"github.com/heraldhq/herald/kafka"
)

// Config configures a Server. Only Broker.DataDir is required.
type Config struct {
	// Broker configures storage and topics.
	Broker broker.Config
	// KafkaAddr is where the Kafka listener listens (default
	// "127.0.0.1:0": a free loopback port).
	KafkaAddr string
	// Kafka is the listener's configuration; its Broker, Groups, Txns,
	// Logger and Registerer are filled in.
	Kafka kafka.Config
	// Groups is the group coordinator's configuration; its Store, Logger,
	// Registerer, TopicExists and HighWatermark are filled in.
	Groups groups.Config
	// Logger and Registerer are shared by every part (Logger defaults to
	// slog.Default(); a nil Registerer registers no metrics).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Server is a running Herald server. Close stops it.
type Server struct {
	Broker *broker.Broker
	Groups *groups.Coordinator
	Txns   *txn.Coordinator
	Kafka  *kafka.Server

	ln       net.Listener
	internal *inproc.Listener // trusted in-process connections (DialInternal)
	addr     string
	done     chan struct{} // closed when the listener stops
	serveErr error         // why it stopped; set before done closes
}

// Start opens the data directory, starts the coordinators and serves the
// Kafka protocol on cfg.KafkaAddr. ctx bounds the start only.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.KafkaAddr == "" {
		cfg.KafkaAddr = "127.0.0.1:0"
	}
	s := &Server{done: make(chan struct{})}
	defer func() {
		if err != nil {
			s.closeParts()
		}
	}()
	bc := cfg.Broker
	bc.Logger, bc.Registerer = cfg.Logger, cfg.Registerer
	if s.Broker, err = broker.Open(bc); err != nil {
		return nil, err
	}
	gstore, err := s.Broker.GroupStore()
	if err != nil {
		return nil, err
	}
	gc := cfg.Groups
	gc.Store, gc.Logger, gc.Registerer = gstore, cfg.Logger, cfg.Registerer
	gc.TopicExists, gc.HighWatermark = s.Broker.PartitionExists, s.Broker.HighWatermark
	gc.RecordTimestamp = s.Broker.RecordTimestamp
	if s.Groups, err = groups.New(ctx, gc); err != nil {
		return nil, fmt.Errorf("start group coordinator: %w", err)
	}
	tstore, err := s.Broker.TxnStore()
	if err != nil {
		return nil, err
	}
	s.Txns, err = txn.New(ctx, txn.Config{
		Store: tstore, Markers: s.Broker, Groups: s.Groups, NewProducerID: s.Broker.NewProducerID, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("start transaction coordinator: %w", err)
	}
	s.Broker.SetTxnVerifier(s.Txns)
	if s.ln, err = net.Listen("tcp", cfg.KafkaAddr); err != nil {
		return nil, fmt.Errorf("kafka listener: %w", err)
	}
	s.addr = s.ln.Addr().String()
	kc := cfg.Kafka
	kc.Broker, kc.Groups, kc.Txns, kc.Logger, kc.Registerer = s.Broker, s.Groups, s.Txns, cfg.Logger, cfg.Registerer
	s.Kafka = kafka.New(kc)
	s.internal = inproc.Listen()
	go s.Kafka.ServeTrusted(s.internal) // returns with Close, as Serve does
	go func() {
		s.serveErr = s.Kafka.Serve(s.ln)
		close(s.done)
	}()
	return s, nil
}

// DialInternal connects to the Kafka listener from inside this process,
// needing neither TLS nor authentication, whatever the network listener
// demands; as a Kafka client's dialer (kgo.Dialer) it ignores the
// address. The server's own services (sagas, queries, patterns) use it.
func (s *Server) DialInternal(ctx context.Context, network, addr string) (net.Conn, error) {
	return s.internal.Dial(ctx, network, addr)
}

// KafkaAddr is the address the Kafka listener is bound to.
func (s *Server) KafkaAddr() string { return s.addr }

// Done is closed when the Kafka listener stops, by Close or by failing;
// then ServeErr says why.
func (s *Server) Done() <-chan struct{} { return s.done }

// ServeErr is the listener's error once Done is closed (kafka.ErrServerClosed
// after Close).
func (s *Server) ServeErr() error {
	<-s.done
	return s.serveErr
}

// Close stops the listener (in-flight requests finish), then the
// coordinators, then flushes and closes storage.
func (s *Server) Close() error {
	var errs []error
	if s.Kafka != nil {
		errs = append(errs, s.Kafka.Close())
		if err := s.ServeErr(); err != nil && !errors.Is(err, kafka.ErrServerClosed) {
			errs = append(errs, err)
		}
		s.Kafka, s.ln = nil, nil
	}
	errs = append(errs, s.closeParts())
	return errors.Join(errs...)
}

func (s *Server) closeParts() error {
	var errs []error
	if s.ln != nil { // started no listener goroutine
		s.ln.Close()
		s.ln = nil
	}
	if s.Txns != nil {
		errs = append(errs, s.Txns.Close())
		s.Txns = nil
	}
	if s.Groups != nil {
		errs = append(errs, s.Groups.Close())
		s.Groups = nil
	}
	if s.Broker != nil {
		errs = append(errs, s.Broker.Close())
		s.Broker = nil
	}
	return errors.Join(errs...)
}
