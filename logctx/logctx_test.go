package logctx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func jsonLines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestHandlerAddsIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil)))
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	ctx := With(context.Background(), "req-1", "flow-9")
	traced := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))

	log.InfoContext(ctx, "one")
	log.InfoContext(traced, "two")
	log.Info("three")                                               // no context: nothing to add
	log.InfoContext(ctx, "four", KeyRequestID, "own")               // the record's own id wins
	log.With(Attrs(ctx)...).InfoContext(ctx, "five")                // bound, not repeated
	log.WithGroup("g").InfoContext(With(ctx, "", "flow-10"), "six") // in the group; the correlation replaced
	log.InfoContext(With(ctx, "req-2", ""), "seven")                // the correlation kept

	lines := jsonLines(t, &buf)
	want := []map[string]any{
		{KeyRequestID: "req-1", KeyCorrelationID: "flow-9"},
		{KeyRequestID: "req-1", KeyCorrelationID: "flow-9", KeyTraceID: tid.String(), KeySpanID: sid.String()},
		{},
		{KeyRequestID: "own", KeyCorrelationID: "flow-9"},
		{KeyRequestID: "req-1", KeyCorrelationID: "flow-9"},
		{"g": map[string]any{KeyRequestID: "req-1", KeyCorrelationID: "flow-10"}},
		{KeyRequestID: "req-2", KeyCorrelationID: "flow-9"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	for i, w := range want {
		got := map[string]any{}
		for k, v := range lines[i] {
			if k != "time" && k != "level" && k != "msg" {
				got[k] = v
			}
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(w)
		if string(gj) != string(wj) {
			t.Errorf("line %d (%s): %s, want %s", i, lines[i]["msg"], gj, wj)
		}
	}
	if RequestID(ctx) != "req-1" || CorrelationID(ctx) != "flow-9" || RequestID(context.Background()) != "" {
		t.Errorf("accessors: %q %q", RequestID(ctx), CorrelationID(ctx))
	}
	if h := NewHandler(slog.NewTextHandler(&buf, nil)); NewHandler(h) != h {
		t.Errorf("NewHandler wrapped a Handler again")
	}
}

func BenchmarkHandle(b *testing.B) {
	log := slog.New(NewHandler(slog.NewJSONHandler(discard{}, nil)))
	ctx := With(context.Background(), "req-1", "flow-9")
	for b.Loop() {
		log.InfoContext(ctx, "event handled", "n", 1)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
