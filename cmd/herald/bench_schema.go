package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/srload"
	"github.com/heraldhq/herald/schema/registry"
)

type benchSchemaFlags struct {
	registry, client, output string
	kinds                    []string
	conns, pipeline          int
	runs, register, limit    int
	serverPID                int
	duration                 time.Duration
}

func newBenchSchemaLookupsCmd() *cobra.Command {
	var f benchSchemaFlags
	cmd := &cobra.Command{
		Use:   "schema-lookups",
		Short: "Benchmark schema registry lookups (GET /schemas/ids/{id} and friends) over HTTP keep-alive",
		Long: `Load a running schema registry with the lookups serializers and
deserializers make, and report lookups per second.

The lookups are the registry's own schemas (GET /schemas lists them; their
bodies are fetched once before the run) or, with --register N, N small Avro
schemas registered first under herald-bench-lookup-I-value subjects. --kind
picks /schemas/ids/{id} (ids), /schemas/ids/{id}/schema (ids-schema),
/subjects/{s}/versions/{v} (versions) or /subjects/{s}/versions/{v}/schema
(versions-schema).

The default client is cheap, so that the server is what is measured: --conns
raw TCP keep-alive connections, each writing --pipeline requests at once
(HTTP/1.1 pipelining) and reading the answers with a parser that allocates
nothing. Every answer is checked: status 200, Content-Length, and the body
byte for byte. --client net/http uses Go's HTTP client instead, one request
in flight per connection, as ordinary clients do (--pipeline is 1 then).

With --server-pid (the herald serve process, on this host) the server's CPU
time per lookup is reported too: the figure that says what the server costs
however busy the machine is. Progress goes to stderr; the results go to
stdout as a table or, with -o json, as one JSON document.`,
		Example: `  herald bench schema-lookups --register 50
  herald bench schema-lookups --registry http://127.0.0.1:8081 --conns 2 --pipeline 32 --duration 10s --server-pid $(pidof herald)
  herald bench schema-lookups --client net/http --conns 8 --runs 3 -o json
  herald bench schema-lookups --registry http://127.0.0.1:8080/registry --kind ids,versions`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.client == srload.NetHTTP && !cmd.Flags().Changed("pipeline") {
				f.pipeline = 1
			}
			if err := f.check(); err != nil {
				return commandError(cmd, err)
			}
			return runBenchSchema(cmd.Context(), &f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.registry, "registry", "http://127.0.0.1:8081", "the registry's URL (with the path prefix it is under, if any: http://HOST:8080/registry)")
	fl.IntVar(&f.conns, "conns", 2, "keep-alive connections")
	fl.IntVar(&f.pipeline, "pipeline", 32, "requests written at once per connection (HTTP/1.1 pipelining; 1 for none, the default with --client net/http)")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long each run lasts")
	fl.IntVar(&f.runs, "runs", 1, "runs, one after another (the best is reported too)")
	fl.StringSliceVar(&f.kinds, "kind", []string{srload.KindID}, "lookup kinds: "+strings.Join(srload.Kinds, ", "))
	fl.StringVar(&f.client, "client", srload.Raw, "client: raw (pipelined raw TCP) or net/http (Go's HTTP client)")
	fl.IntVar(&f.register, "register", 0, "register this many bench schemas first")
	fl.IntVar(&f.limit, "limit", 1000, "at most this many distinct lookups of each kind")
	fl.IntVar(&f.serverPID, "server-pid", 0, "report this process's CPU time per lookup (the herald serve answering; Linux)")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	return cmd
}

func (f *benchSchemaFlags) check() error {
	var errs []string
	bad := func(flag, v, want string) {
		errs = append(errs, fmt.Sprintf("invalid --%s %q: want %s", flag, v, want))
	}
	if u, err := url.Parse(f.registry); err != nil || (u.Scheme != "http") || u.Host == "" {
		bad("registry", f.registry, "an http:// URL such as http://127.0.0.1:8081")
	}
	if f.conns < 1 || f.conns > 10_000 {
		bad("conns", strconv.Itoa(f.conns), "an integer from 1 to 10000")
	}
	if f.pipeline < 1 || f.pipeline > 1024 {
		bad("pipeline", strconv.Itoa(f.pipeline), "an integer from 1 to 1024")
	}
	if f.client != srload.Raw && f.client != srload.NetHTTP {
		bad("client", f.client, "raw or net/http")
	} else if f.client == srload.NetHTTP && f.pipeline != 1 {
		bad("pipeline", strconv.Itoa(f.pipeline), "1 with --client net/http, which does not pipeline")
	}
	if f.duration <= 0 {
		bad("duration", f.duration.String(), "a positive duration such as 10s")
	}
	if f.runs < 1 || f.runs > 100 {
		bad("runs", strconv.Itoa(f.runs), "an integer from 1 to 100")
	}
	for _, k := range f.kinds {
		found := false
		for _, ok := range srload.Kinds {
			found = found || k == ok
		}
		if !found {
			bad("kind", k, "one or more of "+strings.Join(srload.Kinds, ", "))
		}
	}
	if f.register < 0 || f.register > 100_000 {
		bad("register", strconv.Itoa(f.register), "an integer from 0 to 100000")
	}
	if f.limit < 1 {
		bad("limit", strconv.Itoa(f.limit), "a positive integer")
	}
	if f.serverPID < 0 {
		bad("server-pid", strconv.Itoa(f.serverPID), "a process id")
	} else if f.serverPID > 0 {
		if _, err := srload.ProcCPU(f.serverPID); err != nil {
			bad("server-pid", strconv.Itoa(f.serverPID), "a running process on this host ("+err.Error()+")")
		}
	}
	if f.output != "table" && f.output != "json" {
		bad("output", f.output, "table or json")
	}
	if len(errs) > 0 {
		return usageErrorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// Results, as printed by -o json.

type benchSchemaReport struct {
	Date      time.Time        `json:"date"`
	GoVersion string           `json:"go_version"`
	CPUs      int              `json:"cpus"`
	LoadAvg   string           `json:"load_average,omitempty"` // /proc/loadavg before the first run
	Registry  string           `json:"registry"`
	Kinds     []string         `json:"kinds"`
	Lookups   int              `json:"distinct_lookups"`
	Client    string           `json:"client"`
	Conns     int              `json:"conns"`
	Pipeline  int              `json:"pipeline"`
	Duration  string           `json:"duration_per_run"`
	Runs      []benchSchemaRun `json:"runs"`
	Best      benchSchemaRun   `json:"best"`
}

type benchSchemaRun struct {
	Lookups       uint64  `json:"lookups"`
	Seconds       float64 `json:"seconds"`
	LookupsPerSec float64 `json:"lookups_per_sec"`
	// ServerCPUus is the --server-pid process's CPU time per lookup.
	ServerCPUus float64 `json:"server_cpu_us_per_lookup,omitempty"`
	// ServerLookupsPerCPUSec is how many lookups one core of it answers per
	// second at that cost.
	ServerLookupsPerCPUSec float64 `json:"server_lookups_per_cpu_sec,omitempty"`
}

func runBenchSchema(ctx context.Context, f *benchSchemaFlags, stdout, stderr io.Writer) error {
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	u, _ := url.Parse(f.registry)
	base := strings.TrimSuffix(f.registry, "/")
	if f.register > 0 {
		progress("registering %d bench schemas at %s ...", f.register, base)
		if err := benchRegister(ctx, base, f.register); err != nil {
			return err
		}
	}
	reqs, err := srload.Discover(ctx, base, f.kinds, f.limit)
	if err != nil {
		return fmt.Errorf("list the registry's schemas: %w", err)
	}
	if len(reqs) == 0 {
		return cliError(exitNotFound, "the registry at %s has no schemas to look up: register some, or pass --register 50", base)
	}
	rep := benchSchemaReport{Date: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), LoadAvg: loadAvg(),
		Registry: base, Kinds: f.kinds, Lookups: len(reqs), Client: f.client, Conns: f.conns, Pipeline: f.pipeline, Duration: f.duration.String()}
	for i := range f.runs {
		progress("run %d of %d: %d distinct lookups (%s), %d connections, pipeline %d, %s client, %s ...",
			i+1, f.runs, len(reqs), strings.Join(f.kinds, ","), f.conns, f.pipeline, f.client, f.duration)
		var cpu0 time.Duration
		if f.serverPID > 0 {
			if cpu0, err = srload.ProcCPU(f.serverPID); err != nil {
				return fmt.Errorf("--server-pid %d: %w", f.serverPID, err)
			}
		}
		var last uint64
		var lastT time.Duration
		res, err := srload.Run(ctx, srload.Config{
			Addr: u.Host, Requests: reqs, Conns: f.conns, Pipeline: f.pipeline, Duration: f.duration, Client: f.client,
			Progress: func(n uint64, el time.Duration) {
				progress("    %s lookups, %s lookups/s", fmtInt(float64(n)), fmtInt(float64(n-last)/(el-lastT).Seconds()))
				last, lastT = n, el
			},
		})
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		r := benchSchemaRun{Lookups: res.Lookups, Seconds: res.Elapsed.Seconds(), LookupsPerSec: res.PerSecond()}
		if f.serverPID > 0 {
			cpu1, err := srload.ProcCPU(f.serverPID)
			if err != nil {
				return fmt.Errorf("--server-pid %d: %w", f.serverPID, err)
			}
			if cpu := cpu1 - cpu0; cpu > 0 && res.Lookups > 0 {
				r.ServerCPUus = cpu.Seconds() * 1e6 / float64(res.Lookups)
				r.ServerLookupsPerCPUSec = float64(res.Lookups) / cpu.Seconds()
			}
		}
		line := fmt.Sprintf("    %s lookups/s", fmtInt(r.LookupsPerSec))
		if r.ServerCPUus > 0 {
			line += fmt.Sprintf(", server %.2f µs CPU per lookup", r.ServerCPUus)
		}
		progress("%s", line)
		rep.Runs = append(rep.Runs, r)
		if r.LookupsPerSec > rep.Best.LookupsPerSec {
			rep.Best = r
		}
	}
	if f.output == "json" {
		return printJSON(stdout, rep)
	}
	rows := make([][]string, 0, len(rep.Runs)+1)
	row := func(name string, r benchSchemaRun) []string {
		cpu := "-"
		if r.ServerCPUus > 0 {
			cpu = fmt.Sprintf("%.2f", r.ServerCPUus)
		}
		return []string{name, fmtInt(float64(r.Lookups)), fmt.Sprintf("%.2f", r.Seconds), fmtInt(r.LookupsPerSec), cpu}
	}
	for i, r := range rep.Runs {
		rows = append(rows, row(strconv.Itoa(i+1), r))
	}
	if len(rep.Runs) > 1 {
		rows = append(rows, row("best", rep.Best))
	}
	fmt.Fprintf(stdout, "%s: %d distinct lookups (%s), %s client, %d connections, pipeline %d; load average %s\n",
		base, len(reqs), strings.Join(f.kinds, ","), f.client, f.conns, f.pipeline, rep.LoadAvg)
	return printTable(stdout, []string{"RUN", "LOOKUPS", "SECONDS", "LOOKUPS/S", "SERVER CPU µs/LOOKUP"}, rows)
}

// benchRegister registers n small Avro schemas (the same ones every time,
// so a second run registers nothing new).
func benchRegister(ctx context.Context, base string, n int) error {
	var wg sync.WaitGroup
	errc := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			schema := fmt.Sprintf(`{"type":"record","name":"BenchLookup%d","namespace":"herald.bench","fields":[{"name":"id","type":"long"},{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"note","type":["null","string"],"default":null}]}`, i)
			body := fmt.Sprintf(`{"schema":%q}`, schema)
			target := fmt.Sprintf("%s/subjects/herald-bench-lookup-%d-value/versions", base, i)
			q, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
			if err != nil {
				errc <- err
				return
			}
			q.Header.Set("Content-Type", registry.ContentType)
			resp, err := http.DefaultClient.Do(q)
			if err != nil {
				errc <- fmt.Errorf("register: %w", err)
				return
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errc <- fmt.Errorf("register at %s: %s: %s", target, resp.Status, strings.TrimSpace(string(b)))
			}
		}()
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// loadAvg is /proc/loadavg's first three fields ("" off Linux).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
