package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/logctx"
)

// syncBuf is a bytes.Buffer safe for the subscriber's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestLogLinesCarryEventIDs: while the subscriber handles an event, the
// lines its logger writes (through Logger(ctx), with the handler's
// context, and its own "handler failed" line) carry the event's id as
// request_id and its correlation_id; an event that starts a flow is its
// own correlation.
func TestLogLinesCarryEventIDs(t *testing.T) {
	b := heraldBackend(t)
	createTopics(t, b, 1, "logs")
	var buf syncBuf
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	var failed sync.Once
	handled := make(chan string, 4)
	sub, err := NewSubscriber(b.brokers, "logs-svc", []string{"logs"}, func(ctx context.Context, e *event.Event) error {
		Logger(ctx).Info("through Logger")
		logger.InfoContext(ctx, "with the context") // the caller's own logger: no ids (not wrapped)
		slog.New(logctx.NewHandler(logger.Handler())).InfoContext(ctx, "wrapped with the context")
		var err error
		failed.Do(func() { err = errors.New("first attempt fails") })
		if err == nil {
			handled <- e.ID
		}
		return err
	}, WithLogger(logger), WithFailurePause(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := startSub(t, sub)
	defer stop()

	pub, err := NewPublisher(b.brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	child := event.New("/test", "order.paid")
	child.ID, child.CorrelationID = "ev-2", "flow-1"
	root := event.New("/test", "order.placed")
	root.ID = "ev-1"
	if err := pub.Publish(ctx, "logs", root, child); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case <-handled:
		case <-ctx.Done():
			t.Fatal("the events were not handled")
		}
	}

	want := map[string]string{"ev-1": "ev-1", "ev-2": "flow-1"} // request_id -> correlation_id
	seen := map[string]int{}
	for _, l := range buf.lines() {
		msg, _ := l["msg"].(string)
		switch msg {
		case "through Logger", "wrapped with the context", "handler failed; the event will be redelivered":
		case "with the context":
			if l["request_id"] != nil {
				t.Errorf("an unwrapped logger got ids: %v", l)
			}
			continue
		default:
			continue
		}
		rid, _ := l["request_id"].(string)
		if corr, ok := want[rid]; !ok || l["correlation_id"] != corr {
			t.Errorf("line %q: request_id %v, correlation_id %v", msg, l["request_id"], l["correlation_id"])
		}
		seen[msg]++
	}
	if seen["through Logger"] < 2 || seen["wrapped with the context"] < 2 || seen["handler failed; the event will be redelivered"] != 1 {
		t.Fatalf("lines seen %v", seen)
	}
}
