package kafka

import (
	"encoding/binary"
	"errors"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/auth"
)

// SASL on a listener (Config.Auth): a connection may send ApiVersions,
// SaslHandshake and SaslAuthenticate until it has authenticated; any other
// request closes it, as Kafka brokers do. SaslHandshake v1 is followed by
// SaslAuthenticate requests; v0 by the SASL tokens in bare size-prefixed
// frames (KIP-43), which old clients still send. A failed authentication
// is answered (SASL_AUTHENTICATION_FAILED with the reason) and the
// connection closed. Sessions do not expire (session lifetime 0), so
// clients never re-authenticate.

// saslState is one connection's authentication progress.
type saslState struct {
	authed  bool         // authenticated, or the listener needs no SASL
	user    string       // who, once authed
	mech    string       // chosen by SaslHandshake
	session auth.Session // started by SaslHandshake
	// raw: SaslHandshake v0 chose a mechanism, so the next frames are bare
	// SASL tokens, not requests.
	raw bool
	// closing: the reply just queued is the connection's last.
	closing bool
}

// saslKey reports whether key is SaslHandshake or SaslAuthenticate.
func saslKey(key int16) bool {
	return key == kmsg.SASLHandshake.Int16() || key == kmsg.SASLAuthenticate.Int16()
}

// allowedUnauthenticated reports whether a connection that has not
// authenticated may send key.
func allowedUnauthenticated(key int16) bool {
	return key == kmsg.ApiVersions.Int16() || saslKey(key)
}

func (c *conn) saslHandshake(req *request, r *kmsg.SASLHandshakeRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = slices.Clone(c.s.cfg.SASLMechanisms)
	if c.sasl.authed || c.sasl.session != nil {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp, nil
	}
	if !slices.Contains(c.s.cfg.SASLMechanisms, r.Mechanism) {
		c.logger.Info("kafka: SASL mechanism not enabled", "mechanism", r.Mechanism, "enabled", c.s.cfg.SASLMechanisms)
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return resp, nil
	}
	sess, err := c.s.cfg.Auth.Start(r.Mechanism)
	if err != nil {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return resp, nil
	}
	c.sasl.mech, c.sasl.session = r.Mechanism, sess
	c.sasl.raw = req.version == 0
	return resp, nil
}

func (c *conn) saslAuthenticate(req *request, r *kmsg.SASLAuthenticateRequest) (kmsg.Response, error) {
	resp := r.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	if c.sasl.authed || c.sasl.session == nil || c.sasl.raw {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		msg := "SaslAuthenticate must follow a SaslHandshake v1 on a connection that has not authenticated"
		resp.ErrorMessage = &msg
		c.sasl.closing = true
		return resp, nil
	}
	out, done, err := c.sasl.session.Step(r.SASLAuthBytes)
	resp.SASLAuthBytes = out
	if err != nil {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := err.Error()
		resp.ErrorMessage = &msg
		c.authFailed(err)
		if d := c.s.cfg.FailedAuthDelay; d > 0 {
			// The connection's last answer, sent after the delay.
			req.later = func() kmsg.Response {
				c.failDelay(d)
				return resp
			}
			return nil, nil
		}
		return resp, nil
	}
	if done {
		c.authenticated()
	}
	return resp, nil
}

// rawSASL handles a bare SASL token after a SaslHandshake v0, filling r
// with the bare answer. It returns false if the connection must close at
// once.
func (c *conn) rawSASL(body []byte, r *reply) bool {
	out, done, err := c.sasl.session.Step(body)
	if err != nil {
		c.authFailed(err)
		// NB: v0 has no way to say why: Kafka closes the connection,
		// and so do we, without an answer, after the delay.
		c.failDelay(c.s.cfg.FailedAuthDelay)
		return false
	}
	buf := make([]byte, 4+len(out))
	binary.BigEndian.PutUint32(buf, uint32(len(out)))
	copy(buf[4:], out)
	r.buf = buf
	close(r.done)
	if done {
		c.authenticated()
	}
	return true
}

func (c *conn) authenticated() {
	c.sasl.authed, c.sasl.raw, c.sasl.user = true, false, c.sasl.session.User()
	c.sasl.session = nil
	// NB: c.logger stays as it is: the writer goroutine reads it.
	c.logger.Debug("kafka: authenticated", "user", c.sasl.user, "mechanism", c.sasl.mech)
}

// failDelay waits out FailedAuthDelay, or until the server closes.
func (c *conn) failDelay(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.ctx.Done():
	}
}

func (c *conn) authFailed(err error) {
	c.sasl.closing = true
	c.sasl.session = nil
	c.s.m.errors.WithLabelValues("authentication").Inc()
	if errors.Is(err, auth.ErrAuthFailed) {
		c.logger.Info("kafka: authentication failed; closing connection", "mechanism", c.sasl.mech, "err", err)
		return
	}
	c.logger.Warn("kafka: authentication error; closing connection", "mechanism", c.sasl.mech, "err", err)
}
