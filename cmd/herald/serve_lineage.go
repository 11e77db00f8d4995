package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/lineage"
	"github.com/heraldhq/herald/rules"
	"github.com/heraldhq/herald/server"
)

// mountLineage starts the lineage indexer over every topic that is not
// internal (nor named with a leading "_", nor the system bus) and mounts GET /v1/lineage/{eventId}
// and GET /v1/flows/{correlationId} on the API. The index is kept in dir,
// so that a restart loads it instead of reading every topic again.
func mountLineage(ctx context.Context, api *httpapi.API, log eventlog.Log, srv *server.Server, dir string, logger *slog.Logger, reg prometheus.Registerer) (func(), error) {
	lin, err := lineage.NewIndexer(lineage.Config{Log: log, Dir: dir, Logger: logger.With("component", "lineage"), Registerer: reg,
		Topics: func() map[string]int {
			out := map[string]int{}
			for _, t := range srv.Broker.Topics() {
				// Not herald-system either: Herald's own events (topic
				// created, group rebalanced, ...) are not business flows.
				if !t.Internal && !strings.HasPrefix(t.Name, "_") && t.Name != rules.SystemBus {
					out[t.Name] = t.Partitions
				}
			}
			return out
		}})
	if err != nil {
		return nil, err
	}
	if err := api.AddOpenAPI(lineage.OpenAPI); err != nil {
		lin.Close()
		return nil, fmt.Errorf("lineage: %w", err)
	}
	lin.Start(ctx)
	lin.Routes(api)
	return func() { lin.Close() }, nil
}
