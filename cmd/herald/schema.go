package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/schema/registry"
	"github.com/heraldhq/herald/server"
)

// openRegistry starts the schema registry on the server's broker (its
// _schemas topic) and lets hook validate produced records with it.
func openRegistry(ctx context.Context, srv *server.Server, hook *registry.Hook, logger *slog.Logger, reg prometheus.Registerer) (*registry.Registry, error) {
	l, err := embedded.New(embedded.Config{Broker: srv.Broker, Groups: srv.Groups})
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	r, err := registry.Open(ctx, registry.Config{Log: l, Logger: logger, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	hook.Set(r)
	return r, nil
}
