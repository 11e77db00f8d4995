package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/cep"
	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/eventlog"
	esembedded "github.com/heraldhq/herald/eventstore/embedded"
	eshttp "github.com/heraldhq/herald/eventstore/httpapi"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/rules"
	"github.com/heraldhq/herald/saga"
	"github.com/heraldhq/herald/schema/registry"
	"github.com/heraldhq/herald/server"
	streamsql "github.com/heraldhq/herald/stream/sql"
	"github.com/heraldhq/herald/subscription"
)

// apiConfig is what buildAPI needs besides the server.
type apiConfig struct {
	Data            string // the data directory (the event store lives in DATA/eventstore)
	Durability      commitlog.Durability
	MaxPublishBytes int64
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
	SystemEvents    *rules.SystemQueue // components' own events, to the system bus (nil: none)
}

// servedAPI is the assembled /v1 API with the services behind it.
type servedAPI struct {
	API   *httpapi.API
	Subs  *subscription.Manager
	Sagas *saga.Engine
	// closers run in reverse order by Close.
	closers []func() error
}

// Close closes the services, last opened first.
func (s *servedAPI) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// asyncAPIFragment documents GET /v1/asyncapi.json, served by cmd/herald.
const asyncAPIFragment = `{"paths":{"/v1/asyncapi.json":{"get":{
 "operationId":"getAsyncAPI","x-herald-service":"asyncapi","tags":["meta"],
 "summary":"The AsyncAPI 3 document of the server's topics (channels, operations, CloudEvents types seen in each topic, schemas from the registry)",
 "responses":{
  "200":{"description":"The AsyncAPI document","content":{"application/json":{"schema":{"type":"object","required":["asyncapi","info","channels"],"properties":{"asyncapi":{"type":"string"},"info":{"type":"object"},"channels":{"type":"object"}}}}}},
  "default":{"$ref":"#/components/responses/Error"}}}}}}`

// buildAPI assembles the HTTP API herald serve serves under /v1/: the
// topic and group routes, subscriptions and snapshots, the event bus
// (rules, archives, replays), sagas, the event store, continuous queries
// and the AsyncAPI document, each service's OpenAPI fragment merged into the served
// document. Every /v1 route goes through the one API mux (error shape,
// request ids, metrics). The saga engine is a Kafka client of srv's
// listener. On error, what was opened is closed.
func buildAPI(ctx context.Context, srv *server.Server, elog eventlog.Log, sreg *registry.Registry, c apiConfig) (_ *servedAPI, err error) {
	logger, reg := c.Logger, c.Registerer
	s := &servedAPI{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	api, err := httpapi.New(httpapi.Config{Broker: srv.Broker, Groups: srv.Groups, Logger: logger, Registerer: reg, MaxPublishBytes: c.MaxPublishBytes})
	if err != nil {
		return nil, fmt.Errorf("HTTP API: %w", err)
	}
	s.API = api
	// Subscriptions (/v1/subscriptions, /v1/snapshots) on the embedded log.
	subs, err := subscription.Open(ctx, subscription.Config{Log: elog, Logger: logger.With("component", "subscription"), Registerer: reg, OnEvent: c.SystemEvents.Hook()})
	if err != nil {
		return nil, err
	}
	s.Subs = subs
	s.closers = append(s.closers, func() error {
		if err := subs.Close(); err != nil {
			return fmt.Errorf("closing subscriptions: %w", err)
		}
		return nil
	})
	subs.Routes(api)
	rulesEngine, err := rules.New(rules.Config{Log: elog, Logger: logger.With("component", "rules"), Registerer: reg})
	if err != nil {
		return nil, err
	}
	if err := rulesEngine.Start(ctx); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, rulesEngine.Close, c.SystemEvents.Start(rulesEngine))
	rulesEngine.Routes(api)
	// The saga engine, queries and patterns are Kafka clients of this
	// server, as they would be of any cluster, over its in-process
	// listener: no TLS or SASL for them whatever --users and --tls-cert
	// demand of the network.
	internal := []kgo.Opt{kgo.Dialer(srv.DialInternal)}
	// The saga engine runs exactly-once transactions over the listener.
	sagas, err := saga.Start(ctx, saga.Config{
		Brokers: []string{srv.KafkaAddr()}, TransactionalID: "herald-serve-saga-engine", KgoOptions: internal,
		Logger: logger.With("component", "saga"), Registerer: reg, OnEvent: c.SystemEvents.Hook(),
	})
	if err != nil {
		return nil, fmt.Errorf("saga engine: %w", err)
	}
	s.Sagas = sagas
	s.closers = append(s.closers, sagas.Close)
	sagas.Routes(api)
	cepReg, err := cep.NewRegistry(ctx, cep.RegistryConfig{Brokers: []string{srv.KafkaAddr()}, KgoOptions: internal, Logger: logger, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("cep patterns: %w", err)
	}
	s.closers = append(s.closers, cepReg.Close)
	cep.Routes(api, cepReg)
	aapi, err := asyncAPIHandler(srv, sreg, srv.KafkaAddr())
	if err != nil {
		return nil, err
	}
	api.Handle("GET /v1/asyncapi.json", aapi)
	// The event store (/v1/streams, /v1/all, /v1/persistent-subscriptions,
	// /v1/admin/scavenge) in DATA/eventstore. A memory durability falls
	// back to always: the event store is durable or nothing.
	dur := c.Durability
	if dur.Mode != commitlog.SyncInterval && dur.Mode != commitlog.SyncUnsafeNone {
		dur = commitlog.Durability{}
	}
	es, err := esembedded.Open(esembedded.Config{
		Dir: filepath.Join(c.Data, "eventstore"), Durability: dur, Logger: logger.With("component", "eventstore"), Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("event store: %w", err)
	}
	s.closers = append(s.closers, es.Close)
	esAPI := eshttp.Routes(api, es)
	s.closers = append(s.closers, esAPI.Close)
	// Continuous queries (/v1/queries): a Kafka client of srv's listener;
	// the registered queries run again from _herald_queries.
	queries, err := streamsql.NewRegistry(ctx, streamsql.RegistryConfig{
		Brokers: []string{srv.KafkaAddr()}, KgoOptions: internal, Logger: logger, Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("continuous queries: %w", err)
	}
	s.closers = append(s.closers, queries.Close)
	streamsql.Routes(api, queries)

	closeLineage, err := mountLineage(ctx, api, elog, srv, filepath.Join(c.Data, "lineage"), logger, reg)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() error { closeLineage(); return nil })

	for _, f := range []struct {
		name string
		doc  []byte
	}{
		{"subscription", subscription.OpenAPI}, {"rules", rules.OpenAPI}, {"saga", saga.OpenAPI},
		{"eventstore", eshttp.OpenAPI}, {"queries", streamsql.OpenAPI}, {"cep", cep.OpenAPI}, {"asyncapi", []byte(asyncAPIFragment)},
	} {
		if err := api.AddOpenAPI(f.doc); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return s, nil
}
