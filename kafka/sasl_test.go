package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	kscram "github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/xdg-go/scram"

	"github.com/heraldhq/herald/auth"
	"github.com/heraldhq/herald/internal/tlstest"
)

// usersFile writes a users file with the given name/password pairs.
func usersFile(t testing.TB, pairs ...string) (string, *auth.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.json")
	for i := 0; i < len(pairs); i += 2 {
		if _, err := auth.AddUser(path, pairs[i], pairs[i+1], auth.MinIterations); err != nil {
			t.Fatal(err)
		}
	}
	s, err := auth.OpenStore(path, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return path, s
}

func mechanism(name, user, pass string) sasl.Mechanism {
	switch name {
	case auth.Plain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case auth.ScramSHA256:
		return kscram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	}
	return kscram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
}

// roundTrip produces one record to topic and reads it back.
func roundTrip(t *testing.T, e *testEnv, topic string, opts ...kgo.Opt) error {
	t.Helper()
	cl := e.client(t, append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr(); err != nil {
		return err
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		return err
	}
	if n := fs.NumRecords(); n == 0 {
		t.Fatalf("fetched no record")
	}
	return nil
}

// tryAuth sends one Metadata request through a new client: its error is
// the authentication's, if that failed.
func tryAuth(t *testing.T, e *testEnv, opts ...kgo.Opt) error {
	t.Helper()
	cl := e.client(t, append(opts, kgo.RetryTimeout(time.Second))...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest())
	return err
}

// TestSASL: each mechanism authenticates the right password with a real
// client, produces and consumes; a wrong password fails with
// SASL_AUTHENTICATION_FAILED and a message saying so.
func TestSASL(t *testing.T) {
	_, store := usersFile(t, "alice", "s3cret", "bob", "pa:ss wörd")
	e := newEnv(t, testOpts{auth: store})
	e.createTopic(t, "t", 1, nil)
	for _, mech := range auth.Mechanisms {
		t.Run(mech, func(t *testing.T) {
			if err := roundTrip(t, e, "t", kgo.SASL(mechanism(mech, "alice", "s3cret"))); err != nil {
				t.Fatalf("alice: %v", err)
			}
			if err := roundTrip(t, e, "t", kgo.SASL(mechanism(mech, "bob", "pa:ss wörd"))); err != nil {
				t.Fatalf("bob: %v", err)
			}
			for _, bad := range [][2]string{{"alice", "wrong"}, {"mallory", "s3cret"}, {"alice", ""}} {
				err := tryAuth(t, e, kgo.SASL(mechanism(mech, bad[0], bad[1])))
				if bad[1] != "" && !errors.Is(err, kerr.SaslAuthenticationFailed) {
					t.Errorf("%s/%q: err %v, want SASL_AUTHENTICATION_FAILED", bad[0], bad[1], err)
				}
				if err == nil {
					t.Errorf("%s/%q authenticated", bad[0], bad[1])
				}
			}
		})
	}
	// Without SASL the client gets nothing.
	if err := tryAuth(t, e); err == nil {
		t.Fatal("a request went through without authenticating")
	}
	_, hw, err := e.b.Offsets("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(2 * len(auth.Mechanisms)); hw != want {
		t.Fatalf("high-water mark %d, want %d: only authenticated producers' records", hw, want)
	}
}

// TestSASLRaw speaks the protocol by hand: what a connection may send
// before it authenticates, the v0 handshake's bare tokens, mechanisms that
// are not enabled, and SaslAuthenticate out of turn.
func TestSASLRaw(t *testing.T) {
	_, store := usersFile(t, "alice", "s3cret")
	e := newEnv(t, testOpts{auth: store, mechs: []string{auth.ScramSHA256, auth.Plain}})
	e.createTopic(t, "t", 1, nil)

	t.Run("ApiVersions advertises SASL", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		resp := r.do(kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse)
		var keys []int16
		for _, k := range resp.ApiKeys {
			keys = append(keys, k.ApiKey)
		}
		if !slices.Contains(keys, 17) || !slices.Contains(keys, 36) {
			t.Fatalf("keys %v lack SaslHandshake or SaslAuthenticate", keys)
		}
	})
	t.Run("other requests close the connection", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		r.send(kmsg.NewPtrMetadataRequest())
		r.expectClosed()
	})
	t.Run("mechanism not enabled", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		req := kmsg.NewPtrSASLHandshakeRequest()
		req.Version, req.Mechanism = 1, auth.ScramSHA512
		resp := r.do(req).(*kmsg.SASLHandshakeResponse)
		if resp.ErrorCode != kerr.UnsupportedSaslMechanism.Code || !slices.Equal(resp.SupportedMechanisms, []string{auth.ScramSHA256, auth.Plain}) {
			t.Fatalf("error %d, mechanisms %v", resp.ErrorCode, resp.SupportedMechanisms)
		}
	})
	t.Run("SaslAuthenticate before the handshake", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version, req.SASLAuthBytes = 1, []byte("\x00alice\x00s3cret")
		resp := r.do(req).(*kmsg.SASLAuthenticateResponse)
		if resp.ErrorCode != kerr.IllegalSaslState.Code {
			t.Fatalf("error %d, want ILLEGAL_SASL_STATE", resp.ErrorCode)
		}
		r.expectClosed()
	})
	t.Run("v1 failure message, then closed", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		handshake(t, r, 1, auth.Plain)
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version, req.SASLAuthBytes = 2, []byte("\x00alice\x00nope")
		start := time.Now()
		resp := r.do(req).(*kmsg.SASLAuthenticateResponse)
		if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || resp.ErrorMessage == nil ||
			!strings.Contains(*resp.ErrorMessage, "wrong user name or password") {
			t.Fatalf("error %d %v", resp.ErrorCode, resp.ErrorMessage)
		}
		if took := time.Since(start); took < 100*time.Millisecond {
			t.Errorf("the failure was answered after %v: want the 100ms FailedAuthDelay", took)
		}
		r.expectClosed()
	})
	t.Run("v0 PLAIN", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		handshake(t, r, 0, auth.Plain)
		r.writeFrame([]byte("\x00alice\x00s3cret"))
		if b, err := r.readFrame(); err != nil || len(b) != 0 {
			t.Fatalf("answer %q, %v; want an empty frame", b, err)
		}
		metadataOK(t, r)
	})
	t.Run("v0 PLAIN wrong password", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		handshake(t, r, 0, auth.Plain)
		start := time.Now()
		r.writeFrame([]byte("\x00alice\x00nope"))
		r.expectClosed()
		if took := time.Since(start); took < 100*time.Millisecond {
			t.Errorf("closed after %v: want the 100ms FailedAuthDelay", took)
		}
	})
	t.Run("v0 SCRAM-SHA-256", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		handshake(t, r, 0, auth.ScramSHA256)
		cl, err := scram.SHA256.NewClient("alice", "s3cret", "")
		if err != nil {
			t.Fatal(err)
		}
		conv := cl.NewConversation()
		msg, err := conv.Step("")
		for err == nil && !conv.Done() {
			r.writeFrame([]byte(msg))
			b, rerr := r.readFrame()
			if rerr != nil {
				t.Fatal(rerr)
			}
			msg, err = conv.Step(string(b))
		}
		if err != nil || !conv.Valid() {
			t.Fatalf("SCRAM: %v (valid %v)", err, conv.Valid())
		}
		metadataOK(t, r)
	})
	t.Run("handshake twice", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		handshake(t, r, 1, auth.Plain)
		req := kmsg.NewPtrSASLHandshakeRequest()
		req.Version, req.Mechanism = 1, auth.Plain
		if resp := r.do(req).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != kerr.IllegalSaslState.Code {
			t.Fatalf("error %d, want ILLEGAL_SASL_STATE", resp.ErrorCode)
		}
	})
	t.Run("oversized token", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		handshake(t, r, 1, auth.ScramSHA256)
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version, req.SASLAuthBytes = 1, []byte("n,,n=alice,r="+strings.Repeat("x", auth.MaxSASLBytes))
		resp := r.do(req).(*kmsg.SASLAuthenticateResponse)
		if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || resp.ErrorMessage == nil || !strings.Contains(*resp.ErrorMessage, "at most 4096") {
			t.Fatalf("error %d %v", resp.ErrorCode, resp.ErrorMessage)
		}
		r.expectClosed()
	})
}

func handshake(t *testing.T, r *rawConn, version int16, mech string) {
	t.Helper()
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.Version, req.Mechanism = version, mech
	if resp := r.do(req).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != 0 {
		t.Fatalf("handshake %s v%d: error %d", mech, version, resp.ErrorCode)
	}
}

func metadataOK(t *testing.T, r *rawConn) {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 4
	resp := r.do(req).(*kmsg.MetadataResponse)
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("metadata after authenticating: %+v", resp.Topics)
	}
}

// TestSASLUsersReload: users added to and removed from the file take
// effect without a restart; a file made invalid keeps the users before.
func TestSASLUsersReload(t *testing.T) {
	path, store := usersFile(t, "alice", "a")
	e := newEnv(t, testOpts{auth: store})
	e.createTopic(t, "t", 1, nil)
	fail := func(user, pass string) error {
		return tryAuth(t, e, kgo.SASL(mechanism(auth.ScramSHA512, user, pass)))
	}
	if err := fail("bob", "b"); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("bob before being added: %v", err)
	}
	if _, err := auth.AddUser(path, "bob", "b", auth.MinIterations); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.RemoveUser(path, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "bob to be let in", func() bool { return fail("bob", "b") == nil })
	if err := fail("alice", "a"); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("alice after being removed: %v", err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := fail("bob", "b"); err != nil {
		t.Fatalf("bob after the file broke: %v", err)
	}
}

// TestTLSListener: clients reach a TLS listener with the CA, not without;
// with a client CA, only clients with a certificate it signed; SASL runs
// inside TLS.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	files := tlstest.New(t, dir)
	_, store := usersFile(t, "alice", "s3cret")
	for _, mtls := range []bool{false, true} {
		name := "server-auth"
		if mtls {
			name = "mutual"
		}
		t.Run(name, func(t *testing.T) {
			tf := auth.TLSFiles{Cert: files.Cert, Key: files.Key}
			if mtls {
				tf.ClientCA = files.CA
			}
			cfg, err := auth.ServerTLS(tf, testLogger(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, testOpts{tls: cfg, auth: store})
			e.createTopic(t, "t", 1, nil)
			sasl := kgo.SASL(mechanism(auth.ScramSHA256, "alice", "s3cret"))
			if err := roundTrip(t, e, "t", sasl, kgo.DialTLSConfig(files.ClientConfig(t, true))); err != nil {
				t.Fatalf("with CA and client certificate: %v", err)
			}
			err = tryAuth(t, e, sasl, kgo.DialTLSConfig(files.ClientConfig(t, false)))
			if mtls == (err == nil) {
				t.Fatalf("without a client certificate: %v", err)
			}
			if err := tryAuth(t, e, sasl); err == nil {
				t.Fatal("plaintext client reached a TLS listener")
			}
		})
	}
}

// TestNoSASLNotAdvertised: a listener without authentication advertises
// neither SASL API and answers them as unknown.
func TestNoSASLNotAdvertised(t *testing.T) {
	e := newEnv(t, testOpts{})
	r := dialRaw(t, e.addr)
	resp := r.do(kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse)
	for _, k := range resp.ApiKeys {
		if saslKey(k.ApiKey) {
			t.Fatalf("advertises key %d", k.ApiKey)
		}
	}
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.Version, req.Mechanism = 1, auth.Plain
	corr := r.send(req)
	b, err := r.readFrame()
	if err != nil {
		t.Fatal(err)
	}
	if got := int32(binary.BigEndian.Uint32(b)); got != corr || int16(binary.BigEndian.Uint16(b[4:])) != kerr.UnsupportedVersion.Code {
		t.Fatalf("answer %x", b)
	}
}
