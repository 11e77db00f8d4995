package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

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
		return &scramSession{s: s, mech: mech, h: scramMechs[mech]}, nil
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

// scramSession is the server side of RFC 5802: client-first,
// server-first, client-final, server-final. It is written here rather than
// taken from github.com/xdg-go/scram (which derives the credentials)
// because Kafka's clients need Kafka's leniency: librdkafka up to 2.x
// sends its own nonce again before the combined one in its final message
// ("r=" cnonce cnonce snonce), which Kafka brokers accept and a strict
// server refuses.
type scramSession struct {
	s    *Store
	mech string
	h    func() hash.Hash
	step int // 0: wants client-first; 1: wants client-final; 2: over

	gs2         string // the GS2 header as sent ("n,," or "y,,")
	cnonce      string
	nonce       string // cnonce + snonce
	bare        string // client-first-message-bare
	serverFirst string
	name        string
	cred        scram.StoredCredentials
	user        string
}

func (c *scramSession) Step(in []byte) ([]byte, bool, error) {
	if len(in) > MaxSASLBytes {
		return nil, true, c.fail("", "%s message of %d bytes: want at most %d", c.mech, len(in), MaxSASLBytes)
	}
	switch c.step {
	case 0:
		c.step = 1
		out, err := c.clientFirst(string(in))
		if err != nil {
			c.step = 2
			return nil, true, err
		}
		return []byte(out), false, nil
	case 1:
		c.step = 2
		out, err := c.clientFinal(string(in))
		return []byte(out), true, err
	}
	return nil, true, c.fail("", "%s: the exchange is over", c.mech)
}

// fail counts a failure and returns its error; with a user, the error
// says only that the user name or password was wrong.
func (c *scramSession) fail(user, format string, args ...any) error {
	c.s.m.failures.WithLabelValues(c.mech).Inc()
	if user != "" {
		return fmt.Errorf("%w: %s for user %q: wrong user name or password", ErrAuthFailed, c.mech, user)
	}
	return fmt.Errorf("%w: "+format, append([]any{ErrAuthFailed}, args...)...)
}

// clientFirst reads "gs2-header client-first-message-bare" and answers
// server-first-message.
func (c *scramSession) clientFirst(msg string) (string, error) {
	bad := func(what string) (string, error) {
		return "", c.fail("", "%s: malformed client-first message: %s", c.mech, what)
	}
	// gs2-header: cbind-flag "," [ "a=" authzid ] ","
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return bad("no GS2 header")
	}
	switch {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		return "", c.fail("", "%s: channel binding is not supported (use SCRAM without -PLUS)", c.mech)
	default:
		return bad("channel binding flag " + strconvQuote(flag))
	}
	authzAttr, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return bad("no GS2 header")
	}
	var authz string
	if authzAttr != "" {
		v, ok := strings.CutPrefix(authzAttr, "a=")
		if !ok {
			return bad("authorization identity " + strconvQuote(authzAttr))
		}
		if authz, ok = decodeSASLName(v); !ok {
			return bad("authorization identity " + strconvQuote(v))
		}
	}
	c.gs2 = msg[:len(msg)-len(bare)]
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return bad("want n=USER,r=NONCE")
	}
	name, ok := decodeSASLName(attrs[0][2:])
	if !ok || name == "" {
		return bad("user name " + strconvQuote(attrs[0][2:]))
	}
	c.cnonce = attrs[1][2:]
	if !validNonce(c.cnonce) {
		return bad("nonce")
	}
	for _, ext := range attrs[2:] {
		if ext == "tokenauth=true" {
			return "", c.fail("", "%s: delegation tokens are not supported", c.mech)
		}
	}
	if authz != "" && authz != name {
		// As Kafka does: a client may not ask to act as another user.
		return "", c.fail("", "%s: user %q may not act as %q", c.mech, name, authz)
	}
	c.name, c.bare = name, bare
	cred, err := c.s.Credential(c.mech, name)
	if err != nil {
		// NB: answer an unknown user as a known one (RFC 5802 section
		// 9): the exchange then fails at the proof, as a wrong password
		// does, and SCRAM cannot list the users.
		cred = c.s.decoy(c.mech, name)
	}
	c.cred = cred
	var sn [24]byte
	rand.Read(sn[:])
	c.nonce = c.cnonce + base64.StdEncoding.EncodeToString(sn[:])
	c.serverFirst = "r=" + c.nonce + ",s=" + base64.StdEncoding.EncodeToString([]byte(cred.Salt)) + ",i=" + strconv.Itoa(cred.Iters)
	return c.serverFirst, nil
}

// clientFinal checks "c=...,r=...,p=PROOF" and answers "v=SIGNATURE".
func (c *scramSession) clientFinal(msg string) (string, error) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return "e=invalid-encoding", c.fail("", "%s: malformed client-final message: no proof", c.mech)
	}
	withoutProof, proofB64 := msg[:i], msg[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return "e=invalid-encoding", c.fail("", "%s: malformed client-final message: want c=...,r=...,p=...", c.mech)
	}
	if cb, err := base64.StdEncoding.DecodeString(attrs[0][2:]); err != nil || string(cb) != c.gs2 {
		return "e=channel-bindings-dont-match", c.fail("", "%s: channel binding data does not match the GS2 header", c.mech)
	}
	if r := attrs[1][2:]; r != c.nonce && r != c.cnonce+c.nonce {
		return "e=other-error", c.fail("", "%s: the final message's nonce is not the one agreed", c.mech)
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	size := c.h().Size()
	if err != nil || len(proof) != size {
		return "e=invalid-encoding", c.fail("", "%s: malformed proof", c.mech)
	}
	authMsg := []byte(c.bare + "," + c.serverFirst + "," + withoutProof)
	sig := hmacSum(c.h, c.cred.StoredKey, authMsg)
	clientKey := make([]byte, size)
	for i := range clientKey {
		clientKey[i] = proof[i] ^ sig[i]
	}
	h := c.h()
	h.Write(clientKey)
	if subtle.ConstantTimeCompare(h.Sum(nil), c.cred.StoredKey) != 1 {
		return "e=invalid-proof", c.fail(c.name, "")
	}
	c.user = c.name
	c.s.m.successes.WithLabelValues(c.mech).Inc()
	return "v=" + base64.StdEncoding.EncodeToString(hmacSum(c.h, c.cred.ServerKey, authMsg)), nil
}

func (c *scramSession) User() string { return c.user }

func hmacSum(h func() hash.Hash, key, msg []byte) []byte {
	m := hmac.New(h, key)
	m.Write(msg)
	return m.Sum(nil)
}

// validNonce: printable ASCII but ',' (RFC 5802 section 7), not empty.
func validNonce(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] < 0x21 || n[i] > 0x7e || n[i] == ',' {
			return false
		}
	}
	return true
}

func strconvQuote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

// decodeSASLName decodes a SCRAM saslname (RFC 5802 section 5.1: ',' is
// sent as "=2C" and '=' as "=3D"; any other '=' is invalid).
func decodeSASLName(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, utf8.ValidString(s)
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), utf8.ValidString(b.String())
}
