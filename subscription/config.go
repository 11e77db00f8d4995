package subscription

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/httpjson"
)

// Limits and defaults of a subscription, Pub/Sub's.
const (
	MinAckDeadline            = 10 * time.Second
	MaxAckDeadline            = 600 * time.Second
	DefaultAckDeadline        = 10 * time.Second
	MinDeliveryAttempts       = 5
	MaxDeliveryAttempts       = 100
	DefaultDeliveryAttempts   = 5
	DefaultMinimumBackoff     = 10 * time.Second
	DefaultMaximumBackoff     = 600 * time.Second
	MaxBackoff                = 600 * time.Second
	MinRetention              = 10 * time.Minute
	MaxRetention              = 31 * 24 * time.Hour
	DefaultRetention          = 7 * 24 * time.Hour
	DefaultPushConcurrency    = 64
	MaxPushConcurrency        = 1000
	maxNameLen                = 249
	pushDefaultMinimumBackoff = 100 * time.Millisecond
	pushDefaultMaximumBackoff = 60 * time.Second
)

// Subscription is a subscription resource, in Pub/Sub's REST shape.
// Durations are strings in the protobuf JSON form ("10s", "0.5s"); Go
// durations ("1m30s") are accepted too.
type Subscription struct {
	Name                      string            `json:"name,omitempty"`
	Topic                     string            `json:"topic"`
	Filter                    string            `json:"filter,omitempty"`
	AckDeadlineSeconds        int               `json:"ackDeadlineSeconds,omitempty"`
	RetryPolicy               *RetryPolicy      `json:"retryPolicy,omitempty"`
	DeadLetterPolicy          *DeadLetterPolicy `json:"deadLetterPolicy,omitempty"`
	EnableMessageOrdering     bool              `json:"enableMessageOrdering,omitempty"`
	EnableExactlyOnceDelivery bool              `json:"enableExactlyOnceDelivery,omitempty"`
	PushConfig                *PushConfig       `json:"pushConfig,omitempty"`
	MessageRetentionDuration  string            `json:"messageRetentionDuration,omitempty"`
	// Stats is filled in by describe (GET) only, and ignored on create.
	Stats *Stats `json:"stats,omitempty"`
}

// RetryPolicy is how long a nacked or expired message waits before it is
// redelivered: MinimumBackoff doubled per failed attempt, up to
// MaximumBackoff. Without a policy a pull subscription redelivers at once
// and a push subscription backs off from 100ms to 60s.
type RetryPolicy struct {
	MinimumBackoff string `json:"minimumBackoff,omitempty"`
	MaximumBackoff string `json:"maximumBackoff,omitempty"`
}

// DeadLetterPolicy moves a message to DeadLetterTopic once it was
// delivered MaxDeliveryAttempts times without an ack.
type DeadLetterPolicy struct {
	DeadLetterTopic     string `json:"deadLetterTopic"`
	MaxDeliveryAttempts int    `json:"maxDeliveryAttempts,omitempty"`
}

// PushConfig makes a push subscription: Herald POSTs each message to
// PushEndpoint in CloudEvents binary mode.
type PushConfig struct {
	PushEndpoint string `json:"pushEndpoint"`
	// Attributes are sent as extra request headers.
	Attributes map[string]string `json:"attributes,omitempty"`
	// SigningSecret keys the Herald-Signature header (HMAC-SHA256). When
	// empty on create, Herald generates one and returns it in the create
	// response only; describe never shows it.
	SigningSecret string `json:"signingSecret,omitempty"`
	// MaxOutstandingMessages bounds concurrent requests (default 64).
	MaxOutstandingMessages int `json:"maxOutstandingMessages,omitempty"`
}

// Stats describe a subscription's progress.
type Stats struct {
	Backlog              int64   `json:"backlogMessages"`
	Outstanding          int64   `json:"outstandingMessages"`
	OldestUnackedAgeSecs float64 `json:"oldestUnackedMessageAgeSeconds"`
	Delivered            int64   `json:"deliveredMessages"`
	Acked                int64   `json:"ackedMessages"`
	Redeliveries         int64   `json:"redeliveries"`
	DeadLettered         int64   `json:"deadLetteredMessages"`
	Filtered             int64   `json:"filteredMessages"`
	PushConcurrency      int     `json:"pushConcurrency,omitempty"`
}

// settings are a validated subscription, in the types the runtime uses.
type settings struct {
	def         Subscription
	filter      *Filter
	ackDeadline time.Duration
	minBackoff  time.Duration
	maxBackoff  time.Duration
	hasRetry    bool
	maxAttempts int // 0: no dead-letter policy
	retention   time.Duration
	pushConc    int
}

func validName(field, name string) error {
	if name == "" {
		return httpjson.Invalid(field, "a name is required")
	}
	if len(name) > maxNameLen {
		return httpjson.Invalid(field, "%d characters, longer than the limit of %d", len(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '.' || c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return httpjson.Invalid(field, "character %q at position %d: names use letters, digits, '.', '_' and '-'", c, i)
		}
	}
	return nil
}

// parseDuration reads a protobuf JSON duration ("3.5s") or a Go duration.
func parseDuration(field, s string) (time.Duration, error) {
	if strings.HasSuffix(s, "s") {
		if f, err := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64); err == nil && f >= 0 && f < 1e9 {
			return time.Duration(f * float64(time.Second)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, httpjson.Invalid(field, "%q is not a duration; want seconds like \"10s\" or \"0.5s\"", s)
	}
	return d, nil
}

func fmtDuration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// validate checks sub (named name) and returns its settings, with defaults
// written back into the definition. The first error is returned, an
// *httpjson.Error naming the field.
func validate(name string, sub Subscription) (*settings, error) {
	if err := validName("name", name); err != nil {
		return nil, err
	}
	if sub.Name != "" && sub.Name != name {
		return nil, httpjson.Invalid("name", "%q differs from the name in the path, %q", sub.Name, name)
	}
	sub.Name = name
	sub.Stats = nil
	if err := validName("topic", sub.Topic); err != nil {
		return nil, err
	}
	st := &settings{}
	f, err := ParseFilter(sub.Filter)
	if err != nil {
		var fe *FilterError
		if errors.As(err, &fe) {
			return nil, httpjson.Invalid("filter", "at position %d: %s", fe.Pos, fe.Reason)
		}
		return nil, httpjson.Invalid("filter", "%v", err)
	}
	st.filter = f
	if sub.AckDeadlineSeconds == 0 {
		sub.AckDeadlineSeconds = int(DefaultAckDeadline / time.Second)
	}
	if d := time.Duration(sub.AckDeadlineSeconds) * time.Second; d < MinAckDeadline || d > MaxAckDeadline {
		return nil, httpjson.Invalid("ackDeadlineSeconds", "%d is out of range: want %d to %d seconds",
			sub.AckDeadlineSeconds, int(MinAckDeadline/time.Second), int(MaxAckDeadline/time.Second))
	}
	st.ackDeadline = time.Duration(sub.AckDeadlineSeconds) * time.Second
	if rp := sub.RetryPolicy; rp != nil {
		st.hasRetry = true
		st.minBackoff, st.maxBackoff = DefaultMinimumBackoff, DefaultMaximumBackoff
		if rp.MinimumBackoff != "" {
			if st.minBackoff, err = parseDuration("retryPolicy.minimumBackoff", rp.MinimumBackoff); err != nil {
				return nil, err
			}
		}
		if rp.MaximumBackoff != "" {
			if st.maxBackoff, err = parseDuration("retryPolicy.maximumBackoff", rp.MaximumBackoff); err != nil {
				return nil, err
			}
		}
		if st.minBackoff > MaxBackoff {
			return nil, httpjson.Invalid("retryPolicy.minimumBackoff", "%v is longer than the limit of %v", st.minBackoff, MaxBackoff)
		}
		if st.maxBackoff > MaxBackoff {
			return nil, httpjson.Invalid("retryPolicy.maximumBackoff", "%v is longer than the limit of %v", st.maxBackoff, MaxBackoff)
		}
		if st.maxBackoff < st.minBackoff {
			return nil, httpjson.Invalid("retryPolicy.maximumBackoff", "%v is shorter than minimumBackoff %v", st.maxBackoff, st.minBackoff)
		}
		sub.RetryPolicy = &RetryPolicy{MinimumBackoff: fmtDuration(st.minBackoff), MaximumBackoff: fmtDuration(st.maxBackoff)}
	}
	if dl := sub.DeadLetterPolicy; dl != nil {
		if err := validName("deadLetterPolicy.deadLetterTopic", dl.DeadLetterTopic); err != nil {
			return nil, err
		}
		if dl.DeadLetterTopic == sub.Topic {
			return nil, httpjson.Invalid("deadLetterPolicy.deadLetterTopic", "is the subscription's own topic")
		}
		if dl.MaxDeliveryAttempts == 0 {
			dl.MaxDeliveryAttempts = DefaultDeliveryAttempts
		}
		if dl.MaxDeliveryAttempts < MinDeliveryAttempts || dl.MaxDeliveryAttempts > MaxDeliveryAttempts {
			return nil, httpjson.Invalid("deadLetterPolicy.maxDeliveryAttempts", "%d is out of range: want %d to %d",
				dl.MaxDeliveryAttempts, MinDeliveryAttempts, MaxDeliveryAttempts)
		}
		c := *dl
		sub.DeadLetterPolicy = &c
		st.maxAttempts = dl.MaxDeliveryAttempts
	}
	st.retention = DefaultRetention
	if sub.MessageRetentionDuration != "" {
		if st.retention, err = parseDuration("messageRetentionDuration", sub.MessageRetentionDuration); err != nil {
			return nil, err
		}
		if st.retention < MinRetention || st.retention > MaxRetention {
			return nil, httpjson.Invalid("messageRetentionDuration", "%v is out of range: want %v to %v", st.retention, MinRetention, MaxRetention)
		}
	}
	sub.MessageRetentionDuration = fmtDuration(st.retention)
	if pc := sub.PushConfig; pc != nil {
		u, err := url.Parse(pc.PushEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, httpjson.Invalid("pushConfig.pushEndpoint", "%q is not an http or https URL", pc.PushEndpoint)
		}
		if pc.MaxOutstandingMessages == 0 {
			pc.MaxOutstandingMessages = DefaultPushConcurrency
		}
		if pc.MaxOutstandingMessages < 1 || pc.MaxOutstandingMessages > MaxPushConcurrency {
			return nil, httpjson.Invalid("pushConfig.maxOutstandingMessages", "%d is out of range: want 1 to %d", pc.MaxOutstandingMessages, MaxPushConcurrency)
		}
		c := *pc
		if c.SigningSecret == "" {
			var b [32]byte
			rand.Read(b[:])
			c.SigningSecret = hex.EncodeToString(b[:])
		}
		sub.PushConfig = &c
		st.pushConc = c.MaxOutstandingMessages
		if !st.hasRetry {
			st.minBackoff, st.maxBackoff = pushDefaultMinimumBackoff, pushDefaultMaximumBackoff
		}
	}
	st.def = sub
	return st, nil
}

// backoff is how long a message waits after its attempt-th delivery failed.
func (st *settings) backoff(attempt int) time.Duration {
	if st.minBackoff == 0 && st.maxBackoff == 0 {
		return 0
	}
	d := st.minBackoff
	for i := 1; i < attempt && d < st.maxBackoff; i++ {
		d *= 2
	}
	return min(d, st.maxBackoff)
}

// public returns the definition as describe shows it: without the secret.
func (st *settings) public() Subscription {
	s := st.def
	if s.PushConfig != nil {
		c := *s.PushConfig
		c.SigningSecret = ""
		s.PushConfig = &c
	}
	if s.DeadLetterPolicy != nil {
		c := *s.DeadLetterPolicy
		s.DeadLetterPolicy = &c
	}
	return s
}

func errNotFound(name string) error {
	return httpjson.Errorf(httpjson.CodeNotFound, "", "subscription %q not found", name)
}
