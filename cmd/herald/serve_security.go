package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/auth"
)

// securityOptions are herald serve's authentication and TLS flags.
type securityOptions struct {
	users       string
	mechanisms  string
	tlsCert     string
	tlsKey      string
	tlsClientCA string
}

func addSecurityFlags(f *pflag.FlagSet, o *securityOptions) {
	f.StringVar(&o.users, "users", "", "users `FILE` (herald user add): clients must authenticate, with SASL on the Kafka listener and HTTP Basic on HTTP; reread when it changes")
	f.StringVar(&o.mechanisms, "sasl-mechanisms", "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN", "SASL mechanisms the Kafka listener offers when --users is set")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate `FILE`: every listener (Kafka, HTTP, registry) speaks TLS; reread when it changes")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `FILE` of --tls-cert")
	f.StringVar(&o.tlsClientCA, "tls-client-ca", "", "PEM `FILE` of CAs: clients must present a certificate one of them signed (mutual TLS)")
}

// security is what the flags set up; its zero value is no authentication
// and no TLS.
type security struct {
	store *auth.Store
	mechs []string
	tls   *tls.Config
	basic *auth.HTTPAuth
}

// setup checks the flags and loads the users file and certificates.
func (o securityOptions) setup(logger *slog.Logger, reg prometheus.Registerer) (*security, error) {
	s := &security{}
	m := auth.NewMetrics()
	if err := m.Register(reg); err != nil {
		return nil, err
	}
	if o.users != "" {
		mechs, err := auth.ParseMechanisms(o.mechanisms)
		if err != nil {
			return nil, fmt.Errorf("--sasl-mechanisms: %w", err)
		}
		if s.store, err = auth.OpenStore(o.users, logger, m); err != nil {
			return nil, fmt.Errorf("--users: %w", err)
		}
		s.mechs = mechs
		s.basic = auth.NewHTTPAuth(s.store, "herald")
	}
	if o.tlsCert != "" || o.tlsKey != "" || o.tlsClientCA != "" {
		if o.tlsCert == "" || o.tlsKey == "" {
			return nil, fmt.Errorf("--tls-cert and --tls-key go together (--tls-client-ca needs both)")
		}
		var err error
		if s.tls, err = auth.ServerTLS(auth.TLSFiles{Cert: o.tlsCert, Key: o.tlsKey, ClientCA: o.tlsClientCA}, logger, m); err != nil {
			return nil, err
		}
	}
	if s.store != nil && s.tls == nil {
		logger.Warn("--users without --tls-cert: HTTP Basic and SASL PLAIN send passwords in the clear; SCRAM does not")
	}
	return s, nil
}

// listen listens on addr, with TLS if it is set up.
func (s *security) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || s.tls == nil {
		return ln, err
	}
	return tls.NewListener(ln, s.tls), nil
}

// wrap requires authentication for every HTTP request but the health
// probes, when there are users.
func (s *security) wrap(h http.Handler) http.Handler {
	if s.basic == nil {
		return h
	}
	return s.basic.Wrap(h, func(r *http.Request) bool {
		return r.Method == http.MethodGet && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz")
	})
}

// scheme is how clients reach the HTTP listeners.
func (s *security) scheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}
