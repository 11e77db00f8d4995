package subscription

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Push request headers besides the CloudEvents ce-* ones. Frozen: receivers
// depend on them (docs/subscriptions.md).
const (
	HeaderSignature       = "Herald-Signature"
	HeaderDeliveryAttempt = "Herald-Delivery-Attempt"
	HeaderSubscription    = "Herald-Subscription"
	HeaderMessageID       = "Herald-Message-Id"
)

// Sign returns the Herald-Signature header value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<unix seconds>.<body>" keyed by
// secret>". Receivers recompute it and compare in constant time, and
// refuse timestamps too far from their clock (replays).
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a Herald-Signature header against body: the signature must
// match and its time be within tolerance of now.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) bool {
	var ts, sig string
	for _, f := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return false
	}
	t := time.Unix(sec, 0)
	if d := now.Sub(t); d > tolerance || d < -tolerance {
		return false
	}
	want := Sign(secret, t, body)
	return hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig))
}

// pctEncode percent-encodes a CloudEvents HTTP header value (the HTTP
// binding: space, '"', '%' and everything outside printable ASCII).
func pctEncode(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// aimd adapts a push subscription's concurrency to its endpoint: slow
// start doubles it per round of successes up to the threshold, then it
// grows by one per window of successes; a failure halves it (at most once
// per 100ms, so one burst of failures counts once).
type aimd struct {
	cwnd, ssthresh, max float64
	lastCut             time.Time
}

func newAIMD(max int) *aimd {
	return &aimd{cwnd: min(4, float64(max)), ssthresh: float64(max), max: float64(max)}
}

func (a *aimd) success() {
	if a.cwnd < a.ssthresh {
		a.cwnd++
	} else {
		a.cwnd += 1 / a.cwnd
	}
	a.cwnd = min(a.cwnd, a.max)
}

func (a *aimd) failure(now time.Time) {
	if now.Sub(a.lastCut) < 100*time.Millisecond {
		return
	}
	a.lastCut = now
	a.ssthresh = max(a.cwnd/2, 1)
	a.cwnd = a.ssthresh
}

func (a *aimd) limit() int { return max(1, int(a.cwnd)) }

type pushResult struct {
	ackID string
	ok    bool
}

// push delivers the subscription's messages to its endpoint until the
// subscription stops. Each subscription has its own loop, requests and
// limits, so a slow or hanging endpoint holds up only its own messages.
func (s *sub) push() {
	defer s.wg.Done()
	s.mu.Lock()
	st := s.mu.st
	s.mu.Unlock()
	pc := st.def.PushConfig
	ctl := newAIMD(st.pushConc)
	results := make(chan pushResult, st.pushConc)
	acks := make(chan [2][]string, 64)
	ackerDone := make(chan struct{})
	go func() { // acks and nacks in batches, off the delivery loop
		defer close(ackerDone)
		for b := range acks {
			// Merge whatever else is queued: one durable write per round,
			// however fast the answers come.
			ok, bad := b[0], b[1]
		merge:
			for {
				select {
				case more, open := <-acks:
					if !open {
						break merge
					}
					ok, bad = append(ok, more[0]...), append(bad, more[1]...)
				default:
					break merge
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if len(ok) > 0 {
				s.acknowledge(ctx, ok)
			}
			if len(bad) > 0 {
				s.modifyAckDeadline(ctx, bad, 0)
			}
			cancel()
		}
	}()
	inflight := 0
	var ok, bad []string
	handle := func(r pushResult) {
		inflight--
		if r.ok {
			ctl.success()
			ok = append(ok, r.ackID)
		} else {
			ctl.failure(time.Now())
			bad = append(bad, r.ackID)
		}
	}
	flush := func() {
		if len(ok)+len(bad) > 0 {
			acks <- [2][]string{ok, bad}
			ok, bad = nil, nil
		}
		s.mu.Lock()
		s.mu.pushConc = ctl.limit()
		s.mu.Unlock()
	}
	defer func() {
		for inflight > 0 {
			handle(<-results)
		}
		flush()
		close(acks)
		<-ackerDone
	}()
	for s.ctx.Err() == nil {
		if inflight >= ctl.limit() {
			select {
			case r := <-results:
				handle(r)
			case <-s.ctx.Done():
				return
			}
			// Gather a few more answers so that one pull fills many slots.
			t := time.NewTimer(2 * time.Millisecond)
		gather:
			for inflight > ctl.limit()*3/4 {
				select {
				case r := <-results:
					handle(r)
				case <-t.C:
					break gather
				case <-s.ctx.Done():
					t.Stop()
					return
				}
			}
			t.Stop()
		}
	drain:
		for {
			select {
			case r := <-results:
				handle(r)
			default:
				break drain
			}
		}
		flush()
		msgs, err := s.pull(s.ctx, ctl.limit()-inflight, 200*time.Millisecond)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.m.logger.Warn("push: pull failed", "subscription", s.name, "err", err)
			select {
			case <-time.After(time.Second):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		for _, r := range msgs {
			inflight++
			go func() { results <- pushResult{r.AckID, s.post(pc, st.ackDeadline, r)} }()
		}
	}
}

// post sends one message; true means the endpoint acknowledged it (2xx in
// time).
func (s *sub) post(pc *PushConfig, timeout time.Duration, r Received) bool {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, pc.PushEndpoint, bytes.NewReader(r.Message.Data))
	if err != nil {
		return false
	}
	h := req.Header
	attrs := r.Message.Attributes
	if _, ok := attrs["specversion"]; ok {
		for k, v := range attrs {
			if k == "datacontenttype" {
				h.Set("Content-Type", v)
				continue
			}
			h.Set("ce-"+k, pctEncode(v))
		}
	} else {
		// A plain record: a CloudEvent made from its position, with its
		// headers as extensions where their names allow.
		s.mu.Lock()
		topic := s.mu.st.def.Topic
		s.mu.Unlock()
		h.Set("ce-specversion", "1.0")
		h.Set("ce-id", r.Message.MessageID)
		h.Set("ce-source", "/herald/topics/"+url.PathEscape(topic))
		h.Set("ce-type", "herald.record")
		h.Set("ce-time", r.Message.PublishTime.Format(time.RFC3339Nano))
		for k, v := range attrs {
			if validExt(k) {
				h.Set("ce-"+k, pctEncode(v))
			}
		}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/octet-stream")
	}
	if r.Message.OrderingKey != "" {
		h.Set("ce-partitionkey", pctEncode(r.Message.OrderingKey))
	}
	for k, v := range pc.Attributes {
		h.Set(k, v)
	}
	h.Set(HeaderDeliveryAttempt, strconv.Itoa(r.DeliveryAttempt))
	h.Set(HeaderSubscription, s.name)
	h.Set(HeaderMessageID, r.Message.MessageID)
	h.Set(HeaderSignature, Sign(pc.SigningSecret, time.Now(), r.Message.Data))
	end := s.tracePush(h, attrs, r.Message.MessageID)
	resp, err := s.m.cfg.HTTPClient.Do(req)
	if err != nil {
		end(0, err)
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	end(resp.StatusCode, nil)
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

func validExt(k string) bool {
	if len(k) == 0 || len(k) > 20 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
