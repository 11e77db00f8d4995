package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// TLSFiles names a server's certificate, key and, for client
// certificates, the CAs that sign them.
type TLSFiles struct {
	Cert, Key string
	// ClientCA, when set, makes the server require a client certificate
	// signed by one of the PEM certificates in this file.
	ClientCA string
}

// ServerTLS returns a TLS configuration for the files. The certificate and
// key are reread when either file changes (checked at most once a second,
// on handshakes), so a renewed certificate is served without a restart; a
// pair that fails to load leaves the previous one in use. m may be nil.
func ServerTLS(files TLSFiles, logger *slog.Logger, m *Metrics) (*tls.Config, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("TLS needs both a certificate and a key file")
	}
	if logger == nil {
		logger = slog.Default()
	}
	if m == nil {
		m = NewMetrics()
	}
	c := &certReloader{files: files, logger: logger, m: m}
	if err := c.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}
	if files.ClientCA != "" {
		pem, err := os.ReadFile(files.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS client CA %s: no PEM certificate in it", files.ClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

type certReloader struct {
	files  TLSFiles
	logger *slog.Logger
	m      *Metrics

	mu      sync.Mutex
	cert    *tls.Certificate
	stamps  [2]fileStamp
	checked time.Time
}

func (c *certReloader) stat() ([2]fileStamp, error) {
	var out [2]fileStamp
	for i, p := range []string{c.files.Cert, c.files.Key} {
		st, err := os.Stat(p)
		if err != nil {
			return out, err
		}
		out[i] = stampOf(st)
	}
	return out, nil
}

func (c *certReloader) load() error {
	stamps, err := c.stat()
	if err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(c.files.Cert, c.files.Key)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", c.files.Cert, c.files.Key, err)
	}
	c.cert, c.stamps, c.checked = &cert, stamps, time.Now()
	return nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < recheckEvery {
		return c.cert, nil
	}
	c.checked = time.Now()
	stamps, err := c.stat()
	if err != nil {
		// Counted and logged once, not at every handshake until back.
		if c.stamps != ([2]fileStamp{}) {
			c.stamps = [2]fileStamp{}
			c.m.tlsFailures.Inc()
			c.logger.Error("tls: certificate or key unreadable; serving the one loaded before", "err", err)
		}
		return c.cert, nil
	}
	if stamps == c.stamps {
		return c.cert, nil
	}
	old := c.cert
	if err := c.load(); err != nil {
		c.cert = old
		c.stamps = stamps // retry when they change again
		c.m.tlsFailures.Inc()
		c.logger.Error("tls: changed certificate does not load; serving the previous one", "err", err)
		return c.cert, nil
	}
	c.m.tlsReloads.Inc()
	c.logger.Info("tls: certificate reloaded", "cert", c.files.Cert)
	return c.cert, nil
}
