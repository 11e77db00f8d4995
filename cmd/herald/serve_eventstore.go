package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/eventstore/embedded"
	"github.com/heraldhq/herald/eventstore/httpapi"
)

// mountEventStore opens the embedded event store in DATA/eventstore and
// serves its HTTP API (/v1/streams..., /v1/all...) on mux. A memory
// durability falls back to always: the event store is durable or nothing.
func mountEventStore(mux *http.ServeMux, data string, dur commitlog.Durability, logger *slog.Logger, reg prometheus.Registerer) (func() error, error) {
	if dur.Mode != commitlog.SyncInterval && dur.Mode != commitlog.SyncUnsafeNone {
		dur = commitlog.Durability{}
	}
	es, err := embedded.Open(embedded.Config{
		Dir: filepath.Join(data, "eventstore"), Durability: dur, Logger: logger.With("component", "eventstore"), Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("event store: %w", err)
	}
	api := httpapi.Routes(mux, es)
	return func() error { return errors.Join(api.Close(), es.Close()) }, nil
}
