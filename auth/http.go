package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/httpjson"
)

// BasicMechanism labels HTTP Basic authentications in the metrics.
const BasicMechanism = "http-basic"

// maxCached bounds the verified credentials an HTTPAuth remembers.
const maxCached = 4096

// HTTPAuth checks HTTP Basic credentials against a Store. A verified
// user and password is remembered (as a keyed hash) until the users file
// changes, so a client sending the same credentials with every request
// pays for one PBKDF2 derivation, not one per request.
type HTTPAuth struct {
	s     *Store
	realm string
	key   [32]byte
	// FailureDelay holds back the answer to wrong credentials, slowing
	// password guessing (as the Kafka listener does; default 100ms, <=0:
	// none). Set it before serving.
	FailureDelay time.Duration

	mu     sync.Mutex
	gen    uint64
	cached map[[32]byte]string
}

// NewHTTPAuth returns Basic authentication against s; realm is shown by
// browsers.
func NewHTTPAuth(s *Store, realm string) *HTTPAuth {
	a := &HTTPAuth{s: s, realm: realm, cached: map[[32]byte]string{}, FailureDelay: 100 * time.Millisecond}
	rand.Read(a.key[:])
	return a
}

// Check reports the user r authenticates as, if any.
func (a *HTTPAuth) Check(r *http.Request) (string, bool) {
	name, pass, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	mac := hmac.New(sha256.New, a.key[:])
	mac.Write([]byte(name))
	mac.Write([]byte{0})
	mac.Write([]byte(pass))
	var k [32]byte
	mac.Sum(k[:0])
	f, gen := a.s.current()
	a.mu.Lock()
	if a.gen != gen {
		clear(a.cached)
		a.gen = gen
	}
	u, hit := a.cached[k]
	a.mu.Unlock()
	if hit {
		return u, true
	}
	if !verify(f, name, pass) {
		a.s.m.failures.WithLabelValues(BasicMechanism).Inc()
		return "", false
	}
	a.s.m.successes.WithLabelValues(BasicMechanism).Inc()
	a.mu.Lock()
	if a.gen == gen {
		if len(a.cached) >= maxCached {
			clear(a.cached)
		}
		a.cached[k] = name
	}
	a.mu.Unlock()
	return name, true
}

type userKey struct{}

// User returns the user an authenticated request came from.
func User(ctx context.Context) (string, bool) {
	u, ok := ctx.Value(userKey{}).(string)
	return u, ok
}

// Wrap requires Basic credentials for every request except those public
// accepts (nil: none): others without valid ones get 401 with a
// WWW-Authenticate challenge, which makes browsers ask for them.
func (a *HTTPAuth) Wrap(next http.Handler, public func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public != nil && public(r) {
			next.ServeHTTP(w, r)
			return
		}
		u, ok := a.Check(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+a.realm+`", charset="UTF-8"`)
			msg := "authentication required: send HTTP Basic credentials of a user in the server's users file"
			if _, _, sent := r.BasicAuth(); sent {
				msg = "authentication failed: wrong user name or password"
				if a.FailureDelay > 0 {
					t := time.NewTimer(a.FailureDelay)
					select {
					case <-t.C:
					case <-r.Context().Done():
					}
					t.Stop()
				}
			}
			httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeUnauthenticated, "", "%s", msg))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	})
}
