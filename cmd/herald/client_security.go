package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/heraldhq/herald/auth"
)

// clientSecurity is how the client commands authenticate to a server
// started with --users and reach one started with --tls-cert: the root
// command's persistent flags, so every command has them.
type clientSecurity struct {
	user         string
	passwordFile string
	mechanism    string
	tls          bool
	tlsCA        string
	tlsCert      string
	tlsKey       string
}

// securityOf returns the security flags of cmd's root command (each root
// has its own: tests run several at once).
func securityOf(cmd *cobra.Command) *clientSecurity {
	if cmd == nil {
		return &clientSecurity{}
	}
	pf := cmd.Root().PersistentFlags()
	get := func(name string) string {
		if f := pf.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	return &clientSecurity{
		user: get("user"), passwordFile: get("password-file"), mechanism: get("sasl-mechanism"),
		tls: get("tls") == "true", tlsCA: get("tls-ca"), tlsCert: get("tls-client-cert"), tlsKey: get("tls-client-key"),
	}
}

const clientSecurityHelp = `the password is read from --password-file, else from $HERALD_PASSWORD`

func addClientSecurityFlags(pf *pflag.FlagSet, s *clientSecurity) {
	pf.StringVar(&s.user, "user", os.Getenv("HERALD_USER"), "authenticate as `NAME` (SASL on Kafka, HTTP Basic on HTTP; "+clientSecurityHelp+"; env HERALD_USER)")
	pf.StringVar(&s.passwordFile, "password-file", os.Getenv("HERALD_PASSWORD_FILE"), "read --user's password from the first line of `FILE` (env HERALD_PASSWORD_FILE)")
	pf.StringVar(&s.mechanism, "sasl-mechanism", envOr("HERALD_SASL_MECHANISM", auth.ScramSHA512), "SASL `MECHANISM` for --user on Kafka: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (env HERALD_SASL_MECHANISM)")
	pf.BoolVar(&s.tls, "tls", os.Getenv("HERALD_TLS") != "", "connect to Kafka with TLS, trusting the system's CAs (env HERALD_TLS); https:// URLs use TLS anyway")
	pf.StringVar(&s.tlsCA, "tls-ca", os.Getenv("HERALD_TLS_CA"), "trust the PEM CA certificates in `FILE` for TLS (implies --tls; env HERALD_TLS_CA)")
	pf.StringVar(&s.tlsCert, "tls-client-cert", os.Getenv("HERALD_TLS_CLIENT_CERT"), "present the PEM client certificate in `FILE` (implies --tls; env HERALD_TLS_CLIENT_CERT)")
	pf.StringVar(&s.tlsKey, "tls-client-key", os.Getenv("HERALD_TLS_CLIENT_KEY"), "private key `FILE` of --tls-client-cert (env HERALD_TLS_CLIENT_KEY)")
}

// password returns --user's password.
func (s *clientSecurity) password() (string, error) {
	if s.passwordFile != "" {
		b, err := os.ReadFile(s.passwordFile)
		if err != nil {
			return "", usageErrorf("--password-file: %v", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		pw = strings.TrimSuffix(pw, "\r")
		if pw == "" {
			return "", usageErrorf("--password-file %s: the first line is empty", s.passwordFile)
		}
		return pw, nil
	}
	if pw := os.Getenv("HERALD_PASSWORD"); pw != "" {
		return pw, nil
	}
	return "", usageErrorf("--user %s: no password (%s)", s.user, clientSecurityHelp)
}

// tlsConfig is the client TLS configuration: nil when TLS was not asked
// for and base (an https:// URL, or "") does not need it.
func (s *clientSecurity) tlsConfig(need bool) (*tls.Config, error) {
	if !need && !s.tls && s.tlsCA == "" && s.tlsCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.tlsCA != "" {
		pem, err := os.ReadFile(s.tlsCA)
		if err != nil {
			return nil, usageErrorf("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErrorf("--tls-ca %s: no PEM certificate in it", s.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if s.tlsCert != "" || s.tlsKey != "" {
		if s.tlsCert == "" || s.tlsKey == "" {
			return nil, usageErrorf("--tls-client-cert and --tls-client-key go together")
		}
		c, err := tls.LoadX509KeyPair(s.tlsCert, s.tlsKey)
		if err != nil {
			return nil, usageErrorf("--tls-client-cert: %v", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

// kgoOpts are the Kafka client options for the flags.
func (s *clientSecurity) kgoOpts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	cfg, err := s.tlsConfig(false)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s.user != "" {
		pw, err := s.password()
		if err != nil {
			return nil, err
		}
		var m sasl.Mechanism
		switch strings.ToUpper(s.mechanism) {
		case auth.ScramSHA512:
			m = scram.Auth{User: s.user, Pass: pw}.AsSha512Mechanism()
		case auth.ScramSHA256:
			m = scram.Auth{User: s.user, Pass: pw}.AsSha256Mechanism()
		case auth.Plain:
			m = plain.Auth{User: s.user, Pass: pw}.AsMechanism()
		default:
			return nil, usageErrorf("--sasl-mechanism %q: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", s.mechanism)
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// httpClient is an HTTP client for base (an http:// or https:// URL) that
// sends --user's Basic credentials with every request and trusts --tls-ca.
// Without either it is http.DefaultClient, whose connections the CLI's
// requests share.
func (s *clientSecurity) httpClient(base string) (*http.Client, error) {
	var tr http.RoundTripper = http.DefaultTransport
	if strings.HasPrefix(base, "https://") {
		cfg, err := s.tlsConfig(true)
		if err != nil {
			return nil, err
		}
		if cfg.RootCAs != nil || cfg.Certificates != nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig = cfg
			tr = t
		}
	}
	if s.user == "" {
		if tr == http.DefaultTransport {
			return http.DefaultClient, nil
		}
		return &http.Client{Transport: tr}, nil
	}
	pw, err := s.password()
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: basicAuth{tr, s.user, pw}}, nil
}

// basicAuth adds Basic credentials to every request.
type basicAuth struct {
	next       http.RoundTripper
	user, pass string
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pass)
	return b.next.RoundTrip(r)
}
