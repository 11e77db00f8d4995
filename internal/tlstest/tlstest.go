// Package tlstest writes a throwaway certificate authority, a server
// certificate for localhost and a client certificate, for tests of TLS
// listeners.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Files are PEM files in a test's directory.
type Files struct {
	CA                    string // the CA's certificate
	Cert, Key             string // the server's, for localhost and 127.0.0.1
	ClientCert, ClientKey string // a client's, signed by the CA
	pool                  *x509.CertPool
	caKey                 *ecdsa.PrivateKey
	ca                    *x509.Certificate
}

// New writes a CA, a server pair and a client pair into dir.
func New(t testing.TB, dir string) *Files {
	t.Helper()
	caKey := key(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	f := &Files{CA: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool(), caKey: caKey, ca: ca}
	f.pool.AddCert(ca)
	write(t, f.CA, "CERTIFICATE", caDER)
	f.Cert, f.Key = f.Issue(t, dir, "server", x509.ExtKeyUsageServerAuth)
	f.ClientCert, f.ClientKey = f.Issue(t, dir, "client", x509.ExtKeyUsageClientAuth)
	return f
}

// Issue writes a certificate named name signed by the CA (for localhost
// and 127.0.0.1) and its key; it returns their paths.
func (f *Files) Issue(t testing.TB, dir, name string, usage x509.ExtKeyUsage) (cert, keyPath string) {
	t.Helper()
	k := key(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.ca, &k.PublicKey, f.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	write(t, cert, "CERTIFICATE", der)
	write(t, keyPath, "EC PRIVATE KEY", kder)
	return cert, keyPath
}

// ClientConfig trusts the CA; withCert adds the client certificate.
func (f *Files) ClientConfig(t testing.TB, withCert bool) *tls.Config {
	t.Helper()
	cfg := &tls.Config{RootCAs: f.pool, ServerName: "localhost"}
	if withCert {
		c, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

func key(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func write(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
