package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/console"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/kafka"
	"github.com/heraldhq/herald/logctx"
	"github.com/heraldhq/herald/rules"
	"github.com/heraldhq/herald/schema/registry"
	"github.com/heraldhq/herald/server"
)

type serveOptions struct {
	data             string
	kafkaAddr        string
	httpAddr         string
	registryAddr     string
	registryAddrSet  bool // given by flag, environment or file (else the default)
	advertised       string
	durability       string
	autoCreate       bool
	defaultParts     int
	logLevel         string
	logFormat        string
	configFile       string
	shutdownDeadline time.Duration
	httpMaxPublish   int64
	security         securityOptions
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Herald server (Kafka protocol, HTTP API, embedded storage)",
		Long: `Run the Herald server: topics on embedded storage in --data, the Kafka wire
protocol on --kafka-addr, and HTTP on --http-addr: the JSON API under /v1/
(described by /v1/openapi.json), /healthz, /readyz, /metrics and the web
console at /. The schema registry (Confluent's REST API) answers on
--registry-addr and under /registry on --http-addr; GET /v1/asyncapi.json
describes the topics. See docs/observability.md for the metrics and console.

Every flag can also be set by an environment variable HERALD_<FLAG> (for
example HERALD_KAFKA_ADDR=:9093) or by a line "flag = value" in the file named
by --config. A flag on the command line wins over the environment, which wins
over the file.

With --users FILE (written by herald user add) every client authenticates:
SASL (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN) on the Kafka listener, HTTP Basic
on HTTP and the registry (all but /healthz and /readyz). --tls-cert and
--tls-key make every listener speak TLS; --tls-client-ca asks clients for
certificates. Both files are reread when they change. See docs/security.md.

SIGTERM or SIGINT stop the server cleanly: listeners close, in-flight requests
finish, every log is flushed. Acknowledged writes also survive SIGKILL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnvAndFile(cmd.Flags(), o.configFile); err != nil {
				return err
			}
			o.registryAddrSet = cmd.Flags().Changed("registry-addr")
			return runServe(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", "./herald-data", "data directory")
	f.StringVar(&o.kafkaAddr, "kafka-addr", ":9092", "Kafka protocol listen address")
	f.StringVar(&o.httpAddr, "http-addr", ":8080", "HTTP listen address")
	f.StringVar(&o.registryAddr, "registry-addr", ":8081", "schema registry (Confluent REST API) listen address; \"\" for none (it is also under /registry on --http-addr)")
	f.StringVar(&o.advertised, "advertised-addr", "", "HOST:PORT clients are told to connect to (default: the address they used)")
	f.StringVar(&o.durability, "durability", "always", "default topic durability: always, interval=DURATION, unsafe-none or memory")
	f.BoolVar(&o.autoCreate, "auto-create-topics", false, "create topics on first produce or metadata request")
	f.IntVar(&o.defaultParts, "default-partitions", 1, "partitions of auto-created topics")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.configFile, "config", "", "config file of \"flag = value\" lines")
	f.DurationVar(&o.shutdownDeadline, "shutdown-timeout", 30*time.Second, "how long a clean shutdown may take")
	f.Int64Var(&o.httpMaxPublish, "http-max-publish-bytes", 8<<20, "largest publish request body the HTTP API accepts (0: 8 MiB)")
	addSecurityFlags(f, &o.security)
	return cmd
}

// applyEnvAndFile fills flags not given on the command line from HERALD_*
// variables, then from the config file.
func applyEnvAndFile(fs *pflag.FlagSet, file string) error {
	fromFile := map[string]string{}
	if file != "" {
		var err error
		if fromFile, err = readConfigFile(file, fs); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" {
			return
		}
		env := "HERALD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		src, v, ok := env, "", false
		if v, ok = os.LookupEnv(env); !ok {
			src = file
			v, ok = fromFile[f.Name]
		}
		if ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: --%s %q: %v", src, f.Name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func readConfigFile(path string, fs *pflag.FlagSet) (map[string]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer fh.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s:%d: want \"flag = value\", got %q", path, n, line)
		}
		if fs.Lookup(k) == nil || k == "config" {
			return nil, fmt.Errorf("%s:%d: unknown setting %q (the settings are serve's flags)", path, n, k)
		}
		out[k] = v
	}
	return out, sc.Err()
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text": // logctx: lines logged for a request or an event carry its ids
		return slog.New(logctx.NewHandler(slog.NewTextHandler(os.Stderr, ho))), nil
	case "json":
		return slog.New(logctx.NewHandler(slog.NewJSONHandler(os.Stderr, ho))), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func runServe(ctx context.Context, o serveOptions) error {
	logger, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(logger)
	tracerProvider, stopTracing, err := setupTracing(ctx, logger)
	if err != nil {
		return err
	}
	defer stopTracing(context.WithoutCancel(ctx))
	dur, err := commitlog.ParseDurability(o.durability)
	if err != nil {
		return fmt.Errorf("--durability: %w", err)
	}
	var advHost string
	var advPort int32
	if o.advertised != "" {
		h, p, err := net.SplitHostPort(o.advertised)
		n, perr := strconv.ParseUint(p, 10, 16)
		if err != nil || perr != nil || h == "" {
			return fmt.Errorf("--advertised-addr %q: want HOST:PORT", o.advertised)
		}
		advHost, advPort = h, int32(n)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	sec, err := o.security.setup(logger, reg)
	if err != nil {
		return err
	}

	start := time.Now()
	var kc kafka.Config
	kc.Auth, kc.SASLMechanisms, kc.TLS = sec.store, sec.mechs, sec.tls
	hook := &registry.Hook{}
	kc.AdvertisedHost, kc.AdvertisedPort = advHost, advPort
	kc.TracerProvider = tracerProvider // nil unless exporting: produce spans cost nothing then
	// Components' own events (topic created, group rebalanced, ...) wait
	// here until the rules engine publishes them on its system bus.
	sysq := rules.NewSystemQueue(rules.SystemQueueConfig{Logger: logger, Registerer: reg})
	srv, err := server.Start(ctx, server.Config{
		Broker: broker.Config{
			DataDir: o.data, Durability: dur, AutoCreateTopics: o.autoCreate, DefaultPartitions: o.defaultParts,
			Validator: hook, OnEvent: sysq.Hook(),
		},
		Groups:    groups.Config{OnEvent: sysq.Hook()},
		KafkaAddr: o.kafkaAddr, Kafka: kc, Logger: logger, Registerer: reg,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.Close(); err != nil {
			logger.Error("closing", "err", err)
		}
	}()
	// One log over the embedded broker for the services built on eventlog.
	elog, err := embedded.New(embedded.Config{Broker: srv.Broker, Groups: srv.Groups, ClientID: "herald-serve"})
	if err != nil {
		return err
	}
	defer elog.Close() // after the services, deferred below, are closed
	sreg, err := openRegistry(ctx, elog, hook, logger, reg, sysq.Hook())
	if err != nil {
		return err
	}
	hln, err := sec.listen(o.httpAddr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/registry/", http.StripPrefix("/registry", sreg.Handler()))
	sapi, err := buildAPI(ctx, srv, elog, sreg, apiConfig{
		Data: o.data, Durability: dur, MaxPublishBytes: o.httpMaxPublish, Logger: logger, Registerer: reg, SystemEvents: sysq,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := sapi.Close(); err != nil {
			logger.Error("closing", "err", err)
		}
	}()
	mux.Handle("/v1/", sapi.API)
	subs, sagas := sapi.Subs, sapi.Sagas
	mux.Handle("/", console.Handler()) // the web console; every API path above is more specific
	mux.Handle("GET /console/live", console.Live(ctx, reg, 2*time.Second))
	hs := &http.Server{Handler: sec.wrap(mux), ReadHeaderTimeout: 10 * time.Second}
	hs.RegisterOnShutdown(subs.CloseStreams)

	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(hln) }()
	// Its own loop for the lookups clients make most; net/http for the rest.
	rcfg := registry.ServerConfig{ReadHeaderTimeout: 10 * time.Second}
	if sec.basic != nil {
		rcfg.Wrap = sec.wrap
	}
	rs := sreg.NewServer(rcfg)
	if o.registryAddr != "" {
		rln, err := sec.listen(o.registryAddr)
		switch {
		case err != nil && o.registryAddrSet:
			hs.Close()
			return fmt.Errorf("--registry-addr: %w", err)
		case err != nil:
			// The default port taken (another server on this host): the
			// registry still answers under /registry.
			logger.Warn("schema registry: default address unavailable; serving under /registry on the HTTP address only",
				"addr", o.registryAddr, "err", err)
		default:
			go func() { errc <- rs.Serve(rln) }()
			logger.Info("schema registry serving", "addr", rln.Addr().String())
		}
	}
	ready.Store(true)
	logger.Info("herald serving", "kafka", srv.KafkaAddr(), "http", sec.scheme()+"://"+hln.Addr().String(), "data", o.data,
		"tls", sec.tls != nil, "authentication", sec.store != nil,
		"durability", dur.String(), "topics", len(srv.Broker.Topics()), "startup", time.Since(start).Round(time.Millisecond))

	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case serveErr = <-errc:
		logger.Error("HTTP listener failed", "err", serveErr)
	case <-srv.Done():
		serveErr = srv.ServeErr()
		logger.Error("Kafka listener failed", "err", serveErr)
	case <-sagas.Done():
		serveErr = fmt.Errorf("saga engine stopped: %w", sagas.Err())
		logger.Error("saga engine failed", "err", serveErr)
	}
	ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownDeadline)
	defer cancel()
	hs.Shutdown(sctx)
	rs.Shutdown(sctx)
	return serveErr
}
