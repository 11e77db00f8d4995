package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/xdg-go/scram"
)

// Session is one SASL authentication exchange on one connection.
type Session interface {
	// Step takes the client's next message and returns the server's
	// answer. done is true once the exchange is over: err is nil if the
	// client authenticated, and says why not otherwise. An answer may come
	// with an error (a SCRAM "e=" message for the client to read).
	Step(in []byte) (out []byte, done bool, err error)
	// User is the authenticated user, once done without error.
	User() string
}

// ErrAuthFailed is the error every failed authentication wraps. Its text
// never says whether the user or the password was wrong.
var ErrAuthFailed = errors.New("authentication failed")

// MaxSASLBytes bounds one SASL message from a client.
const MaxSASLBytes = 4096

// Start begins a session for mech, one of Mechanisms and enabled.
func (s *Store) Start(mech string) (Session, error) {
	switch mech {
	case Plain:
		return &plainSession{s: s}, nil
	case ScramSHA256, ScramSHA512:
		srv, err := scramMechs[mech].NewServer(func(name string) (scram.StoredCredentials, error) {
			sc, err := s.Credential(mech, scramName(name))
			if errors.Is(err, ErrUnknownUser) {
				// NB: answer an unknown user as a known one (RFC 5802
				// section 9): the exchange then fails at the proof, as a
				// wrong password does, and SCRAM cannot list the users.
				return s.decoy(mech, name), nil
			}
			return sc, err
		})
		if err != nil {
			return nil, err
		}
		return &scramSession{s: s, mech: mech, conv: srv.NewConversation()}, nil
	}
	return nil, fmt.Errorf("unsupported SASL mechanism %q (want one of %s)", mech, strings.Join(Mechanisms, ", "))
}

// decoy returns credentials for a user the file does not have: a salt
// stable per name (a random one per attempt would show), the iterations
// of the file's first user, and keys no password matches.
func (s *Store) decoy(mech, name string) scram.StoredCredentials {
	mac := hmac.New(sha256.New, s.decoyKey[:])
	mac.Write([]byte(mech))
	mac.Write([]byte{0})
	mac.Write([]byte(name))
	sum := mac.Sum(nil)
	iters := DefaultIterations
	if f, _ := s.current(); len(f.Users) > 0 {
		if c, ok := f.Users[f.Names()[0]][mech]; ok {
			iters = c.Iterations
		}
	}
	size := scramMechs[mech]().Size()
	stored, server := make([]byte, size), make([]byte, size)
	rand.Read(stored)
	rand.Read(server)
	return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(sum[:16]), Iters: iters}, StoredKey: stored, ServerKey: server}
}

// ParseMechanisms checks a comma-separated list of mechanisms.
func ParseMechanisms(list string) ([]string, error) {
	var out []string
	for _, m := range strings.Split(list, ",") {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "" {
			continue
		}
		if !slices.Contains(Mechanisms, m) {
			return nil, fmt.Errorf("SASL mechanism %q: want %s", m, strings.Join(Mechanisms, ", "))
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no SASL mechanism in %q: want some of %s", list, strings.Join(Mechanisms, ", "))
	}
	return out, nil
}

// plainSession is RFC 4616: one message, "authzid NUL authcid NUL passwd".
type plainSession struct {
	s    *Store
	user string
}

func (p *plainSession) Step(in []byte) ([]byte, bool, error) {
	if len(in) > MaxSASLBytes {
		return nil, true, p.fail("PLAIN message of %d bytes: want at most %d", len(in), MaxSASLBytes)
	}
	parts := bytes.Split(in, []byte{0})
	if len(parts) != 3 {
		return nil, true, p.fail("malformed PLAIN message (want authzid NUL user NUL password)")
	}
	authz, name, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != name {
		return nil, true, p.fail("user %q may not act as %q", name, authz)
	}
	if !p.s.VerifyPassword(name, pass) {
		return nil, true, p.fail("wrong user name or password (user %q)", name)
	}
	p.user = name
	p.s.m.successes.WithLabelValues(Plain).Inc()
	return nil, true, nil
}

// fail counts a failed authentication and returns its error.
func (p *plainSession) fail(format string, args ...any) error {
	p.s.m.failures.WithLabelValues(Plain).Inc()
	return fmt.Errorf("%w: "+format, append([]any{ErrAuthFailed}, args...)...)
}

func (p *plainSession) User() string { return p.user }

// scramSession is RFC 5802 over github.com/xdg-go/scram: client-first,
// server-first, client-final, server-final.
type scramSession struct {
	s    *Store
	mech string
	conv *scram.ServerConversation
	user string
}

func (c *scramSession) Step(in []byte) ([]byte, bool, error) {
	if len(in) > MaxSASLBytes {
		c.s.m.failures.WithLabelValues(c.mech).Inc()
		return nil, true, fmt.Errorf("%w: %s message of %d bytes: want at most %d", ErrAuthFailed, c.mech, len(in), MaxSASLBytes)
	}
	out, err := c.conv.Step(string(in))
	if err != nil {
		c.s.m.failures.WithLabelValues(c.mech).Inc()
		who := scramName(c.conv.Username())
		if who == "" {
			return []byte(out), true, fmt.Errorf("%w: %s: %v", ErrAuthFailed, c.mech, err)
		}
		return []byte(out), true, fmt.Errorf("%w: %s for user %q: wrong user name or password", ErrAuthFailed, c.mech, who)
	}
	if !c.conv.Done() {
		return []byte(out), false, nil
	}
	name := scramName(c.conv.Username())
	if !c.conv.Valid() {
		c.s.m.failures.WithLabelValues(c.mech).Inc()
		return []byte(out), true, fmt.Errorf("%w: %s for user %q", ErrAuthFailed, c.mech, name)
	}
	if authz := scramName(c.conv.AuthzID()); authz != "" && authz != name {
		// As Kafka does: a client may not ask to act as another user.
		c.s.m.failures.WithLabelValues(c.mech).Inc()
		return nil, true, fmt.Errorf("%w: %s: user %q may not act as %q", ErrAuthFailed, c.mech, name, authz)
	}
	c.user = name
	c.s.m.successes.WithLabelValues(c.mech).Inc()
	return []byte(out), true, nil
}

func (c *scramSession) User() string { return c.user }

// scramName decodes a SCRAM saslname (RFC 5802 section 5.1: ',' is sent
// as "=2C" and '=' as "=3D"), which the library hands over as sent.
func scramName(s string) string {
	if !strings.Contains(s, "=") {
		return s
	}
	return strings.NewReplacer("=2C", ",", "=3D", "=").Replace(s)
}
