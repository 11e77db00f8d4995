package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/server"
)

// startEventTestServer is a server with the HTTP API, as herald serve
// mounts it; it returns the API's URL and the Kafka address.
func startEventTestServer(t *testing.T) (httpURL, kafkaAddr string) {
	t.Helper()
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: t.TempDir()}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Config{Broker: srv.Broker, Groups: srv.Groups, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api)
	t.Cleanup(func() {
		hs.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
	})
	if err := srv.Broker.CreateTopic(context.Background(), "ev", 2, nil); err != nil {
		t.Fatal(err)
	}
	return hs.URL, srv.KafkaAddr()
}

func TestEventPublishRead(t *testing.T) {
	url, kafkaAddr := startEventTestServer(t)
	var s cliServer // no Kafka flags: the event commands use --http
	h := []string{"--http", url}

	out := s.ok(t, "", append([]string{"event", "publish", "ev", "--source", "/shop", "--type", "order.placed", "--id", "o-1",
		"--key", "cust-7", "--data", `{"total":12}`, "--attr", "tenant=acme"}, h...)...)
	if !strings.HasPrefix(out, "ev/") || !strings.Contains(out, "  o-1\n") {
		t.Errorf("publish: %q", out)
	}
	// A repeat is reported as a duplicate and not stored.
	r := s.run(t, "", append([]string{"event", "publish", "ev", "--source", "/shop", "--type", "order.placed", "--id", "o-1", "--key", "cust-7"}, h...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "duplicate") || !strings.Contains(r.stderr, "published 0 event(s) to ev (1 duplicate(s)") {
		t.Errorf("repeat: %+v", r)
	}
	batch := `{"specversion":"1.0","source":"/b","type":"t","datacontenttype":"text/plain","data":"one"}

{"specversion":"1.0","id":"b2","source":"/b","type":"t","partitionkey":"cust-7"}
`
	var pub struct{ Results []struct{ ID string } }
	if err := json.Unmarshal([]byte(s.ok(t, batch, append([]string{"event", "publish", "ev", "--batch", "-o", "json"}, h...)...)), &pub); err != nil || len(pub.Results) != 2 || pub.Results[1].ID != "b2" {
		t.Errorf("batch publish: %+v %v", pub, err)
	}
	// A plain Kafka record reads back in the raw form.
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.DefaultProduceTopic("ev"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Partition: 1, Value: []byte("plain")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	out = s.ok(t, "", append([]string{"event", "read", "ev"}, h...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(out, `"id":"o-1"`) || !strings.Contains(out, `"tenant":"acme"`) || !strings.Contains(out, `"data":"one"`) ||
		!strings.Contains(out, `{"record":{"value":"plain"}}`) {
		t.Errorf("read:\n%s", out)
	}
	out = s.ok(t, "", append([]string{"event", "read", "ev", "-n", "1", "-o", "json"}, h...)...)
	var first struct {
		Partition int32
		Offset    int64
		Event     map[string]any
	}
	if err := json.Unmarshal([]byte(out), &first); err != nil || strings.Count(out, "\n") != 1 || first.Event == nil {
		t.Errorf("-n 1 -o json: %q %v", out, err)
	}
	if out := s.ok(t, "", append([]string{"event", "read", "ev", "--from", "latest"}, h...)...); out != "" {
		t.Errorf("--from latest: %q", out)
	}

	// Errors: the attribute named, the exit code of its kind.
	s.fails(t, exitUsage, "standard input line 2: source: required", "{\"specversion\":\"1.0\",\"source\":\"s\",\"type\":\"t\"}\n{\"specversion\":\"1.0\",\"type\":\"t\"}\n",
		append([]string{"event", "publish", "ev", "--batch"}, h...)...)
	s.fails(t, exitUsage, "time:", "", append([]string{"event", "publish", "ev", "--source", "s", "--type", "t", "--attr", "time=noon"}, h...)...)
	s.fails(t, exitUsage, "give --source and --type", "", append([]string{"event", "publish", "ev"}, h...)...)
	s.fails(t, exitUsage, "--data \"{\": not a JSON value", "", append([]string{"event", "publish", "ev", "--source", "s", "--type", "t", "--data", "{"}, h...)...)
	s.fails(t, exitNotFound, `topic "nope" not found`, "", append([]string{"event", "publish", "nope", "--source", "s", "--type", "t"}, h...)...)
	s.fails(t, exitNotFound, `topic "nope" not found`, "", append([]string{"event", "read", "nope"}, h...)...)
	s.fails(t, exitUsage, "an offset needs --partition", "", append([]string{"event", "read", "ev", "--from", "3"}, h...)...)
	s.fails(t, exitUsage, "--http \"nowhere\"", "", "event", "read", "ev", "--http", "nowhere")
	s.fails(t, exitFailure, "cannot reach", "", "event", "read", "ev", "--http", "http://"+freeAddr(t))
}
