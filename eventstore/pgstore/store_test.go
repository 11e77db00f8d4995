package pgstore

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/storetest"
)

// DSNEnv names the PostgreSQL the tests use; scripts/postgres-test-cluster.sh
// starts one and test.sh exports it. Tests fail without it.
const DSNEnv = "HERALD_TEST_POSTGRES_DSN"

var schemaSeq atomic.Int64

// testDSN returns the test DSN or fails the test.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		t.Fatalf("%s is not set: start PostgreSQL with scripts/postgres-test-cluster.sh (test.sh does)", DSNEnv)
	}
	return dsn
}

// freshSchema names a schema no other test uses.
func freshSchema() string {
	return fmt.Sprintf("es_test_%d_%d", time.Now().UnixNano()%1e9, schemaSeq.Add(1))
}

func openT(t testing.TB, schema string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{DSN: testDSN(t), Schema: schema, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) eventstore.Store { return openT(t, freshSchema()) },
		Reopen: func(t *testing.T, s eventstore.Store) eventstore.Store {
			ps := s.(*Store)
			ps.Close()
			return openT(t, ps.cfg.Schema)
		},
	})
}
