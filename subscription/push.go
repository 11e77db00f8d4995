package subscription

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// signer computes Sign for one secret, reusing its HMAC state (one per
// push worker).
type signer struct {
	mac hash.Hash
	buf []byte
}

func newSigner(secret string) *signer {
	return &signer{mac: hmac.New(sha256.New, []byte(secret))}
}

func (sg *signer) sign(t time.Time, body []byte) string {
	sg.mac.Reset()
	b := strconv.AppendInt(append(sg.buf[:0], "t="...), t.Unix(), 10)
	sg.mac.Write(b[2:])
	sg.mac.Write([]byte{'.'})
	sg.mac.Write(body)
	b = append(b, ",v1="...)
	n := len(b)
	b = sg.mac.Sum(b)
	sum := b[n:]
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum)
	b = append(b[:n], hx[:]...)
	sg.buf = b
	return string(b)
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

// maxPushAhead bounds the messages a push subscription pulls beyond its
// concurrency limit, to overlap the journal writes with the requests.
const maxPushAhead = 1024

type pushResult struct {
	ackID  string
	ok     bool
	unsent bool // the subscription stopped before the request went out
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
	// Workers post the messages, each over its own connection; there are
	// never fewer than the messages in flight, so a send on work finds a
	// free one.
	work := make(chan Received)
	workers := 0
	var workerWG sync.WaitGroup
	startWorker := func() {
		workers++
		workerWG.Add(1)
		go func() {
			defer workerWG.Done()
			var conn *pushConn
			if s.m.rawPush {
				conn = newPushConn(s.ctx, pc.PushEndpoint)
			}
			defer conn.close()
			h := make(http.Header, 16)
			sg := newSigner(pc.SigningSecret)
			for r := range work {
				if s.ctx.Err() != nil {
					// Stopped between the hand-over and the post: the
					// message goes back with the ones pulled ahead.
					results <- pushResult{ackID: r.AckID, unsent: true}
					continue
				}
				clear(h)
				results <- pushResult{ackID: r.AckID, ok: s.post(pc, st.ackDeadline, r, h, sg, conn)}
			}
		}()
	}
	inflight := 0
	var ok, bad, unsent []string
	var held, answered, limit atomic.Int64 // pulled and not yet answered; answers; ctl.limit()
	limit.Store(int64(ctl.limit()))
	taken := make(chan struct{}, 1)
	handle := func(r pushResult) {
		inflight--
		held.Add(-1)
		answered.Add(1)
		select {
		case taken <- struct{}{}:
		default:
		}
		if r.unsent {
			unsent = append(unsent, r.ackID)
			return
		}
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
		limit.Store(int64(ctl.limit()))
		s.mu.Lock()
		s.mu.pushConc = ctl.limit()
		s.mu.Unlock()
	}
	// The feeder pulls ahead into ready, so that the journal write that
	// makes each pull's delivery attempts durable overlaps the requests in
	// flight instead of stalling them. It holds (pulled, not yet answered)
	// at most the concurrency limit plus twice what the endpoint answered
	// during its previous pull: as much as keeps the requests busy while
	// the next write is on its way, and nothing beyond the limit for an
	// endpoint that does not answer. It pulls when nothing is held or a
	// quarter of its budget is free (one journal write per batch).
	ready := make(chan Received, st.pushConc+maxPushAhead)
	feederDone := make(chan struct{})
	go func() {
		defer close(feederDone)
		ahead := 0
		for s.ctx.Err() == nil {
			h := int(held.Load())
			budget := int(limit.Load()) + ahead
			room := budget - h
			if room <= 0 || (h > 0 && room < max(1, budget/4)) {
				select {
				case <-taken:
				case <-s.ctx.Done():
				}
				continue
			}
			a0 := answered.Load()
			msgs, err := s.pull(s.ctx, room, 200*time.Millisecond)
			if err != nil {
				if s.ctx.Err() != nil {
					return
				}
				s.m.logger.Warn("push: pull failed", "subscription", s.name, "err", err)
				select {
				case <-time.After(time.Second):
				case <-s.ctx.Done():
				}
				continue
			}
			if len(msgs) > 0 {
				ahead = min(maxPushAhead, 2*int(answered.Load()-a0))
			}
			held.Add(int64(len(msgs)))
			for _, r := range msgs {
				ready <- r // only the feeder sends: there is room
			}
		}
	}()
	defer func() {
		for inflight > 0 {
			handle(<-results)
		}
		close(work)
		workerWG.Wait()
		flush()
		close(acks)
		<-ackerDone
		<-feederDone // it stops with s.ctx
		// What was pulled ahead and never posted goes back, its attempt
		// not counted: else a restart would hold it until its ack
		// deadline and count an attempt never made.
		ids := unsent
		for len(ready) > 0 {
			ids = append(ids, (<-ready).AckID)
		}
		if len(ids) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.release(ctx, ids); err != nil {
			s.m.logger.Warn("push: could not give back messages pulled ahead; they come again after their ack deadline",
				"subscription", s.name, "messages", len(ids), "err", err)
		}
	}()
	for s.ctx.Err() == nil {
		var next <-chan Received
		if inflight < ctl.limit() {
			next = ready
		}
		select {
		case r := <-results:
			handle(r)
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
		case r := <-next:
			inflight++
			if workers < inflight {
				startWorker()
			}
			work <- r
		case <-s.ctx.Done():
			return
		}
	}
}

// post sends one message with the headers in h (empty, reused), signed by
// sg; true means the endpoint acknowledged it (2xx in time). conn, if not
// nil, is the worker's connection to a plain-http endpoint.
func (s *sub) post(pc *PushConfig, timeout time.Duration, r Received, h http.Header, sg *signer, conn *pushConn) bool {
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
	h.Set(HeaderSignature, sg.sign(time.Now(), r.Message.Data))
	end := s.tracePush(h, attrs, r.Message.MessageID)
	if conn != nil {
		status, err := conn.post(time.Now().Add(timeout), h, r.Message.Data)
		end(status, err)
		return err == nil && status >= 200 && status < 300
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, pc.PushEndpoint, bytes.NewReader(r.Message.Data))
	if err != nil {
		end(0, err)
		return false
	}
	req.Header = h
	resp, err := s.m.cfg.HTTPClient.Do(req)
	if err != nil {
		end(0, err)
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, pushDrainLimit))
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
