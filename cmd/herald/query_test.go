package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/server"
	"github.com/heraldhq/herald/stream/sql"
)

func TestQueryCommands(t *testing.T) {
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: t.TempDir()},
		Groups: groups.Config{MinSessionTimeout: 100 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	reg, err := sql.NewRegistry(ctx, sql.RegistryConfig{Brokers: []string{srv.KafkaAddr()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	mux := http.NewServeMux()
	sql.Routes(mux, reg)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(srv.KafkaAddr()))
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	api := "--http=" + hs.URL
	q := "CREATE TABLE per_user AS SELECT data.user, COUNT(*) AS n FROM orders\nWINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY data.user"
	if r := runRule(t, "query", "run", q, api); r.code != 2 || !strings.Contains(r.stderr, "line 2, column 1: the window has no GRACE") {
		t.Fatalf("run without grace: exit %d, stderr %q", r.code, r.stderr)
	}
	q = strings.Replace(q, "1 MINUTE)", "1 MINUTE, GRACE 10 SECONDS)", 1)
	if r := runRule(t, "query", "run", strings.Replace(q, "FROM orders", "FROM nothing", 1), api); r.code != 2 || !strings.Contains(r.stderr, `unknown topic "nothing"`) {
		t.Fatalf("run on an unknown topic: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runRule(t, "query", "run", q, api); r.code != 0 || !strings.Contains(r.stdout, `query "per_user" running: orders -> topic "per_user"`) {
		t.Fatalf("run: exit %d, stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runRule(t, "query", "run", q, api); r.code != 4 {
		t.Fatalf("run twice: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runRule(t, "query", "pull", "SELECT * FROM per_user WHERE n > 0", api, "-o", "json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("pull: exit %d, stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runRule(t, "query", "pull", "SELECT * FROM", api); r.code != 2 || !strings.Contains(r.stderr, "line 1, column 14: expected a table name") {
		t.Fatalf("pull parse error: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runRule(t, "query", "list", api); r.code != 0 || !strings.Contains(r.stdout, "per_user") || !strings.Contains(r.stdout, "running") {
		t.Fatalf("list: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := runRule(t, "query", "describe", "per_user", api, "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"input": "orders"`) {
		t.Fatalf("describe: exit %d, stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runRule(t, "query", "describe", "nope", api); r.code != 3 {
		t.Fatalf("describe unknown: exit %d", r.code)
	}
	if r := runRule(t, "query", "drop", "per_user", "nope", api); r.code != 3 || !strings.Contains(r.stdout, `query "per_user" dropped`) {
		t.Fatalf("drop: exit %d, stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runRule(t, "query", "drop", "--if-exists", "per_user", api); r.code != 0 {
		t.Fatalf("drop --if-exists: exit %d", r.code)
	}
}
