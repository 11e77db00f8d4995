// Package pgtest opens PostgreSQL event stores for tests, each in a schema
// of its own. The server is found through HERALD_TEST_POSTGRES_DSN
// (scripts/postgres-test-cluster.sh starts one; test.sh exports it); a test
// that needs it fails, never skips, when it is missing.
package pgtest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore/pgstore"
)

// DSNEnv names the environment variable holding the test DSN.
const DSNEnv = "HERALD_TEST_POSTGRES_DSN"

var seq atomic.Int64

// DSN returns the test DSN or fails t.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		t.Fatalf("%s is not set: start PostgreSQL with scripts/postgres-test-cluster.sh (test.sh does)", DSNEnv)
	}
	return dsn
}

// Schema returns a schema name no other test uses.
func Schema() string {
	return fmt.Sprintf("es_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, seq.Add(1))
}

// Open opens a store in schema (a fresh one if empty), closed by t.Cleanup.
func Open(t testing.TB, schema string) *pgstore.Store {
	t.Helper()
	if schema == "" {
		schema = Schema()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := pgstore.Open(ctx, pgstore.Config{DSN: DSN(t), Schema: schema, PollInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
