package embedded

import (
	"testing"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/storetest"
)

func openT(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) eventstore.Store { return openT(t, t.TempDir()) },
		Reopen: func(t *testing.T, s eventstore.Store) eventstore.Store {
			es := s.(*Store)
			if err := es.Close(); err != nil {
				t.Fatal(err)
			}
			return openT(t, es.cfg.Dir)
		},
	})
}
