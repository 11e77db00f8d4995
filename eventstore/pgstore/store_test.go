package pgstore_test

import (
	"testing"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/pgstore"
	"github.com/heraldhq/herald/eventstore/pgstore/pgtest"
	"github.com/heraldhq/herald/eventstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) eventstore.Store { return pgtest.Open(t, "") },
		Reopen: func(t *testing.T, s eventstore.Store) eventstore.Store {
			ps := s.(*pgstore.Store)
			ps.Close()
			return pgtest.Open(t, ps.Schema())
		},
	})
}
